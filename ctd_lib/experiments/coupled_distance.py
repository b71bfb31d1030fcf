r"""Chapter 3's experiments: coupled transfer distances between task families, their baselines
and Mantel tests (Seed 000, Definition 2, Eqs. (9)-(12), Sec. 3, Sec. 5.2-5.5, Figs. 2-7).

The coupled transfer distance (Definition 2, Eq. (11) of [Gao & Chaudhari 2021]) is

.. math::

    d(\hat p_s, \hat p_t) = \min_{\Gamma,\, w(\cdot)} \int_0^1
      \sqrt{\mathbb{E}_{x\sim\hat p_\tau(x)}\, 2\,\mathrm{KL}\big[p_{w(\tau)}(\cdot\mid x),
      p_{w(\tau+d\tau)}(\cdot\mid x)\big]},

computed by the alternation of Eq. (12) in :mod:`ctd_lib.task_distance.coupled`;
the uncoupled distance (Sec. 3.1) measures the same length along SGD on the
mixture :math:`(1-\tau)\hat p_s + \tau\hat p_t` (Eq. (9)).

:class:`CoupledDistanceConfig` holds the chapter's parameters, validated before
any work. :class:`TaskBank` loads each task once (training and held-out splits)
and trains one source model per (task, architecture, seed); :func:`family_matrices`
computes every method's distance matrix over a task family, each ordered pair
cached on disk under a key of the method, the tasks, the parameters and a
fingerprint of the library's code. The notebook calls the steps in order
(:func:`make_bank`, :func:`family_step`, :func:`subset_comparison`,
:func:`mantel_table`, :func:`ingredient_step`, :func:`convergence`,
:func:`target_comparison`, :func:`seed_step`), collects them in a
:class:`CoupledDistanceResult`, and writes :func:`metrics` and :func:`claims`.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .._util.checks import check_choice, check_count, check_device, check_nonnegative, check_positive
from ..data import TASKS, Task, fetch_mnist10k, make_task
from ..geometry.sgd import accuracy, cross_entropy
from ..models import MODEL_NAMES, make_model
from ..results import Claim
from ..task_distance.batched import coupled_transfer_distances, uncoupled_transfer_distances
from ..task_distance.cluster import check_scheduler
from ..task_distance.coupled import (
    AUTHORS_PRESET,
    BLOCK_SAMPLINGS,
    LENGTH_ESTIMATORS,
    LENGTH_INPUTS,
    SCHEDULES,
    CoupledConfig,
    coupled_transfer_distance,
    held_out_inputs,
    initial_coupling,
    penultimate_features,
    polyline_from_logits,
    run_trajectory,
    train_source_model,
    uncoupled_transfer_distance,
)
from ..task_distance.finetune import FineTuneConfig, fine_tuning_distance
from ..task_distance.matrices import DistanceMatrix, distance_matrix
from ..task_distance.stats import (
    DistanceComparison,
    mantel_asymmetric,
    mantel_symmetric,
    symmetrize,
    weighted_tau_rows,
)
from ..task_distance.task2vec import Task2VecConfig, task2vec_distance, task2vec_embedding
from ..task_distance.vae_length import FISHERS as VAE_FISHERS
from ..task_distance.vae_length import VAELengthConfig, VAEPairJob
from ..transport.gaussian import wasserstein2

__all__ = [
    "run_chapter",
    "COUPLED_FIELDS", "FAMILIES", "INPUT_SPACE", "InputSpaceComparison", "LengthStudy", "PairJob", "STUDY_KINDS",
    "TRAINED_METHODS", "VAE_KINDS", "input_space_comparison", "length_study", "main", "pair_job", "per_step_matrix",
    "preset_differences", "rank_agreement", "self_floor", "vae_step",
    "METHODS", "Convergence", "CoupledDistanceConfig", "CoupledDistanceResult", "IngredientStudy", "SeedSpread",
    "StudyConfig", "SubsetRow", "TargetComparison", "TaskBank", "Variant", "claims", "code_fingerprint",
    "convergence", "entry", "family_matrices", "family_step", "ingredient_step", "ingredient_study",
    "ingredient_variants", "make_bank", "mantel_table", "metrics", "relative_asymmetry", "seed_spread", "seed_step",
    "subset_comparison", "subset_pairs", "target_comparison",
]

METHODS = ("coupled", "uncoupled", "fine-tuning", "task2vec", "w2-pixel", "w2-feature")


def code_fingerprint() -> str:
    """sha256 of the library's source files: part of every cache key, so a code change invalidates the cache."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Sizes and training settings of chapter 3 (one object for every family)."""

    n_per_class: int = 40  # training images per class, per task
    n_val_per_class: int = 20  # held-out images per class, per task
    source_steps: int = 300  # SGD steps training each source model
    source_lr: float = 0.05  # their learning rate
    batch_size: int = 32  # mini-batch of every SGD run
    finetune_steps: int = 200  # SGD steps of the fine-tuning distance (and of the Fig. 6 comparison)
    finetune_lr: float = 0.05  # its learning rate
    probe_task: str = "mnist10k-all"  # reference task on which the Task2Vec probe is trained
    task2vec_samples: int = 200  # inputs per task for the diagonal Fisher of Task2Vec
    w2_samples: int = 200  # images per task in the W2 baselines
    seed: int = 0  # seeds data subsets, models and samplers

    def __post_init__(self):
        for name in ("n_per_class", "n_val_per_class", "source_steps", "batch_size", "finetune_steps",
                     "task2vec_samples", "w2_samples"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("source_lr", "finetune_lr"):
            check_positive(name, getattr(self, name))
        check_choice("probe_task", self.probe_task, sorted(TASKS))


class TaskBank:
    """Tasks (train and held-out) and source models, each made once."""

    def __init__(self, cfg: StudyConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        self._tasks: dict = {}
        self._models: dict = {}

    def task(self, name: str, split: str = "train") -> Task:
        key = (name, split)
        if key not in self._tasks:
            n = self.cfg.n_per_class if split == "train" else self.cfg.n_val_per_class
            t = make_task(name, split=split, n_per_class=n, seed=self.cfg.seed)
            self._tasks[key] = replace(t, x=t.x.to(self.device), y=t.y.to(self.device))
        return self._tasks[key]

    def source_model(self, name: str, model: str) -> torch.nn.Module:
        key = (name, model)
        if key not in self._models:
            task = self.task(name)
            self._models[key] = train_source_model(
                task, lambda: make_model(model, in_shape=tuple(task.x.shape[1:]), num_classes=task.num_classes,
                                         seed=self.cfg.seed),
                steps=self.cfg.source_steps, lr=self.cfg.source_lr, batch_size=self.cfg.batch_size,
                seed=self.cfg.seed, device=self.device)
        return self._models[key]


TRAINED_METHODS = ("coupled", "uncoupled", "fine-tuning")  # the methods whose pairs train a network


@dataclass(frozen=True)
class PairJob:
    """One ordered pair of a trained method, as plain data a worker process can run.

    It holds the tasks (train and held-out splits) and the weights of the trained source models,
    never a reference to a :class:`TaskBank`: each source model is trained once, in the client,
    and shipped. :meth:`for_pair` narrows the job to the two tasks and the one source model a pair
    needs, which is what :func:`~ctd_lib.task_distance.matrices.distance_matrix` ships to an executor.
    """

    method: str  # one of TRAINED_METHODS
    model: str
    tasks: dict  # name -> (train Task, held-out Task), on CPU
    sources: dict  # name -> state_dict of the source model trained on that task, on CPU
    seed: int
    device: str
    coupled: CoupledConfig | None = None  # coupled and uncoupled
    finetune: FineTuneConfig | None = None  # fine-tuning

    def for_pair(self, source: str, target: str) -> PairJob:
        return replace(self, tasks={n: self.tasks[n] for n in {source, target}},
                       sources={source: self.sources[source]})

    def _task(self, name: str, split: str) -> Task:
        t = self.tasks[name][0 if split == "train" else 1]
        return replace(t, x=t.x.to(self.device), y=t.y.to(self.device))

    def _source_model(self, name: str) -> torch.nn.Module:
        task = self._task(name, "train")
        net = make_model(self.model, in_shape=tuple(task.x.shape[1:]), num_classes=task.num_classes, seed=self.seed)
        net.load_state_dict(self.sources[name])
        return net.to(self.device)

    def __call__(self, s: str, t: str):
        src, tgt, sv, tv = self._task(s, "train"), self._task(t, "train"), self._task(s, "test"), self._task(t, "test")
        source_model = self._source_model(s)
        if self.method == "coupled":
            assert self.coupled is not None
            res = coupled_transfer_distance(src, tgt, source_model, self.coupled, source_val=sv, target_val=tv)
            return self._coupled_extras(res, tgt, tv)
        if self.method == "uncoupled":
            assert self.coupled is not None
            res = uncoupled_transfer_distance(src, tgt, source_model, self.coupled, source_val=sv, target_val=tv)
            return self._uncoupled_extras(res)
        return self._finetune(source_model, tgt, tv)

    def for_pairs(self, pairs: Sequence[tuple]) -> list:
        """Every ``(source, target)`` of ``pairs``, the coupled and uncoupled trajectories stepped together by the
        batched engine (:mod:`ctd_lib.task_distance.batched`), each with the numbers it gets alone; fine-tuning
        pairs one after the other."""
        if self.method == "fine-tuning":
            return [self(s, t) for s, t in pairs]
        assert self.coupled is not None
        args = [(self._task(s, "train"), self._task(t, "train"), self._source_model(s)) for s, t in pairs]
        vals = [(self._task(s, "test"), self._task(t, "test")) for s, t in pairs]
        if self.method == "coupled":
            results = coupled_transfer_distances(args, self.coupled, vals=vals, batch_size=len(pairs))
            return [self._coupled_extras(r, a[1], v[1]) for r, a, v in zip(results, args, vals)]
        results = uncoupled_transfer_distances(args, self.coupled, vals=vals, batch_size=len(pairs))
        return [self._uncoupled_extras(r) for r in results]

    def _coupled_extras(self, res, tgt: Task, tv: Task):
        assert self.coupled is not None
        end = res.target_model.eval()
        with torch.no_grad():
            end_loss = float(cross_entropy(end(tv.x), tv.y))
        extras = {
            "per_iteration": res.per_iteration, "per_iteration_other": res.per_iteration_other,
            "per_step_distance": res.log.per_step_length.length(self.coupled.convention),
            "endpoint_val_acc": accuracy(end, tv.x, tv.y), "endpoint_val_loss": end_loss,
            "eval_tau": res.log.eval_tau, "eval_train_loss": res.log.eval_train_loss,
            "eval_val_loss": res.log.eval_val_loss,
            "coupling_converged": res.coupling is not None and bool(res.coupling.converged),
        }
        if self.finetune is not None:  # Fig. 6 at an equal footing: the same fine-tuning from the coupled end
            ft = fine_tuning_distance(res.target_model, tgt, tv, replace(self.finetune,
                                                                         eval_every=self.finetune.max_steps))
            assert ft.final_model is not None
            m = ft.final_model.eval()
            with torch.no_grad():
                extras["target_val_loss"] = float(cross_entropy(m(tv.x), tv.y))
            extras["target_val_acc"] = accuracy(m, tv.x, tv.y)
        return res.distance, extras

    def _uncoupled_extras(self, res):
        assert self.coupled is not None
        return res.distance, {"per_sample": res.per_iteration_other[0], "eval_tau": res.log.eval_tau,
                              "per_step_distance": res.log.per_step_length.length(self.coupled.convention),
                              "eval_train_loss": res.log.eval_train_loss, "eval_val_loss": res.log.eval_val_loss}

    def _finetune(self, source_model, tgt: Task, tv: Task):
        assert self.finetune is not None
        ft = fine_tuning_distance(source_model, tgt, tv, self.finetune)
        assert ft.final_model is not None  # fine_tuning_distance always returns it
        m = ft.final_model.eval()  # after the whole fine-tuning run, for the Fig. 6 comparison
        with torch.no_grad():
            loss = float(cross_entropy(m(tv.x), tv.y))
        return ft.distance, {"steps_to_threshold": ft.steps_to_threshold, "fisher_rao_length": ft.fisher_rao_length,
                             "initial_val_acc": ft.initial_val_acc, "final_val_acc": ft.final_val_acc,
                             "target_val_acc": accuracy(m, tv.x, tv.y), "target_val_loss": loss}


def pair_job(bank: TaskBank, names: Sequence[str], method: str, model: str, ccfg: CoupledConfig, *,
             equal_footing: bool = False) -> PairJob:
    """The :class:`PairJob` of ``method`` over ``names``: every source model trained (once, here) first.

    ``equal_footing`` (coupled only): after the transfer, fine-tune the coupled endpoint exactly as the
    fine-tuning baseline fine-tunes the source model (``finetune_steps`` updates on the target), and report
    the held-out loss and accuracy of that model: both then have had the same number of updates on pure
    target data (Fig. 6 at an equal footing). The endpoint itself is reported beside.
    """
    check_choice("method", method, TRAINED_METHODS)
    cfg = bank.cfg

    def cpu(t: Task) -> Task:
        return replace(t, x=t.x.cpu(), y=t.y.cpu())

    tasks = {n: (cpu(bank.task(n)), cpu(bank.task(n, "test"))) for n in names}
    sources = {n: {k: v.detach().cpu().clone() for k, v in bank.source_model(n, model).state_dict().items()}
               for n in names}
    ftc = FineTuneConfig(lr=cfg.finetune_lr, batch_size=cfg.batch_size, max_steps=cfg.finetune_steps, seed=cfg.seed)
    return PairJob(method=method, model=model, tasks=tasks, sources=sources, seed=cfg.seed, device=bank.device,
                   coupled=ccfg if method != "fine-tuning" else None,
                   finetune=ftc if method == "fine-tuning" or (method == "coupled" and equal_footing) else None)


def _probe(bank: TaskBank, model: str) -> torch.nn.Module:
    return bank.source_model(bank.cfg.probe_task, model)


def family_matrices(
    bank: TaskBank, names: Sequence[str], *, model: str, coupled: CoupledConfig, methods: Sequence[str] = METHODS,
    cache_dir: str | None = None, executor: Executor | None = None, self_distances: bool = True,
    equal_footing: bool = False, batch_pairs: int = 1,
) -> dict:
    """Every requested method's :class:`~ctd_lib.task_distance.matrices.DistanceMatrix` over the ordered pairs
    of ``names``.

    With ``self_distances`` the trained methods also compute the diagonal :math:`d(T, T)`: the length of
    the same process from a task to itself, the floor a distance is read against (for the embeddings and
    W2 baselines the diagonal is zero by construction). ``equal_footing``: see :func:`pair_job`.

    The trained methods (coupled, uncoupled, fine-tuning) run their pairs on ``executor`` when one is
    given (see :func:`~ctd_lib.task_distance.cluster.open_executor`), each pair a :class:`PairJob`; the
    embeddings and W2 baselines are cheap and run here. ``batch_pairs`` > 1 steps that many coupled (or
    uncoupled) trajectories together (:mod:`ctd_lib.task_distance.batched`; in float32 the numbers agree with
    one at a time to round-off, so the batch size is part of the cache key).
    """
    for m in methods:
        check_choice("methods", m, METHODS)
    check_choice("model", model, MODEL_NAMES)
    base: dict = {"study": asdict(bank.cfg), "model": model, "code": code_fingerprint()}
    out = {}
    for m in TRAINED_METHODS:
        if m in methods:
            params: dict = {**base, "coupled": coupled.to_dict()} if m != "fine-tuning" else base
            if m == "coupled":
                params = {**params, "equal_footing": equal_footing}
            batch = batch_pairs if m != "fine-tuning" else 1
            if batch > 1:
                params = {**params, "batch_pairs": batch}
            out[m] = distance_matrix(names, pair_job(bank, names, m, model, coupled, equal_footing=equal_footing),
                                     method=f"{m}-{model}", params=params, cache_dir=cache_dir, executor=executor,
                                     include_diagonal=self_distances, batch_size=batch)
    if "task2vec" in methods or "w2-feature" in methods:
        probe = _probe(bank, model)
    if "task2vec" in methods:
        t2v = Task2VecConfig(n_samples=bank.cfg.task2vec_samples, seed=bank.cfg.seed)
        emb = {n: task2vec_embedding(probe, bank.task(n), t2v) for n in names}
        out["task2vec"] = distance_matrix(names, lambda s, t: task2vec_distance(emb[s], emb[t]), method="task2vec",
                                          params=base)
    if "w2-pixel" in methods or "w2-feature" in methods:
        k = bank.cfg.w2_samples

        def sub(n):
            x = bank.task(n).x
            g = torch.Generator().manual_seed(bank.cfg.seed)
            return x[torch.randperm(x.shape[0], generator=g)[:k]]

        if "w2-pixel" in methods:
            px = {n: sub(n).reshape(min(k, bank.task(n).x.shape[0]), -1).cpu().double().numpy() for n in names}
            out["w2-pixel"] = distance_matrix(names, lambda s, t: wasserstein2(px[s], px[t]), method="w2-pixel",
                                              params=base)
        if "w2-feature" in methods:
            fx = {n: penultimate_features(probe, sub(n)) for n in names}
            out["w2-feature"] = distance_matrix(names, lambda s, t: wasserstein2(fx[s], fx[t]), method="w2-feature",
                                                params=base)
    return out


@dataclass(frozen=True)
class Variant:
    name: str  # what changes
    coupled: float
    coupled_per_sample: float
    uncoupled: float
    per_iteration: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.coupled / self.uncoupled


def ingredient_study(bank: TaskBank, source: str, target: str, *, model: str, base: CoupledConfig,
                     variants: dict) -> list:
    """Coupled against uncoupled distance for one pair, changing one ingredient at a time.

    ``variants`` maps a label to a dict of :class:`~ctd_lib.task_distance.coupled.CoupledConfig`
    fields to change (the empty dict is the base configuration).
    """
    out = []
    src, tgt = bank.task(source), bank.task(target)
    sm = bank.source_model(source, model)
    unc_cache: dict = {}
    for label, changes in variants.items():
        cfg = replace(base, **changes)
        c = coupled_transfer_distance(src, tgt, sm, cfg)
        # the uncoupled process ignores the coupling's settings: share it between variants that only change those
        key = tuple(getattr(cfg, f) for f in COUPLED_FIELDS if f not in ("interpolation", "block_sampling", "reg",
                                                                        "prox_lam", "prox_growth", "outer_iters", "tol"))
        if key not in unc_cache:
            unc_cache[key] = uncoupled_transfer_distance(src, tgt, sm, cfg).distance
        other = c.per_iteration_other[-1]
        out.append(Variant(label, c.distance, other, unc_cache[key], list(c.per_iteration)))
    return out


def seed_spread(bank_fn, source: str, target: str, *, model: str, base: CoupledConfig, seeds: Sequence[int]) -> dict:
    """Coupled and uncoupled distance of one pair over several seeds (data subsets, models and sampling)."""
    rows: dict[str, list] = {"coupled": [], "uncoupled": []}
    for s in seeds:
        bank = bank_fn(s)
        cfg = replace(base, seed=s)
        sm = bank.source_model(source, model)
        rows["coupled"].append(coupled_transfer_distance(bank.task(source), bank.task(target), sm, cfg).distance)
        rows["uncoupled"].append(uncoupled_transfer_distance(bank.task(source), bank.task(target), sm, cfg).distance)
    return {k: np.asarray(v) for k, v in rows.items()}


STUDY_KINDS = ("coupled", "uncoupled", "self")


@dataclass(frozen=True)
class LengthStudy:
    r"""What the length measures: one pair's length against the checkpoint spacing and the number of steps.

    For each kind (``"coupled"``: the first outer iteration, on :math:`\Gamma^0`; ``"uncoupled"``; ``"self"``:
    the source task coupled to itself) and each trajectory length ``T`` of ``steps``, the polyline length on
    one fixed set of held-out inputs through ``chords[T]`` chords (``chords = T`` is the per-step length on
    those inputs), the per-step length on each step's own mini-batch, and the chapter's estimator.
    """

    kinds: tuple
    steps: tuple
    chords: dict  # T -> (n,) chord counts, increasing, the last = T
    polyline: dict  # "kind/T" -> (n,) manifold lengths on the held-out inputs, one per chord count
    per_step_batch: dict  # "kind/T" -> per-step length on the mini-batches (manifold)
    reported: dict  # "kind/T" -> the chapter's estimator (manifold)
    coarse_chords: int  # the chapter's length_checkpoints: the spacing whose length "survives"

    def split(self, kind: str, steps: int) -> tuple[float, float]:
        """(survives, noise): the polyline at ``coarse_chords`` chords, and what the per-step length adds to it."""
        ch = self.chords[steps]
        line = self.polyline[f"{kind}/{steps}"]
        survives = float(np.interp(min(self.coarse_chords, steps), ch, line))
        return survives, float(line[-1] - survives)


def length_study(config: CoupledDistanceConfig, bank: TaskBank) -> LengthStudy:
    """:class:`LengthStudy` on ``ingredient_pair`` for ``study_steps`` (one trajectory per kind and length)."""
    source, target = config.ingredient_pair
    src, tgt, sv, tv = bank.task(source), bank.task(target), bank.task(source, "test"), bank.task(target, "test")
    sm = bank.source_model(source, config.model)
    base = config.coupled()
    x = held_out_inputs(sv, tv, config.length_samples, config.seed)
    plans = {"coupled": initial_coupling(sm, src, tgt, base), "self": initial_coupling(sm, src, src, base)}
    chords, poly, batch, rep = {}, {}, {}, {}
    for T in config.study_steps:
        ch = sorted({c for c in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if c < T} | {T})
        chords[T] = np.asarray(ch)
        cfg = replace(base, steps=T, length_checkpoints=min(base.length_checkpoints, T), outer_iters=1)
        for kind in STUDY_KINDS:
            tgt_k = src if kind == "self" else tgt
            how = "mixture" if kind == "uncoupled" else cfg.interpolation
            _, log = run_trajectory(sm, src, tgt_k, cfg, kind=how, plan=plans.get(kind),
                                    val=(sv, sv if kind == "self" else tv, None), seed=config.seed + 1,
                                    desc=f"length study {kind} T={T}", record_inputs=x)
            assert log.recorded_logits is not None
            key = f"{kind}/{T}"
            poly[key] = np.asarray([polyline_from_logits(log.recorded_logits, c).manifold for c in ch])
            batch[key] = log.per_step_length.manifold
            rep[key] = log.length.manifold
    return LengthStudy(kinds=STUDY_KINDS, steps=tuple(config.study_steps), chords=chords, polyline=poly,
                       per_step_batch=batch, reported=rep, coarse_chords=config.length_checkpoints)


# ----------------------------------------------------------------------------
# the chapter: configuration, steps, result, metrics and claims
# ----------------------------------------------------------------------------

def _check_tasks(name: str, tasks, *, at_least: int = 2, exactly: int | None = None) -> tuple:
    """``tasks`` as a tuple of distinct registered task names, ``exactly`` or ``at_least`` many."""
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)):
        raise ValueError(f"{name}={tasks!r} is not valid; it must be a list of task names")
    if exactly is not None and len(tasks) != exactly:
        raise ValueError(f"{name} must list exactly {exactly} tasks; got {list(tasks)}")
    if len(tasks) < at_least:
        raise ValueError(f"{name} must list at least {at_least} tasks; got {list(tasks)}")
    for t in tasks:
        check_choice(name, t, sorted(TASKS))
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"{name}={list(tasks)!r} is not valid; a task may appear only once")
    return tuple(tasks)


