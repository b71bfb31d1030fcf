r"""The coupled transfer distance (Definition 2 and Eq. 12 of [Gao & Chaudhari 2021]).

Given a classifier trained on a source task, the coupled transfer process moves
the data from the source to the target along an optimal-transport interpolation
while SGD updates the weights to fit the interpolated task; the coupling
:math:`\Gamma` and the weight trajectory :math:`w(\cdot)` are updated in turn:

.. math::

    \Gamma^k &= \operatorname*{argmin}_{\Gamma \in \Pi}\
        \langle \Gamma, C^k\rangle - \epsilon H(\Gamma) + \lambda_k \|\Gamma - \Gamma^{k-1}\|_F^2
        && \text{(12a)} \\
    C^{k+1}_{ij} &= \int_0^1 \sqrt{2\,\mathrm{KL}\big[p_{w^k(\tau)}(\cdot\mid x^{ij}_\tau),
        p_{w^k(\tau+d\tau)}(\cdot\mid x^{ij}_\tau)\big]}, \quad x^{ij}_\tau = (1-\tau)x^i_s + \tau x^j_t
        && \text{(12b)} \\
    w^k(\tau + d\tau) &= w^k(\tau) - \widehat{\nabla\ell_\tau}(w^k(\tau))\, d\tau, \quad w^k(0) = w_s
        && \text{(12c)}

with :math:`\hat p_\tau` of Eq. (12d)/(8) built from :math:`\Gamma^{k-1}`. The
distance is the Fisher-Rao length (Eq. 11) of the last trajectory.

Choices where the paper is silent or ambiguous, each a field of
:class:`CoupledConfig`:

* Couplings are block-diagonal (Sec. 3.4): blocks of at most ``block_size``
  samples are matched once, from features of the source-trained network
  (the paper uses an ImageNet ResNet-50, which cannot be downloaded here);
  Eq. (12a) then updates the plan inside each block.
* :math:`\epsilon` is relative to each block's median cost (``reg``) and the
  proximal weight is dimensionless (``prox_lam``): :math:`\lambda_k =
  \tilde\lambda\, g^k\, \mathrm{median}(C)\, |I|` for a block with :math:`|I|`
  source samples, which puts the proximal term on the scale of the transport
  cost (a plan of unit mass in the block has :math:`\|\Gamma\|_F^2 \approx 1/|I|`).
  The authors' code grows the weight as :math:`0.05 \cdot 5^k`: ``prox_lam=0.05,
  prox_growth=5`` are the defaults.
* Training samples use Beta-mixup (coefficient :math:`t \sim
  \mathrm{Beta}(\tau, 1-\tau)`, Sec. 3.4) by default, or plain displacement
  interpolation (the authors' code: their Beta sampling is unused); a mini-batch draws
  a block per sample (``block_sampling="per_sample"``) or all of it inside one block
  (``"per_batch"``, Sec. 3.4).
* **The length estimator** (``length_estimator``, ``length_checkpoints``,
  ``length_inputs``; :func:`run_trajectory`). A per-step line element on each step's
  own mini-batch is mostly SGD noise, which cancels over 10-20 steps and grows the
  length linearly with the number of steps; the ``"checkpoints"`` polyline (the
  authors' estimator, a chord every 200 of their 20,000 steps) measures the part that
  survives. The reported distance, the ground cost (12b), the self-distance and the
  uncoupled distance all use the same checkpoints; the per-step length on the
  mini-batch is kept beside in every log.
* The ground cost (12b) is integrated over the same chords on every pair of every
  block (the displacement points :math:`x^{ij}_\tau`), in eval mode. Sec. 3.4
  evaluates it "only on this mini-batch"; with blocks of 25 and far fewer steps than
  the authors', most pairs would never be seen, so it is not offered.
* The reported distance uses ``convention`` ("manifold":
  :math:`\int\sqrt{\mathbb{E}_x 2\mathrm{KL}}`, or "per_sample":
  :math:`\int\mathbb{E}_x\sqrt{2\mathrm{KL}}`, as printed in Eq. 11); both are kept.
* :data:`AUTHORS_PRESET` (and :meth:`CoupledConfig.authors`) are the authors' settings.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .._util.checks import check_choice, check_nonnegative, check_positive
from .._util.progress import progress
from .._util.torch_state import copy_buffers, device_of, load_buffers, rng_state, set_rng_state
from ..data import Task
from ..geometry.length import (
    CONVENTIONS,
    LengthMeter,
    TrajectoryLength,
    flat_parameters,
    kl_categorical,
    set_flat_parameters,
)
from ..geometry.sgd import (
    SGDConfig,
    batchnorm_modules,
    cross_entropy,
    frozen_batchnorm_stats,
    minibatch_sampler,
    train_sgd,
)
from ..transport.blocks import BlockPlan, block_plan, match_blocks
from ..transport.costs import feature_cost
from ..transport.interpolation import make_sampler
from ..transport.proximal import proximal_plan

__all__ = [
    "AUTHORS_PRESET", "BLOCK_SAMPLINGS", "CoupledConfig", "INITIAL_COSTS", "INTERPOLATIONS", "LENGTH_ESTIMATORS",
    "LENGTH_INPUTS", "SCHEDULES", "TrajectoryLog", "TransferResult",
    "affine_stem", "authors_scale", "coupled_transfer_distance", "initial_coupling", "pair_kl_cost", "penultimate_features",
    "checkpoint_steps", "held_out_inputs", "polyline_from_logits", "proximal_update", "run_trajectory", "tau_at", "train_source_model", "uncoupled_transfer_distance"
]

INTERPOLATIONS = ("beta-mixup", "displacement")
SCHEDULES = ("linear", "arcsine")
INITIAL_COSTS = ("features", "pixels")
BLOCK_SAMPLINGS = ("per_sample", "per_batch")
LENGTH_ESTIMATORS = ("per_step", "checkpoints")
LENGTH_INPUTS = ("batch", "held_out", "interpolated")
EVAL_SAMPLES = 256  # interpolated samples (training and held-out) behind each point of the loss curves

#: The transfer settings of the authors' code (see the seeds' README): SGD with lr 8e-4, momentum 0.9,
#: weight decay 5e-4 and batch 20 for 20,000 steps, a checkpoint every 200 steps (100 chords), tau on a
#: deterministic arcsine-shaped schedule, displacement samples (their Beta sampling is unused), blocks of
#: 25 with each mini-batch drawn inside one block (Sec. 3.4), the proximal weight 0.05 * 5^k over four
#: outer iterations.
AUTHORS_PRESET: dict = {
    "steps": 20000, "lr": 8e-4, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 20, "outer_iters": 4,
    "block_size": 25, "block_sampling": "per_batch", "prox_lam": 0.05, "prox_growth": 5.0,
    "interpolation": "displacement", "schedule": "arcsine", "length_estimator": "checkpoints",
    "length_checkpoints": 100,
}


@dataclass(frozen=True, kw_only=True)
class CoupledConfig:
    """Configuration of the coupled (and uncoupled) transfer process."""

    steps: int = 300  # SGD steps of one trajectory, tau from 0 to 1 (Eq. 12c)
    lr: float = 0.05  # SGD learning rate (tau advances by 1/(steps - 1) per step, whatever lr is)
    momentum: float = 0.0  # SGD momentum (the authors use 0.9)
    weight_decay: float = 0.0  # SGD weight decay (the authors use 5e-4)
    batch_size: int = 32  # interpolated samples per SGD step
    outer_iters: int = 3  # K, the number of alternations of Eq. (12)
    tol: float = 0.01  # stop early when the distance changes by less than this fraction
    block_size: int = 30  # B, the largest block of the block-diagonal coupling (Sec. 3.4)
    block_match: str = "centroid"  # how source and target blocks are matched (transport.match_blocks)
    block_sampling: str = "per_sample"  # a block per sample, or "per_batch": one block per mini-batch (Sec. 3.4)
    reg: float = 0.05  # entropic epsilon relative to the median cost of each block
    prox_lam: float = 0.05  # dimensionless proximal weight of Eq. (12a) at k = 1 (see module doc)
    prox_growth: float = 5.0  # lambda_k = prox_lam * prox_growth**(k-1), as the authors' 0.05 * 5^k
    interpolation: str = "beta-mixup"  # training samples: "beta-mixup" (Sec. 3.4) or "displacement" (Eq. 12d)
    schedule: str = "linear"  # tau over steps: "linear" or "arcsine" (the authors' code)
    convention: str = "manifold"  # which Fisher-Rao length is the reported distance
    length_estimator: str = "checkpoints"  # a "checkpoints" polyline, or "per_step" line elements (module doc)
    length_checkpoints: int = 10  # chords of the polyline; the ground cost (12b) is integrated over the same chords
    length_inputs: str = "interpolated"  # where the line element is evaluated: "interpolated", "held_out" or "batch"
    length_samples: int = 256  # inputs per chord for "held_out" and "interpolated"
    initial_cost: str = "features"  # ground cost of Gamma^0: penultimate features or pixels
    eval_every: int = 0  # log train/held-out loss on the interpolated task every k steps (0: at the checkpoints)
    seed: int = 0  # seeds sampling of pairs, Beta draws and mini-batches
    device: str = "cpu"  # where the model and data live

    def __post_init__(self):
        for name in ("steps", "batch_size", "outer_iters", "block_size", "length_checkpoints", "length_samples"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lr", "tol", "reg"):
            check_positive(name, getattr(self, name))
        for name in ("momentum", "weight_decay", "prox_lam"):
            check_nonnegative(name, getattr(self, name))
        check_positive("prox_growth", self.prox_growth)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("convention", self.convention, CONVENTIONS)
        check_choice("initial_cost", self.initial_cost, INITIAL_COSTS)
        check_choice("block_match", self.block_match, ("centroid", "sorted", "random"))
        check_choice("block_sampling", self.block_sampling, BLOCK_SAMPLINGS)
        check_choice("length_estimator", self.length_estimator, LENGTH_ESTIMATORS)
        check_choice("length_inputs", self.length_inputs, LENGTH_INPUTS)
        if self.steps < 2:
            raise ValueError(f"steps={self.steps!r} is not valid; it must be >= 2 "
                             "(tau = 0 at the first step and 1 at the last)")
        if self.length_checkpoints > self.steps:
            raise ValueError(f"length_checkpoints={self.length_checkpoints!r} is not valid; it must be in "
                             f"[1, steps] = [1, {self.steps}] (chords between checkpoints at least one step apart)")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every={self.eval_every!r} must be an integer >= 0")

    @classmethod
    def authors(cls, **overrides) -> CoupledConfig:
        """The authors' settings (:data:`AUTHORS_PRESET`, from their code), with ``overrides`` on top."""
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"overrides {unknown} are not fields of CoupledConfig")
        return cls(**{**AUTHORS_PRESET, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def tau_at(step: int, steps: int, schedule: str) -> float:
    r"""Interpolation time of SGD step ``step`` of ``steps``: 0 at the first, 1 at the last.

    ``"linear"``: :math:`\tau = s/(S-1)`; ``"arcsine"``:
    :math:`\tau = \sin^2(\tfrac{\pi}{2} s/(S-1))`, slow near both tasks as in the authors' code.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (step, steps)) \
            or steps < 1 or not 0 <= step < steps:
        raise ValueError(f"step={step!r}, steps={steps!r} are not valid; need integers with 0 <= step < steps")
    u = step / max(1, steps - 1)
    return u if schedule == "linear" else math.sin(0.5 * math.pi * u) ** 2


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


# ----------------------------------------------------------------------------
# features and ground costs
# ----------------------------------------------------------------------------


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch: int = 2048) -> np.ndarray:
    """Inputs of the network's last ``nn.Linear`` layer (its features), in eval mode."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("model has no nn.Linear layer whose input could serve as features")
    dev = device_of(model)
    store = []
    hook = last[-1].register_forward_hook(lambda mod, inp, out: store.append(inp[0].detach().reshape(inp[0].shape[0], -1)))
    was = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], batch):
            model(x[i : i + batch].to(dev))
    finally:
        hook.remove()
        model.train(was)
    return torch.cat(store).double().cpu().numpy()


