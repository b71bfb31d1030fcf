r"""Chapter 1's experiments: the Fisher-Rao length of a weight trajectory.

Seed 000 (Gao & Chaudhari 2021), Sec. 2.1, Eqs. (2)-(5). A classifier
:math:`p_w(y\mid x)` is a point of a statistical manifold whose line element is

.. math::

    ds^2 = 2\,\mathrm{KL}\big[p_w, p_{w+dw}\big] = dw^\top g(w)\, dw, \qquad
    g(w) = \mathbb{E}_x\,\mathbb{E}_{y\sim p_w(\cdot\mid x)}
           \big[\nabla_w \log p_w(y\mid x)\,\nabla_w \log p_w(y\mid x)^\top\big]

(Eqs. 2-3), and the length of a trajectory :math:`w(\tau)`, :math:`\tau\in[0,1]`, is
:math:`L = \int_0^1 |ds|` (Eq. 5, for one given trajectory). The chapter checks
four things: Eq. (2) for small steps (:func:`fim_study`), invariance of
:math:`L` under reparametrisations that keep :math:`p_w(y\mid x)`
(:func:`reparam_study`), convergence of the sum over SGD steps as the time step
shrinks (:func:`refinement_study`), and the lengths of one transfer for two
architectures (:func:`transfer`); it also times the bookkeeping
(:func:`overhead_study`). :func:`run` runs them all from a
:class:`FisherRaoConfig` and returns a :class:`FisherRaoResult`;
:func:`metrics` and :func:`claims` turn that into the chapter's results file.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import check_choice, check_count, check_device, check_positive
from .._util.progress import progress
from ..data import TASKS, Task, fetch_mnist10k, make_task
from ..geometry.fim import fim_kl_check, fisher_matrix
from ..geometry.length import TrajectoryLength, flat_parameters, path_length, set_flat_parameters
from ..geometry.sgd import (
    OverheadMeasurement,
    SGDConfig,
    TrainResult,
    accuracy,
    full_batch_sampler,
    measure_length_overhead,
    minibatch_sampler,
    train_sgd,
)
from ..models import MODEL_NAMES, make_model, scale_hidden_
from ..results import SCALES, Claim

__all__ = ["ArchitectureRun", "FimStudy", "FisherRaoConfig", "FisherRaoResult", "OverheadStudy", "RefinementStudy",
           "ReparamStudy", "TransferData", "claims", "fim_study", "load_transfer_data", "metrics", "overhead_study",
           "refinement_study", "reparam_study", "run", "train_source", "transfer"]


def _check_numbers(name: str, values, *, at_least: int = 1) -> tuple:
    """``values`` as a tuple of positive numbers, at least ``at_least`` of them, else ``ValueError`` naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name}={values!r} is not valid; it must be a list of positive numbers")
    if len(values) < at_least:
        raise ValueError(f"{name}={list(values)!r} is not valid; it needs at least {at_least} positive number(s)")
    for v in values:
        check_positive(name, v)
    return tuple(values)



def _length(res: TrainResult) -> TrajectoryLength:
    """The length a run measured (every run of this chapter tracks it)."""
    if res.length is None:
        raise RuntimeError("the run did not track its length (train_sgd(track_length=False))")
    return res.length


def _grad(p: torch.Tensor) -> torch.Tensor:
    if p.grad is None:
        raise RuntimeError("a parameter has no gradient after backward()")
    return p.grad