@dataclass(frozen=True, kw_only=True)
class CoupledDistanceConfig:
    """Parameters of chapter 3 (the notebook's ``parameters`` cell, under its names), validated.

    Builds the :class:`StudyConfig` (:meth:`study`) and the
    :class:`~ctd_lib.task_distance.coupled.CoupledConfig` (:meth:`coupled`) from
    them. ``lr``, ``momentum``, ``weight_decay`` and ``schedule`` are the transfer
    trajectories'; the source models and the fine-tuning distance use plain SGD at
    ``source_lr`` and ``finetune_lr``. Task lists are stored as tuples. The
    defaults are the authors' settings (:data:`~ctd_lib.task_distance.coupled.AUTHORS_PRESET`)
    except where :func:`preset_differences` lists them.
    """

    nested_tasks: tuple = ("mnist10k-all", "mnist10k-0-4", "mnist10k-5-9", "mnist10k-0-2")  # Fig. 2 analogue
    disjoint_tasks: tuple = ("mnist10k-01", "mnist10k-23", "mnist10k-45", "mnist10k-67", "mnist10k-89")  # Fig. 3
    cross_domain: tuple = ("digits-all", "mnist10k-all")  # scikit-learn digits against MNIST
    capacity_tasks: tuple = ("mnist10k-01", "mnist10k-23", "mnist10k-45")  # disjoint tasks of Fig. 5 (large_model)
    model: str = "mlp"  # 784-256-10
    large_model: str = "mlp-wide"  # 784-1024-10, for the capacity comparison (Fig. 5)
    n_per_class: int = 60  # training images per class, per task
    n_val_per_class: int = 20  # held-out images per class, per task
    source_steps: int = 2000  # SGD steps training each source model (to a training loss near 0)
    source_lr: float = 0.05  # learning rate of the source models (plain SGD)
    steps: int = 300  # SGD steps of one transfer trajectory
    lr: float = 0.005  # learning rate of the transfer trajectories (Eq. 12c)
    momentum: float = 0.9  # their SGD momentum (the authors' 0.9)
    weight_decay: float = 5e-4  # their weight decay (the authors' 5e-4)
    batch_size: int = 20  # mini-batch of every SGD run (the authors' 20)
    schedule: str = "arcsine"  # tau over the steps: "arcsine" (the authors' code) or "linear"
    outer_iters: int = 3  # K, the alternations of Eq. (12)
    tol: float = 0.01  # stop early when the distance changes by less than this fraction
    block_size: int = 20  # largest block of the block-diagonal coupling (Sec. 3.4)
    block_sampling: str = "per_batch"  # each mini-batch inside one block (Sec. 3.4), or "per_sample"
    reg: float = 0.05  # entropic epsilon relative to each block's median cost
    prox_lam: float = 0.05  # the authors' lambda-tilde of Eq. (12a)
    prox_growth: float = 5.0  # g: lambda_k grows by this factor per outer iteration
    interpolation: str = "displacement"  # training samples: "displacement" (Eq. 12d) or "beta-mixup" (Sec. 3.4)
    convention: str = "manifold"  # expectation inside ("manifold") or outside ("per_sample") the root of Eq. (11)
    length_estimator: str = "checkpoints"  # the distance: a "checkpoints" polyline or "per_step" line elements
    length_checkpoints: int = 10  # chords of the polyline (and of the ground cost 12b)
    length_inputs: str = "interpolated"  # inputs of each chord: "interpolated", "held_out" or "batch"
    length_samples: int = 256  # inputs per chord ("interpolated", "held_out")
    finetune_lr: float = 0.05  # learning rate of the fine-tuning distance (plain SGD)
    finetune_steps: int = 200  # SGD steps of the fine-tuning distance (and of the Fig. 6 comparison)
    task2vec_samples: int = 200  # inputs per task for the diagonal Fisher of Task2Vec
    w2_samples: int = 200  # images per task in the W2 baselines
    ingredient_pair: tuple = ("mnist10k-01", "mnist10k-23")  # the pair of the ingredient, estimator and seed studies
    study_steps: tuple = (150, 300, 600)  # trajectory lengths of the estimator study ("What the length measures")
    vae_fisher: str = "decoder"  # which likelihood defines the Fisher metric of a VAE (Fig. 7a-b; the paper is silent)
    vae_steps: int = 200  # Adam steps of a VAE transfer (Fig. 7a-b)
    vae_source_steps: int = 300  # Adam steps training each source VAE
    seeds: tuple = (0, 1, 2)  # for the seed-to-seed spread of one pair
    permutations: int = 9999  # scikit-bio's Mantel test on symmetrised matrices
    seed: int = 0  # seeds data subsets, models and samplers
    device: str = "cpu"  # "cuda" for the paper scale on a GPU
    cache_dir: str | None = "../.cache/pairs"  # per-pair cache (None: no cache); an interrupted run resumes
    scheduler: str = ""  # where the pairs run: "" here, "local:N" N local workers, "tcp://host:port" a Dask scheduler
    batch_pairs: int = 1  # trajectories stepped together by the batched engine (1: one at a time, the reference)
    scale: str = "cpu"  # the scale the results are filed under

    def __post_init__(self):
        check_scheduler("scheduler", self.scheduler)
        check_positive("batch_pairs", self.batch_pairs, integer=True)
        # at least 3 tasks per family: the Mantel tests need them, and the Fig. 4a analogue transfers the
        # second nested task to the third
        object.__setattr__(self, "nested_tasks", _check_tasks("nested_tasks", self.nested_tasks, at_least=3))
        object.__setattr__(self, "disjoint_tasks", _check_tasks("disjoint_tasks", self.disjoint_tasks, at_least=3))
        object.__setattr__(self, "cross_domain", _check_tasks("cross_domain", self.cross_domain, exactly=2))
        object.__setattr__(self, "capacity_tasks", _check_tasks("capacity_tasks", self.capacity_tasks, at_least=2))
        if not set(self.capacity_tasks) <= set(self.disjoint_tasks):
            raise ValueError(f"capacity_tasks={list(self.capacity_tasks)!r} is not valid; every task must be one of "
                             f"disjoint_tasks {list(self.disjoint_tasks)} (the small model's distances are compared)")
        object.__setattr__(self, "ingredient_pair", _check_tasks("ingredient_pair", self.ingredient_pair, exactly=2))
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("large_model", self.large_model, MODEL_NAMES)
        for name in ("n_per_class", "n_val_per_class", "source_steps", "steps", "batch_size", "outer_iters",
                     "block_size", "length_checkpoints", "length_samples", "finetune_steps", "task2vec_samples",
                     "w2_samples", "permutations"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lr", "source_lr", "finetune_lr", "tol", "reg", "prox_growth"):
            check_positive(name, getattr(self, name))
        for name in ("prox_lam", "momentum", "weight_decay"):
            check_nonnegative(name, getattr(self, name))
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("block_sampling", self.block_sampling, BLOCK_SAMPLINGS)
        check_choice("length_estimator", self.length_estimator, LENGTH_ESTIMATORS)
        check_choice("length_inputs", self.length_inputs, LENGTH_INPUTS)
        if self.length_checkpoints > self.steps:
            raise ValueError(f"length_checkpoints={self.length_checkpoints!r} is not valid; it must be in "
                             f"[1, steps] = [1, {self.steps}]")
        check_choice("vae_fisher", self.vae_fisher, VAE_FISHERS)
        for name in ("vae_steps", "vae_source_steps"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("study_steps",):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)) or not v:
                raise ValueError(f"{name}={v!r} is not valid; it must list at least one number of steps (>= 2)")
            for t in v:
                check_positive(name, t, integer=True)
                if t < 2:
                    raise ValueError(f"{name}={list(v)!r} is not valid; every entry must be >= 2")
            object.__setattr__(self, name, tuple(v))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"seeds={self.seeds!r} is not valid; it must list at least one seed (integers >= 0)")
        for s in self.seeds:
            check_count("seeds", s)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        check_count("seed", self.seed)
        check_device("device", self.device)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ValueError(f"cache_dir={self.cache_dir!r} is not valid; it must be a folder path or None")
        if not isinstance(self.scale, str) or not self.scale:
            raise ValueError(f"scale={self.scale!r} is not valid; it must be a non-empty string")
        # the remaining rules (choices, steps >= 2, length_checkpoints <= steps) are CoupledConfig's, whose
        # fields carry the notebook's names; every ingredient variant must be valid too
        self.study()
        base = self.coupled()
        for label, changes in ingredient_variants(self).items():
            try:
                replace(base, **changes)
            except ValueError as err:
                raise ValueError(f"{err} (in the ingredient variant {label!r}, which sets {changes})") from None

    def study(self) -> StudyConfig:
        """Sizes and training settings of the source models and the baselines (``lr`` for both rates)."""
        return StudyConfig(n_per_class=self.n_per_class, n_val_per_class=self.n_val_per_class,
                           source_steps=self.source_steps, source_lr=self.source_lr, batch_size=self.batch_size,
                           finetune_steps=self.finetune_steps, finetune_lr=self.finetune_lr,
                           task2vec_samples=self.task2vec_samples, w2_samples=self.w2_samples, seed=self.seed)

    def coupled(self) -> CoupledConfig:
        """The coupled (and uncoupled) transfer process of Eq. (12)."""
        return CoupledConfig(**{f: getattr(self, f) for f in COUPLED_FIELDS})

    def vae(self) -> VAELengthConfig:
        """The VAE transfer of Fig. 7a-b (chords and inputs of its length as the chapter's)."""
        return VAELengthConfig(steps=self.vae_steps, source_steps=self.vae_source_steps, batch_size=self.batch_size,
                               checkpoints=min(self.length_checkpoints, self.vae_steps), samples=self.length_samples,
                               fisher=self.vae_fisher, seed=self.seed, device=self.device)

    def parameters(self) -> dict:
        """The plain dict recorded in the results' provenance (every field but ``cache_dir``; lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "cache_dir"}


#: The chapter's parameters that are fields of :class:`~ctd_lib.task_distance.coupled.CoupledConfig`, same names.
COUPLED_FIELDS = ("steps", "lr", "momentum", "weight_decay", "batch_size", "outer_iters", "tol", "block_size",
                  "block_sampling", "reg", "prox_lam", "prox_growth", "interpolation", "schedule", "convention",
                  "length_estimator", "length_checkpoints", "length_inputs", "length_samples", "seed", "device")


def preset_differences(config: CoupledDistanceConfig) -> dict:
    """Where ``config``'s transfer process differs from the authors' settings: field -> (ours, theirs)."""
    ours = config.coupled()
    return {k: (getattr(ours, k), v) for k, v in AUTHORS_PRESET.items() if getattr(ours, k) != v}


def ingredient_variants(config: CoupledDistanceConfig) -> dict:
    """The ingredient study's variants: a label and the :class:`CoupledConfig` fields it changes."""
    other = {"interpolation": ("beta-mixup", "displacement"), "block_sampling": ("per_sample", "per_batch"),
             "schedule": ("linear", "arcsine")}

    def flip(field: str) -> dict:
        a, b = other[field]
        return {field: a if getattr(config, field) == b else b}

    flips = {f"{field.replace('_', ' ')}: {next(iter(flip(field).values()))}": flip(field) for field in other}
    return {
        "base": {},
        **flips,
        "no proximal term": {"prox_lam": 0.0},
        "random blocks": {"block_match": "random"},
    }