def affine_stem(model: nn.Module) -> tuple[Callable, Callable] | None:
    r"""``(first, rest)`` with ``model(x) == rest(first(x))`` and ``first`` affine in ``x``, or None.

    For :class:`~ctd_lib.models.MLP`: ``first`` is the flattening and the first ``nn.Linear``,
    ``rest`` the layers after it. An affine map commutes with the interpolation of Eq. (12b),
    :math:`f((1-\tau)x_s + \tau x_t) = (1-\tau) f(x_s) + \tau f(x_t)`, so the ground cost needs the first
    layer once per sample instead of once per pair. Other architectures return None (their first
    convolution is a small part of their work).
    """
    from ..models import MLP

    if not isinstance(model, MLP) or not isinstance(model.layers[0], nn.Linear):
        return None
    first_layer, rest = model.layers[0], model.layers[1:]
    return (lambda x: first_layer(model.flatten(x))), rest


@torch.no_grad()
def pair_kl_cost(
    model: nn.Module, checkpoints: list, taus: list, xs: torch.Tensor, xt: torch.Tensor, plan: BlockPlan,
    *, chunk: int = 4096, buffers: list | None = None,
) -> list:
    r"""Ground cost of Eq. (12b) for every pair inside every block.

    .. math::

        C_{ij} = \sum_{m=0}^{M-2} \sqrt{2\,\mathrm{KL}\big[p_{w_m}(\cdot\mid x^{ij}_{\tau_m}),
                 p_{w_{m+1}}(\cdot\mid x^{ij}_{\tau_m})\big]}

    at the ``M`` checkpoints :math:`w_m` of the trajectory (times :math:`\tau_m`),
    evaluated in eval mode. All pairs of all blocks go through the network in
    large batches (about ``chunk`` pairs). Returns one (|I_k|, |J_k|) array per block. Where the network
    starts with an affine layer :math:`h = Wx + b` (:func:`affine_stem`: the MLP), the layer is applied once
    per sample and combined per pair, :math:`W x^{ij}_\tau + b = (1-\tau)(W x^i_s + b) + \tau (W x^j_t + b)`,
    by broadcasting a block's rows against its columns: the same cost (to round-off) for a fraction of the work.

    Arrays: ``checkpoints`` M flat weight vectors, ``taus`` M times, ``xs`` (Ns, ...),
    ``xt`` (Nt, ...). ``buffers`` (M lists of buffer tensors, as
    ``TrajectoryLog.checkpoint_buffers``) gives each checkpoint its own batch-norm
    running statistics; without it every checkpoint is evaluated with the
    model's current buffers. The model's weights and buffers are restored.
    """
    if len(taus) != len(checkpoints) or (buffers is not None and len(buffers) != len(checkpoints)):
        raise ValueError(f"checkpoints ({len(checkpoints)}), taus ({len(taus)}) and buffers "
                         f"({'None' if buffers is None else len(buffers)}) must have one entry per checkpoint")
    model_was = model.training
    model.eval()
    w_orig, b_orig = flat_parameters(model), copy_buffers(model)
    dev = device_of(model)
    xs, xt = xs.to(dev), xt.to(dev)
    src = plan.assignment.source_blocks
    tgt = plan.assignment.target_blocks
    total = torch.zeros(sum(len(i) * len(j) for i, j in zip(src, tgt)), dtype=torch.float64)

    def load(m: int) -> None:
        set_flat_parameters(model, checkpoints[m])
        if buffers is not None:
            load_buffers(model, buffers[m])

    stem = affine_stem(model)
    if stem is not None:  # a block's rows and columns
        blocks = [(torch.as_tensor(i, device=dev), torch.as_tensor(j, device=dev)) for i, j in zip(src, tgt)]
    else:  # every pair's source and target index, block by block, row-major
        I = torch.cat([torch.as_tensor(i).repeat_interleave(len(j)) for i, j in zip(src, tgt)]).to(dev)
        J = torch.cat([torch.as_tensor(j).repeat(len(i)) for i, j in zip(src, tgt)]).to(dev)

    def logits(tau: float) -> torch.Tensor:
        """The loaded network's logits at every pair's interpolated input, (n_pairs, C)."""
        if stem is not None:  # the first layer once per sample, then combined per pair (exact: it is affine)
            first, rest = stem
            a, b = (1 - tau) * first(xs), tau * first(xt)
            out = []
            for i, j in blocks:  # a block's pairs by broadcasting, in the order of I and J, ~chunk pairs at a time
                bj = b[j][None]
                step = max(1, chunk // len(j))
                for r in range(0, len(i), step):
                    h = a[i[r : r + step]][:, None] + bj
                    out.append(rest(h.reshape(-1, h.shape[-1])))
            return torch.cat(out)
        return torch.cat([model((1 - tau) * xs[I[k : k + chunk]] + tau * xt[J[k : k + chunk]])
                          for k in range(0, I.numel(), chunk)])

    try:
        for m in range(len(checkpoints) - 1):
            load(m)
            before = logits(taus[m])
            load(m + 1)
            after = logits(taus[m])
            kl = kl_categorical(before.double(), after.double()).clamp_min(0.0)
            total += (2.0 * kl).sqrt().cpu()
    finally:
        set_flat_parameters(model, w_orig)
        load_buffers(model, b_orig)
        model.train(model_was)
    out, offset = [], 0
    for i, j in zip(src, tgt):
        n = len(i) * len(j)
        out.append(total[offset : offset + n].numpy().reshape(len(i), len(j)))
        offset += n
    return out


# ----------------------------------------------------------------------------
# one trajectory
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectoryLog:
    """Per-step and per-checkpoint record of one transfer trajectory."""

    tau: np.ndarray  # (steps,) interpolation time of each SGD step
    loss: np.ndarray  # (steps,) training loss of each mini-batch
    length: TrajectoryLength  # the reported length (CoupledConfig.length_estimator and length_inputs), both conventions
    per_step_length: TrajectoryLength  # per-step line elements on each step's own mini-batch, always kept beside
    eval_tau: np.ndarray  # times at which train/held-out losses were evaluated
    eval_train_loss: np.ndarray  # loss on fresh interpolated samples of the training data
    eval_val_loss: np.ndarray  # loss on interpolated held-out samples (nan without held-out data)
    checkpoints: list = field(repr=False)  # flat weights at the checkpoints (length_checkpoints + 1 of them)
    checkpoint_tau: list = field(repr=False)
    checkpoint_buffers: list = field(default_factory=list, repr=False)  # buffers (BN statistics) at each checkpoint
    checkpoint_steps: list = field(default_factory=list, repr=False)  # the SGD step of each checkpoint
    recorded_logits: torch.Tensor | None = field(default=None, repr=False)  # (steps+1, N, C) on ``record_inputs``


def _sampler(kind: str, xs, ys, xt, yt, plan, num_classes: int, device: str, block_sampling: str = "per_sample"):
    return make_sampler(kind, xs, ys, xt, yt, None if kind == "mixture" else plan, num_classes=num_classes,
                        device=device, block_sampling=block_sampling)


def checkpoint_steps(steps: int, chords: int) -> list:
    """The SGD steps of the ``chords + 1`` checkpoints, evenly spaced from 0 to ``steps`` (both included)."""
    check_positive("steps", steps, integer=True)
    check_positive("chords", chords, integer=True)
    if chords > steps:
        raise ValueError(f"chords={chords!r} must be at most steps={steps!r}")
    return np.linspace(0, steps, chords + 1).round().astype(int).tolist()


def held_out_inputs(source_val: Task, target_val: Task, n: int, seed: int) -> torch.Tensor:
    """A fixed set of ``n`` held-out inputs, half from each task's held-out split (drawn once with ``seed``)."""
    rng = np.random.default_rng([seed, 2731])
    ns = n // 2
    i = rng.choice(source_val.x.shape[0], size=ns, replace=ns > source_val.x.shape[0])
    j = rng.choice(target_val.x.shape[0], size=n - ns, replace=n - ns > target_val.x.shape[0])
    return torch.cat([source_val.x[torch.as_tensor(i)], target_val.x[torch.as_tensor(j, device=target_val.x.device)]])


def run_trajectory(
    source_model: nn.Module, source: Task, target: Task, cfg: CoupledConfig, *, kind: str, plan: BlockPlan | None,
    val: tuple | None = None, seed: int = 0, desc: str = "trajectory", show_progress: bool | None = None,
    record_inputs: torch.Tensor | None = None,
) -> tuple[nn.Module, TrajectoryLog]:
    r"""Eq. (12c) (``kind`` "beta-mixup" or "displacement") or Eq. (10) (``kind`` "mixture"), and its length.

    Starts from a copy of ``source_model``; SGD (``lr``, ``momentum``, ``weight_decay``) on
    mini-batches of the interpolated task at :math:`\tau` = :func:`tau_at`. ``val`` =
    (source_val, target_val, val_plan) gives held-out interpolated samples for the loss curves
    and the inputs of ``length_inputs="held_out"``.

    The length (Eq. 11, both conventions) is measured by ``cfg.length_estimator``:

    ``"checkpoints"``
        the polyline through the ``length_checkpoints + 1`` checkpoints :math:`w_m` at steps
        :math:`s_m` (:func:`checkpoint_steps`), the authors' estimator:
        :math:`L = \sum_m \sqrt{\mathbb{E}_{x\in X_m} 2\mathrm{KL}[p_{w_m}(\cdot|x), p_{w_{m+1}}(\cdot|x)]}`,
        in eval mode. The inputs :math:`X_m` of chord :math:`m` (``length_inputs``): ``"interpolated"``,
        ``length_samples`` points of the interpolated task at :math:`\tau(s_m)` (displacement points on the
        coupling, or mixture draws; Eq. 11's expectation over :math:`\hat p_\tau`); ``"held_out"``, one fixed
        set of held-out inputs (:func:`held_out_inputs`); ``"batch"``, the mini-batch of step :math:`s_m`.
    ``"per_step"``
        the same sum with a chord per SGD step. With ``"batch"`` it is the line element of each step on its
        own mini-batch in train mode (batch-norm statistics frozen, the training forward's dropout masks);
        the other inputs are drawn per step as above, in eval mode.

    The per-step length on the mini-batch is always kept beside (``per_step_length``), as are the weights at
    the checkpoints (the ground cost of Eq. 12b is integrated over the same chords). ``record_inputs``
    (optional, (N, ...)) stores the eval-mode logits on those inputs after every step, for the study of
    the length against the checkpoint spacing (:func:`polyline_from_logits`).

    ``seed`` fixes everything random: pairs, Beta draws and mini-batches (numpy generators), the inputs of
    every chord (a generator per chord's first step), dropout masks (torch's generator, forked so the
    caller's state is untouched).
    """
    if cfg.length_inputs == "held_out" and val is None:
        raise ValueError("length_inputs='held_out' needs held-out data: pass source_val and target_val")
    dev = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.random.default_generator.manual_seed(seed)  # not torch.manual_seed: other devices stay as they were
        if dev.type == "cuda":
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(seed)
        return _run_trajectory(source_model, source, target, cfg, kind=kind, plan=plan, val=val, seed=seed,
                               desc=desc, show_progress=show_progress, record_inputs=record_inputs)


class _Chords:
    """The polyline meter: logits of :math:`w_m` on the chord's inputs, completed by :math:`w_{m+1}` on the same inputs."""

    def __init__(self) -> None:
        self.meter = LengthMeter()
        self._open: tuple | None = None

    def mark(self, model: nn.Module, x: torch.Tensor | None) -> None:
        """A checkpoint: close the open chord at the current weights, open the next one on ``x`` (None: the last)."""
        w = flat_parameters(model)
        was = model.training
        model.eval()
        with torch.no_grad():
            if self._open is not None:
                x0, before, w0 = self._open
                self.meter.update(before, model(x0), dw_norm=float((w - w0).norm()))
            self._open = None if x is None else (x, model(x), w)
        model.train(was)


class _Streams:
    """Everything random of one trajectory that is drawn with numpy: its mini-batches (``rng``), the samples of
    its loss curves (``eval_rng``) and the inputs of its chords. One-model and batched runs share it, so a
    trajectory sees the same data whichever engine steps it."""

    def __init__(self, source: Task, target: Task, cfg: CoupledConfig, kind: str, plan, val, seed: int):
        dev = torch.device(cfg.device)
        self.cfg, self.seed = cfg, seed
        self.rng = np.random.default_rng(seed)
        self.eval_rng = np.random.default_rng(seed + 7919)
        sampling = cfg.block_sampling
        self.draw = _sampler(kind, source.x, source.y, target.x, target.y, plan, source.num_classes, cfg.device,
                             sampling)
        # Eq. (11)'s expectation over p_tau: displacement points of the coupling (no mixup), or mixture draws
        self.measure_draw = self.draw if kind in ("mixture", "displacement") else _sampler(
            "displacement", source.x, source.y, target.x, target.y, plan, source.num_classes, cfg.device, sampling)
        self.val_draw = None
        if val is not None and (kind == "mixture" or val[2] is not None):  # no held-out plan: no held-out curve
            sv, tv, vplan = val
            self.val_draw = _sampler(kind if kind == "mixture" else "displacement", sv.x, sv.y, tv.x, tv.y, vplan,
                                     source.num_classes, cfg.device)
        self.fixed = None
        if cfg.length_inputs == "held_out":
            self.fixed = held_out_inputs(val[0], val[1], cfg.length_samples, seed).to(dev)

    def batch(self, tau: float):
        """The training mini-batch at ``tau`` (Eq. 12d, or Eq. 10's mixture)."""
        return self.draw(tau, self.cfg.batch_size, self.rng)

    def chord_inputs(self, step: int, xb) -> torch.Tensor:
        """The inputs of the chord that starts at ``step`` (``CoupledConfig.length_inputs``)."""
        cfg = self.cfg
        if cfg.length_inputs == "batch":
            return xb
        if self.fixed is not None:
            return self.fixed
        return self.measure_draw(tau_at(step, cfg.steps, cfg.schedule), cfg.length_samples,
                                 np.random.default_rng([self.seed, 15485863, step]))[0]

    def eval_batches(self, tau: float) -> tuple:
        """``EVAL_SAMPLES`` interpolated training samples at ``tau``, and held-out ones (None without them)."""
        train = self.draw(tau, EVAL_SAMPLES, self.eval_rng)
        held = self.val_draw(tau, EVAL_SAMPLES, self.eval_rng) if self.val_draw is not None else None
        return train, held


def _run_trajectory(source_model, source, target, cfg, *, kind, plan, val, seed, desc, show_progress, record_inputs):
    model = copy.deepcopy(source_model).to(cfg.device)
    dev, dropout = device_of(model), _has_dropout(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    streams = _Streams(source, target, cfg, kind, plan, val, seed)
    ck_steps = checkpoint_steps(cfg.steps, cfg.length_checkpoints)
    ck_set = set(ck_steps)
    eval_steps = set(ck_steps) if not cfg.eval_every else set(range(0, cfg.steps + 1, cfg.eval_every)) | {cfg.steps}
    per_step_batch = cfg.length_estimator == "per_step" and cfg.length_inputs == "batch"
    chord_at = set(range(cfg.steps + 1)) if cfg.length_estimator == "per_step" else ck_set
    meter, chords, bns = LengthMeter(), _Chords(), batchnorm_modules(model)
    w_prev = [torch.empty_like(p) for p in params]  # the weights before each step, for |dw|, allocated once
    taus, losses = np.empty(cfg.steps), torch.empty(cfg.steps)
    checkpoints, ck_tau, ck_buf = [], [], []
    ev_tau, ev_train, ev_val = [], [], []
    recorded = []

    def evaluate(step: int):
        tau = tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule)
        (x, y), held = streams.eval_batches(tau)
        model.eval()
        with torch.no_grad():
            ev_train.append(float(cross_entropy(model(x), y)))
            ev_val.append(float(cross_entropy(model(held[0]), held[1])) if held is not None else float("nan"))
        model.train()
        ev_tau.append(tau)

    def record() -> None:
        model.eval()
        with torch.no_grad():
            recorded.append(model(record_inputs).detach().cpu())
        model.train()

    model.train()
    for step in progress(range(cfg.steps + 1), desc=desc, enabled=show_progress):
        last = step == cfg.steps
        if not last:
            tau = tau_at(step, cfg.steps, cfg.schedule)
            taus[step] = tau
            xb, yb = streams.batch(tau)
        if step in ck_set:
            checkpoints.append(flat_parameters(model))
            ck_buf.append(copy_buffers(model))
            ck_tau.append(tau_at(min(step, cfg.steps - 1), cfg.steps, cfg.schedule))
        if not per_step_batch and step in chord_at:
            chords.mark(model, None if last else streams.chord_inputs(step, xb))
        if record_inputs is not None:
            record()
        if step in eval_steps:
            evaluate(step)
        if last:
            break
        state = rng_state(dev) if dropout else None
        with torch.no_grad():
            torch._foreach_copy_(w_prev, params)
        logits = model(xb)
        loss = cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
        if dropout:
            set_rng_state(dev, state)  # the same dropout masks as the training forward
        with torch.no_grad(), frozen_batchnorm_stats(model, bns):
            after = model(xb)
            torch._foreach_sub_(w_prev, params)  # w - (w + dw), in place: the same |dw| without a new copy
            dw = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(w_prev)))
        meter.update(logits, after, dw_norm=dw.double())
    per_step = meter.result()
    log = TrajectoryLog(
        tau=taus, loss=losses.numpy(), length=per_step if per_step_batch else chords.meter.result(),
        per_step_length=per_step, eval_tau=np.asarray(ev_tau), eval_train_loss=np.asarray(ev_train),
        eval_val_loss=np.asarray(ev_val), checkpoints=checkpoints, checkpoint_tau=ck_tau, checkpoint_buffers=ck_buf,
        checkpoint_steps=ck_steps, recorded_logits=torch.stack(recorded) if recorded else None,
    )
    return model, log


