"""Print the whole book to one PDF, offline.

Jupyter Book's own ``pdfhtml`` builder downloads a browser (pyppeteer) and ``pdflatex`` needs a TeX
installation; this script needs neither. It builds the book as one HTML page (Sphinx's
``singlehtml`` builder, from the notebooks that ``make notebooks`` executed, like ``make html``),
adds a print stylesheet to a copy of that page (each document of the table of contents starts a
new page; code wraps instead of being cut off), serves the build from 127.0.0.1 and prints it with
Debian's headless Chromium, every other host unreachable. MathJax (served locally by
sphinx-mathjax-offline) typesets the equations before the page is printed. Where ``pdftotext``
(poppler-utils) is installed, the PDF's text is then checked for TeX source left untypeset.

    python scripts/build_pdf.py                       # what `make pdf` runs: _build/pdf/ctd-book.pdf
    python scripts/build_pdf.py --book DIR --out FILE
"""
from __future__ import annotations

import argparse
import functools
import html
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRINT_PAGE = "ctd-book-print.html"

# Only for the printed copy of the single page: the book's own HTML pages are not changed.
PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm 16mm 14mm; }
@media print {
  /* one document of the table of contents (a chapter, the scorecard, ...) per section of the PDF */
  span[id^="document-"] + section { break-before: page; }
  h1, h2, h3, h4 { break-after: avoid; break-inside: avoid; }
  /* code and text outputs wrap at the margin instead of being cut off behind a scroll bar */
  pre { white-space: pre-wrap !important; overflow-wrap: anywhere; overflow: visible !important; }
  div.highlight, div.cell_output, div.output, div.cell_input { overflow: visible !important; }
  /* a code cell's box moves to the next page with its code (the theme keeps a code block whole) */
  figure, img, div.math, mjx-container[display="true"], div.cell_input { break-inside: avoid; }
  img { max-width: 100% !important; height: auto !important; }
  /* the page's full width for the text: no room kept for the (hidden) sidebars */
  .bd-sidebar-primary, .bd-sidebar-secondary { display: none !important; }
  .bd-page-width, .bd-container, .bd-container__inner, .bd-main, .bd-main .bd-content,
  .bd-main .bd-content .bd-article-container, .bd-article {
    width: 100% !important; max-width: none !important; margin-left: 0 !important; }
  /* a table wider than the page would make Chromium shrink every page to fit it: a cell holding a
     long name (marked by this script) may break it anywhere, numbers and words stay whole; a table of
     many columns is set smaller and may break its headings; a long table continues on the next page */
  .pst-scrollable-table-container { overflow: visible !important; }
  table { font-size: 0.85em; }
  table:has(tr > :nth-child(9)) { font-size: 0.7em; width: 100%; }
  th, td { padding: 0.3em 0.35em !important; }
  th.ctd-long-word, td.ctd-long-word, table:has(tr > :nth-child(9)) th { overflow-wrap: anywhere; }
  .bd-main .bd-content table { break-inside: auto !important; }
  tr { break-inside: avoid; }
}
"""

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # every host but the local server resolves to nothing: the PDF is made offline
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-pdf-header-footer",
]


def toc_files(toc: dict) -> list[str]:
    """The root and every ``file`` entry of ``_toc.yml``, in order."""
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def check_sources(book: Path, files: list[str]) -> None:
    """Every page of the table of contents must exist; a notebook must have been executed already."""
    missing, not_executed = [], []
    for name in files:
        if (book / f"{name}.ipynb").exists() or (book / f"{name}.md").exists():
            continue
        (not_executed if (book / f"{name}.py").exists() else missing).append(name)
    if not_executed:
        raise SystemExit(f"not executed yet (no .ipynb): {not_executed}; run `make notebooks` first "
                         "(or python scripts/run_notebooks.py --scale cpu)")
    if missing:
        raise SystemExit(f"pages of _toc.yml not found in {book}: {missing}")


def build_single_page(book: Path, root: str) -> Path:
    """Sphinx's singlehtml build of the book (strict, as `make html`); returns the page to print."""
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", "--builder", "singlehtml", "-W", "-n",
           "--keep-going", str(book)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"the singlehtml build failed ({' '.join(cmd)}):\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    outdir = book / "_build" / "singlehtml"
    page = outdir / f"{root}.html"
    if not page.exists():
        raise SystemExit(f"the singlehtml build wrote no {page}")
    text = page.read_text(encoding="utf-8")
    # Sphinx writes every link of the single page relative to the output folder, even when the root
    # document lives in a subfolder (book/intro.html): the printed copy sits at the output folder's top.
    text = text.replace(f'href="{root}.html#', 'href="#')
    text = mark_long_words(text)
    if "</head>" not in text:
        raise SystemExit(f"{page} has no </head>")
    text = text.replace("</head>", f'<style media="print">{PRINT_CSS}</style>\n</head>', 1)
    printed = outdir / PRINT_PAGE
    printed.write_text(text, encoding="utf-8")
    return printed


# asked for by every page, never built by singlehtml: the search index (search is no part of a PDF)
_NOT_BUILT = {"/favicon.ico", "/searchindex.js"}