def make_bank(config: CoupledDistanceConfig, seed: int | None = None) -> TaskBank:
    """The :class:`TaskBank` of ``config`` (of ``seed`` in place of ``config.seed`` when given).

    Without ``seed`` it also seeds torch's global generator and makes sure the
    embedded MNIST digits are on disk, as the chapter does before any work.
    """
    if seed is not None:
        return TaskBank(replace(config.study(), seed=seed), device=config.device)
    torch.manual_seed(config.seed)
    fetch_mnist10k()
    return TaskBank(config.study(), device=config.device)


def family_step(config: CoupledDistanceConfig, bank: TaskBank, family: str,
                executor: Executor | None = None) -> dict:
    """The distance matrices of one of the chapter's families, by method.

    ``"nested"`` (Fig. 2) and ``"disjoint"`` (Fig. 3): every method with ``model``;
    ``"large"`` (Fig. 5): coupled and fine-tuning on ``capacity_tasks`` with ``large_model``
    (no diagonal); ``"cross"``: the cross-domain pair, without the feature W2. The trained
    methods' pairs run on ``executor`` when given (the same numbers: see :class:`PairJob`).
    """
    check_choice("family", family, ("nested", "disjoint", "large", "cross"))
    ccfg = config.coupled()
    if family == "nested":
        return family_matrices(bank, list(config.nested_tasks), model=config.model, coupled=ccfg,
                               cache_dir=config.cache_dir, executor=executor, batch_pairs=config.batch_pairs)
    if family == "disjoint":
        return family_matrices(bank, list(config.disjoint_tasks), model=config.model, coupled=ccfg,
                               cache_dir=config.cache_dir, executor=executor, equal_footing=True,
                               batch_pairs=config.batch_pairs)
    if family == "large":
        return family_matrices(bank, list(config.capacity_tasks), model=config.large_model, coupled=ccfg,
                               methods=("coupled", "fine-tuning"), cache_dir=config.cache_dir, executor=executor,
                               self_distances=False, batch_pairs=config.batch_pairs)
    return family_matrices(bank, list(config.cross_domain), model=config.model, coupled=ccfg,
                           methods=("coupled", "uncoupled", "fine-tuning", "task2vec", "w2-pixel"),
                           cache_dir=config.cache_dir, executor=executor, batch_pairs=config.batch_pairs)