def polyline_from_logits(logits: torch.Tensor, chords: int) -> TrajectoryLength:
    r"""The polyline length through ``chords + 1`` evenly spaced steps of recorded logits (both conventions).

    ``logits`` is (S+1, N, C): the network's logits on N fixed inputs after every step (as
    ``TrajectoryLog.recorded_logits``). The checkpoints are :func:`checkpoint_steps` (S, ``chords``), so
    ``chords = S`` is the per-step length on those inputs and ``chords = 1`` the single chord
    :math:`\sqrt{\mathbb{E}_x 2\mathrm{KL}[p_{w_0}, p_{w_S}]}`.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[0] < 2:
        raise ValueError("logits must be a (S+1, N, C) tensor with S >= 1")
    idx = checkpoint_steps(logits.shape[0] - 1, chords)
    meter = LengthMeter()
    for a, b in zip(idx[:-1], idx[1:]):
        meter.update(logits[a], logits[b])
    return meter.result()


# ----------------------------------------------------------------------------
# the alternating algorithm
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferResult:
    """What :func:`coupled_transfer_distance` and :func:`uncoupled_transfer_distance` return.

    Attributes
    ----------
    distance : Fisher-Rao length of the final trajectory under ``convention``.
    convention : "manifold" or "per_sample".
    per_iteration : distance after each outer iteration k = 1..K (same convention).
    per_iteration_other : the same under the other convention.
    coupling : the final block-diagonal plan (None for uncoupled transfer).
    ground_cost : the last ground cost C (one array per block; None for uncoupled).
    log : :class:`TrajectoryLog` of the final trajectory.
    logs : one log per outer iteration.
    target_model : the network at the end of the final trajectory.
    wall_time : seconds.
    config : the resolved configuration.
    """

    distance: float
    convention: str
    per_iteration: list
    per_iteration_other: list
    coupling: BlockPlan | None
    ground_cost: list | None
    log: TrajectoryLog
    logs: list = field(repr=False)
    target_model: nn.Module = field(repr=False)
    wall_time: float = 0.0
    config: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        if len(self.per_iteration) < 2:
            return False
        a, b = self.per_iteration[-2], self.per_iteration[-1]
        return abs(b - a) <= self.config.get("tol", 0.01) * abs(a)


def _check_tasks(source: Task, target: Task) -> None:
    if source.x.shape[0] == 0:
        raise ValueError("source is an empty task")
    if target.x.shape[0] == 0:
        raise ValueError("target is an empty task")
    if tuple(source.x.shape[1:]) != tuple(target.x.shape[1:]):
        raise ValueError(
            f"source and target have no shared input shape ({tuple(source.x.shape[1:])} and "
            f"{tuple(target.x.shape[1:])}); resample one of them (e.g. upsample_digits=True for 'digits')"
        )
    if source.num_classes != target.num_classes:
        raise ValueError(
            f"source has {source.num_classes} classes and target {target.num_classes}, with no label mapping; "
            f"make both tasks with a shared head (make_task(..., label_offset=...))"
        )


def _lengths(log: TrajectoryLog, convention: str) -> tuple[float, float]:
    other = "per_sample" if convention == "manifold" else "manifold"
    return log.length.length(convention), log.length.length(other)


def initial_coupling(source_model: nn.Module, source: Task, target: Task, cfg: CoupledConfig) -> BlockPlan:
    r""":math:`\Gamma^0`: blocks matched and plans computed on a feature (or pixel) ground cost (Sec. 3.4)."""
    if cfg.initial_cost == "features":
        fs, ft = penultimate_features(source_model, source.x), penultimate_features(source_model, target.x)
    else:
        fs = source.x.reshape(source.x.shape[0], -1).double().cpu().numpy()
        ft = target.x.reshape(target.x.shape[0], -1).double().cpu().numpy()
    assignment = match_blocks(fs, ft, cfg.block_size, method=cfg.block_match, seed=cfg.seed)
    return block_plan(feature_cost(fs, ft), assignment, reg=cfg.reg, relative=True)


def proximal_update(plan: BlockPlan, costs: list, lam: float, reg: float) -> BlockPlan:
    r"""Eq. (12a) in every block, with the dimensionless ``lam`` scaled as in the module docstring.

    Each block is solved at unit mass (marginals exactly uniform over the block,
    :math:`1/|I_k|` and :math:`1/|J_k|`) and scaled back to its mass :math:`1/K`,
    so marginal errors of the previous plan do not carry over. ``costs`` holds one
    (|I_k|, |J_k|) array per block (as from :func:`pair_kl_cost`). The returned
    ``eps`` are the absolute :math:`\epsilon` used (``reg`` times each new cost's median).
    """
    K = plan.assignment.n_blocks
    if len(costs) != K:
        raise ValueError(f"costs has {len(costs)} block costs; the plan has {K} blocks")
    check_nonnegative("lam", lam)
    mass = 1.0 / K
    new_plans, cost, ok, errs, eps, n_iter = [], 0.0, True, [], [], 0
    for prev, C in zip(plan.plans, costs):
        C = np.asarray(C, dtype=np.float64)
        if C.shape != prev.shape:
            raise ValueError(f"a block cost has shape {C.shape}; its block plan has shape {prev.shape}")
        a, b = np.full(C.shape[0], 1.0 / C.shape[0]), np.full(C.shape[1], 1.0 / C.shape[1])
        lam_abs = lam * float(np.median(C)) * C.shape[0]
        res = proximal_plan(a, b, C, prev / mass, reg=reg, lam=lam_abs, relative=True)
        new_plans.append(res.plan * mass)
        cost += float((res.plan * mass * C).sum())
        ok = ok and res.converged
        errs.append(res.marginal_err * mass)
        eps.append(res.reg)
        n_iter = max(n_iter, res.n_iter)
    return BlockPlan(assignment=plan.assignment, plans=new_plans, cost=cost, converged=bool(ok),
                     marginal_err=float(max(errs)), eps=np.asarray(eps), solver="proximal", n_iter=int(n_iter))


def coupled_transfer_distance(
    source: Task, target: Task, source_model: nn.Module, config: CoupledConfig | None = None, *,
    source_val: Task | None = None, target_val: Task | None = None, show_progress: bool | None = None,
) -> TransferResult:
    r"""The coupled transfer distance between two tasks, Definition 2 and Eq. (12).

    Parameters
    ----------
    source, target : labelled tasks with one input shape and a shared label space
        (``num_classes`` equal), e.g. from :func:`ctd_lib.data.make_task`.
    source_model : a classifier trained on ``source`` (left unchanged); every
        outer iteration restarts from its weights.
    config : :class:`CoupledConfig` (defaults if None).
    source_val, target_val : held-out data of both tasks, for the held-out loss
        along the trajectory (Fig. 4a); optional.
    show_progress : tqdm bars; None shows them only on a terminal.

    Returns
    -------
    :class:`TransferResult`.
    """
    cfg = config or CoupledConfig()
    _check_tasks(source, target)
    start = time.perf_counter()
    plan = initial_coupling(source_model, source, target, cfg)
    val = None
    if source_val is not None and target_val is not None:
        val = (source_val, target_val, initial_coupling(source_model, source_val, target_val, cfg))
    per, other, logs, costs = [], [], [], None
    model = None
    for k in range(1, cfg.outer_iters + 1):
        model, log = run_trajectory(source_model, source, target, cfg, kind=cfg.interpolation, plan=plan, val=val,
                                    seed=cfg.seed + k, desc=f"coupled k={k}", show_progress=show_progress)
        d, d_other = _lengths(log, cfg.convention)
        per.append(d)
        other.append(d_other)
        logs.append(log)
        if k == cfg.outer_iters or (k > 1 and abs(per[-1] - per[-2]) <= cfg.tol * abs(per[-2])):
            break
        costs = pair_kl_cost(model, log.checkpoints, log.checkpoint_tau, source.x, target.x, plan,
                             buffers=log.checkpoint_buffers)  # Eq. (12b)
        lam = cfg.prox_lam * cfg.prox_growth ** (k - 1)
        plan = proximal_update(plan, costs, lam, cfg.reg)  # Eq. (12a)
    return TransferResult(
        distance=per[-1], convention=cfg.convention, per_iteration=per, per_iteration_other=other, coupling=plan,
        ground_cost=costs, log=logs[-1], logs=logs, target_model=_trained(model), wall_time=time.perf_counter() - start,
        config=cfg.to_dict(),
    )


def uncoupled_transfer_distance(
    source: Task, target: Task, source_model: nn.Module, config: CoupledConfig | None = None, *,
    source_val: Task | None = None, target_val: Task | None = None, show_progress: bool | None = None,
) -> TransferResult:
    r"""The uncoupled transfer distance (Sec. 3.1, Eqs. 9-10): the mixture interpolation
    :math:`\hat p_\tau = (1-\tau)\hat p_s + \tau \hat p_t`, the same SGD, the same length measure.
    """
    cfg = config or CoupledConfig()
    _check_tasks(source, target)
    start = time.perf_counter()
    val = (source_val, target_val, None) if source_val is not None and target_val is not None else None
    model, log = run_trajectory(source_model, source, target, cfg, kind="mixture", plan=None, val=val,
                                seed=cfg.seed + 1, desc="uncoupled", show_progress=show_progress)
    d, d_other = _lengths(log, cfg.convention)
    return TransferResult(
        distance=d, convention=cfg.convention, per_iteration=[d], per_iteration_other=[d_other], coupling=None,
        ground_cost=None, log=log, logs=[log], target_model=model, wall_time=time.perf_counter() - start,
        config=cfg.to_dict(),
    )


def authors_scale(length: float, chords: int) -> float:
    r"""Convert a ``"checkpoints"`` length (manifold convention) to the scale of the authors' numbers.

    Their code adds :math:`\sqrt{\mathrm{KL}}/n` at each of its :math:`n = 100` chords (see the seeds'
    README), where our polyline adds :math:`\sqrt{2\mathrm{KL}}` per chord. For a polyline through the
    same checkpoints on the same inputs the conversion is exact:
    :math:`L_\text{authors} = L / (n\sqrt2)` with :math:`n` = ``chords`` (``length_checkpoints``). It
    is not a conversion for a ``"per_step"`` length, which also counts the SGD noise that a chord of many
    steps averages out.
    """
    check_positive("chords", chords, integer=True)
    return float(length) / (chords * math.sqrt(2.0))


def _trained(model: nn.Module | None) -> nn.Module:
    """The model of the last outer iteration (there is always at least one)."""
    assert model is not None
    return model


def train_source_model(
    task: Task, model_fn: Callable[[], nn.Module], *, steps: int, lr: float, batch_size: int, seed: int = 0,
    device: str = "cpu",
) -> nn.Module:
    """Train a fresh ``model_fn()`` on ``task`` with plain SGD (the source model of Eq. 12c)."""

    model = model_fn().to(device)
    train_sgd(model, minibatch_sampler(task.x.to(device), task.y.to(device), batch_size),
              SGDConfig(steps=steps, lr=lr, seed=seed), track_length=False, desc="source model")
    return model
