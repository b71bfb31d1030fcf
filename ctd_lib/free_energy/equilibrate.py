r"""Equilibration (Sec. 5.1 of [Gao & Chaudhari 2020]): Adam on
:math:`R + \lambda D + \gamma C` after each change of :math:`(\lambda, \gamma)`, with the
learning-rate schedule :math:`\eta(t) \propto (t/T)^2 (1 - t/T)^5`.

Examples
--------
>>> round(eta(2, 7), 12), eta(0, 7), eta(7, 7)
(1.0, 0.0, 0.0)
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._util.checks import check_choice, check_nonnegative, check_positive
from .._util.progress import progress
from .._util.torch_state import device_of
from .functionals import _check_xy, hamiltonian_loss
from .model import FreeEnergyModel, _is_int

__all__ = [
    "EquilibrationConfig", "EquilibrationLog", "SCHEDULES", "Sampler", "array_sampler", "equilibrate", "eta",
    "train_equilibrium"
]

SCHEDULES = ("paper", "constant", "cosine")


# ----------------------------------------------------------------------------
# equilibration (Sec. 5.1)
# ----------------------------------------------------------------------------

_ETA_MAX = (2 / 7) ** 2 * (5 / 7) ** 5


def eta(t: int, T: int) -> float:
    r"""Equilibration learning-rate profile of Sec. 5.1 of [Gao & Chaudhari 2020], peak 1.

    .. math::

        \eta(t) = \frac{(t/T)^2 (1 - t/T)^5}{(2/7)^2 (5/7)^5}

    where :math:`t` is the number of mini-batch updates since the last change of
    :math:`(\lambda, \gamma)` and :math:`T` their total; the maximum, 1, is at
    :math:`t/T = 2/7` and :math:`\eta(0) = \eta(T) = 0`.
    """
    if not _is_int(T) or T < 1:
        raise ValueError(f"T={T!r} is not valid; a schedule with T < 1 has no updates (T must be an integer >= 1)")
    try:
        tf = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t={t!r} is not valid; it must be a number in [0, T={T}]") from None
    if not 0 <= tf <= T:
        raise ValueError(f"t={t!r} is not valid; it must be a number in [0, T={T}]")
    u = tf / T
    return u * u * (1 - u) ** 5 / _ETA_MAX


@dataclass(frozen=True, kw_only=True)
class EquilibrationConfig:
    """Adam updates that bring a model to equilibrium at fixed (lambda, gamma) (Sec. 5.1)."""

    steps: int = 300  # T, mini-batch updates after a change of (lambda, gamma)
    peak_lr: float = 1.5e-3  # the maximum learning rate of Sec. 5.1
    batch_size: int = 64  # the authors' batch
    n_z: int = 1  # latent samples per input in each update
    schedule: str = "paper"  # eta(t) of Sec. 5.1; "constant"; "cosine" (peak_lr to 0, Appendix A, from scratch)
    seed: int = 0  # mini-batch order, latent noise and dropout

    def __post_init__(self):
        if not _is_int(self.steps) or self.steps < 1:
            raise ValueError(f"steps={self.steps!r} is not valid; a schedule with T < 1 has no updates "
                             "(steps must be an integer >= 1)")
        check_positive("peak_lr", self.peak_lr)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("n_z", self.n_z, integer=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        if not _is_int(self.seed):
            raise ValueError(f"seed={self.seed!r} is not valid; it must be an integer")

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): ``peak_lr * eta(step + 1, steps + 1)`` for "paper"."""
        if self.schedule == "paper":
            return self.peak_lr * eta(step + 1, self.steps + 1)
        if self.schedule == "cosine":
            return self.peak_lr * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))
        return self.peak_lr

    def to_dict(self) -> dict:
        return asdict(self)


Sampler = Callable[[int, np.random.Generator], tuple[Tensor, Tensor]]