def entry(D: DistanceMatrix, source: str, target: str) -> float:
    """:math:`d(\\text{source}, \\text{target})` from a distance matrix (rows are sources)."""
    return D.values[D.names.index(source), D.names.index(target)]


def subset_pairs(names: Sequence[str]) -> list:
    """(superset, subset) pairs of task names on the same dataset, from the registry's class lists."""
    out = []
    for a in names:
        for b in names:
            ca, cb = set(TASKS[a].classes), set(TASKS[b].classes)
            if a != b and TASKS[a].dataset == TASKS[b].dataset and cb < ca:
                out.append((a, b))
    return out


@dataclass(frozen=True)
class SubsetRow:
    """Transfer between a task and one of its subsets (Sec. 5.4, Fig. 2)."""

    method: str
    superset: str
    subset: str
    to_subset: float  # d(superset, subset)
    from_subset: float  # d(subset, superset)


def subset_comparison(family: dict, methods: Sequence[str] = ("coupled", "uncoupled", "fine-tuning")) -> tuple:
    """A :class:`SubsetRow` per (superset, subset) pair of the family's tasks and per method."""
    names = family[methods[0]].names
    return tuple(SubsetRow(m, sup, sub, entry(family[m], sup, sub), entry(family[m], sub, sup))
                 for sup, sub in subset_pairs(names) for m in methods)


