"""Tasks from your own data: an image folder (torchvision's ``ImageFolder`` layout), an ``.npz`` with
arrays ``x`` and ``y``, or arrays in memory, as :class:`~ctd_lib.data.Task` objects a distance can use.

:meth:`Task.from_folder <ctd_lib.data.Task.from_folder>`, :meth:`Task.from_npz
<ctd_lib.data.Task.from_npz>` and :meth:`Task.from_arrays <ctd_lib.data.Task.from_arrays>` call the
functions here; the command ``ctd-distance`` (:mod:`ctd_lib.cli`) reads any of them. Pixels become
float32 in [0, 1], shape (N, C, H, W). Two folders share a label space when label id ``i`` names the same
class in both: give both the sorted union of their class names (:func:`folder_classes`).
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._util.checks import check_count, check_positive
from .data import Task

__all__ = ["GREY_MODES", "folder_classes", "task_from_arrays", "task_from_folder", "task_from_npz", "task_to_folder"]


#: PIL modes read as one grey channel (anything else is read as RGB, as torchvision's ``ImageFolder`` does).
GREY_MODES = ("1", "L", "LA")
#: PIL modes refused: more than 8 bits per channel, which 8-bit conversion would clip.
_DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
#: ITU-R 601-2 luma, PIL's ``convert("L")``: grey = 0.299 R + 0.587 G + 0.114 B.
_LUMA = (0.299, 0.587, 0.114)


def _check_resize(resize) -> tuple[int, int] | None:
    if resize is None:
        return None
    ok = (isinstance(resize, (tuple, list)) and len(resize) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in resize))
    if not ok:
        raise ValueError(f"resize={resize!r} is not valid; it must be None or (H, W), two positive integers")
    return int(resize[0]), int(resize[1])


def _check_channels(channels) -> int | None:
    if channels is None:
        return None
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels not in (1, 3):
        raise ValueError(f"channels={channels!r} is not valid; choose one of: None (as stored), 1 (grey), 3 (RGB)")
    return int(channels)


def _check_class_names(class_names) -> tuple[str, ...]:
    names = () if isinstance(class_names, str) else tuple(class_names)
    if not names or not all(isinstance(c, str) and c for c in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names={class_names!r} is not valid; it must be a sequence of distinct, "
                         "non-empty strings (the name of each label id 0, 1, ...)")
    return names


def _resized(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] resampled to ``size`` (bilinear with antialiasing, torchvision's
    ``resize``: PIL's filter on tensors), clamped to [0, 1] against rounding."""
    if size is None or tuple(x.shape[-2:]) == size:
        return x
    from torchvision.transforms.functional import resize as tv_resize

    return tv_resize(x, list(size), antialias=True).clamp_(0.0, 1.0)


def _with_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(N, C, H, W) with ``channels`` channels: grey repeated to RGB, RGB to grey by the luma of :data:`_LUMA`."""
    if channels is None or x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    raise ValueError(f"channels={channels!r} is not valid for images with {x.shape[1]} channels; "
                     "only 1 (grey) and 3 (RGB) convert into each other")


def _integer_labels(y: np.ndarray) -> np.ndarray:
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        hint = "class ids 0, 1, ...; for named classes use an image folder (Task.from_folder)"
        if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and np.array_equal(y, np.round(y)):
            hint = "they are whole numbers stored as floats: pass y.astype(int)"
        raise ValueError(f"y has dtype {y.dtype}; labels must be integers ({hint})")
    if y.size and int(y.min()) < 0:
        raise ValueError(f"y has negative labels (min {int(y.min())}); labels are class ids >= 0")
    return y.astype(np.int64)


def _unit_images(x: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1]: integers must be 8-bit values (divided by 255), floats already in [0, 1]."""
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"x has dtype {x.dtype}; images must be numbers: integers in [0, 255] or floats in [0, 1]")
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"x has integer values in [{lo}, {hi}]; integer images must be 8-bit, in [0, 255] "
                             "(or pass floats in [0, 1])")
        return x.astype(np.float32) / np.float32(255)
    if not np.isfinite(x).all():
        raise ValueError("x has non-finite values (nan or inf); images must be floats in [0, 1]")
    lo_f, hi_f = float(x.min()), float(x.max())
    if lo_f < 0 or hi_f > 1:
        raise ValueError(f"x has values in [{lo_f:.4g}, {hi_f:.4g}]; float images must be in [0, 1] (divide 8-bit "
                         "values by 255, undo any mean/std normalisation)")
    return x.astype(np.float32)


