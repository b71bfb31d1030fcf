r"""Iso-classification transfer of a representation to a new task (Sec. 4 of [Gao & Chaudhari 2020]).

A model at equilibrium on a source task for multipliers :math:`(\lambda_0, \gamma_0)`
is moved to a target task while the data distribution moves from the source to
the target, :math:`t: 0 \to 1`, either as the mixture (labels kept)

.. math::

    p(x, t) = (1 - t)\, p^s(x) + t\, p^t(x)  \qquad \text{(23)}

or along the optimal-transport interpolation of Appendix F,

.. math::

    p(x, t) = \sum_{ij} \Gamma^*_{ij}\, \delta_{x - (1-t) x^s_i - t x^t_j}, \qquad
    y(x, t) = (1-t)\, \delta_{y - y^s_i} + t\, \delta_{y - y^t_j}
    \qquad \text{(37, Remark 11)}

with :math:`\Gamma^*` the optimal coupling (36) for the squared pixel cost
:math:`\kappa_{ij} = \|x^s_i - x^t_j\|_2^2`. At every step the multipliers are
changed so that the classification loss :math:`C` stays constant (Lemma 9,
Eq. 26) and the model is re-equilibrated on :math:`p(x, t + \Delta t)`. The
geodesic transfer of Sec. 4.3 also asks the rate and distortion to move on a
straight line, :math:`\dot D = k \dot R`, which gives the linear system

.. math::

    \begin{pmatrix} \partial_\lambda D & \partial_\gamma D \\
                    \partial_\lambda C & \partial_\gamma C \end{pmatrix}
    \begin{pmatrix} \dot\lambda \\ \dot\gamma \end{pmatrix} =
    \begin{pmatrix} \dfrac{k\, \partial_t R|_{D, C}}{1 + k\lambda} - \partial_t D \\
                    -\partial_t C \end{pmatrix}  \qquad \text{(30)}

Sec. 4.3 derives row 1 from :math:`\dot R = -\lambda \dot D + \partial R/\partial t`, with
:math:`R` a function of :math:`(D, C, t)` on the equilibrium surface, so its
:math:`\partial R/\partial t` is taken **at fixed** :math:`D` **and** :math:`C`. The finite
differences give the partials at fixed multipliers, :math:`R_t, D_t, C_t`; since
:math:`\partial R/\partial D = -\lambda` and :math:`\partial R/\partial C = -\gamma` on the surface
(Eq. 29), the chain rule gives

.. math::

    \partial_t R|_{D, C} = R_t + \lambda D_t + \gamma C_t
    \qquad (\texttt{eq30\_reading="derived"}, \text{the default}),

while ``eq30_reading="fixed_multipliers"`` puts :math:`R_t` itself in row 1 (the
literal symbol of Eq. 30, and this module's reading before).

and the heuristic of Appendix G fixes :math:`\dot\lambda` and takes
:math:`\dot\gamma` from the second row alone,

.. math::

    \partial_\lambda C\, \dot\lambda + \partial_\gamma C\, \dot\gamma + \partial_t C = 0.
    \qquad \text{(38)}

where :math:`R, D, C` are the rate, distortion and classification functionals
of :mod:`ctd_lib.free_energy` measured on data at time :math:`t`, and
:math:`k = dD/dR` is the slope of the straight line.

Choices where the paper is silent, each a field of :class:`IsoTransferConfig`:

* **Partial derivatives** are finite differences. In :math:`\lambda` and
  :math:`\gamma` they are central, with half-widths ``fd_rel_lambda * lambda``
  and ``fd_rel_gamma * gamma``; each probe is a copy of the current model
  equilibrated for ``fd_equilibration.steps`` on :math:`p(x, t_k)` at the
  probed multipliers, then measured. In :math:`t` the difference is forward,
  over one data step :math:`\Delta t = 1/\text{steps}`: with
  ``t_derivative="equilibrate"`` two more probes are equilibrated at the
  current multipliers, one on :math:`p(x, t_k)` and one on
  :math:`p(x, t_k + \Delta t)`, and their functionals (each at its own
  :math:`t`) are differenced, so that the response of the weights to the data
  (the :math:`\theta_t` terms of Eq. 27) is included and the extra training of
  the probe cancels; ``"frozen"`` measures the current weights on the data at
  :math:`t_k + \Delta t` and :math:`t_k` (only the first term of Eq. 27). All
  probes of a step use common random numbers: the same seed for mini-batches,
  noise and dropout, and the same evaluation data.
* **Functionals at** :math:`t` are measured on fixed evaluation sets (at most
  ``eval_size`` samples per task, drawn once with the seed). For the mixture
  they are the exact mixtures :math:`(1-t)\,\cdot^s + t\,\cdot^t` of the
  functionals measured on source and target sets
  (:meth:`~ctd_lib.free_energy.FreeEnergyTerms.mix`), which has less variance
  than sampling the mixture. For optimal transport they are measured on fixed
  pairs drawn once from the coupling (all its support when the coupling is a
  permutation with at most ``eval_size`` pairs), the held-out pairs from a
  coupling between the source and target held-out sets.
* **The slope** :math:`k` (``slope=None``) is that of the straight line from
  the source model's :math:`(R, D)` at :math:`t = 0` to the :math:`(R, D)` of
  a copy equilibrated on the target at the same :math:`(\lambda_0, \gamma_0)`
  (one extra equilibration, ``slope_equilibration`` or else ``equilibration``;
  :math:`k = 0` with a warning if the two rates coincide). A short
  equilibration moves :math:`R` little, so :math:`k` is then large and noisy:
  give the copy enough updates to reach the target's equilibrium.
* **Fallbacks**, never a silent division by zero: when the matrix of (30) is
  singular, its condition number exceeds ``max_condition`` or
  :math:`1 + k\lambda \approx 0`, the step uses (38) with :math:`\dot\lambda = 0`;
  when :math:`\partial_\gamma C \approx 0` as well, the multipliers are kept.
  Every fallback warns (``RuntimeWarning``) and is logged and counted.
* **The slope rule** (``slope_rule``): ``"endpoints"`` takes the endpoint :math:`k` as it is;
  ``"endpoints_clamped"`` (the default) raises it to at least :math:`(m - 1)/\lambda_0`, with
  :math:`m` = ``slope_margin``, so that :math:`1 + k\lambda_0 \ge m`. At :math:`k = -1/\lambda`
  the line is tangent to the iso-:math:`C` rate-distortion curve of the current task
  (:math:`dD/dR = -1/\lambda` by Eq. 29) and row 1 of (30) asks for an infinite :math:`\dot D`;
  the clamp keeps :math:`k` on the side of that singular value that holds :math:`k = 0`
  (constant distortion). A step whose :math:`|1 + k\lambda_k|` < ``min_denominator`` falls back.
  The endpoint :math:`k` and :math:`1 + k\lambda_0` are recorded either way.
* **Soft labels** (``"ot"``): with Remark 11's labels the cross-entropy is at least the label
  entropy :math:`H(y) = -\sum_c y_c \log y_c` (:math:`\ln 2` at :math:`t = 1/2` for two distinct
  classes), which no model can go below. With ``c_measure="excess"`` (the default) :math:`C` is
  the excess :math:`\mathrm{CE} - H(y)`, the KL divergence from the soft label to the
  prediction, which is 0 for a perfect prediction; :math:`H(y)` does not depend on
  :math:`\theta`, so the equilibrations are unchanged, only what is held constant. The raw CE
  is :math:`C + H(y)`, and :math:`H(y)` is recorded at every :math:`t_k`. Hard labels have
  :math:`H(y) = 0`.
* **The authors' controller** (``method="repeat_equilibration"``, the README's "transfer 0-4 to
  5-9 in 25 mixing steps with a heuristic that raises gamma when the loss rises"; see
  :mod:`ctd_lib.free_energy.repeat_controller`): no partials; after each equilibration, while
  held-out :math:`C > C_0 (1 + \text{controller\_tolerance})` and fewer than
  ``controller_max_repeats`` repeats were taken, :math:`\gamma \leftarrow
  \min(\text{controller\_gamma\_factor}\cdot\gamma, \text{controller\_gamma\_max})` and
  the equilibration is repeated; :math:`\lambda` stays at :math:`\lambda_0`.
* **Trust region**: with :math:`m` = ``max_rel_change``, each step keeps
  :math:`\lambda_{k+1} \in [\lambda_k/(1+m), (1+m)\lambda_k]` and likewise
  :math:`\gamma` (each component clipped on its own): an increase by at most the
  fraction :math:`m`, a decrease by at most the same factor, so that a multiplier
  is never driven to zero in one step by a noisy :math:`\partial_\gamma C`. Both
  also stay above ``min_multiplier``. Every clip is counted.

The baselines of Sec. 5.2 (:func:`finetune_baseline`, :func:`scratch_baseline`)
minimise the same objective :math:`R + \lambda D + \gamma C` on the target
alone, given :func:`transfer_budget` mini-batch updates.
"""
from __future__ import annotations