def mantel_table(family: dict, *, permutations: int, seed: int, reference: str = "fine-tuning") -> dict:
    r"""Every method of ``family`` against ``reference`` by two Mantel tests (Sec. 5.3).

    ``asymmetric``: the exact permutation test over the ordered pairs
    :math:`i \ne j`, all :math:`n!` relabellings of the tasks (rows and columns
    together); ``symmetrized``: scikit-bio on :math:`(D + D^\top)/2`, with
    ``permutations`` random relabellings. Returns method -> :class:`DistanceComparison`.
    """
    rows = {}
    ref = family[reference].values
    for m, D in family.items():
        if m == reference:
            continue
        rows[m] = DistanceComparison(
            asymmetric=mantel_asymmetric(D.values, ref, seed=seed),  # exact: all n! relabellings
            symmetrized=mantel_symmetric(symmetrize(D.values), symmetrize(ref), permutations=permutations,
                                         seed=seed),
            how="mean",
        )
    return rows


@dataclass(frozen=True)
class IngredientStudy:
    """Coupled against uncoupled on one pair, one ingredient changed at a time, and the pair's source to itself."""

    variants: tuple  # of Variant, the base configuration first
    self_pair: Variant  # the source task transferred to itself, base configuration

    @property
    def best(self) -> Variant:
        """The variant with the smallest ratio coupled / uncoupled."""
        return min(self.variants, key=lambda v: v.ratio)


def ingredient_step(config: CoupledDistanceConfig, bank: TaskBank) -> IngredientStudy:
    """:func:`ingredient_study` over :func:`ingredient_variants` on ``ingredient_pair``, and the self-distance."""
    source, target = config.ingredient_pair
    base = config.coupled()
    ingr = ingredient_study(bank, source, target, model=config.model, base=base, variants=ingredient_variants(config))
    self_pair = ingredient_study(bank, source, source, model=config.model, base=base,
                                 variants={"same task": {}})[0]
    return IngredientStudy(variants=tuple(ingr), self_pair=self_pair)


@dataclass(frozen=True)
class Convergence:
    """The coupled distance per outer iteration for every ordered pair (Fig. 4b)."""

    per_iteration: tuple  # of (K_pair,) arrays, one per ordered pair
    max_rel_change: float  # max over pairs of |d_K - d_{K-1}| / d_{K-1}; nan if no pair has two iterations


def convergence(coupled: DistanceMatrix) -> Convergence:
    r"""Relative change of the distance between the last two outer iterations, :math:`|d_K - d_{K-1}|/d_{K-1}`."""
    curves, rel_changes = [], []
    for (s, t), ex in coupled.extras.items():
        if s == t:
            continue
        per = np.asarray(ex["per_iteration"])
        curves.append(per)
        if len(per) > 1:
            rel_changes.append(abs(per[-1] - per[-2]) / per[-2])
    return Convergence(per_iteration=tuple(curves),
                       max_rel_change=float(max(rel_changes)) if rel_changes else float("nan"))


@dataclass(frozen=True)
class TargetComparison:
    """Held-out loss and accuracy on the target after coupled transfer and after fine-tuning (Fig. 6).

    ``*_coupled``: the coupled endpoint fine-tuned exactly as the baseline (the same number of updates on
    pure target data: the equal footing); ``*_endpoint``: the coupled endpoint itself.
    """

    labels: tuple  # "ab>cd" per ordered pair
    acc_coupled: np.ndarray  # (n_pairs,)
    acc_finetune: np.ndarray  # (n_pairs,)
    loss_coupled: np.ndarray  # (n_pairs,)
    loss_finetune: np.ndarray  # (n_pairs,)
    acc_endpoint: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_pairs,)
    loss_endpoint: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_pairs,)

    @property
    def n_loss_better(self) -> int:
        """Pairs where coupled transfer ends with the lower held-out loss."""
        return int((self.loss_coupled < self.loss_finetune).sum())


