r"""The iso-classification process (Remark 7, Eq. 31 of [Gao & Chaudhari 2020]):

.. math::

    \dot\lambda = -\alpha \frac{\partial C}{\partial \gamma}, \qquad
    \dot\gamma = \alpha \frac{\partial C}{\partial \lambda},

which moves the multipliers so that :math:`C` stays constant while the model is
re-equilibrated after each move, and its checks: Remark 10 (:math:`dR = -\lambda\, dD`),
the first law (Eq. 7) and the fixed-multiplier control.

Choices made where the paper is silent:

* **Euler steps, optionally normalised.** :math:`(\lambda, \gamma) \mathrel{+}=
  dt\,(\dot\lambda, \dot\gamma)`. With ``step_rel`` set, each step is rescaled so
  the larger relative change of the two multipliers equals ``step_rel``: a
  reparametrisation of time that keeps the direction of Eq. (31) (the scale of
  :math:`\partial C/\partial\gamma` is not known in advance).
* **Clipping of the multipliers.** An update that would make :math:`\lambda` or
  :math:`\gamma` smaller than ``min_multiplier`` is clipped there, counted in
  :attr:`IsoClassificationResult.n_clipped`, and a warning is issued.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .._util.checks import check_choice, check_positive
from .._util.progress import progress
from .equilibrate import EquilibrationConfig, array_sampler, equilibrate
from .finite_differences import finite_difference_partials
from .functionals import _check_xy, measure
from .model import FreeEnergyModel
from .surface import SPLITS, TERM_NAMES, _subset, max_rel_change

__all__ = [
    "FixedMultiplierPath", "IsoClassificationConfig", "IsoClassificationResult", "first_law_check", "fixed_multiplier_control", "fixed_multiplier_path",
    "iso_c_max_rel_change", "iso_classification", "remark10_check"
]

# ----------------------------------------------------------------------------
# the iso-classification process (Remark 7, Eq. 31)
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IsoClassificationConfig:
    """The iso-classification process of Remark 7 / Eq. (31)."""

    steps: int = 8  # outer steps of Eq. (31)
    alpha: float = 1.0  # time scale of Eq. (31); must be != 0
    dt: float = 1.0  # Euler step in time: lambda += dt * lambda_dot
    fd_rel_lambda: float = 0.1  # central finite-difference half-width, relative to lambda (must be > 0)
    fd_rel_gamma: float = 0.1  # the same for gamma
    fd_steps: int = 100  # short equilibration of each finite-difference probe, from the current weights
    equilibration: EquilibrationConfig = EquilibrationConfig()  # after each change of (lambda, gamma)
    n_z_measure: int = 8  # latent samples per example when measuring R, D, C
    seed: int = 0  # noise of every measurement (common random numbers) and of the eval subset
    step_rel: float | None = None  # if set, rescale each step so max(|d lam|/lam, |d gamma|/gamma) = step_rel
    min_multiplier: float = 1e-4  # floor at which lambda and gamma are clipped (counted, warned)

    def __post_init__(self):
        check_positive("steps", self.steps, integer=True)
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            alpha = float("nan")
        if not np.isfinite(alpha) or alpha == 0:
            raise ValueError(f"alpha={self.alpha!r} is not valid; it must be a finite number != 0 "
                             "(the time scale of Eq. 31)")
        check_positive("dt", self.dt)
        check_positive("fd_rel_lambda", self.fd_rel_lambda)
        check_positive("fd_rel_gamma", self.fd_rel_gamma)
        for name in ("fd_rel_lambda", "fd_rel_gamma"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; it must be in (0, 1) "
                                 "so that the lower probe keeps a positive multiplier")
        check_positive("fd_steps", self.fd_steps, integer=True)
        if not isinstance(self.equilibration, EquilibrationConfig):
            raise ValueError(f"equilibration={self.equilibration!r} is not valid; it must be an EquilibrationConfig")
        check_positive("n_z_measure", self.n_z_measure, integer=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed={self.seed!r} is not valid; it must be an integer")
        if self.step_rel is not None:
            check_positive("step_rel", self.step_rel)
        check_positive("min_multiplier", self.min_multiplier)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IsoClassificationResult:
    """What :func:`iso_classification` returns."""

    lam: np.ndarray  # (steps+1,) lambda at each step (index 0 = start)
    gamma: np.ndarray  # (steps+1,) gamma at each step
    train: list  # (steps+1) FreeEnergyTerms on (a subset of) the training data, after equilibration
    val: list  # (steps+1) FreeEnergyTerms on (a subset of) the held-out data
    free_energy: np.ndarray  # (steps+1,) F = R + lam D + gamma C on the training data
    partials: list  # (steps) Partials at the start of each step
    wall_time: float  # seconds
    config: dict  # resolved IsoClassificationConfig and eval_size
    n_clipped: int = 0  # updates in which lambda or gamma was clipped at min_multiplier
    model: FreeEnergyModel | None = field(default=None, repr=False)  # the model at the end

    def array(self, name: str, split: str = "train") -> np.ndarray:
        """(steps+1,) one functional: 'rate', 'distortion', 'classification' or 'accuracy'."""
        check_choice("name", name, TERM_NAMES)
        check_choice("split", split, SPLITS)
        return np.array([getattr(t, name) for t in (self.train if split == "train" else self.val)], dtype=float)


def _prepare(config, x, y, eval_size, **multipliers):
    """Validate a process's arguments before any work; the config, the evaluation subset and a sampler."""
    config = IsoClassificationConfig() if config is None else config
    if not isinstance(config, IsoClassificationConfig):
        raise ValueError(f"config={config!r} is not valid; it must be an IsoClassificationConfig or None")
    for name, v in multipliers.items():
        check_positive(name, v)
    if eval_size is not None:
        check_positive("eval_size", eval_size, integer=True)
    x, y = _check_xy(x, y)
    x_eval, y_eval = _subset(x, y, eval_size, config.seed)
    return config, x_eval, y_eval, array_sampler(x, y)