def _label_space(labels: np.ndarray, num_classes, class_names) -> tuple[tuple[int, ...], int, tuple[str, ...]]:
    """The classes present, the head's width and the label names of a task with integer ``labels``."""
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"y has one class only (label {int(present[0])}); a task needs at least two classes")
    top = int(present[-1])
    names: tuple[str, ...] = ()
    if class_names is not None:
        names = _check_class_names(class_names)
        if num_classes is None:
            num_classes = len(names)
        elif num_classes != len(names):
            raise ValueError(f"num_classes={num_classes!r} is not valid with {len(names)} class_names; "
                             "give one name per label id, or leave num_classes=None")
    if num_classes is None:
        num_classes = top + 1
    check_positive("num_classes", num_classes, integer=True)
    if num_classes <= top:
        raise ValueError(f"num_classes={num_classes!r} is not valid; the labels go up to {top}, so it must be at "
                         f"least {top + 1}" + (f" (class_names has {len(names)} names)" if names else ""))
    return tuple(int(c) for c in present), int(num_classes), names


def task_from_arrays(x, y, *, name: str = "arrays", num_classes: int | None = None,
                     class_names: Sequence[str] | None = None, resize: Sequence[int] | None = None,
                     channels: int | None = None) -> Task:
    r"""A :class:`Task` from arrays of images and integer labels.

    The labels are the task's class ids: a head of ``num_classes`` outputs, ``num_classes =
    max(y) + 1`` unless given (wider, to share a head with a task whose ids go higher). Two tasks
    made from arrays share a label space exactly when their ids mean the same classes.

    Parameters
    ----------
    x : array or tensor
        Images, shape (N, C, H, W), or (N, H, W) for grey images (one channel is added). Integers
        are 8-bit values in [0, 255] and are divided by 255; floats must already be in [0, 1].
    y : array or tensor
        Integer labels (class ids >= 0), shape (N,); at least two distinct values.
    name : str
        The task's name.
    num_classes : int, optional
        Width of the head, at least ``max(y) + 1``.
    class_names : sequence of str, optional
        The name of each label id (then ``num_classes = len(class_names)``).
    resize : (H, W), optional
        Resample every image to H x W (bilinear with antialiasing).
    channels : {None, 1, 3}
        Convert to grey (ITU-R 601-2 luma, as PIL's ``convert("L")``) or to RGB (grey repeated);
        None keeps the stored channels.

    Returns
    -------
    Task
        ``x`` float32 (N, C, H, W) in [0, 1], ``y`` int64 (N,), ``classes`` the sorted distinct labels.

    Raises
    ------
    ValueError
        Naming the argument: a shape that is not (N, C, H, W) or (N, H, W) (channels-last arrays are
        pointed to ``transpose(0, 3, 1, 2)``), labels that are not integers, fewer than two classes,
        values outside [0, 255] or [0, 1], ``num_classes`` too small.

    Examples
    --------
    >>> t = Task.from_arrays(np.zeros((4, 8, 8), dtype=np.uint8), np.array([0, 1, 1, 3]))
    >>> t.x.shape, t.classes, t.num_classes
    (torch.Size([4, 1, 8, 8]), (0, 1, 3), 4)
    """
    size, channels = _check_resize(resize), _check_channels(channels)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not valid; it must be a non-empty string")
    xa = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    ya = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if xa.ndim == 3:
        xa = xa[:, None]
    elif xa.ndim == 4:
        if xa.shape[-1] in (1, 3, 4) and xa.shape[1] > 4:
            raise ValueError(f"x has shape {xa.shape}, which looks channels-last (N, H, W, C); pass "
                             "x.transpose(0, 3, 1, 2), shape (N, C, H, W)")
    else:
        raise ValueError(f"x has shape {xa.shape}; it must be (N, C, H, W), or (N, H, W) for grey images")
    n = xa.shape[0]
    if n == 0 or 0 in xa.shape:
        raise ValueError(f"x has shape {xa.shape}: no images; a task needs images of at least two classes")
    if ya.ndim != 1 or ya.shape[0] != n:
        raise ValueError(f"y has shape {ya.shape}; it must be ({n},), one label per image of x")
    labels = _integer_labels(ya)
    classes, width, names = _label_space(labels, num_classes, class_names)
    xt = _with_channels(_resized(torch.from_numpy(np.ascontiguousarray(_unit_images(xa))), size), channels)
    xt = xt.contiguous()
    return Task(name=name, x=xt, y=torch.from_numpy(labels), classes=classes, num_classes=width,
                input_shape=tuple(xt.shape[1:]), class_names=names)


