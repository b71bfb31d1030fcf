"""The PDF of the whole book (`make pdf`, scripts/build_pdf.py): printed offline by headless Chromium
from the smoke-scale book that the session fixture ``book`` (conftest.py) executed and built, then read
back with poppler-utils' ``pdftotext``, ``pdfinfo`` and ``pdfimages``. The PDF is kept in ``test-artifacts/``.
"""
from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py") if p.stem != "scorecard")
# The smoke-scale book prints to 130-150 A4 pages. Fewer than 40 means the page was printed before it had
# loaded or lost its chapters; more than 400 means the layout ran away (a table or figure spread over pages).
PAGES = (40, 400)

_spec = importlib.util.spec_from_file_location("build_pdf", ROOT / "scripts" / "build_pdf.py")
build_pdf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_pdf)


def _collapse(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _title(page: Path) -> str:
    """A built HTML page's title: its first heading (the one with a permalink)."""
    headings = [h for h in re.findall(r"<h1>(.*?)</h1>", page.read_text(encoding="utf-8"), re.S) if "headerlink" in h]
    assert headings, f"{page} has no title"
    title = re.sub(r"<a class=\"headerlink\".*?</a>", "", headings[0], flags=re.S)
    return _collapse(html.unescape(re.sub(r"<[^>]+>", "", title)))


def _renderings(value) -> set[str]:
    """The ways a chapter may print a metric (significant digits, decimals, a percentage, an exponent),
    keeping only those with at least 3 significant digits, which do not turn up by chance."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return set()
    if isinstance(value, int):
        out = {str(value), f"{value:,}"}
    else:
        out = ({f"{value:.{p}g}" for p in range(2, 7)} | {f"{value:.{d}f}" for d in range(1, 5)}
               | {f"{100 * value:.{d}f}%" for d in range(3)} | {f"{value:.{d}e}" for d in range(3)})

    def significant(s: str) -> str:
        return re.sub(r"[^0-9]", "", re.sub(r"e[+-]?\d+$", "", s)).strip("0")

    return {s for s in out if len(significant(s)) >= 3}


def test_raw_math_finds_tex_left_as_source_and_ignores_code():
    page = ('<p>the ratio <span class="math notranslate nohighlight">\\(2\\,\\mathrm{KL}[p, q]\\)</span></p>'
            '<div class="math notranslate nohighlight" id="equation-x">\n<span class="eqno">(1)<a class="headerlink" '
            'href="#equation-x">#</a></span>\\[ds^2 = \\sum_{i} g_{ii}\\, dw_i^2\\]</div>'
            '<pre><span class="n">ax</span>.set(ylabel=r&quot;$2\\,\\mathrm{KL}[p, q]$&quot;)</pre>')
    code = 'ax.set(ylabel=r"$2\\,\\mathrm{KL}[p, q]$")'
    assert build_pdf.raw_math(f"the ratio 2 KL[p, q] ds2 = Σ gii dwi2 (1) {code}", page) == []
    raw = build_pdf.raw_math("the ratio \\(2\\,\\mathrm{KL}[p, q]\\) \\[ds^2 = \\sum_{i} g_{ii}\\, dw_i^2\\]", page)
    assert "ds^2 = \\sum_{i} g_{ii}\\, dw_i^2" in raw and any(r.startswith("\\[") for r in raw)
    assert any(r.startswith("\\(") for r in raw)


@pytest.fixture(scope="module")
def pdf(book):
    """``scripts/build_pdf.py`` run on the smoke-scale book, as `make pdf` runs it on the real one."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [name for name, found in (("chromium", chromium), ("pdftotext", shutil.which("pdftotext")),
                                        ("pdfinfo", shutil.which("pdfinfo")), ("pdfimages", shutil.which("pdfimages")))
               if not found]
    if missing:
        pytest.skip(f"{missing} not installed: `make browser pdftools` installs Debian's chromium and poppler-utils "
                    "(apt-get, as root)")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_pdf.py"), "--book", str(book["src"])],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = book["src"] / "_build" / "pdf" / "ctd-book.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(out, ARTIFACTS / "ctd-book-smoke.pdf")
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True).stdout
    images = subprocess.run(["pdfimages", "-list", str(out)], capture_output=True, text=True, check=True).stdout
    return {
        "path": out,
        "pages": [_collapse(p) for p in text.split("\f")],
        "text": text,
        "count": int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1)),
        # pdfimages -list: two header lines, then one line per image drawn, its page number first
        "image_pages": [int(line.split()[0]) for line in images.splitlines()[2:] if line.strip()],
        "printed": book["src"] / "_build" / "singlehtml" / build_pdf.PRINT_PAGE,
    }


