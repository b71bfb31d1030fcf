r"""SGD on a task, with the Fisher-Rao length of the weight trajectory measured as it goes.

The update is Eq. (1) of [Gao & Chaudhari 2021],
:math:`w(\tau + d\tau) = w(\tau) - \widehat{\nabla \ell}(w(\tau))\, d\tau`, with
the learning rate playing the role of :math:`d\tau`. After each step one extra
forward pass, without gradients, on the same mini-batch gives
:math:`p_{w+dw}(\cdot\mid x)`; the training forward already gave
:math:`p_w(\cdot\mid x)`, so each step's line element (Eq. 2) costs one forward.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import check_nonnegative, check_positive
from .._util.progress import progress
from .._util.torch_state import rng_state, set_rng_state
from .length import LengthMeter, TrajectoryLength, flat_parameters

__all__ = [
    "Batch", "OverheadMeasurement", "SGDConfig", "Sampler", "TrainResult", "accuracy", "batchnorm_modules",
    "cross_entropy", "frozen_batchnorm_stats", "full_batch_sampler", "measure_length_overhead",
    "minibatch_sampler", "train_sgd"
]

Batch = tuple[torch.Tensor, torch.Tensor]
Sampler = Callable[[torch.Generator], Batch]


@dataclass(frozen=True, kw_only=True)
class SGDConfig:
    """Plain SGD on one task."""

    steps: int = 200  # number of SGD updates
    lr: float = 0.05  # learning rate: the time step d tau of Eq. (1)
    momentum: float = 0.0  # heavy-ball momentum (0: the plain Eq. (1))
    weight_decay: float = 0.0  # L2 penalty added by torch.optim.SGD
    seed: int = 0  # seeds the mini-batch sampler's generator
    checkpoint_every: int = 0  # keep a flat copy of w every k steps (0: none)

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True)
        check_positive("lr", self.lr)
        check_nonnegative("momentum", self.momentum)
        check_nonnegative("weight_decay", self.weight_decay)
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every={self.checkpoint_every!r} is not valid; it must be an integer >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_sgd` returns.

    Attributes
    ----------
    losses : (steps,) training loss of each mini-batch before its update.
    length : the trajectory's lengths (None when not tracked).
    checkpoints : flat weight vectors at steps 0, k, 2k, ... and the last step.
    wall_time : seconds spent in the loop.
    """

    losses: np.ndarray
    length: TrajectoryLength | None
    checkpoints: list
    wall_time: float


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy with hard (N,) integer labels or soft (N, C) label distributions."""
    if target.dim() == 1:
        return F.cross_entropy(logits, target)
    return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def minibatch_sampler(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Sampler:
    """Uniform mini-batches with replacement across batches (without within one)."""
    check_positive("batch_size", batch_size, integer=True)
    n = x.shape[0]
    if n == 0:
        raise ValueError("x is empty: the task has no samples")
    if y.shape[0] != n:
        raise ValueError(f"x and y disagree on the number of samples: {n} and {y.shape[0]}")
    b = min(batch_size, n)

    def sample(gen: torch.Generator) -> Batch:
        idx = torch.randperm(n, generator=gen)[:b]
        return x[idx], y[idx]

    return sample


def full_batch_sampler(x: torch.Tensor, y: torch.Tensor) -> Sampler:
    """The whole data set at every step: gradient descent, a deterministic curve."""
    if x.shape[0] == 0:
        raise ValueError("x is empty: the task has no samples")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y disagree on the number of samples: {x.shape[0]} and {y.shape[0]}")
    return lambda gen: (x, y)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module, bn_modules: list | None = None) -> Iterator[None]:
    """Forward passes inside leave batch-norm running statistics untouched.

    The measuring forward runs in the same mode as the training forward (so
    both evaluate the same function :math:`p_w(\\cdot\\mid x)` on the batch), but
    must not update the running mean and variance a second time.
    ``bn_modules`` (from :func:`batchnorm_modules`) saves the module walk in a hot loop.
    """
    mods = batchnorm_modules(model) if bn_modules is None else bn_modules
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in mods]
    for m in mods:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, nbt in saved:
            m.momentum = momentum
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


def batchnorm_modules(model: nn.Module) -> list:
    """The batch-norm layers of ``model`` that track running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def train_sgd(
    model: nn.Module,
    sampler: Sampler,
    config: SGDConfig,
    *,
    track_length: bool = True,
    track_euclidean: bool = True,
    desc: str | None = None,
    show_progress: bool | None = None,
) -> TrainResult:
    r"""Run ``config.steps`` SGD updates, measuring the Fisher-Rao length if asked.

    ``wall_time`` covers the loop and the reduction of the per-step KL values to
    lengths (:meth:`~ctd_lib.geometry.LengthMeter.result`).

    Each step: forward on a mini-batch :math:`x_B` (train mode), backward,
    update, then with ``track_length`` one no-grad forward on the same
    :math:`x_B` and the line element
    :math:`\sqrt{\tfrac{1}{|B|}\sum_{x\in B} 2\mathrm{KL}[p_w(\cdot\mid x), p_{w+dw}(\cdot\mid x)]}`
    (Eq. 2 and 5 of [Gao & Chaudhari 2021]) plus the per-sample convention and
    :math:`|dw|`. Labels may be hard or soft (interpolated tasks). The measuring
    forward replays the random state of the training forward, so a network with
    dropout is compared under the same masks: the KL then measures the change of
    :math:`w` alone, and the random stream after the step is the one plain SGD
    would have.

    Parameters
    ----------
    model : trained in place.
    sampler : ``sampler(generator) -> (x, y)``, called once per step.
    config : :class:`SGDConfig`.
    track_length : False gives plain SGD (the benchmark's baseline).
    track_euclidean : also accumulate :math:`|dw|` (a copy of the weights per step).
    show_progress : tqdm bar; None shows it only on a terminal.
    """
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    trainable = [p for p in model.parameters() if p.requires_grad]
    meter = LengthMeter() if track_length else None
    bns = batchnorm_modules(model)
    losses = torch.empty(config.steps)
    checkpoints = [flat_parameters(model)] if config.checkpoint_every else []
    model.train()
    start = time.perf_counter()
    for step in progress(range(config.steps), desc=desc or "SGD", enabled=show_progress):
        xb, yb = sampler(gen)
        if meter is not None:  # the measuring forward must draw the same dropout masks as this one
            dropout_state = rng_state(xb.device)
        logits = model(xb)
        loss = cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dw = None
        if meter is not None and track_euclidean and config.momentum == 0:
            dw = _sgd_step_norm(trainable, config)  # before the step: it reads w
        opt.step()
        losses[step] = loss.detach()
        if meter is not None:
            if track_euclidean and config.momentum > 0:
                dw = config.lr * _norm([opt.state[p]["momentum_buffer"] for p in trainable])
            set_rng_state(xb.device, dropout_state)
            with torch.no_grad(), frozen_batchnorm_stats(model, bns):
                after_logits = model(xb)
            meter.update(logits, after_logits, dw_norm=dw)
        if config.checkpoint_every and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            checkpoints.append(flat_parameters(model))
    length = meter.result() if meter else None
    wall = time.perf_counter() - start
    return TrainResult(losses=losses.numpy(), length=length, checkpoints=checkpoints, wall_time=wall)