def mark_long_words(page: str, longest: int = 12) -> str:
    """Give every table cell that holds a word longer than ``longest`` characters (a file name, a
    notebook's name) the class ``ctd-long-word``, which lets the print stylesheet break it anywhere."""

    def mark(cell: re.Match) -> str:
        tag, attrs, body = cell.group(1), cell.group(2) or "", cell.group(3)
        words = html.unescape(re.sub(r"<[^>]+>", "", body)).split()
        if not any(len(w) > longest for w in words):
            return cell.group(0)
        if 'class="' in attrs:
            attrs = attrs.replace('class="', 'class="ctd-long-word ', 1)
        else:
            attrs += ' class="ctd-long-word"'
        return f"<{tag}{attrs}>{body}</{tag}>"

    return re.sub(r"<(td|th)(\s[^>]*)?>(.*?)</\1>", mark, page, flags=re.S)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, failures: list, **kwargs):
        self._failures = failures
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        try:
            status = int(code)
        except (TypeError, ValueError):
            return
        if status >= 400 and self.path.split("?")[0] not in _NOT_BUILT:
            self._failures.append((self.path, status))


def print_pdf(page: Path, out: Path, *, budget_ms: int, timeout_s: int) -> None:
    """Serve ``page``'s folder on 127.0.0.1 and print ``page`` to ``out`` with headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("printing needs Debian's chromium on PATH: `make browser` (apt-get install chromium)")
    failures: list = []
    handler = functools.partial(_QuietHandler, directory=str(page.parent), failures=failures)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{page.name}"
    out.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory() as profile:
            # the virtual time budget lets MathJax typeset every equation before the page is printed
            run = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                 f"--print-to-pdf={out}", url],
                capture_output=True, text=True, timeout=timeout_s,
            )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"chromium did not print the page within {timeout_s} s (--timeout)") from None
    finally:
        server.shutdown()
        server.server_close()
    if run.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise SystemExit(f"chromium printed no PDF (exit status {run.returncode}):\n{run.stderr[-3000:]}")
    if failures:
        raise SystemExit(f"the page asked the local server for files it does not have: {failures[:10]}")


def _collapse(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def raw_math(pdf_text: str, page_html: str) -> list[str]:
    """TeX that the PDF shows as source instead of typeset math.

    Every equation of the page (Sphinx's ``class="math"`` elements) whose TeX holds a command
    (``\\mathrm``, ``\\frac``, ...) must be absent from the PDF's text, and so must the delimiters
    ``\\(``, ``\\[`` and ``$$``, except as often as the page's code shows them (matplotlib labels
    are TeX inside Python strings).
    """
    code = _collapse(" ".join(html.unescape(re.sub(r"<[^>]+>", "", c))
                              for c in re.findall(r"<pre[^>]*>(.*?)</pre>", page_html, re.S)))
    text = _collapse(pdf_text)
    found = []
    for _, body in re.findall(r'<(span|div) class="math notranslate nohighlight"[^>]*>(.*?)</\1>', page_html, re.S):
        body = re.sub(r'<span class="eqno">.*?</span>', "", body, flags=re.S)
        tex = _collapse(html.unescape(re.sub(r"<[^>]+>", "", body)))
        for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$")):
            if tex.startswith(left) and tex.endswith(right):
                tex = tex[len(left):-len(right)].strip()
        if re.search(r"\\[A-Za-z]+", tex) and tex not in code and tex in text:
            found.append(tex)
    for delimiter in ("\\(", "\\[", "$$"):
        if text.count(delimiter) > code.count(delimiter):
            found.append(f"{delimiter} ({text.count(delimiter)} times)")
    return found


def check_pdf(pdf: Path, page: Path) -> int | None:
    """The page count, after checking the math; None (and no check) where poppler-utils is missing."""
    if not (shutil.which("pdftotext") and shutil.which("pdfinfo")):
        print("pdftotext/pdfinfo not found (apt-get install poppler-utils): the PDF's math is not checked")
        return None
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    raw = raw_math(text, page.read_text(encoding="utf-8"))
    if raw:
        raise SystemExit(f"{pdf}: math printed as TeX source (MathJax did not finish?): {raw[:5]}")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = re.search(r"^Pages:\s+(\d+)", info, re.M)
    return int(pages.group(1)) if pages else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--book", type=Path, default=ROOT, help="the book's folder (with _config.yml and _toc.yml)")
    ap.add_argument("--out", type=Path, default=None, help="the PDF (default: BOOK/_build/pdf/ctd-book.pdf)")
    ap.add_argument("--budget-ms", type=int, default=30000,
                    help="Chromium's virtual time budget for loading the page and typesetting its math")
    ap.add_argument("--timeout", type=int, default=900, help="seconds Chromium may take, in wall time")
    args = ap.parse_args(argv)
    book = args.book.resolve()
    out = (args.out or book / "_build" / "pdf" / "ctd-book.pdf").resolve()
    start = time.perf_counter()
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    check_sources(book, toc_files(toc))
    print("building the book as one HTML page (singlehtml) ...", flush=True)
    page = build_single_page(book, toc["root"])
    built = time.perf_counter()
    print(f"  done in {built - start:.0f} s; printing it with headless Chromium ...", flush=True)
    # printed and checked beside the PDF, which it replaces only once it passed: a failed run keeps the last one
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        print_pdf(page, partial, budget_ms=args.budget_ms, timeout_s=args.timeout)
        pages = check_pdf(partial, page)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    size = out.stat().st_size / 2**20
    print(f"  done in {time.perf_counter() - built:.0f} s: {out} ({pages or '?'} pages, {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
