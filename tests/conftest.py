import hashlib
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from hypothesis import settings

# Hypothesis draws the same examples on every run, so a test run is reproducible (CI included).
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state."""
    torch.manual_seed(1234)
    np.random.seed(1234)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a test module, restored afterwards: the tiny models of the
    free-energy tests run fastest on one thread, and up to 10x slower on two when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj: dict) -> None:
    # str keys: torchvision reads the original (Python 2) pickles with encoding="latin1",
    # which turns their byte-string keys b'data', b'labels' into str.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture
def cifar10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A small CIFAR-10 folder in torchvision's on-disk format (random images), with torchvision's
    md5 table patched to its files so that torchvision's own integrity check still runs."""
    rng = np.random.default_rng(10)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 10)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        _dump(folder / name, {"data": data, "labels": labels, "batch_label": name})
        batches[name] = (data, labels)
    _dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    monkeypatch.setattr(tvd.CIFAR10, "train_list",
                        [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                              "md5": _md5(folder / "batches.meta")})
    return tmp_path, batches


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """A copy of the book's sources, executed at the smoke scale and built strictly (shared by
    test_book.py and test_browser.py, built once per session)."""
    src = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book")
    (src / "notebooks").mkdir()
    for py in (ROOT / "notebooks").glob("*.py"):
        shutil.copy(py, src / "notebooks" / py.name)
    results = src / "results"
    if (ROOT / "results" / "paper").exists():
        shutil.copytree(ROOT / "results" / "paper", results / "paper")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--scale", "smoke",
         "--src", str(src / "notebooks"), "--results-dir", str(results)],
        capture_output=True, text=True, timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", "--all", "-W", "-n", "--keep-going", str(src)],
        capture_output=True, text=True, timeout=1200,
    )
    return {"src": src, "results": results, "build": build, "html": src / "_build" / "html"}
