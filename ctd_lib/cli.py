r"""``ctd-distance``: the distance between two tasks of your own, in one command.

.. code-block:: text

    ctd-distance SOURCE TARGET [--method coupled|uncoupled|fine-tuning|task2vec|w2-pixel]
                 [--model mlp] [--steps 300] [--seeds 3] [--resize H W] [--json out.json]

SOURCE and TARGET are each an image folder in torchvision's ``ImageFolder`` layout
(``path/<class>/<image>.png``, :meth:`~ctd_lib.data.Task.from_folder`), an ``.npz`` holding
arrays ``x`` and ``y`` (:meth:`~ctd_lib.data.Task.from_npz`), or a registered task name
(:data:`ctd_lib.data.TASKS`, e.g. ``mnist10k-0-4``). The default method is the coupled transfer
distance of Definition 2 of [Gao & Chaudhari 2021], the Fisher-Rao length (Eq. 11)

.. math::

    d(\hat p_s, \hat p_t) = \min_{\Gamma,\, w(\cdot)} \int_0^1
      \sqrt{\mathbb{E}_{x\sim\hat p_\tau(x)}\, 2\,\mathrm{KL}\big[p_{w(\tau)}(\cdot\mid x),
      p_{w(\tau+d\tau)}(\cdot\mid x)\big]}\ d\tau

of the weight trajectory :math:`w(\tau)` that moves a network trained on the source
(:math:`\tau = 0`) to the target (:math:`\tau = 1`), computed by the alternation of Eq. (12).

Each method is the library's own function; the self-distance is the same method from SOURCE
to SOURCE, the floor a distance is read against (as chapter 3 reads its matrices):

=============  ===================================================================  ===============
method         what runs                                                            self-distance
=============  ===================================================================  ===============
coupled        :func:`~ctd_lib.task_distance.coupled_transfer_distance` (Eq. 12)    d(S, S)
uncoupled      :func:`~ctd_lib.task_distance.uncoupled_transfer_distance` (Eq. 10)  d(S, S)
fine-tuning    :func:`~ctd_lib.task_distance.fine_tuning_distance` (Sec. 5.2)       d(S, S), often 0
task2vec       :func:`~ctd_lib.task_distance.task2vec_distance`, probe = the        none: 0 by
               source model, its head refitted to each task                         construction
w2-pixel       :func:`~ctd_lib.transport.wasserstein2` between the pixel clouds     none: 0 by
               (the W2 baseline of Fig. 7c-d)                                       construction
=============  ===================================================================  ===============

**The label space.** Two tasks of different classes must index one classification head. Two
image folders share the sorted union of their class names (:func:`shared_label_space`): a class
of the same name in both folders is the same output, a class only one of them has gets an
output of its own (digits 0-4 against digits 5-9: a 10-way head, as chapter 3's tasks). When
either side is an ``.npz`` or a registered task, labels are class ids and the head is as wide
as the wider of the two.

**The data.** Each task keeps at most ``--n-per-class`` images per class and is split 80/20
within each class (:func:`split_task`, :func:`~ctd_lib.data.per_class_split`) into images to
train on and held-out images (the fine-tuning distance's accuracy threshold). Seed ``s`` (of
``0 .. --seeds - 1``) seeds the source model's initialisation and SGD, the transfer (pairs,
mini-batches, interpolation draws), Task2Vec's subsample and head, and the W2 subsample; the
images are the same for every seed, so the spread is that of the training, not of the data.

Bad input (a missing folder, a folder without images or of one class, images of several sizes
without ``--resize``, an ``.npz`` without ``x`` or ``y``, labels that are not integers, a
misspelt method, tasks of different shapes) stops the command before any training with a
one-line message naming the argument, exit status 2, and nothing written; in the Python API
the same checks raise ``ValueError``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ._util.checks import check_choice, check_device, check_positive
from ._util.io import atomic_write_text, jsonable
from ._util.progress import progress
from ._util.threads import limited_threads
from .data import SPLIT_SEED, TASKS, TRAIN_FRACTION, Task, make_task, per_class_split
from .geometry.sgd import accuracy
from .models import MODEL_NAMES, make_model
from .results import Claim, provenance
from .task_distance.coupled import (
    CoupledConfig,
    coupled_transfer_distance,
    train_source_model,
    uncoupled_transfer_distance,
)
from .task_distance.finetune import FineTuneConfig, fine_tuning_distance
from .task_distance.task2vec import Task2VecConfig, task2vec_distance, task2vec_embedding
from .transport.gaussian import wasserstein2

__all__ = [
    "METHODS", "NO_SELF_DISTANCE", "PairConfig", "PairDistance", "build_parser", "check_pair", "load_task", "main",
    "pair_distance", "read_record", "self_distance_claim", "shared_label_space", "spec_kind", "split_task",
]

#: The methods of ``--method``.
METHODS = ("coupled", "uncoupled", "fine-tuning", "task2vec", "w2-pixel")
#: Why a method has no self-distance.
NO_SELF_DISTANCE = {
    "task2vec": "task2vec has no self-distance: one task has one embedding, at distance 0 from itself",
    "w2-pixel": "w2-pixel has no self-distance: W2 between a point cloud and itself is 0",
}
#: The command's usage line.
USAGE = (f"ctd-distance SOURCE TARGET [--method {{{'|'.join(METHODS)}}}] [--model NAME] [--steps N] [--seeds N] "
         "[--resize H W] [--json OUT.json] [other options: -h]")
#: The record's schema version (``--json``).
RECORD_SCHEMA = 1
_LABEL_RULE = {
    "names": "the sorted union of both folders' class names; a class of one name is one output",
    "ids": "labels are class ids; the head is as wide as the wider task",
}


# ----------------------------------------------------------------------------
# configuration and result
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PairConfig:
    """What ``ctd-distance`` runs between two tasks (the command's options, under their names)."""

    method: str = "coupled"  # one of METHODS
    model: str = "mlp"  # the network (ctd_lib.models.MODEL_NAMES): source model, transfer, Task2Vec probe
    steps: int = 300  # SGD steps of the transfer trajectory (Eq. 12c) and of the fine-tuning run
    source_steps: int = 300  # SGD steps training the source model on SOURCE
    lr: float = 0.05  # learning rate of every SGD run (plain SGD)
    batch_size: int = 32  # mini-batch of every SGD run
    outer_iters: int = 3  # K, the alternations of Eq. (12) (coupled only)
    seeds: int = 3  # the distance is computed for seeds 0 .. seeds - 1: mean and spread
    self_distance: bool = True  # also the method from SOURCE to SOURCE, where it has one
    samples: int = 200  # images per task for Task2Vec's Fisher diagonal and for the W2 point clouds
    device: str = "cpu"  # where the networks train ("cuda" on a GPU)

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("model", self.model, MODEL_NAMES)
        for name in ("steps", "source_steps", "batch_size", "outer_iters", "seeds", "samples"):
            check_positive(name, getattr(self, name), integer=True)
        if self.steps < 2:
            raise ValueError(f"steps={self.steps!r} is not valid; it must be an integer >= 2 "
                             "(tau = 0 at the first step and 1 at the last)")
        check_positive("lr", self.lr)
        if not isinstance(self.self_distance, bool):
            raise ValueError(f"self_distance={self.self_distance!r} is not valid; it must be True or False")
        check_device("device", self.device)

    def coupled(self, seed: int) -> CoupledConfig:
        """The transfer process of ``coupled`` and ``uncoupled`` (CoupledConfig's defaults otherwise)."""
        return CoupledConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size, outer_iters=self.outer_iters,
                             length_checkpoints=min(CoupledConfig().length_checkpoints, self.steps), seed=seed,
                             device=self.device)

    def finetune(self, seed: int) -> FineTuneConfig:
        """The fine-tuning distance's SGD (Sec. 5.2)."""
        return FineTuneConfig(lr=self.lr, batch_size=self.batch_size, max_steps=self.steps, seed=seed)

    def task2vec(self, seed: int) -> Task2VecConfig:
        """The Task2Vec embedding of each task by the source model."""
        return Task2VecConfig(n_samples=self.samples, seed=seed)

    def resolved(self) -> dict:
        """This configuration and the method's own (of seed 0; each seed replaces ``seed``), as plain data."""
        out: dict = {"pair": asdict(self)}
        if self.method in ("coupled", "uncoupled"):
            out["coupled"] = self.coupled(0).to_dict()
        elif self.method == "fine-tuning":
            out["finetune"] = self.finetune(0).to_dict()
        elif self.method == "task2vec":
            out["task2vec"] = self.task2vec(0).to_dict()
        return out