def _norm(tensors: list | tuple) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


@torch.no_grad()
def _sgd_step_norm(params: list, config: SGDConfig) -> torch.Tensor:
    """|dw| of the coming step of ``torch.optim.SGD`` without momentum.

    That optimiser moves :math:`w` by :math:`-\\mathrm{lr}\\,(\\nabla\\ell + \\lambda w)`;
    with momentum it moves by :math:`-\\mathrm{lr}\\, b` with :math:`b` its momentum
    buffer after the step (read in :func:`train_sgd`). Reading the step off the
    gradient avoids a copy of the weights at every step; the test suite checks
    it against the difference of consecutive weights.
    """
    grads: list | tuple = [p.grad for p in params]
    if config.weight_decay:
        grads = torch._foreach_add(grads, [p.detach() for p in params], alpha=config.weight_decay)
    return config.lr * _norm(grads)


@dataclass(frozen=True)
class OverheadMeasurement:
    """Wall time of SGD with length bookkeeping over plain SGD, same steps, same batches."""

    ratios: np.ndarray  # one ratio per repeat, measured side by side
    plain_seconds: np.ndarray
    tracked_seconds: np.ndarray

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratios))


def measure_length_overhead(
    model_fn: Callable[[], nn.Module], sampler: Sampler, config: SGDConfig, *, repeats: int = 3,
    track_euclidean: bool = False,
) -> OverheadMeasurement:
    """Time :func:`train_sgd` with and without ``track_length``, alternating, ``repeats`` times.

    Each repeat builds a fresh model from ``model_fn`` for both runs, runs a
    short warm-up, then plain and tracked in alternating order so that drift of
    the machine's speed falls on both. ``track_euclidean`` adds the
    :math:`|dw|` bookkeeping to the tracked runs.
    """
    check_positive("repeats", repeats, integer=True)
    warm = SGDConfig(steps=min(5, config.steps), lr=config.lr, seed=config.seed)
    train_sgd(model_fn(), sampler, warm, track_length=True, show_progress=False)
    plain: list[float] = []
    tracked: list[float] = []
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for track in order:
            res = train_sgd(model_fn(), sampler, config, track_length=track, track_euclidean=track_euclidean,
                            show_progress=False)
            (tracked if track else plain).append(res.wall_time)
    p, t = np.asarray(plain), np.asarray(tracked)
    return OverheadMeasurement(ratios=t / p, plain_seconds=p, tracked_seconds=t)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` in eval mode (restored afterwards) on hard labels ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, x.shape[0])