def iso_classification(
    model: FreeEnergyModel, x, y, x_val, y_val, lam0: float, gamma0: float,
    config: IsoClassificationConfig | None = None, *, eval_size: int | None = None,
    show_progress: bool | None = None,
) -> IsoClassificationResult:
    r"""The iso-classification process, Remark 7 and Eq. (31) of [Gao & Chaudhari 2020].

    .. math::

        \lambda_{k+1} = \lambda_k - dt\, \alpha \frac{\partial C}{\partial \gamma}(\lambda_k, \gamma_k),
        \qquad
        \gamma_{k+1} = \gamma_k + dt\, \alpha \frac{\partial C}{\partial \lambda}(\lambda_k, \gamma_k),

    where the partials are :func:`finite_difference_partials` with half-widths
    ``fd_rel_lambda * lam`` and ``fd_rel_gamma * gamma`` (probes equilibrated
    for ``fd_steps`` updates with seed ``equilibration.seed + k``), then the
    model is equilibrated at :math:`(\lambda_{k+1}, \gamma_{k+1})` with
    ``config.equilibration``. With ``step_rel`` the step is rescaled (see the
    module docstring); multipliers are clipped at ``min_multiplier``.

    ``model`` should be at equilibrium at ``(lam0, gamma0)``; a deep copy is
    used and returned as ``result.model``. Functionals are measured on a seeded
    subset of ``eval_size`` examples (all if None) of (x, y) (N, C, H, W) / (N,)
    or (N, K) and of (x_val, y_val), with noise seed ``config.seed`` at every
    step (common random numbers).
    """
    config, x_eval, y_eval, sampler = _prepare(config, x, y, eval_size, lam0=lam0, gamma0=gamma0)
    xv, yv = _subset(x_val, y_val, eval_size, config.seed)
    model = copy.deepcopy(model)

    def measure_both():
        return (measure(model, x_eval, y_eval, n_z=config.n_z_measure, seed=config.seed),
                measure(model, xv, yv, n_z=config.n_z_measure, seed=config.seed))

    lam, gamma = float(lam0), float(gamma0)
    lams, gammas = [lam], [gamma]
    tr0, va0 = measure_both()
    train, val, partials = [tr0], [va0], []
    n_clipped = 0
    t0 = time.perf_counter()
    for k in progress(range(config.steps), desc="iso-classification", enabled=show_progress):
        fd_cfg = replace(config.equilibration, steps=config.fd_steps, seed=config.equilibration.seed + k)
        p = finite_difference_partials(
            model, sampler, x_eval, y_eval, lam, gamma, h_lambda=config.fd_rel_lambda * lam,
            h_gamma=config.fd_rel_gamma * gamma, equilibration=fd_cfg, n_z_measure=config.n_z_measure,
            seed=config.seed,
        )
        partials.append(p)
        d_lam = -config.alpha * p.dC_dgamma * config.dt
        d_gam = config.alpha * p.dC_dlambda * config.dt
        if config.step_rel is not None:
            size = max(abs(d_lam) / lam, abs(d_gam) / gamma)
            if size > 0:
                d_lam, d_gam = d_lam * config.step_rel / size, d_gam * config.step_rel / size
        new_lam, new_gam = lam + d_lam, gamma + d_gam
        if new_lam < config.min_multiplier or new_gam < config.min_multiplier:
            n_clipped += 1
            warnings.warn(f"iso_classification step {k}: (lambda, gamma) = ({new_lam:.4g}, {new_gam:.4g}) clipped "
                          f"at min_multiplier={config.min_multiplier:g}", RuntimeWarning, stacklevel=2)
            new_lam, new_gam = max(new_lam, config.min_multiplier), max(new_gam, config.min_multiplier)
        lam, gamma = new_lam, new_gam
        eq_cfg = replace(config.equilibration, seed=config.equilibration.seed + k)
        equilibrate(model, sampler, lam, gamma, eq_cfg, show_progress=False)
        tr, va = measure_both()
        lams.append(lam)
        gammas.append(gamma)
        train.append(tr)
        val.append(va)
    lams_a, gammas_a = np.array(lams), np.array(gammas)
    free = np.array([t.free_energy(l_, g_) for t, l_, g_ in zip(train, lams_a, gammas_a)])
    return IsoClassificationResult(
        lam=lams_a, gamma=gammas_a, train=train, val=val, free_energy=free, partials=partials,
        wall_time=time.perf_counter() - t0, config={**config.to_dict(), "eval_size": eval_size},
        n_clipped=n_clipped, model=model,
    )