import copy
import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .._util.checks import check_choice, check_count, check_positive
from .._util.progress import progress
from .._util.torch_state import device_of
from ..data import Task
from ..transport.blocks import BlockPlan, block_plan, match_blocks
from ..transport.costs import pixel_cost
from ..transport.dense import exact_plan
from ..transport.interpolation import InterpolatedBatch, make_sampler
from .equilibrate import EquilibrationConfig, equilibrate
from .finite_differences import Partials, central_differences
from .functionals import FreeEnergyTerms, measure
from .model import FreeEnergyModel
from .repeat_controller import repeat_until_held
from .surface import max_rel_change

__all__ = [
    "C_MEASURES", "EQ30_READINGS", "INTERPOLATIONS", "IsoTransferConfig", "SLOPE_RULES", "IsoTransferResult", "METHODS", "OT_SOLVERS", "StepSolution", "TERMS",
    "T_DERIVATIVES", "TaskPath", "TransferPartials", "c_max_rel_change", "iso_transfer", "solve_step",
    "fixed_multiplier_control", "FixedMultiplierControl", "ProbeLengthCheck", "label_entropy", "probe_length_check",
    "transfer_budget", "transfer_partials"
]

METHODS = ("geodesic", "heuristic", "repeat_equilibration")
EQ30_READINGS = ("derived", "fixed_multipliers")
SLOPE_RULES = ("endpoints_clamped", "endpoints")
C_MEASURES = ("excess", "raw")
INTERPOLATIONS = ("mixture", "ot")
T_DERIVATIVES = ("equilibrate", "frozen")
OT_SOLVERS = ("exact", "block")
TERMS = ("rate", "distortion", "classification", "accuracy")
_TINY = 1e-12  # |dC/dgamma| <= _TINY * max(1, |entries|) counts as zero; so does |1 + k lambda| <= _TINY


@dataclass(frozen=True, kw_only=True)
class IsoTransferConfig:
    """Configuration of :func:`iso_transfer`."""

    steps: int = 10  # transfer steps; t_k = k / steps (at least 2)
    method: str = "geodesic"  # "geodesic": Eq. (30) of Sec. 4.3; "heuristic": Eq. (38) of Appendix G;
    #   "repeat_equilibration": the authors' controller (repeat equilibrations, raising gamma, until held-out C <= C_0)
    eq30_reading: str = "derived"  # row 1 of Eq. (30): "derived": dR/dt|_{D,C} = R_t + lam D_t + gamma C_t;
    #   "fixed_multipliers": R_t at fixed (lambda, gamma)
    slope_rule: str = "endpoints_clamped"  # slope=None: "endpoints" as measured, or clamped to 1 + k lam0 >= margin
    slope_margin: float = 0.5  # the clamp's margin m: 1 + k lam0 >= m (in (0, 1])
    min_denominator: float = 0.05  # a geodesic step with |1 + k lambda_k| below this falls back to Eq. (38)
    c_measure: str = "excess"  # soft labels (OT): "excess": C = CE - H(y) (Remark 11's floor removed); "raw": CE
    controller_gamma_factor: float = 1.5  # the authors' controller: gamma *= this per repeat (> 1)
    controller_max_repeats: int = 3  # ... at most this many repeated equilibrations per step (>= 0)
    controller_tolerance: float = 0.0  # ... until held-out C <= C_0 (1 + this) (>= 0)
    controller_gamma_max: float = 1e4  # ... gamma never above this
    interpolation: str = "mixture"  # "mixture": Eq. (23), labels kept; "ot": Eq. (37), labels interpolated (Remark 11)
    slope: float | None = None  # k = dD/dR of Eq. (30); None: from source and target equilibria at (lam0, gamma0)
    lambda_rate: float = 0.0  # the constant lambda-dot of the heuristic, Eq. (38) (the paper's CIFAR run: -1.5)
    fd_rel_lambda: float = 0.1  # central finite-difference half-width in lambda, relative to lambda (in (0, 1))
    fd_rel_gamma: float = 0.1  # the same in gamma
    t_derivative: str = "equilibrate"  # d/dt: "equilibrate" probes at t and t + dt, or "frozen": current weights
    fd_equilibration: EquilibrationConfig = EquilibrationConfig(steps=100)  # each probe's short equilibration
    equilibration: EquilibrationConfig = EquilibrationConfig(steps=300)  # after each step, on p(x, t_{k+1})
    slope_equilibration: EquilibrationConfig | None = None  # the target copy behind slope=None; None: equilibration
    max_condition: float = 1e6  # above this 2-norm condition number of Eq. (30)'s matrix, fall back to Eq. (38)
    min_multiplier: float = 1e-3  # lambda and gamma are kept >= this (each clip counted)
    max_rel_change: float | None = 0.5  # trust region m: lam_k+1 in [lam_k/(1+m), (1+m) lam_k], gamma too; None: off
    eval_size: int = 2000  # fixed evaluation samples (or pairs) per task for the functionals
    ot_solver: str = "exact"  # "exact": ot.emd on the full pixel cost; "block": exact plans on matched blocks
    ot_block_size: int = 500  # largest block of the "block" solver (transport.match_blocks)
    n_z_measure: int = 8  # encoder samples per input when measuring the functionals (measure's n_z)
    seed: int = 0  # seeds evaluation subsets, pairs, probes and equilibrations

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 2:
            raise ValueError(f"steps={self.steps!r} is not valid; it must be an integer >= 2 (a finite difference "
                             "in t needs at least two steps)")
        check_choice("method", self.method, METHODS)
        check_choice("eq30_reading", self.eq30_reading, EQ30_READINGS)
        check_choice("slope_rule", self.slope_rule, SLOPE_RULES)
        check_choice("c_measure", self.c_measure, C_MEASURES)
        check_positive("slope_margin", self.slope_margin)
        if self.slope_margin > 1:
            raise ValueError(f"slope_margin={self.slope_margin!r} is not valid; it must be in (0, 1]")
        check_positive("min_denominator", self.min_denominator)
        check_positive("controller_gamma_factor", self.controller_gamma_factor)
        if not self.controller_gamma_factor > 1:
            raise ValueError(f"controller_gamma_factor={self.controller_gamma_factor!r} is not valid; it must be > 1")
        check_count("controller_max_repeats", self.controller_max_repeats)
        _check_finite("controller_tolerance", self.controller_tolerance)
        if self.controller_tolerance < 0:
            raise ValueError(f"controller_tolerance={self.controller_tolerance!r} is not valid; it must be >= 0")
        check_positive("controller_gamma_max", self.controller_gamma_max)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("t_derivative", self.t_derivative, T_DERIVATIVES)
        check_choice("ot_solver", self.ot_solver, OT_SOLVERS)
        if self.slope is not None:
            _check_finite("slope", self.slope)
        _check_finite("lambda_rate", self.lambda_rate)
        for name in ("fd_rel_lambda", "fd_rel_gamma"):
            v = getattr(self, name)
            check_positive(name, v)
            if not v < 1:
                raise ValueError(f"{name}={v!r} is not valid; it must be in (0, 1) so that the probe "
                                 "lambda - h (gamma - h) stays positive")
        for name in ("fd_equilibration", "equilibration", "slope_equilibration"):
            if name == "slope_equilibration" and self.slope_equilibration is None:
                continue
            if not isinstance(getattr(self, name), EquilibrationConfig):
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; it must be an EquilibrationConfig")
        check_positive("max_condition", self.max_condition)
        check_positive("min_multiplier", self.min_multiplier)
        if self.max_rel_change is not None:
            check_positive("max_rel_change", self.max_rel_change)
        for name in ("eval_size", "ot_block_size", "n_z_measure"):
            check_positive(name, getattr(self, name), integer=True)
        check_count("seed", self.seed)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number") from None
    if not math.isfinite(v) or isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number")
    return v


