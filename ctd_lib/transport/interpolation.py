r"""Samplers for the interpolated task :math:`\hat p_\tau(x, y)` at time :math:`\tau \in [0, 1]`.

Three ways to move from the source task to the target task:

``"displacement"``
    McCann's displacement interpolation along a coupling :math:`\Gamma`,
    Eqs. (7)-(8) of [Gao & Chaudhari 2021] (Eq. (37) and Remark 11 of
    [Gao & Chaudhari 2020]): a pair :math:`(i, j) \sim \Gamma`, the input
    :math:`(1-\tau) x_s^i + \tau x_t^j` and the label
    :math:`(1-\tau)\,\delta_{y_s^i} + \tau\,\delta_{y_t^j}`.
``"beta-mixup"``
    the same with the coefficient drawn per sample from
    :math:`\mathrm{Beta}(\tau, 1-\tau)` (mean :math:`\tau`), the mixup trick of
    Sec. 3.4 that keeps samples close to one of the two tasks.
``"mixture"``
    the mixture :math:`(1-\tau)\hat p_s + \tau \hat p_t` of Eq. (9), the
    uncoupled transfer of Sec. 3.1.

Every sampler returns an :class:`InterpolatedBatch` ``(x, y)`` of torch
tensors on the requested device: ``x`` float32 with the inputs' sample shape,
``y`` (n, num_classes) float32 label distributions whose rows sum to 1. All
randomness (pairs, Beta coefficients, mixture draws) comes from the
``numpy.random.Generator`` passed in, so a seed fixes the batch. At
:math:`\tau = 0` every sampler returns source samples with their one-hot
labels, exactly; at :math:`\tau = 1` target samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .._util.checks import check_choice, check_in_range, check_positive
from .blocks import BlockPlan
from .dense import OTPlan

__all__ = [
    "INTERPOLATIONS", "InterpolatedBatch", "Interpolation", "beta_mixup_sample", "displacement_sample",
    "make_sampler", "mixture_sample"
]

INTERPOLATIONS = ("displacement", "beta-mixup", "mixture")


class InterpolatedBatch(NamedTuple):
    """A batch from :math:`\\hat p_\\tau`: inputs ``x`` (n, ...) and label distributions ``y`` (n, C), float32."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class _Tasks:
    """Source and target samples, validated once and held as tensors on the device."""

    xs: torch.Tensor
    ys: np.ndarray
    xt: torch.Tensor
    yt: np.ndarray
    num_classes: int
    device: torch.device