def target_comparison(family: dict) -> TargetComparison:
    """:class:`TargetComparison` from the extras of a family's coupled and fine-tuning matrices."""
    labels, acc_c, acc_f, loss_c, loss_f, acc_e, loss_e = [], [], [], [], [], [], []
    for (s, t), ex in family["coupled"].extras.items():
        if s == t:
            continue
        ft = family["fine-tuning"].extras[(s, t)]
        labels.append(f"{s[-2:]}>{t[-2:]}")
        if "target_val_acc" not in ex:
            raise ValueError("the coupled matrix was computed without equal_footing=True: no fine-tuned endpoint")
        acc_c.append(ex["target_val_acc"])
        acc_f.append(ft["target_val_acc"])
        loss_c.append(ex["target_val_loss"])
        loss_f.append(ft["target_val_loss"])
        acc_e.append(ex["endpoint_val_acc"])
        loss_e.append(ex["endpoint_val_loss"])
    return TargetComparison(tuple(labels), np.asarray(acc_c), np.asarray(acc_f), np.asarray(loss_c),
                            np.asarray(loss_f), np.asarray(acc_e), np.asarray(loss_e))


@dataclass(frozen=True)
class SeedSpread:
    """Coupled and uncoupled distance of one pair, one entry per seed."""

    coupled: np.ndarray  # (n_seeds,)
    uncoupled: np.ndarray  # (n_seeds,)

    def sd(self, which: str) -> float:
        """Sample standard deviation over seeds (ddof 1) of ``"coupled"`` or ``"uncoupled"``; nan for one seed."""
        v = getattr(self, check_choice("which", which, ("coupled", "uncoupled")))
        return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def seed_step(config: CoupledDistanceConfig) -> SeedSpread:
    """:func:`seed_spread` of ``ingredient_pair`` over ``seeds`` (a fresh :class:`TaskBank` per seed)."""
    spread = seed_spread(lambda s: make_bank(config, seed=s), *config.ingredient_pair, model=config.model,
                         base=config.coupled(), seeds=config.seeds)
    return SeedSpread(coupled=spread["coupled"], uncoupled=spread["uncoupled"])


VAE_KINDS = ("mixture", "fine-tuning")
INPUT_SPACE = ("vae-mixture", "vae-fine-tuning", "w2-pixel", "w2-feature")  # the four panels of Fig. 7


def vae_step(config: CoupledDistanceConfig, bank: TaskBank, executor: Executor | None = None) -> dict:
    """Fig. 7a-b: the VAE's Fisher-Rao trajectory length between the disjoint tasks, by the mixture
    interpolation (``"vae-mixture"``) and by fine-tuning on the target (``"vae-fine-tuning"``), with the
    diagonal (a task to itself) computed. See :mod:`ctd_lib.task_distance.vae_length`."""
    names = list(config.disjoint_tasks)
    vcfg = config.vae()
    tasks = {n: replace(bank.task(n), x=bank.task(n).x.cpu(), y=bank.task(n).y.cpu()) for n in names}
    job = VAEPairJob.from_tasks(tasks, vcfg)
    params = {"study": asdict(bank.cfg), "vae": asdict(vcfg), "code": code_fingerprint()}
    return {f"vae-{k}": distance_matrix(names, replace(job, kind=k), method=f"vae-{k}", params=params,
                                        cache_dir=config.cache_dir, executor=executor, include_diagonal=True)
            for k in VAE_KINDS}


@dataclass(frozen=True)
class InputSpaceComparison:
    """Fig. 7: the four input-space distances, each against fine-tuning and against each other (exact Mantel)."""

    against_finetuning: dict  # name -> MantelResult
    pairwise: dict  # "a|b" -> MantelResult, a before b in INPUT_SPACE

    def agree_with_each_other(self, alpha: float = 0.08, skip: str = "vae-mixture") -> bool:
        """The paper's reading: r > 0 and p < ``alpha`` for every pair not involving ``skip``."""
        return all(m.normalized_r > 0 and m.p_value < alpha for k, m in self.pairwise.items()
                   if skip not in k.split("|"))


def input_space_comparison(matrices: dict, finetuning: DistanceMatrix, *, seed: int) -> InputSpaceComparison:
    """:class:`InputSpaceComparison` over ``matrices`` (name -> DistanceMatrix, the names of INPUT_SPACE)."""
    names = [n for n in INPUT_SPACE if n in matrices]
    vs_ft = {n: mantel_asymmetric(matrices[n].values, finetuning.values, seed=seed) for n in names}
    pairwise = {f"{a}|{b}": mantel_asymmetric(matrices[a].values, matrices[b].values, seed=seed)
                for i, a in enumerate(names) for b in names[i + 1:]}
    return InputSpaceComparison(against_finetuning=vs_ft, pairwise=pairwise)


def rank_agreement(family: dict, reference: str = "fine-tuning") -> dict:
    """Method -> :class:`~ctd_lib.task_distance.stats.RowRankAgreement` (weighted Kendall tau per source row)."""
    return {m: weighted_tau_rows(D.values, family[reference].values) for m, D in family.items() if m != reference}


def self_floor(D: DistanceMatrix) -> float:
    """Mean of the diagonal :math:`d(T, T)`: the length of the process from a task to itself (nan if not computed)."""
    diag = np.diag(D.values)
    keys = [(n, n) for n in D.names]
    return float(diag.mean()) if all(k in D.extras for k in keys) else float("nan")


def per_step_matrix(D: DistanceMatrix) -> np.ndarray:
    """The same pairs under the per-step estimator on the mini-batches (``extras["per_step_distance"]``)."""
    out = np.zeros_like(D.values)
    for (s, t), ex in D.extras.items():
        out[D.names.index(s), D.names.index(t)] = ex["per_step_distance"]
    return out


def _off(values: np.ndarray) -> np.ndarray:
    return values[~np.eye(values.shape[0], dtype=bool)]


def relative_asymmetry(D: DistanceMatrix) -> float:
    r"""Mean over pairs :math:`i < j` of :math:`|d_{ij} - d_{ji}| / \tfrac12 (d_{ij} + d_{ji})` (Remark 3)."""
    v = D.values
    iu = np.triu_indices(len(D.names), 1)
    return float(np.mean(np.abs(v[iu] - v.T[iu]) / ((v[iu] + v.T[iu]) / 2)))