def _sd(values: np.ndarray | None) -> float:
    return float(values.std(ddof=1)) if values is not None and len(values) > 1 else float("nan")


@dataclass(frozen=True)
class PairDistance:
    """What :func:`pair_distance` returns.

    Attributes
    ----------
    method : one of :data:`METHODS`.
    source, target : the tasks' names.
    distances : (n_seeds,) the distance from source to target, one per seed.
    self_distances : (n_seeds,) the same method from source to source, or None (see ``no_self_reason``).
    no_self_reason : why there is no self-distance ("" when there is one).
    seeds : the seeds, in the order of ``distances``.
    per_seed : one dict per seed of what else the method reports (source model accuracy, outer
        iterations and convergence of the coupling, fine-tuning's threshold step, ...).
    config : the resolved configuration (:meth:`PairConfig.resolved`).
    wall_time : seconds.
    """

    method: str
    source: str
    target: str
    distances: np.ndarray
    self_distances: np.ndarray | None
    no_self_reason: str
    seeds: tuple[int, ...]
    per_seed: list = field(repr=False)
    config: dict = field(repr=False)
    wall_time: float = 0.0

    @property
    def mean(self) -> float:
        return float(self.distances.mean())

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (ddof 1); nan for one seed."""
        return _sd(self.distances)

    @property
    def self_mean(self) -> float:
        return float(self.self_distances.mean()) if self.self_distances is not None else float("nan")

    @property
    def self_sd(self) -> float:
        return _sd(self.self_distances)

    def summary(self) -> dict:
        """Means, spreads and per-seed values as plain data (the ``--json`` record's numbers)."""
        def block(v: np.ndarray | None) -> dict | None:
            return None if v is None else {"mean": float(v.mean()), "sd": _sd(v), "per_seed": v.tolist()}

        return {"method": self.method, "source": self.source, "target": self.target, "seeds": list(self.seeds),
                "distance": block(self.distances), "self_distance": block(self.self_distances),
                "self_distance_note": self.no_self_reason, "per_seed": self.per_seed, "wall_time_s": self.wall_time}


def read_record(path: str | Path) -> PairDistance:
    """The :class:`PairDistance` of a record written by ``ctd-distance --json`` (its config: the record's parameters).

    Raises
    ------
    ValueError
        ``path`` is not such a record (not JSON, another ``kind``, another schema).
    """
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"path={str(path)!r} is not a readable JSON record ({err})") from None
    if not isinstance(rec, dict) or rec.get("kind") != "ctd-distance" or rec.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"path={str(path)!r} is not a ctd-distance record of schema {RECORD_SCHEMA}")

    def values(block: dict | None) -> np.ndarray | None:
        return None if block is None else np.asarray([np.nan if v is None else v for v in block["per_seed"]], float)

    distances = values(rec["distance"])
    assert distances is not None  # every record has its distances
    return PairDistance(method=rec["method"], source=rec["source"]["name"], target=rec["target"]["name"],
                        distances=distances, self_distances=values(rec["self_distance"]),
                        no_self_reason=rec["self_distance_note"], seeds=tuple(rec["seeds"]), per_seed=rec["per_seed"],
                        config=rec["provenance"]["parameters"], wall_time=float(rec["wall_time_s"]))


