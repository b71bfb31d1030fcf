"""What a reader of the built book sees in a real browser (headless Chromium), served offline from a
local HTTP server: dark mode with readable figures, the search page, the download links of each
chapter and the bibliography.

They use the session fixture ``book`` of conftest.py (every notebook at the smoke scale, the strict
build). Screenshots are kept in ``test-artifacts/``.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py") if p.stem != "scorecard")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # every host but the local server resolves to nothing: the pages must work offline
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
# prefers-color-scheme: dark, which pydata-sphinx-theme's default mode ("auto") follows by setting
# data-theme="dark" on <html>
DARK = ["--force-dark-mode"]

pytestmark = pytest.mark.slow


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed: run `make browser` (apt-get install chromium)")
    return found


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    """The built book on http://127.0.0.1:<free port>, for the length of the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _browse(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; return what it printed on stdout."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                              *args, url], capture_output=True, text=True, timeout=180)
    return run.stdout


def _screenshot(url: str, path: Path, *args: str, size: str = "1280,8000") -> np.ndarray:
    """A screenshot of the top ``size`` pixels of the page, as grey levels 0-255 (rows x columns)."""
    from PIL import Image

    path.unlink(missing_ok=True)
    _browse(url, *args, f"--window-size={size}", f"--screenshot={path}")
    assert path.exists() and path.stat().st_size > 20_000, f"no usable screenshot of {url}"
    return np.asarray(Image.open(path).convert("L"), dtype=float)


def _background(grey: np.ndarray) -> int:
    """The most frequent grey level: the page's background."""
    values, counts = np.unique(grey.astype(int), return_counts=True)
    return int(values[counts.argmax()])


def _largest_light_block(grey: np.ndarray, light: float = 170.0) -> np.ndarray:
    """The tallest band of rows that are at least a quarter light, cropped to its mostly light columns.

    On a dark page, text is light but thin (a few percent of a row) and code cells are dark, so such a
    band is a figure: matplotlib's white canvas, or nothing if the figures are hidden or inverted."""
    rows = (grey > light).mean(axis=1) > 0.25
    best, best_start, run = 0, 0, 0
    for i, is_light in enumerate(rows):
        run = run + 1 if is_light else 0
        if run > best:
            best, best_start = run, i - run + 1
    band = grey[best_start:best_start + best]
    if not best:
        return band
    cols = np.flatnonzero((band > light).mean(axis=0) > 0.5)
    return band[:, cols.min():cols.max() + 1] if cols.size else band[:, :0]


def test_dark_mode_keeps_the_figures_readable(book):
    """In dark mode the page is dark and the figures keep a light canvas with dark strokes (not a black or
    empty block); the same page without the dark flag is light, so the flag is what the test measures."""
    page = CHAPTERS[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with _serve(book["html"]) as base:
        url = f"{base}/notebooks/{page}.html"
        dom = _browse(url, *DARK, "--dump-dom")
        dark = _screenshot(url, ARTIFACTS / f"{page}-dark.png", *DARK)
        light = _screenshot(url, ARTIFACTS / f"{page}-light.png", size="1280,1200")
    html_tag = re.search(r"<html[^>]*>", dom)
    assert html_tag and 'data-theme="dark"' in html_tag.group(0), f"the theme did not switch: {html_tag}"
    assert _background(light) > 200, "control: without the dark flag the page should be light"
    assert _background(dark) < 60, f"dark mode: background grey level {_background(dark)}"
    figure = _largest_light_block(dark)
    assert figure.shape[0] >= 150 and figure.shape[1] >= 300, f"no figure-sized light block: {figure.shape}"
    strokes = (figure < 110).mean()  # axes, lines and labels drawn in dark ink on the light canvas
    assert np.median(figure) > 170, f"the figure's canvas is not light: median grey {np.median(figure)}"
    assert 0.003 < strokes < 0.4, f"the figure has no visible content, or is mostly dark: {strokes:.3%} dark"


def test_offline_search_finds_chapter_3(book):
    """Sphinx's search page, driven by its JavaScript and the built search index only, lists chapter 3 for a
    word of chapter 3, and nothing for a word the book does not contain."""
    with _serve(book["html"]) as base:
        found = _browse(f"{base}/search.html?q=coupling", "--dump-dom")
        nothing = _browse(f"{base}/search.html?q=zxqvjw", "--dump-dom")

    def results(dom):
        assert 'id="search-results"' in dom, "the search page did not render"
        return re.findall(r'<li[^>]*>\s*<a[^>]+href="([^"?#]+)', dom.split('id="search-results"', 1)[1])

    hits = results(found)
    assert "notebooks/03_coupled_distance.html" in hits, f"chapter 3 not among the results: {hits}"
    assert not results(nothing), "a word that is nowhere in the book found pages"


def test_every_chapter_offers_its_py_and_its_executed_ipynb(book):
    """The download button gives the executed notebook (with outputs) and the chapter's first paragraph links
    its Jupytext source, byte for byte the .py the book was built from; both links resolve on the server."""
    with _serve(book["html"]) as base:
        for name in CHAPTERS:
            html = (book["html"] / "notebooks" / f"{name}.html").read_text()
            links = re.findall(r'href="([^"]*(?:_sources|_downloads)/[^"]*)"', html)
            ipynb = [link for link in links if link.endswith(f"/{name}.ipynb")]
            py = [link for link in links if link.endswith(f"/{name}.py")]
            assert ipynb and py, f"{name}: download links {links}"
            url = f"{base}/notebooks/"
            with urllib.request.urlopen(url + py[0], timeout=30) as reply:
                assert reply.read() == (book["src"] / "notebooks" / f"{name}.py").read_bytes(), name
            with urllib.request.urlopen(url + ipynb[0], timeout=30) as reply:
                nb = json.loads(reply.read())
            outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
            assert outputs, f"{name}: the offered .ipynb has no outputs"


def test_every_chapter_cites_into_the_bibliography(book):
    """Every chapter links citations to the references page, and that page lists every entry of
    references.bib (sphinxcontrib-bibtex lists only cited entries: none is left unused)."""
    for name in CHAPTERS:
        html = (book["html"] / "notebooks" / f"{name}.html").read_text()
        assert 'class="bibtex-citation"' in html and 'href="../book/references.html#' in html, f"{name} cites nothing"
    listed = (book["html"] / "book" / "references.html").read_text().count('role="doc-biblioentry"')
    entries = re.findall(r"^@\w+\{", (book["src"] / "references.bib").read_text(), re.M)
    assert listed == len(entries) > 0, f"{listed} entries listed, {len(entries)} in references.bib"