@dataclass(frozen=True, kw_only=True)
class FisherRaoConfig:
    """Parameters of chapter 1: the notebook's ``parameters`` cell, same names, validated.

    Every bad value raises a one-line :class:`ValueError` naming the parameter
    before any data is loaded. Lists may be given as lists (papermill, YAML);
    they are stored as tuples. The class attributes below the fields are fixed
    by the chapter's design (not notebook parameters) and are recorded with the
    parameters in the results' provenance (:meth:`parameters`).
    """

    source_task: str = "mnist10k-0-4"  # task the models are first trained on
    target_task: str = "mnist10k-5-9"  # task they are transferred to
    n_per_class: int = 100  # training images per class, per task
    n_eval: int = 500  # held-out inputs on which path lengths are evaluated
    model_a: str = "mlp"  # first architecture (an MLP: needed for the exact ReLU rescaling check)
    model_b: str = "small-cnn"  # second architecture, for the comparison on one axis
    batch_size: int = 64  # SGD mini-batch size
    lr: float = 0.05  # SGD learning rate (the time step d tau of Eq. 1)
    source_steps: int = 300  # SGD steps to train on the source task
    transfer_steps: int = 300  # SGD steps of the transfer
    fim_trials: int = 5  # independent networks/directions for the FIM check
    fim_hidden: int = 16  # hidden units of the small network whose FIM is exact
    fim_n_inputs: int = 256  # inputs defining E_x in the FIM check
    fim_ref_step: float = 1e-3  # the |dw| at which fim_kl_ratio is reported (one of fim_step_sizes)
    reparam_factors: tuple = (0.1, 0.5, 2.0, 10.0)  # c in the ReLU rescaling (layer 1 x c, layer 2 / c)
    checkpoint_every: int = 10  # checkpoint spacing for the rescaling check
    refine_total_time: float = 4.0  # T = steps x lr held fixed while lr is refined
    refine_lrs: tuple = (0.4, 0.2, 0.1, 0.05, 0.025)  # learning rates (time steps), coarse to fine
    refine_n: int = 500  # target images in the full batch of the refinement study
    overhead_steps: int = 60  # steps per timing run of the bookkeeping overhead
    overhead_repeats: int = 3  # paired timing repeats
    seed: int = 0  # seeds every model, sampler and subsample
    device: str = "cpu"  # "cpu" or "cuda": where models and data live (the exact-FIM check stays on the CPU)
    scale: str = "cpu"  # "cpu", "paper" or "smoke": where results are filed

    # fixed by the chapter's design, not notebook parameters
    fim_pool: ClassVar[int] = 4  # inputs average-pooled by this factor (28 -> 7) for the FIM network
    fim_step_sizes: ClassVar[tuple] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # |dw| values of the FIM check
    refine_batch_size: ClassVar[int] = 32  # mini-batch for the SGD curve of the refinement study
    fim_tol: ClassVar[float] = 0.01  # claim: |median ratio - 1| below this at fim_ref_step
    reparam_tol: ClassVar[float] = 1e-8  # claim: relative change of the FR length under rescaling below this
    refine_tol: ClassVar[float] = 0.05  # claim: relative change of the GD length between the two finest d tau
    arch_ratio_max: ClassVar[float] = 2.0  # claim: FR lengths of the two architectures within this factor
    _FIXED: ClassVar[tuple] = ("fim_pool", "fim_step_sizes", "refine_batch_size", "fim_tol", "reparam_tol",
                               "refine_tol", "arch_ratio_max")

    def __post_init__(self):
        for name in ("source_task", "target_task"):
            check_choice(name, getattr(self, name), sorted(TASKS))
        check_choice("model_a", self.model_a, ["mlp", "mlp-wide"])
        check_choice("model_b", self.model_b, MODEL_NAMES)
        if self.model_b == self.model_a:
            raise ValueError(f"model_b={self.model_b!r} is not valid; it must differ from model_a={self.model_a!r}")
        for name in (
            "n_per_class", "n_eval", "batch_size", "source_steps", "transfer_steps", "fim_trials", "fim_hidden",
            "fim_n_inputs", "checkpoint_every", "refine_n", "overhead_steps", "overhead_repeats",
        ):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lr", "fim_ref_step", "refine_total_time"):
            check_positive(name, getattr(self, name))
        check_choice("fim_ref_step", self.fim_ref_step, self.fim_step_sizes)
        object.__setattr__(self, "reparam_factors", _check_numbers("reparam_factors", self.reparam_factors))
        lrs = _check_numbers("refine_lrs", self.refine_lrs, at_least=2)
        if any(a <= b for a, b in zip(lrs, lrs[1:])):
            raise ValueError(f"refine_lrs={list(lrs)!r} is not valid; the learning rates must strictly decrease")
        object.__setattr__(self, "refine_lrs", lrs)
        n_source = self.n_per_class * len(TASKS[self.source_task].classes)
        n_target = self.n_per_class * len(TASKS[self.target_task].classes)
        if self.fim_n_inputs > n_source:
            raise ValueError(f"fim_n_inputs={self.fim_n_inputs!r} is not valid; it must be at most the {n_source} "
                             f"source images (n_per_class x classes)")
        if self.refine_n > n_target:
            raise ValueError(f"refine_n={self.refine_n!r} is not valid; it must be at most the {n_target} "
                             f"target images (n_per_class x classes)")
        check_count("seed", self.seed)
        check_device("device", self.device)
        check_choice("scale", self.scale, SCALES)

    def parameters(self) -> dict:
        """The parameters as run, for the results' provenance: every field (with ``scale``) and the fixed values."""
        return asdict(self) | {name: getattr(self, name) for name in self._FIXED}


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferData:
    """Source and target training sets and the held-out inputs on which lengths are evaluated."""

    source: Task
    target: Task
    eval_x: torch.Tensor  # held-out inputs from both tasks, for path lengths