def remark10_check(result: IsoClassificationResult) -> float:
    r"""Relative violation of :math:`dR = -\lambda\, dD` (Eq. 29 of [Gao & Chaudhari 2020]) along a path.

    .. math::

        \epsilon = \frac{\big|\sum_k (\Delta R_k + \bar\lambda_k \Delta D_k)\big|}{\sum_k |\Delta R_k|},
        \qquad \bar\lambda_k = \tfrac12(\lambda_k + \lambda_{k+1})

    with :math:`\Delta R_k = R_{k+1} - R_k`, :math:`\Delta D_k = D_{k+1} - D_k`
    on the training functionals. 0 for an exact iso-classification path; nan
    if the rate never changes.
    """
    R, D = result.array("rate"), result.array("distortion")
    lam_mid = 0.5 * (result.lam[1:] + result.lam[:-1])
    dR, dD = np.diff(R), np.diff(D)
    denom = float(np.sum(np.abs(dR)))
    if denom == 0:
        return float("nan")
    return float(abs(np.sum(dR + lam_mid * dD)) / denom)


def iso_c_max_rel_change(result: IsoClassificationResult, split: str = "train") -> float:
    r"""Largest relative change of :math:`C` along the path, :math:`\max_k |C_k - C_0| / C_0`."""
    return max_rel_change(result.array("classification", split))


def first_law_check(result: IsoClassificationResult) -> float:
    r"""Relative violation of :math:`dR = -\lambda\, dD - \gamma\, dC` along a path.

    The "first law" of Eq. (7) of [Gao & Chaudhari 2020] with :math:`\sigma = 0`;
    Remark 10 (:func:`remark10_check`) is its special case :math:`dC = 0`.

    .. math::

        \epsilon = \frac{\big|\sum_k (\Delta R_k + \bar\lambda_k \Delta D_k + \bar\gamma_k \Delta C_k)\big|}
                        {\sum_k |\Delta R_k|}

    with midpoint multipliers, on the training functionals; nan if the rate never changes.
    """
    R, D, C = result.array("rate"), result.array("distortion"), result.array("classification")
    lam_mid = 0.5 * (result.lam[1:] + result.lam[:-1])
    gam_mid = 0.5 * (result.gamma[1:] + result.gamma[:-1])
    denom = float(np.sum(np.abs(np.diff(R))))
    if denom == 0:
        return float("nan")
    return float(abs(np.sum(np.diff(R) + lam_mid * np.diff(D) + gam_mid * np.diff(C))) / denom)