@dataclass(frozen=True)
class CoupledDistanceResult:
    """Everything chapter 3 computes; the families map a method to its :class:`DistanceMatrix`."""

    config: CoupledDistanceConfig
    nested: dict  # Fig. 2 analogue, every method
    disjoint: dict  # Fig. 3 analogue, every method
    large: dict  # ``capacity_tasks`` with ``large_model`` (Fig. 5): coupled, fine-tuning
    cross: dict  # the cross-domain pair
    subset: tuple  # of SubsetRow, from the nested family
    mantel_disjoint: dict  # method -> DistanceComparison against fine-tuning
    mantel_nested: dict  # method -> DistanceComparison against fine-tuning
    ingredients: IngredientStudy
    convergence: Convergence  # of the disjoint family's coupled distance
    target: TargetComparison  # of the disjoint family
    spread: SeedSpread
    study: LengthStudy  # what the length measures
    vae: dict  # Fig. 7a-b: "vae-mixture", "vae-fine-tuning" -> DistanceMatrix on the disjoint tasks
    input_space: InputSpaceComparison  # Fig. 7, the four panels
    rank_disjoint: dict  # method -> RowRankAgreement against fine-tuning
    rank_nested: dict

    @property
    def margin(self) -> float:
        """Twice the seed-to-seed sd of a difference of two coupled distances (0 with one seed): the noise margin."""
        sd = self.spread.sd("coupled")
        return 2.0 * math.sqrt(2.0) * sd if np.isfinite(sd) else 0.0

    @property
    def margin_cu(self) -> float:
        """Twice the seed-to-seed sd of coupled minus uncoupled (0 with one seed)."""
        sc, su = self.spread.sd("coupled"), self.spread.sd("uncoupled")
        return 2.0 * math.sqrt(sc ** 2 + su ** 2) if np.isfinite(sc) and np.isfinite(su) else 0.0

    @property
    def n_shorter_resolved(self) -> int:
        """Ordered pairs where the coupled distance is below the uncoupled one by more than :attr:`margin_cu`."""
        return int((self.coupled_all < self.uncoupled_all - self.margin_cu).sum())

    @property
    def n_shorter_per_step(self) -> int:
        """:attr:`n_shorter` under the per-step estimator on the mini-batches."""
        c = np.concatenate([_off(per_step_matrix(self.nested["coupled"])), _off(per_step_matrix(self.disjoint["coupled"]))])
        u = np.concatenate([_off(per_step_matrix(self.nested["uncoupled"])),
                            _off(per_step_matrix(self.disjoint["uncoupled"]))])
        return int((c < u).sum())

    @property
    def coupled_all(self) -> np.ndarray:
        """Coupled distances of every ordered pair, nested then disjoint."""
        return np.concatenate([self.nested["coupled"].off_diagonal(), self.disjoint["coupled"].off_diagonal()])

    @property
    def uncoupled_all(self) -> np.ndarray:
        """Uncoupled distances of the same pairs, in the same order."""
        return np.concatenate([self.nested["uncoupled"].off_diagonal(), self.disjoint["uncoupled"].off_diagonal()])

    @property
    def n_shorter(self) -> int:
        """Ordered pairs where the coupled distance is below the uncoupled one (Remark 1)."""
        return int((self.coupled_all < self.uncoupled_all).sum())

    def capacity(self, per_step: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(small, large): coupled distances of the ordered pairs of ``capacity_tasks`` with ``model`` and with
        ``large_model``, aligned (per-step estimator with ``per_step``)."""
        L = self.large["coupled"]
        S = self.disjoint["coupled"]
        idx = [S.names.index(n) for n in L.names]
        small = (per_step_matrix(S) if per_step else S.values)[np.ix_(idx, idx)]
        return _off(small), _off(per_step_matrix(L) if per_step else L.values)

    @property
    def n_large_shorter(self) -> int:
        """Ordered pairs of ``capacity_tasks`` where ``large_model`` gives the shorter coupled distance (Fig. 5)."""
        small, large = self.capacity()
        return int((large < small).sum())

    @property
    def n_large_shorter_resolved(self) -> int:
        """Pairs where ``large_model`` is shorter by more than :attr:`margin`."""
        small, large = self.capacity()
        return int((large < small - self.margin).sum())

    @property
    def n_large_shorter_per_step(self) -> int:
        small, large = self.capacity(per_step=True)
        return int((large < small).sum())

    @property
    def n_large_pairs(self) -> int:
        return len(self.large["coupled"].off_diagonal())

    @property
    def asymmetry(self) -> float:
        """:func:`relative_asymmetry` of the disjoint family's coupled distance."""
        return relative_asymmetry(self.disjoint["coupled"])


def metrics(result: CoupledDistanceResult) -> dict:
    """The chapter's metrics, under the keys of its results file."""
    r, cfg = result, result.config
    spread = r.spread
    coupled_all, uncoupled_all = r.coupled_all, r.uncoupled_all
    ingr, self_pair = r.ingredients.variants, r.ingredients.self_pair
    families = (("nested", r.nested), ("disjoint", r.disjoint), ("large", r.large), ("cross", r.cross))
    study = r.study
    return {
        "length_estimator": cfg.length_estimator, "length_inputs": cfg.length_inputs,
        "length_checkpoints": cfg.length_checkpoints,
        "preset_differences": {k: list(v) for k, v in preset_differences(cfg).items()},
        "coupled_shorter_fraction": r.n_shorter / len(coupled_all),
        "coupled_shorter_resolved_fraction": r.n_shorter_resolved / len(coupled_all),
        "coupled_shorter_fraction_per_step": r.n_shorter_per_step / len(coupled_all),
        "noise_margin_coupled_difference": r.margin, "noise_margin_coupled_minus_uncoupled": r.margin_cu,
        "mean_coupled_over_uncoupled": float(np.mean(coupled_all / uncoupled_all)),
        "asymmetry_disjoint": r.asymmetry,
        "max_rel_change_last_iteration": r.convergence.max_rel_change,
        "large_model_shorter_fraction": r.n_large_shorter / r.n_large_pairs,
        "large_model_shorter_fraction_per_step": r.n_large_shorter_per_step / r.n_large_pairs,
        "coupled_loss_better_than_finetune_fraction": r.target.n_loss_better / len(r.target.loss_coupled),
        "coupled_endpoint_loss_better_fraction": float(np.mean(r.target.loss_endpoint < r.target.loss_finetune)),
        "seed_mean_coupled": float(spread.coupled.mean()), "seed_sd_coupled": spread.sd("coupled"),
        "seed_mean_uncoupled": float(spread.uncoupled.mean()),
        "seed_sd_uncoupled": spread.sd("uncoupled"),
        "self_distance_coupled": self_pair.coupled, "self_distance_uncoupled": self_pair.uncoupled,
        **{f"self_distance_mean[{fam}_{m}]": self_floor(D) for fam, f in families for m, D in f.items()
           if m in TRAINED_METHODS and np.isfinite(self_floor(D))},
        **{f"self_distance_mean[disjoint_{m}]": self_floor(D) for m, D in r.vae.items()},
        **{f"ingredient_ratio[{v.name}]": v.ratio for v in ingr},
        **{f"mantel_r_disjoint_{m}": c.asymmetric.normalized_r for m, c in r.mantel_disjoint.items()},
        **{f"mantel_p_disjoint_{m}": c.asymmetric.p_value for m, c in r.mantel_disjoint.items()},
        **{f"mantel_r_nested_{m}": c.asymmetric.normalized_r for m, c in r.mantel_nested.items()},
        **{f"mantel_p_nested_{m}": c.asymmetric.p_value for m, c in r.mantel_nested.items()},
        **{f"weighted_tau_disjoint_{m}": a.mean for m, a in r.rank_disjoint.items()},
        **{f"weighted_tau_nested_{m}": a.mean for m, a in r.rank_nested.items()},
        **{f"fig7_mantel_r_vs_finetuning[{n}]": m.normalized_r for n, m in r.input_space.against_finetuning.items()},
        **{f"fig7_mantel_p_vs_finetuning[{n}]": m.p_value for n, m in r.input_space.against_finetuning.items()},
        **{f"fig7_mantel_r[{k}]": m.normalized_r for k, m in r.input_space.pairwise.items()},
        **{f"fig7_mantel_p[{k}]": m.p_value for k, m in r.input_space.pairwise.items()},
        **{f"matrix_{fam}_{m}": D.values for fam, f in families for m, D in f.items()},
        **{f"matrix_disjoint_{m}": D.values for m, D in r.vae.items()},
        **{f"matrix_per_step_{fam}_{m}": per_step_matrix(f[m]) for fam, f in families
           for m in ("coupled", "uncoupled") if m in f},
        **{f"length_study_chords[{T}]": study.chords[T] for T in study.steps},
        **{f"length_study_polyline[{k}]": v for k, v in study.polyline.items()},
        **{f"length_study_per_step_batch[{k}]": v for k, v in study.per_step_batch.items()},
        **{f"length_survives[{kind}]": study.split(kind, cfg.steps)[0] for kind in study.kinds
           if cfg.steps in study.steps},
        **{f"length_noise[{kind}]": study.split(kind, cfg.steps)[1] for kind in study.kinds
           if cfg.steps in study.steps},
    }


def _count(cond) -> int:
    return int(np.sum(cond))


def claims(result: CoupledDistanceResult) -> list:
    """The chapter's claims (Remarks 1 and 3, Sec. 5.3-5.5 of Seed 000), each with its verdict and evidence.

    A claim that compares two distances holds only where the difference exceeds the noise margin (twice
    the seed-to-seed standard deviation of the difference; zero with a single seed); the evidence also
    gives the self-distance floor and the per-step estimator's count beside.
    """
    r, cfg = result, result.config
    n_shorter, n_pairs = r.n_shorter, len(r.coupled_all)
    asym = r.asymmetry
    many_seeds = len(cfg.seeds) > 1
    spread_sd, spread_mean = r.spread.sd("coupled"), r.spread.coupled.mean()
    subset_coupled = [row for row in r.subset if row.method == "coupled"]
    ps_nested = per_step_matrix(r.nested["coupled"])
    names = r.nested["coupled"].names
    subset_per_step = _count([ps_nested[names.index(row.superset), names.index(row.subset)]
                              < ps_nested[names.index(row.subset), names.index(row.superset)] for row in subset_coupled])
    max_rel_change = r.convergence.max_rel_change
    mc = r.mantel_disjoint["coupled"].asymmetric
    mc_ps = mantel_asymmetric(per_step_matrix(r.disjoint["coupled"]), r.disjoint["fine-tuning"].values, seed=cfg.seed)
    floor_c = self_floor(r.disjoint["coupled"])
    floor_u = self_floor(r.disjoint["uncoupled"])
    margin = f"noise margin {r.margin_cu:.3f}" if many_seeds else "one seed: no noise margin"
    fig7 = r.input_space
    vs_ft_ok = all(m.p_value >= 0.05 for m in fig7.against_finetuning.values())
    return [
        Claim(id="coupled_shorter_than_uncoupled",
              statement="The coupled distance is below the uncoupled one for every pair",
              source="Seed 000, Remark 1, Figs. 2-3", holds=bool(r.n_shorter_resolved == n_pairs),
              evidence=f"shorter for {n_shorter} of {n_pairs} ordered pairs (nested and disjoint MNIST tasks), by "
                       f"more than the {margin} for {r.n_shorter_resolved}; self-distance floor (disjoint tasks) "
                       f"coupled {floor_c:.2f}, uncoupled {floor_u:.2f}; per-step estimator on the mini-batches: "
                       f"shorter for {r.n_shorter_per_step} of {n_pairs}"),
        Claim(id="coupled_asymmetric", statement="The coupled distance is asymmetric",
              source="Seed 000, Remark 3", holds=bool(asym > 2 * (spread_sd / spread_mean if many_seeds else 0)),
              evidence=f"mean |d(a,b) - d(b,a)| / mean = {asym:.1%} on the disjoint tasks, against a seed-to-seed "
                       f"coefficient of variation of {spread_sd / spread_mean:.1%} (asymmetry must exceed twice it)"),
        Claim(id="subset_easier", statement="Transfer to a subset is shorter than from it",
              source="Seed 000, Sec. 5.4 (Fig. 2)",
              holds=bool(all(row.to_subset < row.from_subset - r.margin for row in subset_coupled)),
              evidence="; ".join(f"{row.superset}>{row.subset} {row.to_subset:.2f} vs "
                                 f"{row.subset}>{row.superset} {row.from_subset:.2f}" for row in subset_coupled)
                       + f" (noise margin {r.margin:.2f}); per-step estimator: shorter to the subset for "
                         f"{subset_per_step} of {len(subset_coupled)}"),
        Claim(id="converges_in_few_iterations", statement="The distance converges within about 5 outer iterations",
              source="Seed 000, Sec. 5.5 (Fig. 4b)", holds=bool(max_rel_change < 0.05),
              evidence=f"largest relative change between the last two of K={cfg.outer_iters} iterations: "
                       f"{max_rel_change:.1%} (tolerance 5%)"),
        Claim(id="larger_model_shorter", statement="A larger model gives shorter coupled distances",
              source="Seed 000, Sec. 5.5 (Fig. 5)", holds=bool(r.n_large_shorter_resolved == r.n_large_pairs),
              evidence=f"{cfg.large_model} shorter than {cfg.model} for {r.n_large_shorter} of {r.n_large_pairs} "
                       f"ordered pairs, by more than the noise margin {r.margin:.2f} for {r.n_large_shorter_resolved}; "
                       f"per-step estimator: {r.n_large_shorter_per_step} of {r.n_large_pairs}"),
        Claim(id="mantel_coupled_vs_finetuning",
              statement="Coupled distances correlate with fine-tuning distances (Mantel)",
              source="Seed 000, Sec. 5.3 (Figs. 2-3)", holds=bool(mc.normalized_r > 0 and mc.p_value < 0.05),
              evidence=f"disjoint tasks: r = {mc.normalized_r:.3f}, exact p = {mc.p_value:.3f} over {mc.permutations} "
                       f"relabellings; symmetrised scikit-bio p = "
                       f"{r.mantel_disjoint['coupled'].symmetrized.p_value:.3f}; weighted Kendall tau per source "
                       f"row {r.rank_disjoint['coupled'].mean:.2f}; per-step estimator: r = {mc_ps.normalized_r:.3f}, "
                       f"p = {mc_ps.p_value:.3f}"),
        Claim(id="input_space_distances_not_finetuning",
              statement="Input-space distances (VAE, W2) agree with each other but not with fine-tuning",
              source="Seed 000, Sec. 5.5 (Fig. 7)", holds=bool(fig7.agree_with_each_other() and vs_ft_ok),
              evidence="against fine-tuning: " + ", ".join(
                  f"{n} r = {m.normalized_r:.2f} (p = {m.p_value:.2f})" for n, m in fig7.against_finetuning.items())
                       + "; with each other: " + ", ".join(
                  f"{k.replace('|', ' & ')} r = {m.normalized_r:.2f} (p = {m.p_value:.2f})"
                  for k, m in fig7.pairwise.items())
                       + " (the paper: r about 0.15, p < 0.08 for every pair but those with the mixture VAE)"),
    ]


FAMILIES = ("nested", "disjoint", "large", "cross")


def run_chapter(config: CoupledDistanceConfig, executor: Executor | None = None, *,
                report=None) -> CoupledDistanceResult:
    """Every computation of chapter 3, in the notebook's order, into one :class:`CoupledDistanceResult`.

    The notebook calls the same steps one cell at a time (with its figures between them); this is the
    same sequence without Jupyter, for :mod:`ctd_lib.experiments.task_distances` (the paper-scale entry
    point). ``report`` (e.g. ``print``) is told each step's name as it starts.
    """
    say = report or (lambda _msg: None)
    bank = make_bank(config)
    say("what the length measures")
    study = length_study(config, bank)
    say("nested family (Fig. 2)")
    nested = family_step(config, bank, "nested", executor=executor)
    subset = subset_comparison(nested)
    say("disjoint family (Fig. 3)")
    disjoint = family_step(config, bank, "disjoint", executor=executor)
    mantel_disjoint = mantel_table(disjoint, permutations=config.permutations, seed=config.seed)
    mantel_nested = mantel_table(nested, permutations=config.permutations, seed=config.seed)
    say("ingredients")
    ingredients = ingredient_step(config, bank)
    conv = convergence(disjoint["coupled"])
    say("capacity (Fig. 5)")
    large = family_step(config, bank, "large", executor=executor)
    say("across input domains")
    cross = family_step(config, bank, "cross", executor=executor)
    target = target_comparison(disjoint)
    say("input-space distances (Fig. 7)")
    vae = vae_step(config, bank, executor=executor)
    panels = {**vae, "w2-pixel": disjoint["w2-pixel"], "w2-feature": disjoint["w2-feature"]}
    input_space = input_space_comparison(panels, disjoint["fine-tuning"], seed=config.seed)
    say("seed-to-seed spread")
    spread = seed_step(config)
    return CoupledDistanceResult(
        config=config, nested=nested, disjoint=disjoint, large=large, cross=cross, subset=subset,
        mantel_disjoint=mantel_disjoint, mantel_nested=mantel_nested, ingredients=ingredients, convergence=conv,
        target=target, spread=spread, study=study, vae=vae, input_space=input_space,
        rank_disjoint=rank_agreement(disjoint), rank_nested=rank_agreement(nested),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Compute chapter 3's distance matrices into the pair cache, in this process or on a cluster.

    The matrices are the expensive part of the chapter and every pair is independent: run them
    where the compute is (``--scheduler tcp://host:port``), then execute the notebook with the same
    parameters and cache folder; it finds every pair in the cache. Needs only torch, numpy and the
    library (and Dask for a scheduler). Exit status 2 for a bad argument, with nothing computed.
    """
    import argparse

    import yaml

    from ..task_distance.cluster import SCHEDULER_HELP, open_executor

    ap = argparse.ArgumentParser(prog="python -m ctd_lib.experiments.coupled_distance",
                                 description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, help="a parameter file, e.g. params/paper/03_coupled_distance.yml "
                                                "(default: the CPU scale)")
    ap.add_argument("--scheduler", default="", help=f"where the pairs run: {SCHEDULER_HELP}")
    ap.add_argument("--cache-dir", default=".cache/pairs",
                    help="the pair cache (default .cache/pairs: the notebook's ../.cache/pairs, from the repository root)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = ap.parse_args(argv)
    overrides: dict = {}
    if args.params is not None:
        if not args.params.is_file():
            ap.error(f"--params: {args.params} is not a file")
        overrides = yaml.safe_load(args.params.read_text()) or {}
        known = {f for f in CoupledDistanceConfig.__dataclass_fields__}
        unknown = sorted(set(overrides) - known)
        if unknown:
            ap.error(f"--params: {args.params} has unknown parameter(s) {unknown}")
    try:
        config = CoupledDistanceConfig(**{**overrides, "scheduler": args.scheduler, "cache_dir": args.cache_dir})
    except ValueError as exc:
        ap.error(str(exc))
    bank = make_bank(config)
    with open_executor(config.scheduler) as executor:
        for family in args.families:
            matrices = family_step(config, bank, family, executor=executor)
            for method, D in matrices.items():
                print(f"{family:9s} {method:12s} {len(D.names)}x{len(D.names)}: {D.from_cache} pairs from the cache, "
                      f"mean off-diagonal {D.off_diagonal().mean():.3f}", flush=True)
    print(f"pairs cached under {Path(config.cache_dir or '').resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