def load_transfer_data(cfg: FisherRaoConfig) -> TransferData:
    """Source and target training sets and held-out inputs from both (``n_eval`` in all)."""
    src = _to(make_task(cfg.source_task, split="train", n_per_class=cfg.n_per_class, seed=cfg.seed), cfg.device)
    tgt = _to(make_task(cfg.target_task, split="train", n_per_class=cfg.n_per_class, seed=cfg.seed), cfg.device)
    src_te = make_task(cfg.source_task, split="test", seed=cfg.seed)
    tgt_te = make_task(cfg.target_task, split="test", seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    half = cfg.n_eval // 2
    xs = src_te.x[torch.randperm(src_te.x.shape[0], generator=g)[:half]]
    xt = tgt_te.x[torch.randperm(tgt_te.x.shape[0], generator=g)[: cfg.n_eval - half]]
    return TransferData(source=src, target=tgt, eval_x=torch.cat([xs, xt]).to(cfg.device))


def _to(task: Task, device: str) -> Task:
    return replace(task, x=task.x.to(device), y=task.y.to(device))


def _build(name: str, task: Task, seed: int) -> nn.Module:
    model = make_model(name, in_shape=tuple(task.x.shape[1:]), num_classes=task.num_classes, seed=seed)
    return model.to(task.x.device)


def train_source(name: str, data: TransferData, cfg: FisherRaoConfig) -> tuple[nn.Module, float]:
    """A model of architecture ``name`` trained on the source task; returns it and its source accuracy."""
    model = _build(name, data.source, cfg.seed)
    sampler = minibatch_sampler(data.source.x, data.source.y, cfg.batch_size)
    train_sgd(model, sampler, SGDConfig(steps=cfg.source_steps, lr=cfg.lr, seed=cfg.seed), track_length=False,
              desc=f"source {name}")
    return model, accuracy(model, data.source.x, data.source.y)


# ----------------------------------------------------------------------------
# 1. ds^2 = 2 KL against dw^T g dw
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FimStudy:
    r"""Eq. (2) checked: :math:`2\,\mathbb{E}_x\mathrm{KL}[p_w, p_{w+dw}] / dw^\top g(w)\,dw` per trial and step.

    ``ratios[activation]`` has shape (trials, len(step_sizes)); ``n_params`` is :math:`p`,
    the size of :math:`g` (Eq. 3).
    """

    step_sizes: np.ndarray
    ratios: dict[str, np.ndarray]  # activation -> (trials, steps) array of 2KL / dw^T g dw
    n_params: int

    def median_ratio(self, activation: str, step: float) -> float:
        j = int(np.argmin(np.abs(self.step_sizes - step)))
        return float(np.median(self.ratios[activation][:, j]))


def fim_study(data: TransferData, cfg: FisherRaoConfig, activations: Sequence[str] = ("tanh", "relu")) -> FimStudy:
    r"""Ratio :math:`2\,\mathbb{E}_x\mathrm{KL}[p_w, p_{w+dw}] / dw^\top g(w)\,dw` (Eq. 2).

    For each trial a small network (pooled inputs, ``fim_hidden`` units; float64)
    is trained briefly on the source task, :math:`g(w)` is computed exactly
    (:func:`~ctd_lib.geometry.fim.fisher_matrix`), and :math:`dw` is the unit
    gradient direction of a fresh mini-batch scaled to each step size.
    """
    x = F.avg_pool2d(data.source.x.cpu(), cfg.fim_pool).double()
    y = data.source.y.cpu()
    ratios = {}
    n_params = 0
    for act in activations:
        rows = []
        for trial in progress(range(cfg.fim_trials), desc=f"FIM check ({act})"):
            seed = cfg.seed * 1000 + trial
            model = make_model("mlp", in_shape=tuple(x.shape[1:]), num_classes=data.source.num_classes, seed=seed,
                               hidden=(cfg.fim_hidden,), activation=act).double()
            train_sgd(model, minibatch_sampler(x, y, cfg.batch_size), SGDConfig(steps=50, lr=0.5, seed=seed),
                      track_length=False, show_progress=False)
            model.eval()
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(x.shape[0], generator=g)
            xe = x[idx[: cfg.fim_n_inputs]]
            xb, yb = x[idx[-cfg.batch_size :]], y[idx[-cfg.batch_size :]]
            model.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            d = -torch.cat([_grad(p).reshape(-1) for p in model.parameters()])
            d = d / d.norm()
            chk = fim_kl_check(model, xe, d, cfg.fim_step_sizes, fim=fisher_matrix(model, xe))
            rows.append(chk.ratio)
            n_params = d.numel()
        ratios[act] = np.vstack(rows)
    return FimStudy(step_sizes=np.asarray(cfg.fim_step_sizes, dtype=float), ratios=ratios, n_params=n_params)


# ----------------------------------------------------------------------------
# 2. invariance under reparametrisation
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReparamStudy:
    """Lengths (Eq. 5) of one trajectory mapped through the ReLU rescaling, one entry per factor ``c``,
    and of the trajectory itself (``base_*``)."""

    factors: np.ndarray
    fisher_rao: np.ndarray  # FR length (manifold) of the rescaled trajectory, per factor
    per_sample: np.ndarray
    euclidean: np.ndarray
    base_fisher_rao: float
    base_per_sample: float
    base_euclidean: float

    @property
    def fisher_rao_rel_err(self) -> float:
        return float(np.max(np.abs(self.fisher_rao / self.base_fisher_rao - 1)))

    @property
    def per_sample_rel_err(self) -> float:
        return float(np.max(np.abs(self.per_sample / self.base_per_sample - 1)))

    @property
    def euclidean_rel_change(self) -> float:
        return float(np.max(np.abs(self.euclidean / self.base_euclidean - 1)))


def reparam_study(model: nn.Module, checkpoints: Sequence[torch.Tensor], eval_x: torch.Tensor,
                  factors: Sequence[float]) -> ReparamStudy:
    """Length of the same trajectory after the exact ReLU rescaling ``w -> phi_c(w)``.

    :math:`\\phi_c` multiplies the first layer by ``c`` and the second layer's
    weight by ``1/c``: :math:`p_{\\phi_c(w)}(y\\mid x) = p_w(y\\mid x)` for every
    input, so the Fisher-Rao length (Eqs. 4-5) must not change, while
    :math:`\\sum|dw|` does. Evaluated in float64 on ``eval_x``.
    """
    m = copy.deepcopy(model).double().eval()
    ck = [c.double() for c in checkpoints]
    x = eval_x.double()
    base = path_length(m, ck, x)
    fr, ps, eu = [], [], []
    for c in factors:
        mapped = []
        for w in ck:
            set_flat_parameters(m, w)
            scale_hidden_(m, 0, c)
            mapped.append(flat_parameters(m))
        res = path_length(m, mapped, x)
        fr.append(res.manifold)
        ps.append(res.per_sample)
        eu.append(res.euclidean)
    return ReparamStudy(np.asarray(factors, dtype=float), np.asarray(fr), np.asarray(ps), np.asarray(eu),
                        base.manifold, base.per_sample, base.euclidean)


# ----------------------------------------------------------------------------
# 3. refining the time step
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefinementStudy:
    r"""Fisher-Rao lengths (Eq. 5) of the transfer at fixed total time, one entry per time step ``lrs[i]``
    (``steps[i]`` steps), for gradient descent and mini-batch SGD, manifold and per-sample conventions."""

    lrs: np.ndarray
    steps: np.ndarray
    gd_length: np.ndarray  # full-batch gradient descent: a deterministic curve
    sgd_length: np.ndarray  # mini-batch SGD, same lr and total time
    gd_per_sample: np.ndarray
    sgd_per_sample: np.ndarray

    @property
    def gd_rel_change(self) -> float:
        """|L(finest) - L(next finest)| / L(finest) for gradient descent."""
        return float(abs(self.gd_length[-1] - self.gd_length[-2]) / self.gd_length[-1])

    @property
    def sgd_rel_change(self) -> float:
        """|L(finest) - L(next finest)| / L(finest) for mini-batch SGD."""
        return float(abs(self.sgd_length[-1] - self.sgd_length[-2]) / self.sgd_length[-1])

    @property
    def sgd_to_gd_ratio(self) -> float:
        """L_SGD / L_GD at the finest time step: the length that mini-batch noise adds."""
        return float(self.sgd_length[-1] / self.gd_length[-1])


def refinement_study(source_model: nn.Module, data: TransferData, cfg: FisherRaoConfig) -> RefinementStudy:
    r"""Length of the transfer to the target task as :math:`d\tau` (the learning rate) shrinks.

    The total time :math:`T = \text{steps} \times \text{lr}` is held fixed, so
    the curves approximate one gradient flow :math:`\dot w = -\nabla \ell_t(w)`
    and Eq. (5)'s sum tends to its integral. Full-batch gradient descent on
    ``refine_n`` target images gives a deterministic curve whose length
    converges to that of the gradient flow. Mini-batch SGD moves by
    :math:`d\tau\,(\nabla\ell + \xi)` with mini-batch noise :math:`\xi`, whose size
    does not shrink with :math:`d\tau`: its sum also settles as
    :math:`d\tau \to 0`, but at a larger value, the length that the noise adds.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(data.target.x.shape[0], generator=g)[: cfg.refine_n]
    x, y = data.target.x[idx], data.target.y[idx]
    rows: dict[str, list[float]] = {"gd": [], "sgd": [], "gd_ps": [], "sgd_ps": []}
    steps = []
    for lr in progress(cfg.refine_lrs, desc="refine d tau"):
        n = max(1, int(round(cfg.refine_total_time / lr)))
        steps.append(n)
        for kind, sampler in (("gd", full_batch_sampler(x, y)), ("sgd", minibatch_sampler(x, y, cfg.refine_batch_size))):
            res = train_sgd(copy.deepcopy(source_model), sampler, SGDConfig(steps=n, lr=lr, seed=cfg.seed),
                            show_progress=False)
            rows[kind].append(_length(res).manifold)
            rows[kind + "_ps"].append(_length(res).per_sample)
    return RefinementStudy(np.asarray(cfg.refine_lrs, dtype=float), np.asarray(steps), np.asarray(rows["gd"]),
                           np.asarray(rows["sgd"]), np.asarray(rows["gd_ps"]), np.asarray(rows["sgd_ps"]))


# ----------------------------------------------------------------------------
# 4. one transfer, two architectures
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureRun:
    """One transfer of architecture ``name``: accuracies and the :class:`~ctd_lib.geometry.sgd.TrainResult`
    whose ``length`` holds the Fisher-Rao and Euclidean lengths (Remark 4)."""

    name: str
    n_params: int
    source_acc: float
    target_acc: float
    result: TrainResult = field(repr=False)


def transfer(model: nn.Module, name: str, source_acc: float, data: TransferData, cfg: FisherRaoConfig) -> ArchitectureRun:
    """Fine-tune a source-trained model on the target task, measuring the length as it goes."""
    sampler = minibatch_sampler(data.target.x, data.target.y, cfg.batch_size)
    res = train_sgd(model, sampler, SGDConfig(steps=cfg.transfer_steps, lr=cfg.lr, seed=cfg.seed + 1,
                                              checkpoint_every=cfg.checkpoint_every), desc=f"transfer {name}")
    n_params = sum(p.numel() for p in model.parameters())
    return ArchitectureRun(name, n_params, source_acc, accuracy(model, data.target.x, data.target.y), res)


# ----------------------------------------------------------------------------
# 5. cost of measuring the length
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OverheadStudy:
    """Wall time of SGD with the length bookkeeping over plain SGD, per architecture.

    ``fisher_rao[i]`` times the Fisher-Rao bookkeeping alone (one extra forward
    pass per step, Eq. 5), ``with_euclidean[i]`` adds :math:`|dw|`; both for
    ``models[i]``, with the same steps and batches as the plain runs.
    """

    models: tuple[str, ...]
    fisher_rao: tuple[OverheadMeasurement, ...]
    with_euclidean: tuple[OverheadMeasurement, ...]

    @property
    def ratio(self) -> float:
        """The larger of the Fisher-Rao-only median ratios (``length_overhead_ratio``)."""
        return max(m.median_ratio for m in self.fisher_rao)


def overhead_study(data: TransferData, cfg: FisherRaoConfig) -> OverheadStudy:
    """Time plain and tracked SGD on the source task for ``model_a`` and ``model_b``, alternating."""
    fr: list[OverheadMeasurement] = []
    eu: list[OverheadMeasurement] = []
    for name in (cfg.model_a, cfg.model_b):
        sampler = minibatch_sampler(data.source.x, data.source.y, cfg.batch_size)
        for with_eu, out in ((False, fr), (True, eu)):
            out.append(measure_length_overhead(
                lambda: make_model(name, in_shape=tuple(data.source.x.shape[1:]),  # noqa: B023 (called in this iteration)
                                   num_classes=data.source.num_classes, seed=cfg.seed).to(cfg.device),
                sampler, SGDConfig(steps=cfg.overhead_steps, lr=cfg.lr, seed=cfg.seed), repeats=cfg.overhead_repeats,
                track_euclidean=with_eu,
            ))
    return OverheadStudy((cfg.model_a, cfg.model_b), tuple(fr), tuple(eu))


# ----------------------------------------------------------------------------
# the chapter in one call, its metrics and its claims
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FisherRaoResult:
    r"""Everything chapter 1 measures, from :func:`run`.

    Attributes
    ----------
    config : the parameters as run.
    n_source, n_target, n_eval : training images per task and held-out inputs for the lengths.
    fim : :math:`2\,\mathrm{KL}/dw^\top g\,dw` against :math:`|dw|` (Eq. 2).
    reparam : lengths of one trajectory under the ReLU rescaling (Eqs. 4-5).
    refine : lengths of the transfer as :math:`d\tau` shrinks at fixed total time (Eq. 5).
    run_a, run_b : the transfer of ``model_a`` and ``model_b`` with their lengths (Remark 4).
    overhead : wall-time cost of the bookkeeping.
    """

    config: FisherRaoConfig
    n_source: int
    n_target: int
    n_eval: int
    fim: FimStudy
    reparam: ReparamStudy
    refine: RefinementStudy
    run_a: ArchitectureRun
    run_b: ArchitectureRun
    overhead: OverheadStudy

    @property
    def fim_ratio_tanh(self) -> float:
        """Median over trials of :math:`2\\,\\mathrm{KL}/dw^\\top g\\,dw` at ``fim_ref_step``, tanh networks."""
        return self.fim.median_ratio("tanh", self.config.fim_ref_step)

    @property
    def fim_ratio_relu(self) -> float:
        """The same for ReLU networks."""
        return self.fim.median_ratio("relu", self.config.fim_ref_step)

    @property
    def arch_fisher_rao_ratio(self) -> float:
        """Fisher-Rao (manifold) length of ``model_b``'s transfer over ``model_a``'s."""
        return _length(self.run_b.result).manifold / _length(self.run_a.result).manifold

    @property
    def arch_euclidean_ratio(self) -> float:
        """Euclidean length :math:`\\sum|dw|` of ``model_b``'s transfer over ``model_a``'s."""
        return _length(self.run_b.result).euclidean / _length(self.run_a.result).euclidean

    @property
    def arch_comparable(self) -> bool:
        """Whether the Fisher-Rao ratio lies within ``[1/arch_ratio_max, arch_ratio_max]``."""
        r = self.config.arch_ratio_max
        return 1 / r <= self.arch_fisher_rao_ratio <= r

    @property
    def negative_kl_clamped(self) -> int:
        """Negative KL values (round-off) clamped to zero in the two transfers."""
        return _length(self.run_a.result).n_clamped + _length(self.run_b.result).n_clamped

    @property
    def kl_evaluations(self) -> int:
        """KL evaluations in the two transfers."""
        return _length(self.run_a.result).n_kl_evals + _length(self.run_b.result).n_kl_evals


def run(cfg: FisherRaoConfig) -> FisherRaoResult:
    """Run chapter 1: data, FIM check, rescaling, refinement, two transfers, timing (in this order)."""
    torch.manual_seed(cfg.seed)
    if "mnist10k" in cfg.source_task + cfg.target_task:
        fetch_mnist10k()
    data = load_transfer_data(cfg)
    fim = fim_study(data, cfg)
    model_a, acc_a = train_source(cfg.model_a, data, cfg)
    source_a = copy.deepcopy(model_a)  # the refinement study starts from the source-trained model
    run_a = transfer(model_a, cfg.model_a, acc_a, data, cfg)
    reparam = reparam_study(model_a, run_a.result.checkpoints, data.eval_x, cfg.reparam_factors)
    refine = refinement_study(source_a, data, cfg)
    model_b, acc_b = train_source(cfg.model_b, data, cfg)
    run_b = transfer(model_b, cfg.model_b, acc_b, data, cfg)
    overhead = overhead_study(data, cfg)
    return FisherRaoResult(config=cfg, n_source=len(data.source.y), n_target=len(data.target.y),
                           n_eval=len(data.eval_x), fim=fim, reparam=reparam, refine=refine, run_a=run_a,
                           run_b=run_b, overhead=overhead)


def metrics(result: FisherRaoResult) -> dict:
    """The chapter's named numbers, as written to its results file."""
    cfg, fim, reparam, refine = result.config, result.fim, result.reparam, result.refine
    la, lb = _length(result.run_a.result), _length(result.run_b.result)
    overhead = {}
    for name, fr, eu in zip(result.overhead.models, result.overhead.fisher_rao, result.overhead.with_euclidean):
        overhead[f"length_overhead_ratio_{name}"] = fr.median_ratio
        overhead[f"length_overhead_ratio_{name}_with_euclidean"] = eu.median_ratio
    return {
        "fim_kl_ratio": result.fim_ratio_tanh,
        "fim_kl_ratio_relu": result.fim_ratio_relu,
        "fim_n_params": fim.n_params,
        "reparam_invariance_rel_err": reparam.fisher_rao_rel_err,
        "reparam_invariance_rel_err_per_sample": reparam.per_sample_rel_err,
        "reparam_euclidean_rel_change": reparam.euclidean_rel_change,
        "refinement_gd_rel_change": refine.gd_rel_change,
        "refinement_sgd_rel_change": refine.sgd_rel_change,
        "refinement_sgd_to_gd_ratio": refine.sgd_to_gd_ratio,
        "refinement_gd_lengths": refine.gd_length,
        "refinement_sgd_lengths": refine.sgd_length,
        f"length_{cfg.model_a}_manifold": la.manifold,
        f"length_{cfg.model_a}_per_sample": la.per_sample,
        f"length_{cfg.model_b}_manifold": lb.manifold,
        f"length_{cfg.model_b}_per_sample": lb.per_sample,
        "arch_fisher_rao_ratio": result.arch_fisher_rao_ratio,
        "arch_euclidean_ratio": result.arch_euclidean_ratio,
        "target_acc_" + cfg.model_a: result.run_a.target_acc,
        "target_acc_" + cfg.model_b: result.run_b.target_acc,
        "length_overhead_ratio": result.overhead.ratio,
        **overhead,
        "negative_kl_clamped": result.negative_kl_clamped,
        "kl_evaluations": result.kl_evaluations,
    }


def claims(result: FisherRaoResult) -> list[Claim]:
    r"""The chapter's four claims, each with its verdict and the numbers behind it.

    - Eq. (2): :math:`|2\,\mathrm{KL}/dw^\top g\,dw - 1| <` ``fim_tol`` at ``fim_ref_step`` (tanh networks).
    - Sec. 2.1: the Fisher-Rao length changes by less than ``reparam_tol`` under the rescaling, while
      :math:`\sum|dw|` changes by more than 1%.
    - Eq. (5): the gradient-descent length changes by less than ``refine_tol`` between the two finest
      :math:`d\tau`.
    - Remark 4: the Fisher-Rao lengths of the two architectures are within a factor ``arch_ratio_max``.
    """
    cfg, reparam, refine = result.config, result.reparam, result.refine
    ratio_tanh, ratio_relu = result.fim_ratio_tanh, result.fim_ratio_relu
    fr_ratio, eu_ratio = result.arch_fisher_rao_ratio, result.arch_euclidean_ratio
    return [
        Claim(id="ds2_equals_fim_form", statement="2 KL[p_w, p_{w+dw}] = dw^T g(w) dw for small dw",
              source="Seed 000, Eq. (2)", holds=abs(ratio_tanh - 1) < cfg.fim_tol,
              evidence=f"median ratio {ratio_tanh:.5f} at |dw|={cfg.fim_ref_step:g} over {cfg.fim_trials} tanh "
                       f"networks (tolerance {cfg.fim_tol}); ReLU {ratio_relu:.4f}"),
        Claim(id="fr_length_reparam_invariant",
              statement="The Fisher-Rao length is invariant under reparametrisations that keep p_w(y|x); |dw| is not",
              source="Seed 000, Sec. 2.1 (Eqs. 4-5)",
              holds=reparam.fisher_rao_rel_err < cfg.reparam_tol and reparam.euclidean_rel_change > 0.01,
              evidence=f"FR rel. change {reparam.fisher_rao_rel_err:.1e} (tolerance {cfg.reparam_tol:g}), "
                       f"Euclidean {reparam.euclidean_rel_change:.2f}, c in {list(cfg.reparam_factors)}"),
        Claim(id="length_converges_as_dtau_shrinks",
              statement="The sum of |ds| over steps converges to the length of Eq. (5) as d tau -> 0 "
                        "(gradient descent)",
              source="Seed 000, Eq. (5)", holds=refine.gd_rel_change < cfg.refine_tol,
              evidence=f"GD length change {refine.gd_rel_change:.2%} between d tau={cfg.refine_lrs[-2]:g} and "
                       f"{cfg.refine_lrs[-1]:g} (tolerance {cfg.refine_tol:.0%}); SGD {refine.sgd_rel_change:.2%}, "
                       f"{refine.sgd_to_gd_ratio:.2f}x the GD length"),
        Claim(id="fr_length_comparable_across_architectures",
              statement="Fisher-Rao lengths of one transfer are comparable across architectures",
              source="Seed 000, Remark 4", holds=result.arch_comparable,
              evidence=f"{cfg.model_b}/{cfg.model_a} FR length ratio {fr_ratio:.2f} (within "
                       f"x{cfg.arch_ratio_max:g} required); Euclidean ratio {eu_ratio:.2f}"),
    ]