@dataclass(frozen=True)
class FixedMultiplierPath:
    r"""The functionals of a model under repeated equilibrations at *fixed* multipliers.

    ``train[k]``, ``val[k]`` (:class:`~ctd_lib.free_energy.FreeEnergyTerms`) after
    :math:`k` equilibrations (index 0: before any). A model at equilibrium only
    fluctuates (SGD noise); one that is not drifts.
    """

    lam: float
    gamma: float
    train: list  # (steps+1) FreeEnergyTerms on the training data
    val: list  # (steps+1) FreeEnergyTerms on the held-out data (empty without held-out data)

    def array(self, name: str, split: str = "train") -> np.ndarray:
        """(steps+1,) one functional: 'rate', 'distortion', 'classification' or 'accuracy'."""
        check_choice("name", name, TERM_NAMES)
        check_choice("split", split, SPLITS)
        terms = self.train if split == "train" else self.val
        if not terms:
            raise ValueError("this control was run without held-out data (give x_val and y_val)")
        return np.array([getattr(t, name) for t in terms], dtype=float)

    def max_rel_change(self, name: str = "classification", split: str = "train") -> float:
        r""":math:`\max_k |X_k - X_0| / |X_0|`: the drift of one functional at fixed multipliers."""
        return max_rel_change(self.array(name, split))

    def noise(self, name: str = "classification", split: str = "train") -> float:
        r"""Relative spread of one functional over the equilibrations, :math:`\mathrm{sd}(X_{1..K}) / |X_0|`.

        Each equilibration has its own seed, so at equilibrium :math:`X_1, \dots, X_K`
        are draws of the same SGD noise; this is the floor below which no change of
        :math:`X` can be told from noise (nan with fewer than two equilibrations).
        """
        x = self.array(name, split)
        return float(np.std(x[1:], ddof=1) / abs(x[0])) if len(x) > 2 else float("nan")


def fixed_multiplier_path(model: FreeEnergyModel, x, y, lam: float, gamma: float,
                          config: IsoClassificationConfig | None = None, *, x_val=None, y_val=None,
                          eval_size: int | None = None) -> FixedMultiplierPath:
    r"""The functionals under the equilibrations of :func:`iso_classification` at *fixed* multipliers.

    A copy of ``model`` is equilibrated ``config.steps`` times at (``lam``, ``gamma``)
    with exactly the equilibration of step :math:`k` of the process (same
    configuration, seed ``equilibration.seed + k``) and measured the same way, on
    the training data and (if given) on ``x_val``, ``y_val``. This separates the
    drift of a model that is not quite at equilibrium from the effect of
    Eq. (31): an iso-classification path should follow it, not necessarily
    :math:`C_0`; and at equilibrium the control itself should not move.
    """
    config, x_eval, y_eval, sampler = _prepare(config, x, y, eval_size, lam=lam, gamma=gamma)
    has_val = x_val is not None or y_val is not None
    if has_val:
        xv, yv = _subset(x_val, y_val, eval_size, config.seed)
    model = copy.deepcopy(model)
    train, val = [], []

    def record():
        train.append(measure(model, x_eval, y_eval, n_z=config.n_z_measure, seed=config.seed))
        if has_val:
            val.append(measure(model, xv, yv, n_z=config.n_z_measure, seed=config.seed))

    record()
    for k in range(config.steps):
        equilibrate(model, sampler, lam, gamma, replace(config.equilibration, seed=config.equilibration.seed + k),
                    show_progress=False)
        record()
    return FixedMultiplierPath(lam=float(lam), gamma=float(gamma), train=train, val=val)


def fixed_multiplier_control(model: FreeEnergyModel, x, y, lam: float, gamma: float,
                             config: IsoClassificationConfig | None = None, *,
                             eval_size: int | None = None) -> np.ndarray:
    r"""The training classification loss :math:`C_0, \dots, C_{\text{steps}}` (steps + 1,) of
    :func:`fixed_multiplier_path` (the same equilibrations at fixed multipliers)."""
    return fixed_multiplier_path(model, x, y, lam, gamma, config, eval_size=eval_size).array("classification")