def array_sampler(x, y) -> Sampler:
    """Uniform mini-batches (without replacement inside a batch) from fixed arrays.

    ``x`` (N, C, H, W), ``y`` int64 (N,) or float (N, num_classes), numpy or torch.
    The sampler maps ``(batch_size, rng)`` to a batch; a batch larger than N is all of it.
    """
    x, y = _check_xy(x, y)
    n = x.shape[0]

    def sample(batch_size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.from_numpy(rng.choice(n, size=min(int(batch_size), n), replace=False))
        return x[idx], y[idx]

    return sample


@dataclass(frozen=True)
class EquilibrationLog:
    """What :func:`equilibrate` returns."""

    objective: np.ndarray  # (steps,) mini-batch R + lam D + gamma C before each update
    lr: np.ndarray  # (steps,) learning rate used
    lam: float  # lambda of the run
    gamma: float  # gamma of the run
    wall_time: float  # seconds
    terms: np.ndarray | None = field(default=None, repr=False)  # (steps, 3) mini-batch R, D, C before each update


def equilibrate(
    model: FreeEnergyModel, sampler: Sampler, lam: float, gamma: float, config: EquilibrationConfig | None = None,
    *, show_progress: bool | None = None,
) -> EquilibrationLog:
    r"""Equilibration of Sec. 5.1 of [Gao & Chaudhari 2020]: Adam on Eq. (8) at fixed :math:`(\lambda, \gamma)`.

    .. math::

        \theta^{s+1} = \mathrm{Adam}\Big(\theta^s,\ \nabla_\theta \big[R + \lambda D + \gamma C\big]_{\text{batch}},\
        \eta_s\Big), \qquad \eta_s = \eta_{\max}\, \eta(s + 1, T + 1)

    for ``config.schedule == "paper"`` (:func:`eta`), where :math:`T` = ``config.steps``
    and :math:`\eta_{\max}` = ``config.peak_lr``. A fresh Adam each call. The
    model is updated in place in train mode (its mode is restored). Mini-batches
    come from ``sampler(batch_size, np.random.default_rng(seed))``, the latent
    noise from ``torch.Generator().manual_seed(seed)`` and dropout from the
    global generator forked and seeded with ``seed``: the same weights, config
    and seed give the same weights after.
    """
    check_nonnegative("lam", lam)
    check_nonnegative("gamma", gamma)
    config = EquilibrationConfig() if config is None else config
    if not isinstance(config, EquilibrationConfig):
        raise ValueError(f"config={config!r} is not valid; it must be an EquilibrationConfig or None")
    lam, gamma = float(lam), float(gamma)
    dev = device_of(model)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.peak_lr)
    objective = np.empty(config.steps)
    lrs = np.array([config.lr_at(s) for s in range(config.steps)])
    terms = np.empty((config.steps, 3))
    was = model.training
    model.train()
    fork_devices = [dev.index if dev.index is not None else 0] if dev.type == "cuda" else []
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(config.seed)
            for s in progress(range(config.steps), desc=f"equilibrate lam={lam:g} gamma={gamma:g}",
                              enabled=show_progress):
                xb, yb = sampler(config.batch_size, rng)
                xb, yb = xb.to(dev, torch.float32), yb.to(dev)
                r, d, c = hamiltonian_loss(model, xb, yb, lam, gamma, n_z=config.n_z, generator=gen)
                loss = r + lam * d + gamma * c
                for group in opt.param_groups:
                    group["lr"] = lrs[s]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                terms[s] = torch.stack([r.detach(), d.detach(), c.detach()]).cpu().numpy()
                objective[s] = terms[s, 0] + lam * terms[s, 1] + gamma * terms[s, 2]
    finally:
        model.train(was)
    if not np.all(np.isfinite(objective)):
        warnings.warn(f"equilibrate at lam={lam:g}, gamma={gamma:g}: the objective became non-finite "
                      "(lower peak_lr?)", RuntimeWarning, stacklevel=2)
    return EquilibrationLog(objective=objective, lr=lrs, lam=lam, gamma=gamma,
                            wall_time=time.perf_counter() - t0, terms=terms)


def train_equilibrium(
    model: FreeEnergyModel, sampler: Sampler, lam: float, gamma: float, config: EquilibrationConfig | None = None,
    *, show_progress: bool | None = None,
) -> EquilibrationLog:
    r"""Train from scratch to the equilibrium surface at :math:`(\lambda, \gamma)`, Eq. (8) of [Gao & Chaudhari 2020].

    .. math::

        \theta_{\lambda,\gamma} \approx \operatorname*{argmin}_\theta R + \lambda D + \gamma C

    The same loop as :func:`equilibrate`; the default configuration is the one
    meant for training from scratch: cosine annealing from ``peak_lr = 1e-3``
    (Appendix A) over 2000 updates.
    """
    if config is None:
        config = EquilibrationConfig(steps=2000, peak_lr=1e-3, schedule="cosine")
    return equilibrate(model, sampler, lam, gamma, config, show_progress=show_progress)