def transfer_budget(config: IsoTransferConfig) -> int:
    """Mini-batch updates :func:`iso_transfer` takes with ``config``: probes, equilibrations and the slope's.

    With ``method="repeat_equilibration"``: at most ``steps * equilibration.steps *
    (1 + controller_max_repeats)`` (the number taken is the result's ``n_updates``).
    Otherwise, per step: four probes in :math:`(\\lambda, \\gamma)`, two more in :math:`t` when
    ``t_derivative="equilibrate"``, each of ``fd_equilibration.steps`` updates,
    and one equilibration of ``equilibration.steps``; plus one equilibration on the
    target when the geodesic's slope is estimated (``slope=None``).

    >>> transfer_budget(IsoTransferConfig(steps=2, fd_equilibration=EquilibrationConfig(steps=10),
    ...                                   equilibration=EquilibrationConfig(steps=20)))
    180
    """
    if not isinstance(config, IsoTransferConfig):
        raise ValueError(f"config must be an IsoTransferConfig; got {type(config).__name__}")
    if config.method == "repeat_equilibration":  # the most the authors' controller can take
        return config.steps * config.equilibration.steps * (1 + config.controller_max_repeats)
    probes = 4 + (2 if config.t_derivative == "equilibrate" else 0)
    per_step = probes * config.fd_equilibration.steps + config.equilibration.steps
    slope = _slope_equilibration(config).steps if (config.method == "geodesic" and config.slope is None) else 0
    return config.steps * per_step + slope


def _slope_equilibration(config: IsoTransferConfig) -> EquilibrationConfig:
    return config.equilibration if config.slope_equilibration is None else config.slope_equilibration


# ----------------------------------------------------------------------------
# data at time t
# ----------------------------------------------------------------------------


def _subset(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, size)`` sorted indices drawn without replacement (all of them when n <= size)."""
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def label_entropy(y: torch.Tensor) -> float:
    r"""Mean entropy of soft labels, :math:`\bar H = \frac1n \sum_i -\sum_c y_{ic} \log y_{ic}` (:math:`0 \log 0 = 0`).

    The floor of the cross-entropy with Remark 11's soft labels: for any prediction
    :math:`q`, :math:`-\sum_c y_c \log q_c = H(y) + \mathrm{KL}(y \| q) \ge H(y)`.
    ``y`` (n, C) float rows summing to 1, or (n,) int labels (entropy 0).

    >>> round(label_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]])), 6)  # (ln 2 + 0) / 2
    0.346574
    """
    if y.dim() == 1:
        return 0.0
    y = y.double()
    return float(-(torch.where(y > 0, y * torch.log(y.clamp_min(1e-300)), torch.zeros_like(y))).sum(1).mean())


def _one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.long(), num_classes).float()


def _coupling(xs: torch.Tensor, xt: torch.Tensor, cfg: IsoTransferConfig):
    """:math:`\\Gamma^*` of Eq. (36) for the squared pixel cost: an OTPlan ("exact") or a BlockPlan ("block")."""
    if cfg.ot_solver == "exact":
        return exact_plan(None, None, pixel_cost(xs, xt))
    fs = xs.reshape(xs.shape[0], -1).double().cpu().numpy()
    ft = xt.reshape(xt.shape[0], -1).double().cpu().numpy()
    block = max(cfg.ot_block_size, math.ceil(max(len(fs), len(ft)) / min(len(fs), len(ft))))
    assignment = match_blocks(fs, ft, block, method="centroid", seed=cfg.seed)
    return block_plan(lambda I, J: pixel_cost(fs[I], ft[J]), assignment, exact=True)


def _support(plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Non-zero entries :math:`(i, j, \Gamma_{ij})` of a coupling, weights normalised; no dense matrix for blocks."""
    if isinstance(plan, BlockPlan):
        parts = []
        for I, J, p in zip(plan.assignment.source_blocks, plan.assignment.target_blocks, plan.plans):
            r, c = np.nonzero(p > 0)
            parts.append((np.asarray(I)[r], np.asarray(J)[c], p[r, c]))
        i, j, w = (np.concatenate(v) for v in zip(*parts))
    else:
        P = np.asarray(plan.plan)
        i, j = np.nonzero(P > 0)
        w = P[i, j]
    return i.astype(np.int64), j.astype(np.int64), w / w.sum()