def task_from_npz(path: str | os.PathLike, *, name: str | None = None, num_classes: int | None = None,
                  resize: Sequence[int] | None = None, channels: int | None = None) -> Task:
    """A :class:`Task` from an ``.npz`` archive holding arrays ``x`` (images) and ``y`` (integer labels).

    Written e.g. by ``np.savez(path, x=images, y=labels)``; the arrays are read as by
    :func:`task_from_arrays` (whose arguments the others are), and ``name`` defaults to the file's stem.
    Object arrays are refused (the file is read with ``allow_pickle=False``).

    Raises
    ------
    ValueError
        ``path`` missing, not a file or not an ``.npz`` archive; no array ``x`` or ``y``; or any
        error of :func:`task_from_arrays`, prefixed with the path.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"path={str(path)!r} does not exist; pass an .npz file holding arrays 'x' and 'y'")
    if not p.is_file():
        raise ValueError(f"path={str(path)!r} is not a file; pass an .npz file holding arrays 'x' and 'y'")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"path={str(path)!r} is not a readable .npz archive ({type(err).__name__}: {err}); "
                         "write one with np.savez(path, x=images, y=labels)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"path={str(path)!r} holds a single array, not an .npz archive; write one with "
                         "np.savez(path, x=images, y=labels)")
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise ValueError(f"path={str(path)!r} has arrays {sorted(archive.files)} but no {missing}; the .npz "
                             "needs 'x' (images, (N, C, H, W) or (N, H, W)) and 'y' (integer labels, (N,))")
        try:
            x, y = archive["x"], archive["y"]
        except ValueError as err:  # object arrays under allow_pickle=False
            raise ValueError(f"path={str(path)!r}: {err}; store numeric arrays") from None
    try:
        return task_from_arrays(x, y, name=name or p.stem, num_classes=num_classes, resize=resize,
                                channels=channels)
    except ValueError as err:
        raise ValueError(f"path={str(path)!r}: {err}") from None


def _check_folder(path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise ValueError(f"path={str(path)!r} does not exist; pass a folder with one sub-folder of images per "
                         "class (torchvision's ImageFolder layout: path/<class>/<image>.png)")
    if not root.is_dir():
        raise ValueError(f"path={str(path)!r} is not a folder; pass a folder with one sub-folder of images per "
                         "class (torchvision's ImageFolder layout: path/<class>/<image>.png)")
    return root


def folder_classes(path: str | os.PathLike) -> tuple[str, ...]:
    """The class names of an image folder: its sub-folders, sorted by name (``ImageFolder``'s rule).

    Hidden sub-folders (names starting with ``.``, such as ``.ipynb_checkpoints``) are not classes.

    Raises
    ------
    ValueError
        ``path`` missing, not a folder, or without class sub-folders.
    """
    root = _check_folder(path)
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise ValueError(f"path={str(path)!r} has no class sub-folders; an image folder holds one sub-folder of "
                         "images per class (torchvision's ImageFolder layout: path/<class>/<image>.png)")
    return tuple(names)


def _image_files(root: Path, classes: tuple[str, ...]) -> list[tuple[str, int]]:
    """(file, index into ``classes``) for every image, found by torchvision's ``ImageFolder``."""
    import torchvision.datasets as tvd

    class _Folder(tvd.ImageFolder):
        def find_classes(self, directory):  # the visible sub-folders only (folder_classes)
            return list(classes), {c: i for i, c in enumerate(classes)}

    return list(_Folder(str(root), allow_empty=True).samples)


def _open_image(file: str):
    from PIL import Image

    try:
        with open(file, "rb") as fh:
            img = Image.open(fh)
            img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{file} could not be read as an image ({type(err).__name__}: {err})") from None
    if img.mode in _DEEP_MODES:
        raise ValueError(f"{file} has PIL mode {img.mode!r} (more than 8 bits per channel); save 8-bit images")
    return img


def task_from_folder(path: str | os.PathLike, *, name: str | None = None,
                     class_names: Sequence[str] | None = None, resize: Sequence[int] | None = None,
                     channels: int | None = None, n_per_class: int | None = None, seed: int = 0) -> Task:
    r"""A :class:`Task` from an image folder in torchvision's ``ImageFolder`` layout.

    ``path/<class>/<image>``: one sub-folder per class (hidden ones skipped), files found by
    ``torchvision.datasets.ImageFolder`` (extensions ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.ppm``,
    ``.pgm``, ``.tif``, ``.tiff``, ``.webp``; other files are ignored) and decoded by PIL.

    **The label space.** Label id :math:`i` is the :math:`i`-th name of ``class_names``; by default
    ``class_names`` is the folder's own sub-folder names, sorted (:func:`folder_classes`,
    ``ImageFolder``'s rule). For two folders to share one classification head, give both the sorted
    union of their class names: a class of the same name is then the same output, and a class only
    one folder has gets an output of its own. ``ctd-distance`` does this for two folders.

    **Pixels.** float32 in [0, 1] (8-bit values / 255), shape (N, C, H, W). Images in a grey mode
    (:data:`GREY_MODES`) are one channel; every other mode is read as RGB (alpha dropped, palettes
    expanded), and a folder mixing the two is RGB throughout unless ``channels=1``. Images of more
    than 8 bits per channel are refused.

    Parameters
    ----------
    path : folder
    name : str, optional
        The task's name (default: the folder's name).
    class_names : sequence of str, optional
        The label space, containing every class of the folder (default: the folder's classes).
    resize : (H, W), optional
        Resample every image to H x W (bilinear with antialiasing); required when the images
        differ in size.
    channels : {None, 1, 3}
        1: grey (PIL's ``convert("L")``), 3: RGB, None: as described above.
    n_per_class : int, optional
        Read at most this many images of each class, drawn without replacement by
        ``np.random.default_rng(seed)`` (classes in label order) before any is decoded.
    seed : int
        Seed of that draw.

    Returns
    -------
    Task
        ``classes`` the ids of the folder's classes, ``num_classes = len(class_names)``,
        ``class_names`` the label space.

    Raises
    ------
    ValueError
        Naming the argument and the valid values: ``path`` missing, not a folder, without class
        sub-folders, without images, with images of one class only or a class folder without
        images, a file PIL cannot read, images of different sizes without ``resize``;
        ``class_names`` lacking a class of the folder.
    """
    size, channels = _check_resize(resize), _check_channels(channels)
    if n_per_class is not None:
        check_positive("n_per_class", n_per_class, integer=True)
    check_count("seed", seed)
    root = _check_folder(path)
    found = folder_classes(root)
    space = found if class_names is None else _check_class_names(class_names)
    missing = [c for c in found if c not in space]
    if missing:
        raise ValueError(f"class_names={list(space)!r} is not valid for path={str(path)!r}: it lacks the folder's "
                         f"classes {missing}")
    per_class: dict[int, list[str]] = {i: [] for i in range(len(found))}
    for file, idx in _image_files(root, found):
        per_class[idx].append(file)
    from torchvision.datasets.folder import IMG_EXTENSIONS

    empty = [found[i] for i, files in per_class.items() if not files]
    if len(empty) == len(found):
        raise ValueError(f"path={str(path)!r} has no images: none of its class folders {list(found)} holds a file "
                         f"ending in {', '.join(IMG_EXTENSIONS)}")
    if len(found) < 2:
        raise ValueError(f"path={str(path)!r} has images of one class only ({found[0]!r}); a task needs at least "
                         "two class sub-folders")
    if empty:
        raise ValueError(f"path={str(path)!r}: the class folder(s) {empty} hold no images (files ending in "
                         f"{', '.join(IMG_EXTENSIONS)}); add images or remove the folder(s)")
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, int]] = []
    for i in sorted(per_class, key=lambda i: space.index(found[i])):
        files = per_class[i]
        if n_per_class is not None and len(files) > n_per_class:
            files = [files[k] for k in np.sort(rng.choice(len(files), size=n_per_class, replace=False))]
        chosen += [(f, space.index(found[i])) for f in files]
    chosen.sort(key=lambda fl: (fl[1], fl[0]))
    images = [_open_image(f) for f, _ in chosen]
    sizes: dict[tuple[int, int], list[str]] = {}
    for img, (f, _) in zip(images, chosen):
        sizes.setdefault((img.height, img.width), []).append(f)
    if len(sizes) > 1 and size is None:
        shown = "; ".join(f"{h}x{w}: {len(fs)} image(s), e.g. {os.path.relpath(fs[0], root)}"
                          for (h, w), fs in sorted(sizes.items(), key=lambda kv: -len(kv[1]))[:4])
        raise ValueError(f"path={str(path)!r} holds images of {len(sizes)} sizes (H x W: {shown}); pass "
                         "resize=(H, W) (on the command line --resize H W) to bring them to one size")
    if channels is None:
        channels = 1 if all(img.mode in GREY_MODES for img in images) else 3
    from torchvision.transforms.functional import pil_to_tensor

    mode = "L" if channels == 1 else "RGB"
    tensors = [_resized(pil_to_tensor(img.convert(mode))[None].float().div_(255.0), size)[0] for img in images]
    x = torch.stack(tensors).contiguous()
    labels = np.asarray([label for _, label in chosen], dtype=np.int64)
    return Task(name=name or root.resolve().name, x=x, y=torch.from_numpy(labels),
                classes=tuple(sorted({int(v) for v in labels})), num_classes=len(space),
                input_shape=tuple(x.shape[1:]), class_names=space)