def self_distance_claim(result: PairDistance, *, id: str = "distance_exceeds_self_distance",
                        statement: str | None = None, source: str = "Seed 000, Definition 2") -> Claim:
    r"""The claim that the distance exceeds the self-distance by more than the seed-to-seed noise.

    Holds when :math:`\bar d(S, T) - \bar d(S, S) > 2 \max(s_{ST}, s_{SS})`, the means and sample
    standard deviations over the seeds (with one seed, when the difference is positive: no noise
    margin can be measured, and the evidence says so).

    Raises
    ------
    ValueError
        ``result`` has no self-distance (task2vec, w2-pixel, or ``self_distance=False``).
    """
    if result.self_distances is None:
        raise ValueError(f"result has no self-distance ({result.no_self_reason or 'self_distance=False'}); "
                         "the claim needs one: use a method of coupled, uncoupled, fine-tuning")
    gap = result.mean - result.self_mean
    many = len(result.seeds) > 1
    noise = 2 * max(result.sd, result.self_sd) if many else 0.0
    margin = f"twice the larger seed-to-seed sd, {noise:.3g}" if many else "0 (one seed: no noise margin measured)"
    return Claim(
        id=id, source=source,
        statement=statement or (f"The {result.method} distance from {result.source} to {result.target} exceeds "
                                f"the self-distance of {result.source} by more than the seed-to-seed noise"),
        holds=bool(gap > noise),
        evidence=(f"d(S, T) = {result.mean:.3f} +/- {result.sd:.3f}, d(S, S) = {result.self_mean:.3f} +/- "
                  f"{result.self_sd:.3f} over {len(result.seeds)} seed(s); difference {gap:.3f} against {margin}"),
    )