def _starts(book, pdf) -> dict[str, int]:
    """The page (0-based) on which each document of the table of contents after the front page begins."""
    toc = yaml.safe_load((book["src"] / "_toc.yml").read_text(encoding="utf-8"))
    starts = {}
    for name in build_pdf.toc_files(toc)[1:]:
        title = _title(book["html"] / f"{name}.html")
        found = [i for i, page in enumerate(pdf["pages"]) if page.startswith(title)]
        assert found, f"no page of the PDF begins with {name}'s title {title!r}"
        starts[name] = found[0]
    return starts


@pytest.mark.slow
def test_pdf_exists_with_a_sane_page_count(pdf):
    assert pdf["path"].exists() and pdf["path"].read_bytes()[:5] == b"%PDF-"
    assert PAGES[0] <= pdf["count"] <= PAGES[1], f"{pdf['count']} pages, expected {PAGES}"


@pytest.mark.slow
def test_pages_are_printed_at_full_size(pdf):
    """Chromium shrinks every page of the PDF when one element is wider than the page (a table, say):
    the widest line of text must still reach the right margin (at full size it ends at 0.91 of the width)."""
    words = subprocess.run(["pdftotext", "-bbox", str(pdf["path"]), "-"], capture_output=True, text=True,
                           check=True).stdout
    width = float(re.search(r'<page width="([\d.]+)"', words).group(1))
    right = max(float(x) for x in re.findall(r'xMax="([\d.]+)"', words))
    assert right >= 0.88 * width, f"the text ends at {right / width:.2f} of the page's width: shrunk to fit"


@pytest.mark.slow
def test_every_document_begins_a_page_with_its_title_in_order(book, pdf):
    starts = _starts(book, pdf)
    assert list(starts.values()) == sorted(starts.values()), f"documents out of the table of contents' order: {starts}"
    assert len(set(starts.values())) == len(starts), f"two documents begin on one page: {starts}"


@pytest.mark.slow
def test_math_is_typeset_not_printed_as_tex(pdf):
    page = pdf["printed"].read_text(encoding="utf-8")
    assert page.count('class="math notranslate nohighlight"') > 50, "the book's equations are missing from the page"
    assert build_pdf.raw_math(pdf["text"], page) == []


@pytest.mark.slow
def test_each_chapter_prints_its_figures_and_a_number_of_its_results(book, pdf):
    starts = _starts(book, pdf)
    bounds = sorted(starts.values()) + [len(pdf["pages"])]
    problems = {}
    for name in CHAPTERS:
        first = starts[f"notebooks/{name}"]
        end = next(b for b in bounds if b > first)  # the next document's first page
        chapter = " ".join(pdf["pages"][first:end])
        figures = len(re.findall(r"<img[^>]+src=\"[^\"]*_images/", (book["html"] / "notebooks" / f"{name}.html").read_text()))
        drawn = sum(first < p <= end for p in pdf["image_pages"])  # pdfimages numbers pages from 1
        if drawn < figures:
            problems[name] = f"{drawn} images drawn on pages {first + 1}-{end}, the chapter has {figures} figures"
            continue
        metrics = json.loads((book["results"] / "smoke" / f"{name}.json").read_text())["metrics"]
        printed = sorted({(key, s) for key, value in metrics.items() for s in _renderings(value)
                          if re.search(rf"(?<![\d.]){re.escape(s)}(?!\d)", chapter)})
        if not printed:
            problems[name] = f"none of its {len(metrics)} metrics is printed on pages {first + 1}-{end}"
    assert not problems, problems
