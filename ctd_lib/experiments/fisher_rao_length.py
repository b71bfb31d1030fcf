r"""Chapter 1's experiments: the Fisher-Rao length of a weight trajectory.

Seed 000 (Gao & Chaudhari 2021), Sec. 2.1, Eqs. (2)-(5). Each function runs one
study and returns a named result; the notebook only orchestrates and plots.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import check_choice, check_positive
from .._util.progress import progress
from ..data import TASKS, Task, make_task
from ..geometry.fim import fim_kl_check, fisher_matrix
from ..geometry.length import flat_parameters, path_length, set_flat_parameters
from ..geometry.sgd import SGDConfig, TrainResult, accuracy, full_batch_sampler, minibatch_sampler, train_sgd
from ..models import MODEL_NAMES, make_model, scale_hidden_

__all__ = ["ArchitectureRun", "FimStudy", "FisherRaoConfig", "RefinementStudy", "ReparamStudy", "TransferData", "fim_study", "load_transfer_data", "refinement_study", "reparam_study", "train_source", "transfer"]

@dataclass(frozen=True, kw_only=True)
class FisherRaoConfig:
    """Parameters of chapter 1 (the notebook's ``parameters`` cell, validated)."""

    source_task: str = "mnist10k-0-4"  # task the models are first trained on
    target_task: str = "mnist10k-5-9"  # task they are transferred to
    n_per_class: int = 100  # training images per class, per task
    n_eval: int = 500  # held-out inputs on which path lengths are evaluated
    model_a: str = "mlp"  # first architecture (must be "mlp" for the ReLU rescaling check)
    model_b: str = "small-cnn"  # second architecture, for the comparison on one axis
    batch_size: int = 64  # SGD mini-batch size
    lr: float = 0.05  # SGD learning rate (the time step d tau of Eq. 1)
    source_steps: int = 300  # SGD steps to train on the source task
    transfer_steps: int = 300  # SGD steps of the transfer
    fim_trials: int = 5  # independent networks/directions for the FIM check
    fim_hidden: int = 16  # hidden units of the small tanh network whose FIM is exact
    fim_pool: int = 4  # inputs average-pooled by this factor (28 -> 7) for the FIM network
    fim_n_inputs: int = 256  # inputs defining E_x in the FIM check
    fim_step_sizes: tuple = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # |dw| values
    fim_ref_step: float = 1e-3  # the |dw| at which fim_kl_ratio is reported
    reparam_factors: tuple = (0.1, 0.5, 2.0, 10.0)  # c in the ReLU rescaling (layer 1 x c, layer 2 / c)
    checkpoint_every: int = 10  # checkpoint spacing for the rescaling check
    refine_total_time: float = 4.0  # T = steps x lr held fixed while lr is refined
    refine_lrs: tuple = (0.4, 0.2, 0.1, 0.05, 0.025)  # learning rates (time steps), coarse to fine
    refine_n: int = 500  # inputs in the full batch of the refinement study
    refine_batch_size: int = 32  # mini-batch for the SGD curve of the refinement study
    overhead_steps: int = 60  # steps per timing run of the bookkeeping overhead
    overhead_repeats: int = 3  # paired timing repeats
    seed: int = 0  # seeds every model, sampler and subsample
    device: str = "cpu"  # "cpu" or "cuda": where models and data live (the exact-FIM check stays on the CPU)
    fim_tol: float = 0.01  # claim: |median ratio - 1| below this at fim_ref_step
    reparam_tol: float = 1e-8  # claim: relative change of the FR length under rescaling below this (float64)
    refine_tol: float = 0.05  # claim: relative change of the GD length between the two finest d tau below this
    arch_ratio_max: float = 2.0  # claim: FR lengths of the two architectures within this factor of each other

    def __post_init__(self):
        for name in ("source_task", "target_task"):
            check_choice(name, getattr(self, name), sorted(TASKS))
        check_choice("model_a", self.model_a, ["mlp", "mlp-wide"])
        check_choice("model_b", self.model_b, MODEL_NAMES)
        for name in (
            "n_per_class", "n_eval", "batch_size", "source_steps", "transfer_steps", "fim_trials",
            "fim_hidden", "fim_pool", "fim_n_inputs", "checkpoint_every", "refine_n",
            "refine_batch_size", "overhead_steps", "overhead_repeats",
        ):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lr", "fim_ref_step", "refine_total_time", "fim_tol", "reparam_tol", "refine_tol"):
            check_positive(name, getattr(self, name))
        for name in ("fim_step_sizes", "reparam_factors", "refine_lrs"):
            values = getattr(self, name)
            if len(values) == 0:
                raise ValueError(f"{name} is empty; it needs at least one positive number")
            for v in values:
                check_positive(name, v)
        if self.fim_ref_step not in self.fim_step_sizes:
            raise ValueError(f"fim_ref_step={self.fim_ref_step!r} must be one of fim_step_sizes={self.fim_step_sizes}")
        if len(self.refine_lrs) < 2 or list(self.refine_lrs) != sorted(self.refine_lrs, reverse=True):
            raise ValueError(f"refine_lrs={self.refine_lrs!r} must hold at least two learning rates, decreasing")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r} is not valid; use 'cpu' or 'cuda' (or 'cuda:N')")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} was asked for but torch sees no CUDA device; use 'cpu'")
        if not self.arch_ratio_max > 1:
            raise ValueError(f"arch_ratio_max={self.arch_ratio_max!r} must be a number > 1")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an integer")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferData:
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
    step_sizes: np.ndarray
    ratios: dict  # activation -> (trials, steps) array of 2KL / dw^T g dw
    n_params: int

    def median_ratio(self, activation: str, step: float) -> float:
        j = int(np.argmin(np.abs(self.step_sizes - step)))
        return float(np.median(self.ratios[activation][:, j]))


def fim_study(data: TransferData, cfg: FisherRaoConfig, activations: Sequence[str] = ("tanh", "relu")) -> FimStudy:
    r"""Ratio :math:`2\,\mathbb{E}_x\mathrm{KL}[p_w, p_{w+dw}] / dw^\top g(w)\,dw` (Eq. 2).

    For each trial a small network (pooled inputs, ``fim_hidden`` units; float64)
    is trained briefly on the source task, :math:`g(w)` is computed exactly
    (:func:`~ctd_lib.geometry.fisher_matrix`), and :math:`dw` is the unit
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
            d = -torch.cat([p.grad.reshape(-1) for p in model.parameters()])
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
    rows = {"gd": [], "sgd": [], "gd_ps": [], "sgd_ps": []}
    steps = []
    for lr in progress(cfg.refine_lrs, desc="refine d tau"):
        n = max(1, int(round(cfg.refine_total_time / lr)))
        steps.append(n)
        for kind, sampler in (("gd", full_batch_sampler(x, y)), ("sgd", minibatch_sampler(x, y, cfg.refine_batch_size))):
            res = train_sgd(copy.deepcopy(source_model), sampler, SGDConfig(steps=n, lr=lr, seed=cfg.seed),
                            show_progress=False)
            rows[kind].append(res.length.manifold)
            rows[kind + "_ps"].append(res.length.per_sample)
    return RefinementStudy(np.asarray(cfg.refine_lrs, dtype=float), np.asarray(steps), np.asarray(rows["gd"]),
                           np.asarray(rows["sgd"]), np.asarray(rows["gd_ps"]), np.asarray(rows["sgd_ps"]))


# ----------------------------------------------------------------------------
# 4. one transfer, two architectures
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureRun:
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