# ----------------------------------------------------------------------------
# tasks: loading, label space, split
# ----------------------------------------------------------------------------


def _at_most_per_class(task: Task, n: int | None, seed: int) -> Task:
    """At most ``n`` examples of each class, drawn without replacement (classes in increasing order)."""
    if n is None:
        return task
    y = task.y.cpu().numpy()
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep.append(idx if len(idx) <= n else idx[np.sort(rng.choice(len(idx), size=n, replace=False))])
    idx_t = torch.from_numpy(np.sort(np.concatenate(keep)))
    return replace(task, x=task.x[idx_t], y=task.y[idx_t])


def spec_kind(spec: str) -> str:
    """``"folder"``, ``"npz"``, ``"registered"`` or ``"unknown"``: what :func:`load_task` reads ``spec`` as."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return "folder"
    if p.is_file():
        return "npz" if p.suffix.lower() == ".npz" else "unknown"
    return "registered" if spec in TASKS else "unknown"


def load_task(spec: str, *, resize: Sequence[int] | None = None, channels: int | None = None,
              n_per_class: int | None = None, root: str | None = None, seed: int = 0) -> Task:
    """The task named by ``spec``: an image folder, an ``.npz`` with ``x`` and ``y``, or a registered task.

    A path that exists wins over a registered name. A registered task is its ``train`` split
    (:func:`~ctd_lib.data.make_task`; ``root`` for the torchvision datasets). ``resize`` and
    ``channels`` as in :func:`~ctd_lib.user_data.task_from_arrays`; ``n_per_class`` keeps at most that
    many examples per class (drawn with ``np.random.default_rng(seed)``).

    Raises
    ------
    ValueError
        ``spec`` is none of the three (with the registered names closest to it), or the loader's own.
    """
    if n_per_class is not None:
        check_positive("n_per_class", n_per_class, integer=True)
    kind = spec_kind(spec)
    if kind == "folder":
        return Task.from_folder(spec, resize=resize, channels=channels, n_per_class=n_per_class, seed=seed)
    if kind == "npz":
        return _at_most_per_class(Task.from_npz(spec, resize=resize, channels=channels), n_per_class, seed)
    if kind == "registered":
        t = make_task(spec, "train", root=root)
        t = Task.from_arrays(t.x, t.y, name=spec, num_classes=t.num_classes, resize=resize, channels=channels)
        return _at_most_per_class(t, n_per_class, seed)
    if Path(spec).expanduser().is_file():
        raise ValueError(f"{spec!r} is a file but not an .npz archive; pass an image folder (one sub-folder per "
                         "class), an .npz holding arrays x and y, or a registered task name")
    if any(sep in spec for sep in ("/", "\\")) or spec.startswith((".", "~")) or spec.lower().endswith(".npz"):
        raise ValueError(f"{spec!r} does not exist; pass an image folder (one sub-folder per class), an .npz "
                         "holding arrays x and y, or a registered task name")
    close = difflib.get_close_matches(spec, list(TASKS), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"registered tasks: {', '.join(sorted(TASKS))}"
    raise ValueError(f"{spec!r} is not valid: no such folder or .npz file, and not a registered task name ({hint})")


def _relabelled(task: Task, names: tuple[str, ...]) -> Task:
    lookup = torch.tensor([names.index(n) for n in task.class_names], dtype=torch.int64)
    return replace(task, y=lookup[task.y.cpu()].to(task.y.device), classes=tuple(sorted(int(lookup[c]) for c in task.classes)),
                   num_classes=len(names), class_names=names)


def shared_label_space(source: Task, target: Task) -> tuple[Task, Task, str]:
    """The two tasks relabelled onto one head, and the rule used (``"names"`` or ``"ids"``).

    ``"names"``: both tasks have class names (image folders): the head is the sorted union of
    the names, and each task's labels are re-indexed into it. ``"ids"``: otherwise, labels are
    class ids; the narrower task is widened to the other's ``num_classes`` and names are dropped.
    """
    if source.class_names and target.class_names:
        names = tuple(sorted(set(source.class_names) | set(target.class_names)))
        return _relabelled(source, names), _relabelled(target, names), "names"
    width = max(source.num_classes, target.num_classes)
    return (replace(source, num_classes=width, class_names=()), replace(target, num_classes=width, class_names=()),
            "ids")


def check_pair(source: Task, target: Task) -> None:
    """Raise ``ValueError`` unless the tasks have one input shape and one label space (``num_classes``)."""
    a, b = tuple(source.x.shape[1:]), tuple(target.x.shape[1:])
    if a != b:
        what = []
        if a[1:] != b[1:]:
            what.append("resize both to one size (resize=(H, W); on the command line --resize H W)")
        if a[:1] != b[:1]:
            what.append("convert both to one number of channels (channels=1 or 3; --channels 1 or 3)")
        raise ValueError(f"source and target have different image shapes (C, H, W), {a} and {b}: "
                         + " and ".join(what or ["give both one shape"]))
    if source.num_classes != target.num_classes:
        raise ValueError(f"source has {source.num_classes} classes and target {target.num_classes}: put both on "
                         "one label space first (shared_label_space)")


def split_task(task: Task, *, train_fraction: float = TRAIN_FRACTION, seed: int = SPLIT_SEED) -> tuple[Task, Task]:
    """(train, held-out): :func:`~ctd_lib.data.per_class_split` of the task, the same fraction of every class.

    Raises
    ------
    ValueError
        A class with fewer than 2 examples (it could not be in both parts).
    """
    y = task.y.cpu().numpy()
    labels, counts = np.unique(y, return_counts=True)
    few = [(int(c), int(n)) for c, n in zip(labels, counts) if n < 2]
    if few:
        def label(c: int) -> str:
            return repr(task.class_names[c]) if task.class_names else str(c)

        shown = ", ".join(f"{label(c)} ({n} image)" for c, n in few)
        raise ValueError(f"task {task.name!r} has classes with a single example ({shown}); each class needs at least "
                         "2, one to train on and one held out")
    tr, te = per_class_split(y, seed=seed, train_fraction=train_fraction)
    tr_t, te_t = torch.from_numpy(tr), torch.from_numpy(te)
    return replace(task, x=task.x[tr_t], y=task.y[tr_t]), replace(task, x=task.x[te_t], y=task.y[te_t])


def _check_model(name: str, in_shape: tuple[int, ...], num_classes: int) -> None:
    """Build the network once and run one input through it: a shape it cannot take fails here, not mid-run."""
    try:
        net = make_model(name, in_shape=in_shape, num_classes=num_classes, seed=0).eval()
        with torch.no_grad():
            net(torch.zeros(1, *in_shape))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"model={name!r} cannot take images of shape {in_shape} (C, H, W): "
                         f"{str(err).splitlines()[0]}; choose another model or --resize") from None


# ----------------------------------------------------------------------------
# the distance over seeds
# ----------------------------------------------------------------------------


def _cloud(task: Task, k: int, seed: int) -> np.ndarray:
    """At most ``k`` images of the task, flattened to (k, C*H*W) float64 (chapter 3's W2 subsample)."""
    g = torch.Generator().manual_seed(seed)
    x = task.x.cpu()
    x = x[torch.randperm(x.shape[0], generator=g)[:k]]
    return x.reshape(x.shape[0], -1).double().numpy()


def _one_seed(cfg: PairConfig, seed: int, src: Task, sv: Task, tgt: Task, tv: Task,
              show_progress: bool | None) -> tuple[float, float | None, dict]:
    if cfg.method == "w2-pixel":
        return wasserstein2(_cloud(src, cfg.samples, seed), _cloud(tgt, cfg.samples, seed)), None, {}
    in_shape = tuple(src.x.shape[1:])
    sm = train_source_model(src, lambda: make_model(cfg.model, in_shape=in_shape, num_classes=src.num_classes,
                                                    seed=seed),
                            steps=cfg.source_steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=seed, device=cfg.device)
    extras: dict = {"source_train_acc": accuracy(sm, src.x, src.y), "source_val_acc": accuracy(sm, sv.x, sv.y)}
    if cfg.method == "task2vec":
        t2v = cfg.task2vec(seed)
        return task2vec_distance(task2vec_embedding(sm, src, t2v), task2vec_embedding(sm, tgt, t2v)), None, extras
    if cfg.method == "fine-tuning":
        ftc = cfg.finetune(seed)
        ft = fine_tuning_distance(sm, tgt, tv, ftc)
        extras.update(steps_to_threshold=ft.steps_to_threshold, initial_val_acc=ft.initial_val_acc,
                      final_val_acc=ft.final_val_acc, fisher_rao_length=ft.fisher_rao_length)
        if not cfg.self_distance:
            return ft.distance, None, extras
        self_ft = fine_tuning_distance(sm, src, sv, ftc)
        extras.update(self_steps_to_threshold=self_ft.steps_to_threshold)
        return ft.distance, self_ft.distance, extras
    ccfg = cfg.coupled(seed)
    fn = coupled_transfer_distance if cfg.method == "coupled" else uncoupled_transfer_distance
    res = fn(src, tgt, sm, ccfg, show_progress=show_progress)
    extras.update(per_iteration=res.per_iteration, other_convention=res.per_iteration_other[-1],
                  converged=res.converged if cfg.method == "coupled" else None,
                  coupling_converged=None if res.coupling is None else bool(res.coupling.converged))
    if not cfg.self_distance:
        return res.distance, None, extras
    own = fn(src, src, sm, ccfg, show_progress=show_progress)
    extras.update(self_per_iteration=own.per_iteration)
    return res.distance, own.distance, extras


def pair_distance(source: Task, target: Task, config: PairConfig | None = None, *, source_val: Task | None = None,
                  target_val: Task | None = None, show_progress: bool | None = None) -> PairDistance:
    """The distance from ``source`` to ``target`` by ``config.method``, for each of ``config.seeds`` seeds.

    Parameters
    ----------
    source, target : tasks of one input shape and one label space (:func:`shared_label_space`).
    config : :class:`PairConfig` (defaults if None).
    source_val, target_val : held-out examples; when None, each task is split by :func:`split_task`
        (80% trained on, 20% held out).
    show_progress : tqdm bars (over the seeds, and the library's own); None shows them on a terminal.

    Every check runs before any training: shapes, label space, the split, the model on the shape.
    """
    cfg = config or PairConfig()
    if not isinstance(cfg, PairConfig):
        raise ValueError(f"config={cfg!r} is not valid; it must be a PairConfig")
    check_pair(source, target)
    if source_val is None:
        source, source_val = split_task(source)
    if target_val is None:
        target, target_val = split_task(target)
    if cfg.method != "w2-pixel":  # the one method without a network
        _check_model(cfg.model, tuple(source.x.shape[1:]), source.num_classes)
    dev = torch.device(cfg.device)
    src, sv, tgt, tv = (replace(t, x=t.x.to(dev), y=t.y.to(dev)) for t in (source, source_val, target, target_val))
    start = time.perf_counter()
    seeds = tuple(range(cfg.seeds))
    d, d_self, per_seed = [], [], []
    for s in progress(seeds, desc=f"{cfg.method}, seeds", enabled=show_progress):
        value, own, extras = _one_seed(cfg, s, src, sv, tgt, tv, show_progress)
        d.append(value)
        d_self.append(own)
        per_seed.append({"seed": s, **extras})
    has_self = cfg.self_distance and cfg.method not in NO_SELF_DISTANCE
    reason = "" if has_self else NO_SELF_DISTANCE.get(cfg.method, "not asked for (self_distance=False)")
    return PairDistance(method=cfg.method, source=source.name, target=target.name, distances=np.asarray(d, float),
                        self_distances=np.asarray(d_self, float) if has_self else None, no_self_reason=reason,
                        seeds=seeds, per_seed=per_seed, config=cfg.resolved(), wall_time=time.perf_counter() - start)


# ----------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid; it must be an integer >= {lo}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; it must be a positive number")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    d = PairConfig()
    ap = argparse.ArgumentParser(
        prog="ctd-distance",
        usage=USAGE,
        description="The distance between two tasks (Gao & Chaudhari 2021): SOURCE and TARGET are each an image "
                    "folder (one sub-folder per class), an .npz with arrays x and y, or a registered task name "
                    "(ctd_lib.data.TASKS). Prints the distance, its self-distance (SOURCE to SOURCE) and the "
                    "spread over seeds; exit status 2 for bad input, before any training.",
        epilog="Two folders share one head: the sorted union of their class names. See ctd_lib.cli.")
    ap.add_argument("source", metavar="SOURCE", help="image folder, .npz file or registered task name")
    ap.add_argument("target", metavar="TARGET", help="image folder, .npz file or registered task name")
    ap.add_argument("--method", choices=METHODS, default=d.method, help=f"default {d.method}")
    ap.add_argument("--model", choices=MODEL_NAMES, default=d.model, help=f"the network (default {d.model})")
    ap.add_argument("--steps", type=_int_at_least(2), metavar="N", default=d.steps,
                    help=f"SGD steps of the transfer and of fine-tuning (default {d.steps})")
    ap.add_argument("--source-steps", type=_int_at_least(1), metavar="N", default=d.source_steps,
                    help=f"SGD steps training the source model (default {d.source_steps})")
    ap.add_argument("--lr", type=_positive_float, metavar="LR", default=d.lr, help=f"learning rate of every SGD run (default {d.lr})")
    ap.add_argument("--batch-size", type=_int_at_least(1), metavar="N", default=d.batch_size,
                    help=f"mini-batch of every SGD run (default {d.batch_size})")
    ap.add_argument("--seeds", type=_int_at_least(1), metavar="N", default=d.seeds,
                    help=f"compute for seeds 0..N-1, report mean and sd (default {d.seeds})")
    ap.add_argument("--no-self", action="store_true", help="skip the self-distance (SOURCE to SOURCE)")
    ap.add_argument("--resize", type=_int_at_least(1), nargs=2, metavar=("H", "W"), default=None,
                    help="resample every image to H x W (needed when images differ in size)")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=None,
                    help="convert to grey (1) or RGB (3); default: as stored")
    ap.add_argument("--n-per-class", type=_int_at_least(2), metavar="N", default=100,
                    help="use at most N images per class (default 100)")
    ap.add_argument("--samples", type=_int_at_least(1), metavar="N", default=d.samples,
                    help=f"images per task for task2vec and w2-pixel (default {d.samples})")
    ap.add_argument("--data-root", default=None, metavar="PATH", help="torchvision data root, for registered mnist/cifar tasks")
    ap.add_argument("--device", default=d.device, help=f"cpu or cuda (default {d.device})")
    ap.add_argument("--threads", type=_int_at_least(0), metavar="N", default=1,
                    help="torch and BLAS threads (default 1, fastest for small models; 0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                    help="write a record (numbers, settings, provenance) to this file, atomically")
    return ap


def _describe(spec: str, task: Task) -> dict:
    counts = np.bincount(task.y.cpu().numpy(), minlength=task.num_classes)
    return {"spec": spec, "kind": spec_kind(spec), "name": task.name, "n": int(task.x.shape[0]),
            "input_shape": list(task.input_shape), "classes": list(task.classes),
            "class_names": [task.class_names[c] for c in task.classes] if task.class_names else None,
            "per_class": {str(c): int(counts[c]) for c in task.classes}}


def _fmt(mean: float, sd: float, n: int) -> str:
    return f"{mean:.4g} ± {sd:.2g}" if n > 1 else f"{mean:.4g} (one seed: --seeds N for the spread)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctd-distance`` with ``argv`` (default: the command line); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = PairConfig(method=args.method, model=args.model, steps=args.steps, source_steps=args.source_steps,
                         lr=args.lr, batch_size=args.batch_size, seeds=args.seeds, self_distance=not args.no_self,
                         samples=args.samples, device=args.device)
    except ValueError as err:
        parser.error(f"argument --{str(err).split('=')[0].replace('_', '-')}: {err}")
    if args.json is not None and args.json.is_dir():
        parser.error(f"argument --json: {str(args.json)!r} is a folder; pass a file path such as out.json")
    start = time.perf_counter()
    with limited_threads(args.threads):
        loaded = {}
        for label, spec in (("SOURCE", args.source), ("TARGET", args.target)):
            try:
                loaded[label] = load_task(spec, resize=args.resize, channels=args.channels,
                                          n_per_class=args.n_per_class, root=args.data_root)
            except ValueError as err:
                parser.error(f"argument {label}: {err}")
        source, target, rule = shared_label_space(loaded["SOURCE"], loaded["TARGET"])
        try:
            check_pair(source, target)
        except ValueError as err:
            parser.error(f"arguments SOURCE and TARGET: {err}")
        parts = {}
        for label, task in (("SOURCE", source), ("TARGET", target)):
            try:
                parts[label] = split_task(task)
            except ValueError as err:
                parser.error(f"argument {label}: {err}")
        if cfg.method != "w2-pixel":
            try:
                _check_model(cfg.model, tuple(source.x.shape[1:]), source.num_classes)
            except ValueError as err:
                parser.error(f"argument --model: {err}")
        (src, sv), (tgt, tv) = parts["SOURCE"], parts["TARGET"]
        print(f"ctd-distance: {cfg.method} distance from {args.source} to {args.target}")
        for label, spec, task in (("source", args.source, source), ("target", args.target, target)):
            print(f"  {label}: {task.name} ({spec_kind(spec)}), {task.x.shape[0]} images of "
                  f"{len(task.classes)} classes, shape {'x'.join(map(str, task.input_shape))}")
        print(f"  label space: {source.num_classes} outputs ({_LABEL_RULE[rule]})")
        result = pair_distance(src, tgt, cfg, source_val=sv, target_val=tv)
        n = len(result.seeds)
        print(f"  distance       d(SOURCE, TARGET) = {_fmt(result.mean, result.sd, n)}  (mean ± sd over {n} seed(s))")
        if result.self_distances is not None:
            print(f"  self-distance  d(SOURCE, SOURCE) = {_fmt(result.self_mean, result.self_sd, n)}  (the floor)")
        else:
            print(f"  self-distance  none: {result.no_self_reason}")
        wall = time.perf_counter() - start
        print(f"  {wall:.1f} s")
        if args.json is None:
            return 0
        record = {
            "schema": RECORD_SCHEMA, "kind": "ctd-distance",
            "command": ["ctd-distance", *(sys.argv[1:] if argv is None else argv)],
            **result.summary(),
            "source": _describe(args.source, source), "target": _describe(args.target, target),
            "label_space": {"num_classes": source.num_classes, "rule": rule, "description": _LABEL_RULE[rule],
                            "class_names": list(source.class_names) or None},
            "data": {"n_per_class": args.n_per_class, "resize": args.resize, "channels": args.channels,
                     "train_fraction": TRAIN_FRACTION, "split_seed": SPLIT_SEED,
                     "n_train": [int(src.x.shape[0]), int(tgt.x.shape[0])],
                     "n_held_out": [int(sv.x.shape[0]), int(tv.x.shape[0])]},
            "provenance": provenance(result.config, wall_time=wall, device=cfg.device,
                                     cwd=Path(__file__).resolve().parent),
        }
    text = json.dumps(jsonable(record), indent=2, sort_keys=True, allow_nan=False) + "\n"
    print(f"  record written to {atomic_write_text(args.json, text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
