"""End to end: every notebook executed by papermill at the smoke scale, the strict book
build, and a real browser (headless Chromium) reading the built pages offline.

Everything is written under a temporary folder: the book's own results and build are
never touched. The screenshot is kept in ``test-artifacts/``.
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from ctd_lib.results import read_results

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py") if p.stem != "scorecard")
REQUIRED_METRICS = {
    "01_fisher_rao_length": {"fim_kl_ratio", "reparam_invariance_rel_err", "reparam_euclidean_rel_change",
                             "length_overhead_ratio", "negative_kl_clamped"},
    "02_optimal_transport": {"constant_speed_max_dev", "bures_rel_err", "block_vs_full_cost_ratio",
                             "batched_block_speedup"},
    "03_coupled_distance": {"coupled_shorter_fraction", "asymmetry_disjoint", "max_rel_change_last_iteration",
                            "large_model_shorter_fraction", "seed_sd_coupled", "self_distance_coupled"},
    "04_rademacher_bound": {"max_gap_along_trajectory", "bound_violations", "coupled_vs_uncoupled_speed_term_ratio"},
    "05_equilibrium_surface": {"iso_c_max_rel_change", "iso_c_max_rel_change_val",
                               "iso_c_max_rel_change_fixed_multipliers_val", "iso_c_noise_floor_val",
                               "remark10_rel_err", "lambda_secants_bracketed", "gamma_secants_bracketed",
                               "symmetry_max_rel_diff", "iso_lambda_range"},
    "06_iso_classification_transfer": {"transfer_c_max_rel_change", "final_acc_isoc", "final_acc_scratch",
                                       "final_acc_finetune", "finetune_initial_acc"},
}

pytestmark = pytest.mark.slow

# The session fixture ``book`` (every notebook at the smoke scale, the strict build) is in conftest.py,
# shared with test_browser.py.


def test_every_notebook_writes_verified_results(book):
    for name in CHAPTERS:
        payload = read_results(book["results"] / "smoke" / f"{name}.json")
        prov = payload["provenance"]
        assert prov["parameters"]["scale"] == "smoke"
        assert prov["wall_time_s"] > 0 and prov["git_commit"]
        missing = REQUIRED_METRICS.get(name, set()) - payload["metrics"].keys()
        assert not missing, f"{name} lacks metrics {missing}"
        assert payload["claims"], f"{name} checks no claim"
        for claim in payload["claims"]:
            assert isinstance(claim["holds"], bool) and claim["evidence"]


def test_book_builds_strictly(book):
    b = book["build"]
    assert b.returncode == 0, b.stdout[-4000:] + b.stderr[-4000:]
    assert "WARNING" not in b.stderr + b.stdout
    for name in CHAPTERS + ["scorecard"]:
        assert (book["html"] / "notebooks" / f"{name}.html").exists()


def test_chapter_pages_have_figures_and_no_external_scripts(book):
    for name in CHAPTERS:
        html = (book["html"] / "notebooks" / f"{name}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+)"', html)
        assert images, f"{name} shows no figure"
        for src in images:
            assert (book["html"] / "notebooks" / src).resolve().exists(), src
        external = re.findall(r'<script[^>]+src="(https?://[^"]+)"', html)
        assert not external, f"{name} loads scripts from the network: {external}"
        assert "Traceback" not in html


def test_scorecard_page_lists_the_chapters_claims(book):
    text = re.sub(r"<[^>]+>", " ", (book["html"] / "notebooks" / "scorecard.html").read_text())
    for name in CHAPTERS:
        payload = read_results(book["results"] / "smoke" / f"{name}.json")
        for claim in payload["claims"]:
            assert claim["source"] in text


@pytest.mark.parametrize(
    "notebook, name, value",
    [
        ("01_fisher_rao_length", "model_b", "resnet-9000"),
        ("01_fisher_rao_length", "source_task", "mnist10k-0-5"),
        ("01_fisher_rao_length", "lr", -0.1),
        ("01_fisher_rao_length", "transfer_steps", 0),
        ("02_optimal_transport", "taus", [0.0, 1.5]),
        ("02_optimal_transport", "block_size", 0),
        ("02_optimal_transport", "target_task", "cifar10-everything"),
        ("03_coupled_distance", "outer_iters", 0),
        ("03_coupled_distance", "tol", 0.0),
        ("03_coupled_distance", "disjoint_tasks", ["mnist10k-01", "nope"]),
        ("03_coupled_distance", "interpolation", "linear"),
        ("03_coupled_distance", "device", "tpu"),
        ("03_coupled_distance", "lr", -1.0),  # once reported as source_lr
        ("03_coupled_distance", "length_estimator", "exact"),
        ("03_coupled_distance", "length_checkpoints", 0),
        ("03_coupled_distance", "momentum", -0.1),
        ("04_rademacher_bound", "K", 0),
        ("04_rademacher_bound", "loss_bound", -1.0),
        ("04_rademacher_bound", "draws", 0),
        ("05_equilibrium_surface", "lambdas", [0.5, 0.25, 1.0]),
        ("05_equilibrium_surface", "alpha", 0.0),
        ("05_equilibrium_surface", "fd_rel_lambda", 0.0),
        ("05_equilibrium_surface", "equil_steps", 0),
        ("05_equilibrium_surface", "iso_starts", [[-0.25, 4.0]]),
        ("06_iso_classification_transfer", "transfer_steps", 0),
        ("06_iso_classification_transfer", "lam0", -1.0),
        ("06_iso_classification_transfer", "fd_rel_gamma", 0.0),
        ("06_iso_classification_transfer", "interpolations", ["linear"]),
        ("06_iso_classification_transfer", "head", "both"),
        ("06_iso_classification_transfer", "data_root", "/nonexistent/dir"),  # once ignored without a word
    ],
)
def test_bad_notebook_parameter_fails_early_with_its_name(tmp_path, notebook, name, value):
    import jupytext
    import papermill

    nb = tmp_path / f"{notebook}.ipynb"
    jupytext.write(jupytext.read(ROOT / "notebooks" / f"{notebook}.py"), nb)
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(nb), str(nb), parameters={name: value, "results_dir": str(tmp_path)},
                                   kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    assert err.value.ename == "ValueError" and name in err.value.evalue
    assert not list(tmp_path.rglob("*.json")), "nothing may be written for a bad parameter"


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    log: list = []

    def log_message(self, fmt, *args):  # record (path, status) instead of printing
        if len(args) >= 2:
            _LoggingHandler.log.append((self.path, str(args[1])))


def test_real_browser_renders_math_and_figures_offline(book):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run `make browser` (apt-get install chromium)"
    _LoggingHandler.log = []
    handler = functools.partial(_LoggingHandler, directory=str(book["html"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/notebooks/{CHAPTERS[0]}.html"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # every host but the local server resolves to nothing: the page must work offline
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [chromium, *flags, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
                capture_output=True, text=True, timeout=180,
            ).stdout
        with tempfile.TemporaryDirectory() as profile:
            shot = ARTIFACTS / f"{CHAPTERS[0]}.png"
            shot.unlink(missing_ok=True)
            subprocess.run(
                [chromium, *flags, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                 "--window-size=1280,1600", f"--screenshot={shot}", url],
                capture_output=True, text=True, timeout=180,
            )
    finally:
        server.shutdown()
    assert "<mjx-container" in dom, "MathJax did not typeset the chapter's equations"
    requested = dict(_LoggingHandler.log)
    mathjax = [p for p in requested if "mathjax" in p.lower()]
    assert mathjax and all(requested[p] == "200" for p in mathjax), f"MathJax not served locally: {mathjax}"
    figures = [p for p in requested if p.startswith("/_images/")]
    assert figures and all(requested[p] == "200" for p in figures), f"figures not loaded: {figures}"
    assert shot.exists() and shot.stat().st_size > 20_000, "no usable screenshot"


def test_every_chapter_typesets_its_math_without_errors(book):
    """MathJax must typeset every chapter and the scorecard, and report no error (an unsupported
    command or environment shows as an mjx-merror node, not as a build warning)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run `make browser` (apt-get install chromium)"
    handler = functools.partial(_LoggingHandler, directory=str(book["html"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
    problems = {}
    try:
        for name in CHAPTERS:
            url = f"http://127.0.0.1:{server.server_address[1]}/notebooks/{name}.html"
            with tempfile.TemporaryDirectory() as profile:
                dom = subprocess.run(
                    [chromium, *flags, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
                    capture_output=True, text=True, timeout=180,
                ).stdout
            if "<mjx-container" not in dom:
                problems[name] = "no typeset math"
            errors = re.findall(r'data-mjx-error="([^"]*)"', dom)
            if errors or "<mjx-merror" in dom:
                problems[name] = errors or ["mjx-merror"]
    finally:
        server.shutdown()
    assert not problems, f"MathJax problems: {problems}"


def test_entry_point_writes_the_notebooks_results(book, tmp_path):
    """``python -m ctd_lib.experiments.task_distances`` (no Jupyter) gives chapter 3's results file: the same
    claims, evidence and metrics as the executed notebook, reading the same per-pair cache."""
    run = subprocess.run(
        [sys.executable, "-m", "ctd_lib.experiments.task_distances", "--scale", "smoke", "--results-dir",
         str(tmp_path), "--cache-dir", str(book["src"] / ".cache" / "pairs")],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ours = read_results(tmp_path / "smoke" / "03_coupled_distance.json")
    nb = read_results(book["results"] / "smoke" / "03_coupled_distance.json")
    assert ours["claims"] == nb["claims"]
    assert ours["metrics"] == nb["metrics"]
    assert ours["provenance"]["parameters"] == nb["provenance"]["parameters"]


def test_entry_point_refuses_bad_arguments(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("stepz: 3\n")
    for args, message in ((["--params", str(bad)], "unknown parameter"), (["--batch-pairs", "0"], "batch_pairs"),
                          (["--params", str(tmp_path / "none.yml")], "is not a file")):
        run = subprocess.run([sys.executable, "-m", "ctd_lib.experiments.task_distances", "--results-dir",
                              str(tmp_path / "out"), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert run.returncode == 2 and message in run.stderr, run.stderr[-2000:]
        assert not (tmp_path / "out").exists()


def test_pages_read_like_a_book_not_a_log(book):
    """No page shows papermill's injected cell (the builder's absolute results_dir), a stderr block (solver
    warnings are one admonition), or a log of verdicts; the parameters cell stays, orchestration is collapsed."""
    for name in CHAPTERS + ["scorecard"]:
        html = (book["html"] / "notebooks" / f"{name}.html").read_text()
        assert str(book["src"]) not in html, f"{name} shows the builder's path"
        assert "tag_injected-parameters" not in html, f"{name} shows papermill's injected cell"
        assert html.count("tag_parameters ") == 1, f"{name} must show its parameters cell"
        assert 'class="output stderr' not in html, f"{name} prints to stderr (warnings belong in an admonition)"
        assert "tag_hide-input" in html, f"{name} collapses none of its orchestration or plotting code"
        text = re.sub(r"<[^>]+>", " ", html)
        assert "[holds]" not in text and "[FAILS]" not in text and "results written to" not in text, name
        if name != "scorecard":
            assert re.search(r"\d+ claims? checked, \d+ holds?; filed in", text), f"{name} has no claims table"


def test_front_page_shows_the_scorecard_figure_of_this_run(book):
    html = (book["html"] / "book" / "intro.html").read_text()
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert [s for s in images if "scorecard" in s], "the front page shows no scorecard figure"
    for src in images:
        assert (book["html"] / "book" / src).resolve().exists(), src
    png = book["src"] / "book" / "_generated" / "scorecard.png"
    newest = max(p.stat().st_mtime for p in (book["results"] / "smoke").glob("*.json"))
    assert png.stat().st_mtime >= newest, "the figure was not drawn from this run's results"
    text = re.sub(r"<[^>]+>", " ", html)
    assert re.search(r"make\s+book", text) and re.search(r"make\s+test", text), "the two commands are missing"