def task_to_folder(task: Task, path: str | os.PathLike) -> Path:
    """Write ``task`` as an image folder, ``path/<class>/<index>.png``, that :func:`task_from_folder` reads.

    Each class folder is named ``task.class_names[label]``, or the label id when the task has no
    names; images are 8-bit PNGs (grey for one channel, RGB for three), values rounded to the
    nearest multiple of 1/255. A task whose values are such multiples (the embedded digits, or any
    task read from a folder) is read back exactly by ``Task.from_folder(path, class_names=names)``
    with ``names`` the task's ``class_names`` or ``[str(i) for i in range(task.num_classes)]``;
    without them the labels become positions among the sorted folder names.

    Raises
    ------
    ValueError
        ``path`` exists and is not an empty folder, or the images have neither 1 nor 3 channels.
    """
    from PIL import Image

    root = Path(path).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"path={str(path)!r} exists and is not an empty folder; pass a new folder")
    if task.x.dim() != 4 or task.x.shape[1] not in (1, 3):
        raise ValueError(f"task {task.name!r} has images of shape {tuple(task.x.shape[1:])}; only (1, H, W) "
                         "and (3, H, W) are written as PNG")
    pixels = np.round(task.x.detach().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
    labels = task.y.cpu().numpy()
    for c in np.unique(labels):
        folder = root / (task.class_names[c] if task.class_names else str(int(c)))
        folder.mkdir(parents=True)
        idx = np.flatnonzero(labels == c)
        width = len(str(len(idx) - 1))
        for k, i in enumerate(idx):
            img = pixels[i, 0] if pixels.shape[1] == 1 else pixels[i].transpose(1, 2, 0)
            Image.fromarray(img).save(folder / f"{k:0{width}d}.png")
    return root