def _eval_pairs(support, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Fixed evaluation pairs (i, j) of a coupling: its whole support when that is uniform and small, else a draw."""
    i, j, w = support
    if len(i) <= size and np.allclose(w, w.mean(), rtol=1e-6, atol=0):
        return i, j
    k = rng.choice(len(w), size=size, p=w)
    return i[k], j[k]


class TaskPath:
    r"""The task at time :math:`t \in [0, 1]`: a training sampler and the functionals on fixed evaluation data.

    Parameters
    ----------
    interpolation : "mixture" (Eq. 23: each example from the target with probability
        :math:`t`, its own label kept) or "ot" (Eq. 37: pairs :math:`(i, j) \sim \Gamma^*`,
        :math:`x = (1-t)x^s_i + t x^t_j`, soft label :math:`(1-t)e_{y^s_i} + t e_{y^t_j}`, Remark 11).
    source, target : tasks with one input shape and one head.
    config : supplies ``eval_size``, ``ot_solver``, ``ot_block_size`` and ``seed``.
    device : where the data are kept (the model's device).
    rng : draws the evaluation subsets and pairs (default: ``np.random.default_rng(config.seed)``).
    train : also build the mini-batch sampler (False for held-out data).

    Attributes
    ----------
    plan : the coupling :math:`\Gamma^*` (an :class:`~ctd_lib.transport.OTPlan` or
        :class:`~ctd_lib.transport.BlockPlan`; None for the mixture).
    src, tgt : fixed evaluation (x, int y) of the source and target (mixture); ``tgt`` also for "ot".
    support : (i, j, w) the non-zero entries of ``plan`` and their normalised weights ("ot" only).
    pairs : (xs, one-hot ys, xt, one-hot yt) of the fixed evaluation pairs ("ot" only).
    """

    def __init__(self, interpolation: str, source: Task, target: Task, config: IsoTransferConfig | None = None, *,
                 device: str | torch.device = "cpu", rng: np.random.Generator | None = None, train: bool = True):
        cfg = IsoTransferConfig() if config is None else config
        check_choice("interpolation", interpolation, INTERPOLATIONS)
        _check_task("source", source)
        _check_task("target", target)
        device = torch.device(device)
        rng = np.random.default_rng(cfg.seed) if rng is None else rng
        self.kind, self.C, self.device = interpolation, source.num_classes, device
        self.c_measure = cfg.c_measure
        kind = interpolation
        xs, ys, xt, yt = source.x.to(device), source.y.to(device), target.x.to(device), target.y.to(device)
        self.sampler: Callable[..., Any] | None = None  # draws training batches of p_t (train=True)
        self.plan, self.pairs = None, None
        self.src: tuple[torch.Tensor, torch.Tensor] | None = None
        if kind == "mixture":
            if train:
                self.sampler = make_sampler("mixture", xs, ys.cpu(), xt, yt.cpu(), num_classes=self.C, device=device)
            i, j = _subset(len(xs), cfg.eval_size, rng), _subset(len(xt), cfg.eval_size, rng)
            self.src = (xs[torch.as_tensor(i, device=device)], ys[torch.as_tensor(i, device=device)])
            self.tgt = (xt[torch.as_tensor(j, device=device)], yt[torch.as_tensor(j, device=device)])
        else:
            self.plan = _coupling(xs, xt, cfg)
            self.support = _support(self.plan)
            if train:
                self._tasks = (xs, _one_hot(ys, self.C), xt, _one_hot(yt, self.C))
                self.sampler = self._displacement
            i, j = _eval_pairs(self.support, cfg.eval_size, rng)
            ti, tj = torch.as_tensor(i, device=device), torch.as_tensor(j, device=device)
            self.pairs = (xs[ti], _one_hot(ys[ti], self.C), xt[tj], _one_hot(yt[tj], self.C))
            self.src = None
            k = _subset(len(xt), cfg.eval_size, rng)
            self.tgt = (xt[torch.as_tensor(k, device=device)], yt[torch.as_tensor(k, device=device)])

    def _displacement(self, t: float, n: int, rng: np.random.Generator):
        """``n`` draws of Eq. (37) with Remark 11's labels: as ``make_sampler("displacement", ...)``, but pairs
        are drawn from the coupling's support (at most Ns + Nt - 1 entries for an exact plan) instead of a
        multinomial over all Ns x Nt entries at every mini-batch."""
        i, j, w = self.support
        k = rng.choice(len(w), size=n, p=w)
        ti, tj = torch.as_tensor(i[k], device=self.device), torch.as_tensor(j[k], device=self.device)
        xs, ys, xt, yt = self._tasks
        return InterpolatedBatch((1 - t) * xs[ti] + t * xt[tj], (1 - t) * ys[ti] + t * yt[tj])

    def eval_data(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed evaluation pairs at time ``t`` ("ot" only): inputs (n, ...) and soft labels (n, C)."""
        if self.pairs is None:
            raise ValueError("eval_data is for interpolation='ot'; the mixture is evaluated on src and tgt")
        xs, ys, xt, yt = self.pairs
        return (1 - t) * xs + t * xt, (1 - t) * ys + t * yt

    def batch_sampler(self, t: float):
        """A sampler ``(n, rng) -> (x, y)`` of :math:`p(x, y, t)` for :func:`~ctd_lib.free_energy.equilibrate`."""
        s = self.sampler
        if s is None:
            raise ValueError("this TaskPath was built with train=False: it has no sampler")

        def sample(n: int, rng: np.random.Generator):
            b = s(t, n, rng)
            return b.x, (b.y.argmax(1) if self.kind == "mixture" else b.y)  # mixture labels are one-hot: kept as ids

        return sample

    def label_entropy(self, t: float) -> float:
        """:math:`H(y)` of the evaluation labels at ``t`` (0 for the mixture's hard labels); see :func:`label_entropy`."""
        return 0.0 if self.kind == "mixture" else label_entropy(self.eval_data(t)[1])

    def terms(self, model: FreeEnergyModel, t: float, *, n_z: int, seed: int) -> FreeEnergyTerms:
        r"""The functionals at time ``t`` on the fixed evaluation data.

        With soft labels ("ot") and ``c_measure="excess"`` the classification entry is the
        excess cross-entropy :math:`\mathrm{CE} - H(y)` (Remark 11; the raw CE is that plus
        :meth:`label_entropy`).
        """
        if self.kind == "mixture":
            assert self.src is not None  # set for the mixture
            a = measure(model, *self.src, n_z=n_z, seed=seed)
            b = measure(model, *self.tgt, n_z=n_z, seed=seed)
            return FreeEnergyTerms.mix(a, b, t)
        x, y = self.eval_data(t)
        raw = measure(model, x, y, n_z=n_z, seed=seed)
        if self.c_measure == "raw":
            return raw
        return replace(raw, classification=raw.classification - label_entropy(y))

    def target_terms(self, model: FreeEnergyModel, *, n_z: int, seed: int) -> FreeEnergyTerms:
        """The functionals on the target's evaluation set alone (its accuracy is the transfer's goal)."""
        return measure(model, *self.tgt, n_z=n_z, seed=seed)


# ----------------------------------------------------------------------------
# partials and the linear system
# ----------------------------------------------------------------------------


#: The partials of the transfer: :class:`~ctd_lib.free_energy.finite_differences.Partials` with its
#: optional :math:`t`-partials (``dR_dt``, ``dD_dt``, ``dC_dt``), ``h_lambda``, ``h_gamma`` and ``dt``
#: filled in. Kept as a name for the transfer's use of the one type.
TransferPartials = Partials


def _equilibrated_copy(model: FreeEnergyModel, sampler, lam: float, gamma: float,
                      cfg: EquilibrationConfig) -> FreeEnergyModel:
    """A copy of ``model`` equilibrated with ``cfg`` (deterministic given ``cfg.seed``: mini-batches, noise, dropout)."""
    probe = copy.deepcopy(model)
    equilibrate(probe, sampler, lam, gamma, cfg, show_progress=False)
    return probe


def transfer_partials(model: FreeEnergyModel, path: TaskPath, t: float, t_next: float, lam: float, gamma: float,
                      cfg: IsoTransferConfig, *, seed: int) -> Partials:
    """The partials at :math:`(t, \\lambda, \\gamma)` used by Eqs. (30) and (38); see the module docstring.

    A :class:`~ctd_lib.free_energy.finite_differences.Partials` with every field filled in: the
    central differences in :math:`(\\lambda, \\gamma)` (four probes), the forward differences in
    :math:`t` (two more probes with ``t_derivative="equilibrate"``), the half-widths and ``dt``.
    """
    fd = replace(cfg.fd_equilibration, seed=seed)
    h_l, h_g = cfg.fd_rel_lambda * lam, cfg.fd_rel_gamma * gamma
    here = path.batch_sampler(t)

    def probe(lam_p: float, gamma_p: float, t_p: float, sampler) -> FreeEnergyTerms:
        return path.terms(_equilibrated_copy(model, sampler, lam_p, gamma_p, fd), t_p, n_z=cfg.n_z_measure, seed=seed)

    d = central_differences(lambda lam_p, gamma_p: probe(lam_p, gamma_p, t, here), lam, gamma, h_l, h_g)
    dt = t_next - t
    if cfg.t_derivative == "equilibrate":
        t0, t1 = probe(lam, gamma, t, here), probe(lam, gamma, t_next, path.batch_sampler(t_next))
    else:
        t0 = path.terms(model, t, n_z=cfg.n_z_measure, seed=seed)
        t1 = path.terms(model, t_next, n_z=cfg.n_z_measure, seed=seed)
    for short, name in (("R", "rate"), ("D", "distortion"), ("C", "classification")):
        d[f"d{short}_dt"] = (getattr(t1, name) - getattr(t0, name)) / dt
    n_probes = 4 + (2 if cfg.t_derivative == "equilibrate" else 0)
    return Partials(**{k: float(v) for k, v in d.items()}, n_probes=n_probes, h_lambda=h_l, h_gamma=h_g, dt=dt)


def _is_zero(v: float, scale: float) -> bool:
    return not math.isfinite(v) or abs(v) <= _TINY * max(1.0, scale)


@dataclass(frozen=True, eq=False)
class StepSolution:
    r"""One step's linear system and its solution, what :func:`solve_step` returns.

    Attributes
    ----------
    matrix : (2, 2) :math:`A = \begin{pmatrix} \partial_\lambda D & \partial_\gamma D \\
        \partial_\lambda C & \partial_\gamma C \end{pmatrix}` of Eq. (30).
    rhs : (2,) :math:`b = (k\,\partial_t R/(1 + k\lambda) - \partial_t D,\ -\partial_t C)`
        (NaN where undefined: no slope, or :math:`1 + k\lambda \approx 0`).
    cond : the 2-norm condition number of ``matrix`` (``inf`` when singular or not finite).
    solution : (2,) :math:`(\dot\lambda, \dot\gamma)` taken.
    method_used : "geodesic" (Eq. 30), "heuristic" (Eq. 38), "heuristic-fallback"
        (Eq. 38 with :math:`\dot\lambda = 0` in place of Eq. 30) or "hold" (zero rates).
    reason : why the step did not use its method as configured (None when it did).
    partials : the :class:`~ctd_lib.free_energy.finite_differences.Partials` behind the
        system (set by :func:`iso_transfer` in its ``systems``; None from :func:`solve_step`).
    clips : how many of :math:`\lambda, \gamma` the trust region or the floor clipped
        after this step (set by :func:`iso_transfer`; 0 from :func:`solve_step`).
    reading : the reading of row 1 of Eq. (30) ("derived" or "fixed_multipliers").
    rate_partial : the :math:`\partial R/\partial t` put in row 1: :math:`R_t + \lambda D_t + \gamma C_t`
        ("derived") or :math:`R_t` ("fixed_multipliers").
    applied : (2,) the rates :math:`(\Delta\lambda, \Delta\gamma)/\Delta t` actually taken after the
        trust region and the floor (set by :func:`iso_transfer`; None from :func:`solve_step`);
        ``solution`` is the unclipped one.
    """

    matrix: np.ndarray
    rhs: np.ndarray
    cond: float
    solution: np.ndarray
    method_used: str
    reason: str | None = None
    partials: Partials | None = field(default=None, repr=False)
    clips: int = 0
    reading: str = "derived"
    rate_partial: float = float("nan")
    applied: np.ndarray | None = None

    @property
    def lam_dot(self) -> float:
        r""":math:`\dot\lambda`, the first entry of ``solution``."""
        return float(self.solution[0])

    @property
    def gamma_dot(self) -> float:
        r""":math:`\dot\gamma`, the second entry of ``solution``."""
        return float(self.solution[1])


def solve_step(p: Partials, lam: float, *, method: str, slope: float | None, lambda_rate: float = 0.0,
               max_condition: float = 1e6, gamma: float | None = None, reading: str = "derived",
               min_denominator: float = _TINY) -> StepSolution:
    r"""The rates :math:`(\dot\lambda, \dot\gamma)` of one step, by Eq. (30) or Eq. (38), with fallbacks.

    .. math::

        A = \begin{pmatrix} \partial_\lambda D & \partial_\gamma D \\ \partial_\lambda C & \partial_\gamma C \end{pmatrix},
        \qquad b = \begin{pmatrix} k\,\rho / (1 + k\lambda) - D_t \\ -C_t \end{pmatrix},
        \qquad \rho = \begin{cases} R_t + \lambda D_t + \gamma C_t & \text{reading="derived"} \\
                                  R_t & \text{reading="fixed\_multipliers"} \end{cases}

    where :math:`R_t, D_t, C_t` are the partials in :math:`t` at fixed multipliers (``p``) and
    :math:`\rho` is Sec. 4.3's :math:`\partial R/\partial t` at fixed :math:`D, C` (derived) or
    Eq. (30)'s symbol read at fixed multipliers; ``gamma`` is needed for "derived".

    "geodesic" solves :math:`A (\dot\lambda, \dot\gamma)^\top = b` (Eq. 30);
    "heuristic" sets :math:`\dot\lambda` = ``lambda_rate`` and
    :math:`\dot\gamma = -(\partial_\lambda C\,\dot\lambda + \partial_t C)/\partial_\gamma C` (Eq. 38).
    A geodesic step whose :math:`A` is singular, has 2-norm condition number
    above ``max_condition`` or whose :math:`|1 + k\lambda|` < ``min_denominator`` uses Eq. (38)
    with :math:`\dot\lambda = 0`; when :math:`\partial_\gamma C \approx 0` too
    (or in the heuristic), the rates are zero.

    ``p`` must carry the partials in :math:`t` (``p.has_t``), as :func:`transfer_partials` gives.

    Returns
    -------
    :class:`StepSolution`: ``matrix``, ``rhs``, ``cond``, ``solution`` =
    :math:`(\dot\lambda, \dot\gamma)`, ``method_used`` ("geodesic", "heuristic",
    "heuristic-fallback" or "hold") and ``reason`` (None unless a fallback was taken).

    >>> p = Partials(dR_dlambda=0.0, dR_dgamma=0.0, dD_dlambda=-1.0, dD_dgamma=0.0, dC_dlambda=0.0,
    ...              dC_dgamma=-1.0, n_probes=6, dR_dt=2.0, dD_dt=0.0, dC_dt=2.0, h_lambda=0.1, h_gamma=0.1, dt=0.5)
    >>> s = solve_step(p, 1.0, method="geodesic", slope=1.0, gamma=0.0)
    >>> s.rhs.tolist(), s.solution.tolist(), s.method_used
    ([1.0, -2.0], [-1.0, 2.0], 'geodesic')
    """
    check_choice("method", method, ("geodesic", "heuristic"))
    check_choice("reading", reading, EQ30_READINGS)
    if reading == "derived" and method == "geodesic" and gamma is None:
        raise ValueError("gamma is required for reading='derived' (row 1 of Eq. 30 uses R_t + lam D_t + gamma C_t)")
    if not isinstance(p, Partials) or not p.has_t:
        raise ValueError("p must be a Partials with the partials in t (dR_dt, dD_dt, dC_dt) filled in, "
                         "as transfer_partials returns")
    dR_dt, dD_dt, dC_dt = float(p.dR_dt or 0.0), float(p.dD_dt or 0.0), float(p.dC_dt or 0.0)  # set: has_t
    A = np.array([[p.dD_dlambda, p.dD_dgamma], [p.dC_dlambda, p.dC_dgamma]], dtype=np.float64)
    scale = float(np.nanmax(np.abs(A))) if np.isfinite(A).any() else 1.0
    rho = _rate_partial(dR_dt, dD_dt, dC_dt, lam, gamma, reading)
    denom = 1.0 + slope * lam if slope is not None else float("nan")
    small = not math.isfinite(denom) or abs(denom) < max(min_denominator, _TINY)
    row1 = slope * rho / denom - dD_dt if (slope is not None and not small) else float("nan")
    extra: dict[str, Any] = dict(reading=reading, rate_partial=float(rho))
    b = np.array([row1, -dC_dt])
    with np.errstate(all="ignore"):
        cond = float(np.linalg.cond(A)) if np.isfinite(A).all() else float("inf")
    if not math.isfinite(cond):
        cond = float("inf")
    reason = None

    def heuristic(lam_dot: float):
        if _is_zero(p.dC_dgamma, scale) or not math.isfinite(dC_dt) or not math.isfinite(p.dC_dlambda):
            return None
        return np.array([lam_dot, -(p.dC_dlambda * lam_dot + dC_dt) / p.dC_dgamma])

    if method == "geodesic":
        if slope is None:
            raise ValueError("slope is required for method='geodesic'")
        if small:
            reason = (f"|1 + k lambda| = {abs(denom):.3g} < min_denominator={min_denominator:g} "
                      f"(k = {slope:.4g}, lambda = {lam:.4g})")
        elif not np.isfinite(b).all():
            reason = "the right-hand side of Eq. (30) is not finite"
        elif cond > max_condition:
            reason = f"the matrix of Eq. (30) has condition number {cond:.3g} > max_condition={max_condition:g}"
        else:
            sol = np.linalg.solve(A, b)
            if np.isfinite(sol).all():
                return StepSolution(matrix=A, rhs=b, cond=cond, solution=sol, method_used="geodesic", **extra)
            reason = "the solution of Eq. (30) is not finite"
        sol = heuristic(0.0)
        if sol is not None:
            return StepSolution(matrix=A, rhs=b, cond=cond, solution=sol, method_used="heuristic-fallback",
                                reason=reason, **extra)
        reason += "; dC/dgamma is ~0 too: lambda and gamma kept"
        return StepSolution(matrix=A, rhs=b, cond=cond, solution=np.zeros(2), method_used="hold", reason=reason,
                            **extra)
    sol = heuristic(float(lambda_rate))
    if sol is not None:
        return StepSolution(matrix=A, rhs=b, cond=cond, solution=sol, method_used="heuristic", **extra)
    return StepSolution(matrix=A, rhs=b, cond=cond, solution=np.zeros(2), method_used="hold",
                        reason=f"dC/dgamma = {p.dC_dgamma:.3g} is ~0 in Eq. (38): lambda and gamma kept", **extra)


def _rate_partial(dR_dt: float, dD_dt: float, dC_dt: float, lam: float, gamma: float | None, reading: str) -> float:
    r"""Row 1's :math:`\partial R/\partial t` of Eq. (30) from the partials at fixed multipliers:
    :math:`R_t + \lambda D_t + \gamma C_t` (``reading="derived"``, with ``gamma``), else :math:`R_t`."""
    return dR_dt + lam * dD_dt + float(gamma) * dC_dt if (reading == "derived" and gamma is not None) else dR_dt


def _advance(value: float, rate: float, dt: float, cfg: IsoTransferConfig) -> tuple[float, int]:
    """``value + rate * dt`` inside the trust region and above ``min_multiplier``; the number of clips."""
    new, clips = value + rate * dt, 0
    if cfg.max_rel_change is not None:
        lo, hi = value / (1 + cfg.max_rel_change), value * (1 + cfg.max_rel_change)
        if not lo <= new <= hi:
            new, clips = min(max(new, lo), hi), clips + 1
    if new < cfg.min_multiplier:
        new, clips = cfg.min_multiplier, clips + 1
    return float(new), clips


# ----------------------------------------------------------------------------
# the transfer
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IsoTransferResult:
    """What :func:`iso_transfer` returns; every array has one entry per time :math:`t_k = k/\\text{steps}`.

    Attributes
    ----------
    t, lam, gamma : (steps + 1,) times and multipliers.
    train, val : :class:`~ctd_lib.free_energy.FreeEnergyTerms` per :math:`t_k`, on the
        interpolated training and held-out data.
    val_accuracy : (steps + 1,) accuracy on the interpolated held-out task.
    target_accuracy : (steps + 1,) accuracy on the target's held-out set.
    free_energy : (steps + 1,) :math:`R + \\lambda D + \\gamma C` of the training functionals.
    systems : per step (steps entries) a :class:`StepSolution`, with its ``partials``
        (:class:`~ctd_lib.free_energy.finite_differences.Partials`) and ``clips`` filled in.
    fallbacks : (step, reason) for every step that did not use its method as configured.
    n_fallbacks, n_clips : how many fallbacks and clips of the multipliers.
    slope : the :math:`k` used (None for the heuristic with no slope given).
    slope_endpoint : the endpoint rule's :math:`k` before any clamp (None when not measured).
    label_entropy_train, label_entropy_val : (steps + 1,) :math:`H(y)` of the evaluation labels at
        each :math:`t_k` (0 for hard labels): the raw CE is the ``classification`` entry plus this
        when ``c_measure="excess"``.
    controller : per step a :class:`~ctd_lib.free_energy.repeat_controller.ControllerStep`
        (``method="repeat_equilibration"``; empty otherwise).
    n_updates : mini-batch updates taken (probes, equilibrations, repeats, the slope's).
    model : the model at :math:`t = 1`.
    wall_time : seconds.
    config : the resolved configuration, with ``lam0``, ``gamma0`` and ``slope``.
    """

    t: np.ndarray
    lam: np.ndarray
    gamma: np.ndarray
    train: list
    val: list
    val_accuracy: np.ndarray
    target_accuracy: np.ndarray
    free_energy: np.ndarray
    systems: list[StepSolution]
    fallbacks: list[tuple[int, str]]
    n_fallbacks: int
    n_clips: int
    slope: float | None
    model: FreeEnergyModel = field(repr=False)
    wall_time: float = 0.0
    config: dict = field(default_factory=dict)
    slope_endpoint: float | None = None
    label_entropy_train: np.ndarray | None = None
    label_entropy_val: np.ndarray | None = None
    controller: list = field(default_factory=list)
    n_updates: int = 0

    @property
    def unclipped_rates(self) -> np.ndarray:
        r"""(steps, 2) :math:`(\dot\lambda, \dot\gamma)` solved at each step, before the trust region and floor."""
        return np.array([s.solution for s in self.systems], dtype=np.float64).reshape(-1, 2)

    @property
    def n_clipped_updates(self) -> int:
        """How many multiplier updates (one per multiplier per step) the trust region or the floor changed."""
        return int(sum(s.clips for s in self.systems))

    def raw_classification(self, split: str = "train") -> np.ndarray:
        """(steps + 1,) the raw cross-entropy: ``classification`` plus :math:`H(y)` when it holds the excess."""
        c = self.array("classification", split)
        h = self.label_entropy_train if split == "train" else self.label_entropy_val
        if h is None or self.config.get("c_measure", "excess") == "raw":
            return c
        return c + np.asarray(h, dtype=np.float64)

    def array(self, name: str, split: str = "train") -> np.ndarray:
        """(steps + 1,) values of a functional: ``name`` in rate, distortion, classification, accuracy, free_energy."""
        check_choice("split", split, ("train", "val"))
        check_choice("name", name, TERMS + ("free_energy",))
        terms = self.train if split == "train" else self.val
        if name == "free_energy":
            return np.array([x.free_energy(l, g) for x, l, g in zip(terms, self.lam, self.gamma)], dtype=np.float64)
        return np.array([getattr(x, name) for x in terms], dtype=np.float64)

    def max_rel_change(self, name: str = "classification", split: str = "train") -> float:
        """:math:`\\max_k |X_k - X_0| / |X_0|` of a functional (``inf`` when :math:`X_0 = 0` and it moved)."""
        return max_rel_change(self.array(name, split))

    @property
    def c_max_rel_change(self) -> float:
        """:math:`\\max_k |C_k - C_0| / C_0` on the training functionals: how well C was held constant."""
        return self.max_rel_change("classification", "train")


def c_max_rel_change(result: IsoTransferResult, split: str = "train") -> float:
    """:math:`\\max_k |C_k - C_0| / C_0` of ``result`` on the ``split`` ("train" or "val") functionals."""
    return result.max_rel_change("classification", split)


def _check_task(name: str, task) -> None:
    if not isinstance(task, Task):
        raise ValueError(f"{name} must be a ctd_lib.data.Task; got {type(task).__name__}")
    if task.x.shape[0] == 0:
        raise ValueError(f"{name} is an empty task ({task.name!r} has no examples)")


def _check_inputs(model, tasks: dict, lam0, gamma0) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    for name, task in tasks.items():
        _check_task(name, task)
    names = list(tasks)
    first = names[0]
    for name in names[1:]:
        a, b = tuple(tasks[first].x.shape[1:]), tuple(tasks[name].x.shape[1:])
        if a != b:
            raise ValueError(f"{first} and {name} have different input shapes: {a} and {b}")
        if tasks[first].num_classes != tasks[name].num_classes:
            raise ValueError(f"{first} has num_classes={tasks[first].num_classes} and {name} "
                             f"num_classes={tasks[name].num_classes}; build both with one head "
                             "(make_task(..., label_offset=...))")
    mc = getattr(model, "config", None)
    shape, C = tuple(tasks[first].x.shape[1:]), tasks[first].num_classes
    if mc is not None and getattr(mc, "input_shape", None) is not None and tuple(mc.input_shape) != shape:
        raise ValueError(f"model has input_shape={tuple(mc.input_shape)} but the tasks have inputs of shape {shape}")
    if mc is not None and getattr(mc, "num_classes", None) is not None and mc.num_classes != C:
        raise ValueError(f"model has num_classes={mc.num_classes} but the tasks have num_classes={C}")
    check_positive("lam0", lam0)
    check_positive("gamma0", gamma0)


def iso_transfer(model: FreeEnergyModel, source: Task, target: Task, source_val: Task, target_val: Task,
                 lam0: float, gamma0: float, config: IsoTransferConfig | None = None, *,
                 show_progress: bool | None = None) -> IsoTransferResult:
    r"""Move ``model`` from ``source`` to ``target`` at constant classification loss, Sec. 4 of [Gao & Chaudhari 2020].

    For :math:`k = 0, \dots, S-1` (:math:`S` = ``config.steps``, :math:`t_k = k/S`,
    :math:`\Delta t = 1/S`), with the model at equilibrium on :math:`p(x, t_k)`:

    1. estimate the partials of :math:`R, D, C` in :math:`\lambda, \gamma, t` (finite differences);
    2. solve Eq. (30) ("geodesic") or Eq. (38) ("heuristic") for :math:`(\dot\lambda, \dot\gamma)`;
    3. :math:`\lambda \mathrel{+}= \dot\lambda\,\Delta t`, :math:`\gamma \mathrel{+}= \dot\gamma\,\Delta t`
       (trust region, floor), then equilibrate on :math:`p(x, t_{k+1})`;

    and the functionals, accuracies and :math:`F = R + \lambda D + \gamma C` are logged at every
    :math:`t_k`, :math:`k = 0, \dots, S`. See the module docstring for every choice.

    Parameters
    ----------
    model : a :class:`~ctd_lib.free_energy.FreeEnergyModel` at equilibrium on ``source`` for
        ``(lam0, gamma0)``; it is not modified (the transfer works on a deep copy).
    source, target : training tasks with one input shape and one head (``num_classes``).
    source_val, target_val : their held-out sets.
    lam0, gamma0 : the starting multipliers (> 0).
    config : :class:`IsoTransferConfig` (defaults if None).
    show_progress : a progress bar (None: when stderr is a terminal).

    Returns
    -------
    :class:`IsoTransferResult`.
    """
    cfg = IsoTransferConfig() if config is None else config
    if not isinstance(cfg, IsoTransferConfig):
        raise ValueError(f"config must be an IsoTransferConfig; got {type(cfg).__name__}")
    tasks = dict(source=source, target=target, source_val=source_val, target_val=target_val)
    _check_inputs(model, tasks, lam0, gamma0)
    if cfg.method == "geodesic" and cfg.slope is not None and abs(1 + cfg.slope * lam0) <= _TINY:
        raise ValueError(f"slope={cfg.slope!r} is not valid with lam0={lam0!r}: 1 + slope * lam0 is ~0 in Eq. (30)")

    start = time.perf_counter()
    model = copy.deepcopy(model)
    dev = device_of(model)
    rng = np.random.default_rng(cfg.seed)
    train_path = TaskPath(cfg.interpolation, source, target, cfg, device=dev, rng=rng, train=True)
    val_path = TaskPath(cfg.interpolation, source_val, target_val, cfg, device=dev, rng=rng, train=False)
    S = cfg.steps
    times = [k / S for k in range(S + 1)]
    seed_of = functools.partial(_step_seed, cfg.seed)

    slope = None if cfg.slope is None else float(cfg.slope)
    slope_from, slope_endpoint, n_updates = "config", None, 0
    if cfg.method == "geodesic" and slope is None:
        slope_endpoint, slope_from = _endpoint_slope(model, train_path, lam0, gamma0, cfg, seed_of(S, 9))
        n_updates += _slope_equilibration(cfg).steps
        slope = slope_endpoint
        if cfg.slope_rule == "endpoints_clamped" and 1 + slope * lam0 < cfg.slope_margin:
            slope, slope_from = (cfg.slope_margin - 1) / lam0, slope_from + "-clamped"
            warnings.warn(f"iso_transfer: the endpoint slope k = {slope_endpoint:.4g} gives 1 + k lam0 = "
                          f"{1 + slope_endpoint * lam0:.3g} < slope_margin={cfg.slope_margin:g}; using k = {slope:.4g}",
                          RuntimeWarning, stacklevel=2)

    lam, gamma = float(lam0), float(gamma0)
    lams, gammas, train_terms, val_terms, target_acc = [], [], [], [], []
    systems, fallbacks, n_clips, controller, h_train, h_val = [], [], 0, [], [], []

    def log(k: int) -> None:
        m_seed = seed_of(0, 0)  # the same noise at every t_k: C_k - C_0 is not swamped by Monte-Carlo error
        lams.append(lam)
        gammas.append(gamma)
        h_train.append(train_path.label_entropy(times[k]))
        h_val.append(val_path.label_entropy(times[k]))
        train_terms.append(train_path.terms(model, times[k], n_z=cfg.n_z_measure, seed=m_seed))
        val_terms.append(val_path.terms(model, times[k], n_z=cfg.n_z_measure, seed=m_seed))
        target_acc.append(float(val_path.target_terms(model, n_z=cfg.n_z_measure, seed=m_seed).accuracy))

    log(0)
    c0_val = float(val_terms[0].classification)
    for k in progress(range(S), desc="iso-transfer", total=S, enabled=show_progress):
        t, t_next = times[k], times[k + 1]
        if cfg.method == "repeat_equilibration":
            held_out_c = functools.partial(_held_out_c, val_path, model, t_next, cfg.n_z_measure, seed_of(0, 0))
            step = repeat_until_held(
                model, train_path.batch_sampler(t_next), lam, gamma, c0_val, held_out_c,
                cfg.equilibration, gamma_factor=cfg.controller_gamma_factor, max_repeats=cfg.controller_max_repeats,
                tolerance=cfg.controller_tolerance, gamma_max=cfg.controller_gamma_max, seed=seed_of(k, 2) * 7)
            controller.append(step)
            gamma, n_updates = step.gamma_end, n_updates + step.updates
            log(k + 1)
            continue
        p = transfer_partials(model, train_path, t, t_next, lam, gamma, cfg, seed=seed_of(k, 1))
        sys_k = solve_step(p, lam, method=cfg.method, slope=slope, lambda_rate=cfg.lambda_rate,
                           max_condition=cfg.max_condition, gamma=gamma, reading=cfg.eq30_reading,
                           min_denominator=cfg.min_denominator)
        if sys_k.reason is not None:
            fallbacks.append((k, sys_k.reason))
            warnings.warn(f"iso_transfer step {k} (t = {t:.3g}): {sys_k.reason}; used {sys_k.method_used}",
                          RuntimeWarning, stacklevel=2)
        lam_dot, gamma_dot = sys_k.lam_dot, sys_k.gamma_dot
        lam_new, c1 = _advance(lam, lam_dot, t_next - t, cfg)
        gamma_new, c2 = _advance(gamma, gamma_dot, t_next - t, cfg)
        applied = np.array([(lam_new - lam) / (t_next - t), (gamma_new - gamma) / (t_next - t)])
        lam, gamma = lam_new, gamma_new
        n_clips += int(c1 > 0) + int(c2 > 0)
        systems.append(replace(sys_k, partials=p, clips=int(c1 > 0) + int(c2 > 0), applied=applied))
        n_updates += p.n_probes * cfg.fd_equilibration.steps + cfg.equilibration.steps
        eq = replace(cfg.equilibration, seed=seed_of(k, 2))
        equilibrate(model, train_path.batch_sampler(t_next), lam, gamma, eq, show_progress=False)
        log(k + 1)

    lam_a, gamma_a = np.array(lams), np.array(gammas)
    resolved = dict(cfg.to_dict(), lam0=float(lam0), gamma0=float(gamma0), slope=slope, slope_from=slope_from,
                    slope_endpoint=slope_endpoint, budget=transfer_budget(cfg), n_updates=n_updates,
                    source=source.name, target=target.name)
    return IsoTransferResult(
        t=np.array(times), lam=lam_a, gamma=gamma_a, train=train_terms, val=val_terms,
        val_accuracy=np.array([v.accuracy for v in val_terms], dtype=np.float64),
        target_accuracy=np.array(target_acc),
        free_energy=np.array([x.free_energy(l, g) for x, l, g in zip(train_terms, lam_a, gamma_a)], dtype=np.float64),
        systems=systems, fallbacks=fallbacks, n_fallbacks=len(fallbacks), n_clips=n_clips, slope=slope,
        model=model, wall_time=time.perf_counter() - start, config=resolved, slope_endpoint=slope_endpoint,
        label_entropy_train=np.array(h_train), label_entropy_val=np.array(h_val), controller=controller,
        n_updates=int(n_updates),
    )


def _step_seed(seed: int, k: int, what: int) -> int:
    """The seed of role ``what`` (0 measure, 1 probes, 2 equilibration, 9 slope) at step ``k`` of a transfer,
    shared by :func:`iso_transfer` and its checks so that they draw the same batches and noise."""
    return seed * 1_000_003 + 10 * k + what


def _held_out_c(path: TaskPath, model: FreeEnergyModel, t: float, n_z: int, seed: int) -> float:
    """The classification loss of ``model`` on ``path``'s evaluation data at ``t`` (the controller's judge)."""
    return float(path.terms(model, t, n_z=n_z, seed=seed).classification)


def _endpoint_slope(model: FreeEnergyModel, path: TaskPath, lam: float, gamma: float, cfg: IsoTransferConfig,
                    seed: int) -> tuple[float, str]:
    r""":math:`k = (D_1 - D_0)/(R_1 - R_0)`: the source model at :math:`t=0` against a copy equilibrated at :math:`t=1`."""
    eq = replace(_slope_equilibration(cfg), seed=seed)
    at_target = _equilibrated_copy(model, path.batch_sampler(1.0), lam, gamma, eq)
    a = path.terms(model, 0.0, n_z=cfg.n_z_measure, seed=seed)
    b = path.terms(at_target, 1.0, n_z=cfg.n_z_measure, seed=seed)
    dR, dD = b.rate - a.rate, b.distortion - a.distortion
    if _is_zero(dR, abs(a.rate)) or not math.isfinite(dD):
        warnings.warn(f"iso_transfer: the source and target equilibria have the same rate ({a.rate:.4g}); "
                      "slope k = dD/dR undefined, using k = 0 (constant distortion)", RuntimeWarning, stacklevel=3)
        return 0.0, "endpoints-degenerate"
    return float(dD / dR), "endpoints"


# ----------------------------------------------------------------------------
# checks: the fixed-multiplier control and the probes' length
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedMultiplierControl:
    r"""What :func:`fixed_multiplier_control` returns: :math:`C` under the transfer's equilibrations with nothing moving.

    Attributes
    ----------
    train_c, val_c : (steps + 1,) :math:`C` on the source's training and held-out evaluation sets.
    train_max_rel_change, val_max_rel_change : :math:`\max_k |C_k - C_0|/C_0` of each.
    n_updates : mini-batch updates taken (``steps * equilibration.steps``).
    """

    train_c: np.ndarray
    val_c: np.ndarray
    train_max_rel_change: float
    val_max_rel_change: float
    n_updates: int


def fixed_multiplier_control(model: FreeEnergyModel, source: Task, source_val: Task, lam0: float, gamma0: float,
                             config: IsoTransferConfig | None = None) -> FixedMultiplierControl:
    r"""The transfer's equilibrations at fixed :math:`(\lambda_0, \gamma_0)` on the source data alone.

    .. math::

        \theta_{k+1} = \mathrm{equilibrate}(\theta_k;\ p^s, \lambda_0, \gamma_0), \qquad k = 0, \dots, S-1,

    with the same equilibration (length, schedule, seeds :math:`k`) as :func:`iso_transfer`'s
    after each step, and :math:`C` measured as there. A model at equilibrium on the source
    keeps :math:`C` (up to noise): the size of :math:`\max_k |C_k - C_0|/C_0` here is the
    floor below which no change of :math:`C` during a transfer can be told from the
    equilibrations' own drift. ``model`` is not modified.
    """
    cfg = IsoTransferConfig() if config is None else config
    _check_inputs(model, dict(source=source, source_val=source_val), lam0, gamma0)
    model = copy.deepcopy(model)
    rng = np.random.default_rng(cfg.seed)
    base = replace(cfg, interpolation="mixture")
    train_path = TaskPath("mixture", source, source, base, device=device_of(model), rng=rng, train=True)
    val_path = TaskPath("mixture", source_val, source_val, base, device=device_of(model), rng=rng, train=False)
    seed_of = functools.partial(_step_seed, cfg.seed)  # the seeds of iso_transfer's equilibrations
    tc, vc = [], []

    def log() -> None:
        tc.append(train_path.terms(model, 0.0, n_z=cfg.n_z_measure, seed=seed_of(0, 0)).classification)
        vc.append(val_path.terms(model, 0.0, n_z=cfg.n_z_measure, seed=seed_of(0, 0)).classification)

    log()
    for k in range(cfg.steps):
        equilibrate(model, train_path.batch_sampler(0.0), lam0, gamma0, replace(cfg.equilibration, seed=seed_of(k, 2)),
                    show_progress=False)
        log()
    tc_a, vc_a = np.array(tc, dtype=np.float64), np.array(vc, dtype=np.float64)
    return FixedMultiplierControl(train_c=tc_a, val_c=vc_a, train_max_rel_change=max_rel_change(tc_a),
                                  val_max_rel_change=max_rel_change(vc_a), n_updates=cfg.steps * cfg.equilibration.steps)


@dataclass(frozen=True)
class ProbeLengthCheck:
    """What :func:`probe_length_check` returns: the first step's partials with two probe lengths.

    Attributes
    ----------
    short, long : :class:`~ctd_lib.free_energy.finite_differences.Partials` with ``fd_equilibration.steps``
        and ``factor`` times as many updates per probe.
    factor : the ratio of the two lengths.
    rel_diff : for ``dC_dt``, ``dR_dt``, ``dD_dt`` and ``rate_partial`` (row 1's :math:`\\partial R/\\partial t`
        of the configured reading), :math:`|x_{\\text{short}} - x_{\\text{long}}| / |x_{\\text{long}}|`.
    values : the same keys, each the pair (short, long) of values.
    """

    short: Partials
    long: Partials
    factor: int
    rel_diff: dict
    values: dict = field(default_factory=dict)


def probe_length_check(model: FreeEnergyModel, source: Task, target: Task, lam: float, gamma: float,
                       config: IsoTransferConfig, *, factor: int = 3) -> ProbeLengthCheck:
    r"""Have the probes converged? The partials of the first step (:math:`t = 0 \to \Delta t`) twice.

    Once with probes of ``config.fd_equilibration.steps`` updates and once with ``factor`` times
    as many (same seeds), on ``config.interpolation``'s data. A small relative difference of
    :math:`C_t` (and of row 1's :math:`\partial R/\partial t`) says the probes are long enough for
    Eq. (30) to see the converged response of the weights to the data.
    """
    check_positive("factor", factor, integer=True)
    rng = np.random.default_rng(config.seed)
    path = TaskPath(config.interpolation, source, target, config, device=device_of(model), rng=rng, train=True)
    dt = 1.0 / config.steps
    seed = _step_seed(config.seed, 0, 1)  # the first step's probe seed in iso_transfer
    longer = replace(config, fd_equilibration=replace(config.fd_equilibration,
                                                      steps=factor * config.fd_equilibration.steps))
    a = transfer_partials(model, path, 0.0, dt, lam, gamma, config, seed=seed)
    b = transfer_partials(model, path, 0.0, dt, lam, gamma, longer, seed=seed)

    def t_partials(p: Partials) -> tuple[float, float, float]:
        if p.dR_dt is None or p.dD_dt is None or p.dC_dt is None:
            raise ValueError("transfer_partials returned no partials in t")
        return float(p.dR_dt), float(p.dD_dt), float(p.dC_dt)

    def rho(p: Partials) -> float:
        return _rate_partial(*t_partials(p), lam, gamma, config.eq30_reading)

    (ra, da, ca), (rb, db, cb) = t_partials(a), t_partials(b)
    pairs = {"dC_dt": (ca, cb), "dR_dt": (ra, rb), "dD_dt": (da, db), "rate_partial": (rho(a), rho(b))}
    rel = {k: float(abs(x - y) / abs(y)) if y else float("inf") for k, (x, y) in pairs.items()}
    return ProbeLengthCheck(short=a, long=b, factor=int(factor), rel_diff=rel,
                            values={k: (float(x), float(y)) for k, (x, y) in pairs.items()})