def _inputs(name: str, x, device) -> torch.Tensor:
    """``x`` as a tensor on ``device``: float64 tensors stay float64 (for float64 checks), anything else float32."""
    keep = isinstance(x, torch.Tensor) and x.dtype == torch.float64
    try:
        t = torch.as_tensor(x, dtype=torch.float64 if keep else torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be an array or tensor of numbers") from None
    if t.dim() < 1 or t.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {tuple(t.shape)}")
    return t


def _labels(name: str, y, n: int, num_classes: int, x_name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array with one label per row of {x_name} ({n}); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} has labels outside [0, num_classes={num_classes})")
    return y.astype(np.int64)


def _tasks(xs, ys, xt, yt, num_classes, device) -> _Tasks:
    check_positive("num_classes", num_classes, integer=True)
    device = torch.device(device)
    xs_t, xt_t = _inputs("xs", xs, device), _inputs("xt", xt, device)
    if xs_t.shape[1:] != xt_t.shape[1:]:
        raise ValueError(f"xs and xt have samples of different shapes: {tuple(xs_t.shape[1:])} and {tuple(xt_t.shape[1:])}")
    ys_n = _labels("ys", ys, xs_t.shape[0], num_classes, "xs")
    yt_n = _labels("yt", yt, xt_t.shape[0], num_classes, "xt")
    return _Tasks(xs_t, ys_n, xt_t, yt_n, num_classes, device)


def _check_draw(tau, n, rng) -> float:
    check_in_range("tau", tau, 0.0, 1.0)
    check_positive("n", n, integer=True)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    return float(tau)


def _draw_pairs(coupling: Any, ns: int, nt: int, n: int, rng: np.random.Generator,
                block_sampling: str = "per_sample") -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs (i, j) from a coupling: an :class:`OTPlan` or (ns, nt) array, a :class:`BlockPlan`, or index pairs.

    ``block_sampling`` ("per_sample" or "per_batch") applies to a :class:`BlockPlan` only.
    """
    if isinstance(coupling, BlockPlan):
        if (coupling.assignment.ns, coupling.assignment.nt) != (ns, nt):
            raise ValueError(f"pairs_or_plan couples {coupling.assignment.ns} to {coupling.assignment.nt} samples; "
                             f"the tasks have {ns} and {nt}")
        return coupling.sample_pairs(n, rng, block_sampling=block_sampling)
    if isinstance(coupling, tuple) and len(coupling) == 2:  # explicit pairs: uniform over them
        i, j = (np.asarray(c) for c in coupling)
        if i.ndim != 1 or i.shape != j.shape or i.size == 0 or not np.issubdtype(i.dtype, np.integer) \
                or not np.issubdtype(j.dtype, np.integer):
            raise ValueError("pairs_or_plan as pairs must be two non-empty integer index arrays of one length")
        if i.min() < 0 or i.max() >= ns or j.min() < 0 or j.max() >= nt:
            raise ValueError(f"pairs_or_plan has indices outside [0, {ns}) x [0, {nt})")
        k = rng.integers(i.size, size=n)
        return i[k].astype(np.int64), j[k].astype(np.int64)
    P = coupling.plan if isinstance(coupling, OTPlan) else coupling
    if isinstance(P, torch.Tensor):
        P = P.detach().cpu().numpy()
    try:
        P = np.asarray(P, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("pairs_or_plan must be an OTPlan, an (ns, nt) array, a BlockPlan or a pair of index arrays") from None
    if P.shape != (ns, nt):
        raise ValueError(f"pairs_or_plan has shape {P.shape}; expected ({ns}, {nt}) for the tasks given")
    if not np.isfinite(P).all() or (P < 0).any() or not P.sum() > 0:
        raise ValueError("pairs_or_plan must have finite non-negative entries and positive total mass")
    flat = rng.choice(P.size, size=n, p=(P / P.sum()).ravel())
    return np.divmod(flat, nt)


def _combine(tasks: _Tasks, i: np.ndarray, j: np.ndarray, t: np.ndarray) -> InterpolatedBatch:
    """:math:`x = (1-t) x_s^i + t x_t^j`, :math:`y = (1-t)\\delta_{y_s^i} + t\\delta_{y_t^j}` per sample."""
    n = len(i)
    dev = tasks.device
    # the same values as indexing with torch.as_tensor(..., dtype=float32), with less per-call overhead
    tt = torch.from_numpy(np.asarray(t, dtype=np.float32)).to(dev).reshape((n,) + (1,) * (tasks.xs.dim() - 1))
    xi = tasks.xs.index_select(0, torch.from_numpy(np.asarray(i, dtype=np.int64)).to(dev))
    xj = tasks.xt.index_select(0, torch.from_numpy(np.asarray(j, dtype=np.int64)).to(dev))
    x = xi * (1 - tt) + xj * tt
    y = np.zeros((n, tasks.num_classes))
    rows = np.arange(n)
    y[rows, tasks.ys[i]] += 1 - t
    y[rows, tasks.yt[j]] += t
    return InterpolatedBatch(x, torch.from_numpy(y.astype(np.float32)).to(dev))


def _displacement(tasks: _Tasks, coupling, tau: float, n: int, rng: np.random.Generator,
                  block_sampling: str = "per_sample") -> InterpolatedBatch:
    i, j = _draw_pairs(coupling, tasks.xs.shape[0], tasks.xt.shape[0], n, rng, block_sampling)
    return _combine(tasks, i, j, np.full(n, tau))


def _beta_mixup(tasks: _Tasks, coupling, tau: float, n: int, rng: np.random.Generator,
                block_sampling: str = "per_sample") -> InterpolatedBatch:
    i, j = _draw_pairs(coupling, tasks.xs.shape[0], tasks.xt.shape[0], n, rng, block_sampling)
    t = rng.beta(tau, 1 - tau, size=n) if 0 < tau < 1 else np.full(n, tau)  # Beta(0, 1), Beta(1, 0): point masses
    return _combine(tasks, i, j, t)


def _mixture(tasks: _Tasks, tau: float, n: int, rng: np.random.Generator) -> InterpolatedBatch:
    from_target = rng.random(n) < tau  # never at tau = 0, always at tau = 1
    i = rng.integers(tasks.xs.shape[0], size=n)
    j = rng.integers(tasks.xt.shape[0], size=n)
    dev = tasks.device
    x = tasks.xs[torch.as_tensor(i, device=dev)]
    ft = torch.as_tensor(from_target, device=dev)
    x[ft] = tasks.xt[torch.as_tensor(j[from_target], device=dev)]
    labels = np.where(from_target, tasks.yt[j], tasks.ys[i])
    y = np.zeros((n, tasks.num_classes))
    y[np.arange(n), labels] = 1.0
    return InterpolatedBatch(x, torch.as_tensor(y, dtype=torch.float32, device=dev))


def displacement_sample(xs, ys, xt, yt, pairs_or_plan, tau: float, n: int, rng: np.random.Generator, *,
                        num_classes: int, device: str | torch.device = "cpu") -> InterpolatedBatch:
    r"""``n`` samples of McCann's displacement interpolation at time ``tau``, Eqs. (7)-(8) of [Gao & Chaudhari 2021].

    .. math::

        \hat p_\tau(x, y) = \sum_{i,j} \Gamma_{ij}\,
        \delta_{(1-\tau) x_s^i + \tau x_t^j}(x)\,
        \delta_{(1-\tau) y_s^i + \tau y_t^j}(y),

    where :math:`y_s^i, y_t^j` are one-hot labels (Remark 11 of [Gao & Chaudhari 2020]).

    Parameters
    ----------
    xs : (Ns, ...) source inputs; ys : (Ns,) integer labels.
    xt : (Nt, ...) target inputs of the same sample shape; yt : (Nt,) integer labels.
    pairs_or_plan : the coupling :math:`\Gamma`: an :class:`~ctd_lib.transport.OTPlan` or
        (Ns, Nt) array (pairs drawn by a multinomial over its entries), a
        :class:`~ctd_lib.transport.BlockPlan` (its ``sample_pairs``), or a tuple
        ``(i, j)`` of index arrays (uniform over the listed pairs).
    tau : time in [0, 1].
    n : number of samples.
    rng : the only source of randomness.
    num_classes : width of the label distributions.
    device : where the tensors are returned.

    Returns
    -------
    :class:`InterpolatedBatch`: ``x`` (n, ...) float32, ``y`` (n, num_classes) float32.

    >>> xs, xt = np.zeros((2, 3)), np.ones((2, 3))
    >>> b = displacement_sample(xs, [0, 0], xt, [1, 1], np.eye(2) / 2, 0.25, 2, np.random.default_rng(0), num_classes=2)
    >>> b.x.tolist(), b.y.tolist()
    ([[0.25, 0.25, 0.25], [0.25, 0.25, 0.25]], [[0.75, 0.25], [0.75, 0.25]])
    """
    tau = _check_draw(tau, n, rng)
    return _displacement(_tasks(xs, ys, xt, yt, num_classes, device), pairs_or_plan, tau, n, rng)


def beta_mixup_sample(xs, ys, xt, yt, pairs_or_plan, tau: float, n: int, rng: np.random.Generator, *,
                      num_classes: int, device: str | torch.device = "cpu") -> InterpolatedBatch:
    r"""Displacement interpolation with a Beta-distributed coefficient, Sec. 3.4 of [Gao & Chaudhari 2021].

    .. math::

        (i, j) \sim \Gamma, \quad t \sim \mathrm{Beta}(\tau, 1 - \tau), \quad
        x = (1-t) x_s^i + t x_t^j, \quad y = (1-t) y_s^i + t y_t^j,

    with :math:`t` drawn independently per sample; :math:`\mathbb{E}\,t = \tau`.
    At :math:`\tau \in \{0, 1\}` the Beta law is a point mass and :math:`t = \tau` exactly.
    Arguments as in :func:`displacement_sample`.
    """
    tau = _check_draw(tau, n, rng)
    return _beta_mixup(_tasks(xs, ys, xt, yt, num_classes, device), pairs_or_plan, tau, n, rng)


def mixture_sample(xs, ys, xt, yt, tau: float, n: int, rng: np.random.Generator, *,
                   num_classes: int, device: str | torch.device = "cpu") -> InterpolatedBatch:
    r"""``n`` samples of the mixture of Eq. (9) of [Gao & Chaudhari 2021].

    .. math::

        \hat p_\tau(x, y) = (1-\tau)\,\hat p_s(x, y) + \tau\,\hat p_t(x, y):

    each sample is a uniformly drawn target sample with probability
    :math:`\tau`, else a uniformly drawn source sample, with the one-hot label of its own.
    Arguments as in :func:`displacement_sample`, without a coupling.
    """
    tau = _check_draw(tau, n, rng)
    return _mixture(_tasks(xs, ys, xt, yt, num_classes, device), tau, n, rng)


@dataclass(frozen=True)
class Interpolation:
    """A sampler of :math:`\\hat p_\\tau` with the tasks validated and moved to the device once.

    Call it as ``sampler(tau, n, rng)``; see :func:`make_sampler`.
    """

    kind: str
    tasks: _Tasks
    coupling: Any = None
    block_sampling: str = "per_sample"

    def __call__(self, tau: float, n: int, rng: np.random.Generator) -> InterpolatedBatch:
        tau = _check_draw(tau, n, rng)
        if self.kind == "mixture":
            return _mixture(self.tasks, tau, n, rng)
        run = _displacement if self.kind == "displacement" else _beta_mixup
        return run(self.tasks, self.coupling, tau, n, rng, self.block_sampling)


def make_sampler(kind: str, xs, ys, xt, yt, coupling=None, *, num_classes: int,
                 device: str | torch.device = "cpu", block_sampling: str = "per_sample") -> Interpolation:
    """A sampler of the interpolated task of the given ``kind`` ("displacement", "beta-mixup" or "mixture").

    ``coupling`` (as ``pairs_or_plan`` of :func:`displacement_sample`) is required
    for "displacement" and "beta-mixup" and ignored by "mixture". With a
    :class:`~ctd_lib.transport.BlockPlan`, ``block_sampling="per_batch"`` draws every
    pair of one call from a single block (Sec. 3.4); "per_sample" a block per pair.

    >>> s = make_sampler("mixture", np.zeros((3, 2)), [0, 1, 2], np.ones((4, 2)), [3, 3, 3, 3], num_classes=4)
    >>> s(1.0, 2, np.random.default_rng(0)).y.tolist()
    [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
    """
    check_choice("kind", kind, INTERPOLATIONS)
    check_choice("block_sampling", block_sampling, ("per_sample", "per_batch"))
    tasks = _tasks(xs, ys, xt, yt, num_classes, device)
    if kind != "mixture":
        if coupling is None:
            raise ValueError(f"coupling is required for kind={kind!r}")
        _draw_pairs(coupling, tasks.xs.shape[0], tasks.xt.shape[0], 1, np.random.default_rng(0))  # validates it
    return Interpolation(kind, tasks, coupling, block_sampling)
