r"""The equilibrium surface and the iso-classification process ([Gao & Chaudhari 2020]).

The optimal free energy :math:`F(\lambda, \gamma) = \min_\theta R + \lambda D + \gamma C`
(Eq. 8) is a minimum of affine functions of :math:`(\lambda, \gamma)`, hence
concave (Lemma 3), with

.. math::

    \frac{\partial F}{\partial \lambda} = D, \qquad \frac{\partial F}{\partial \gamma} = C,
    \qquad \operatorname{Hess} F \preceq 0 .

:func:`equilibrium_surface` trains one model per grid point and
:func:`lemma3_check` tests these three properties on the measured grid.

The iso-classification process (Remark 7, Eq. 31) moves the multipliers so that
:math:`C` stays constant while the model is re-equilibrated after each move:

.. math::

    \dot\lambda = -\alpha \frac{\partial C}{\partial \gamma}, \qquad
    \dot\gamma = \alpha \frac{\partial C}{\partial \lambda},

so :math:`\dot C = C_\lambda \dot\lambda + C_\gamma \dot\gamma = 0`; along it
:math:`\dot R = -\lambda \dot D` (Remark 10, Eq. 29), which
:func:`remark10_check` measures.

Choices made where the paper is silent:

* **Finite differences with common random numbers.** The partials of Eq. (31)
  are central differences over probes (``fd_rel`` times the current value on
  each side). Each probe deep-copies the current model, equilibrates it at the
  probed multipliers with the *same* seed (same mini-batches, same latent
  noise) and is measured on the same fixed data with the same noise, so the
  difference reflects the change of multiplier and not sampling noise.
* **Euler steps, optionally normalised.** :math:`(\lambda, \gamma) \mathrel{+}=
  dt\,(\dot\lambda, \dot\gamma)`. With ``step_rel`` set, each step is rescaled so
  the larger relative change of the two multipliers equals ``step_rel``: a
  reparametrisation of time that keeps the direction of Eq. (31) (the scale of
  :math:`\partial C/\partial\gamma` is not known in advance).
* **Clipping of the multipliers.** An update that would make :math:`\lambda` or
  :math:`\gamma` smaller than ``min_multiplier`` is clipped there, counted in
  :attr:`IsoClassificationResult.n_clipped`, and a warning is issued.
* **Surface grid training.** Every grid point is trained from scratch from the
  same initial weights and seed (or, with ``warm_start``, from the previous
  grid point in raster order), and measured with the same noise seed.

Reference: Y. Gao and P. Chaudhari, *A Free-Energy Principle for
Representation Learning*, ICML 2020.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ._checks import check_choice, check_nonnegative, check_positive
from ._progress import progress
from .free_energy import (
    EquilibrationConfig,
    FreeEnergyModel,
    FreeEnergyModelConfig,
    FreeEnergyTerms,
    Sampler,
    _check_xy,
    array_sampler,
    equilibrate,
    make_free_energy_model,
    measure,
    train_equilibrium,
)

__all__ = [
    "IsoClassificationConfig",
    "IsoClassificationResult",
    "Lemma3Check",
    "Partials",
    "SurfaceGrid",
    "central_differences",
    "equilibrium_surface",
    "finite_difference_partials",
    "first_law_check",
    "fixed_multiplier_control",
    "iso_c_max_rel_change",
    "iso_classification",
    "lemma3_check",
    "remark10_check",
]

TERM_NAMES = ("rate", "distortion", "classification", "accuracy")
SPLITS = ("train", "val")


def _check_grid(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of numbers; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}={arr.tolist()!r} is not valid; every value must be finite and >= 0")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name}={arr.tolist()!r} is not valid; it must be strictly increasing")
    return arr


def _subset(x, y, size: int | None, seed: int):
    """The first ``size`` examples of a seeded permutation (all of them if ``size`` is None)."""
    x, y = _check_xy(x, y)
    if size is None or size >= x.shape[0]:
        return x, y
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(x.shape[0])[:size])
    return x[idx], y[idx]


# ----------------------------------------------------------------------------
# the equilibrium surface
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SurfaceGrid:
    """Functionals of equilibrium models on a grid of multipliers."""

    lambdas: np.ndarray  # (a,) strictly increasing
    gammas: np.ndarray  # (b,) strictly increasing
    train: list  # [a][b] FreeEnergyTerms on training data
    val: list  # [a][b] FreeEnergyTerms on held-out data
    config: dict = field(default_factory=dict)  # resolved model and training configuration
    wall_time: float = 0.0  # seconds
    models: list | None = field(default=None, repr=False)  # [a][b] the trained models (keep_models=True)

    def model(self, lam: float, gamma: float):
        """The trained model at grid point (``lam``, ``gamma``); needs ``keep_models=True``."""
        if self.models is None:
            raise ValueError("this grid kept no models; build it with equilibrium_surface(..., keep_models=True)")
        i, j = np.flatnonzero(np.isclose(self.lambdas, lam)), np.flatnonzero(np.isclose(self.gammas, gamma))
        if not len(i) or not len(j):
            raise ValueError(f"(lam, gamma)=({lam!r}, {gamma!r}) is not a point of the grid "
                             f"(lambdas {self.lambdas.tolist()}, gammas {self.gammas.tolist()})")
        return self.models[int(i[0])][int(j[0])]

    @property
    def F(self) -> np.ndarray:
        r"""(a, b) :math:`R + \lambda D + \gamma C` on the training data, Eq. (8) of [Gao & Chaudhari 2020]."""
        return np.array([[self.train[i][j].free_energy(lam, gam) for j, gam in enumerate(self.gammas)]
                         for i, lam in enumerate(self.lambdas)])

    def array(self, name: str, split: str = "train") -> np.ndarray:
        """(a, b) array of one functional: 'rate', 'distortion', 'classification' or 'accuracy'."""
        check_choice("name", name, TERM_NAMES)
        check_choice("split", split, SPLITS)
        terms = self.train if split == "train" else self.val
        return np.array([[getattr(t, name) for t in row] for row in terms], dtype=float)


def equilibrium_surface(
    x, y, x_val, y_val, lambdas, gammas, *, model_config: FreeEnergyModelConfig | str,
    train_config: EquilibrationConfig, n_z_measure: int = 8, measure_size: int | None = None,
    warm_start: bool = False, keep_models: bool = False, show_progress: bool | None = None,
) -> SurfaceGrid:
    r"""Equilibrium functionals on a grid, the surface of Lemma 3 / Eq. (13) of [Gao & Chaudhari 2020].

    .. math::

        \theta_{ij} \approx \operatorname*{argmin}_\theta R + \lambda_i D + \gamma_j C,
        \qquad F_{ij} = R(\theta_{ij}) + \lambda_i D(\theta_{ij}) + \gamma_j C(\theta_{ij})

    One model per grid point, built from ``model_config`` (a config or a preset
    name, same seed everywhere) and trained with :func:`train_equilibrium` and
    ``train_config`` (same seed everywhere); with ``warm_start`` each point
    starts from the previous one in raster order instead. Each model is measured
    on (a seeded subset of ``measure_size`` examples of) the training and
    held-out data with noise seed 0; ``keep_models`` keeps the trained models
    (:meth:`SurfaceGrid.model`), e.g. as starting points of
    :func:`iso_classification`. ``x``, ``x_val`` (N, C, H, W); ``y``,
    ``y_val`` int64 (N,) or float (N, K); ``lambdas`` (a,), ``gammas`` (b,),
    each strictly increasing and >= 0.
    """
    lambdas = _check_grid("lambdas", lambdas)
    gammas = _check_grid("gammas", gammas)
    if not isinstance(train_config, EquilibrationConfig):
        raise ValueError(f"train_config={train_config!r} is not valid; it must be an EquilibrationConfig")
    check_positive("n_z_measure", n_z_measure, integer=True)
    if measure_size is not None:
        check_positive("measure_size", measure_size, integer=True)
    x, y = _check_xy(x, y)
    xm, ym = _subset(x, y, measure_size, train_config.seed)
    xv, yv = _subset(x_val, y_val, measure_size, train_config.seed)
    base = make_free_energy_model(model_config)  # validates model_config
    sampler = array_sampler(x, y)
    train = [[None] * len(gammas) for _ in lambdas]
    val = [[None] * len(gammas) for _ in lambdas]
    models = [[None] * len(gammas) for _ in lambdas] if keep_models else None
    points = [(i, j) for i in range(len(lambdas)) for j in range(len(gammas))]
    previous = None
    t0 = time.perf_counter()
    for i, j in progress(points, desc="equilibrium surface", enabled=show_progress):
        model = copy.deepcopy(previous if (warm_start and previous is not None) else base)
        train_equilibrium(model, sampler, lambdas[i], gammas[j], train_config, show_progress=False)
        train[i][j] = measure(model, xm, ym, n_z=n_z_measure)
        val[i][j] = measure(model, xv, yv, n_z=n_z_measure)
        previous = model
        if keep_models:
            models[i][j] = model
    config = {"model": base.config.to_dict(), "train": train_config.to_dict(), "n_z_measure": n_z_measure,
              "measure_size": measure_size, "warm_start": bool(warm_start)}
    return SurfaceGrid(lambdas=lambdas, gammas=gammas, train=train, val=val, config=config,
                       wall_time=time.perf_counter() - t0, models=models)


# ----------------------------------------------------------------------------
# Lemma 3
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lemma3Check:
    """Numerical checks of Lemma 3 on a :class:`SurfaceGrid`."""

    supporting_plane_violations: int  # pairs with F[k,l] > R_ij + lam_k D_ij + gamma_l C_ij + tol*|F[k,l]|
    supporting_plane_max_rel_violation: float  # max over pairs of (F[k,l] - plane) / |F[k,l]|, 0 if none
    n_pairs: int  # ordered pairs of distinct grid points checked
    dF_dlambda: np.ndarray  # (a, b) finite differences of F along lambda (np.gradient)
    dF_dgamma: np.ndarray  # (a, b) finite differences of F along gamma
    dF_dlambda_vs_D_rel_err: float  # median over grid points of |dF/dlam - D| / |D|
    dF_dgamma_vs_C_rel_err: float  # median over grid points of |dF/dgamma - C| / |C|
    hessian_eigenvalues: np.ndarray  # (m, 2) at interior points, ascending; concave => both <= 0
    hessian_negative_fraction: float  # fraction of interior points with both eigenvalues <= 0 (nan if none)

    def to_dict(self) -> dict:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
        return out


def _second_differences(F: np.ndarray, lam: np.ndarray, gam: np.ndarray) -> np.ndarray:
    """(m, 2, 2) Hessians at interior points by central second differences on a non-uniform grid."""
    out = []
    for i in range(1, len(lam) - 1):
        hm, hp = lam[i] - lam[i - 1], lam[i + 1] - lam[i]
        for j in range(1, len(gam) - 1):
            km, kp = gam[j] - gam[j - 1], gam[j + 1] - gam[j]
            f_ll = 2 * (hm * F[i + 1, j] - (hm + hp) * F[i, j] + hp * F[i - 1, j]) / (hm * hp * (hm + hp))
            f_gg = 2 * (km * F[i, j + 1] - (km + kp) * F[i, j] + kp * F[i, j - 1]) / (km * kp * (km + kp))
            f_lg = (F[i + 1, j + 1] - F[i + 1, j - 1] - F[i - 1, j + 1] + F[i - 1, j - 1]) / ((hm + hp) * (km + kp))
            out.append([[f_ll, f_lg], [f_lg, f_gg]])
    return np.array(out, dtype=float).reshape(-1, 2, 2)


def lemma3_check(grid: SurfaceGrid, *, tol: float = 0.0) -> Lemma3Check:
    r"""Check Lemma 3 of [Gao & Chaudhari 2020] on a measured grid.

    .. math::

        F(\lambda_k, \gamma_l) \le R_{ij} + \lambda_k D_{ij} + \gamma_l C_{ij}\ \ \forall (i,j), (k,l);
        \qquad \partial_\lambda F = D, \quad \partial_\gamma F = C; \qquad \operatorname{Hess} F \preceq 0

    where :math:`(R_{ij}, D_{ij}, C_{ij})` are the training functionals of the
    model at grid point :math:`(i, j)` and :math:`F_{kl}` the free energy of the
    model at :math:`(k, l)`. The first inequality is the definition of
    :math:`F` as a minimum of affine functions (each model's plane lies above
    :math:`F`): a violation means the model at :math:`(k, l)` is not at the
    minimum (equilibration did not converge). Derivatives are ``np.gradient``
    with the grid's spacing (second order inside, first order on the edges);
    Hessians are central second differences at interior points. ``tol`` is a
    relative slack for the plane inequality. Needs at least 2 values of each
    multiplier (3 for any Hessian).
    """
    check_nonnegative("tol", tol)
    lam, gam = np.asarray(grid.lambdas, float), np.asarray(grid.gammas, float)
    if len(lam) < 2 or len(gam) < 2:
        raise ValueError(f"grid has {len(lam)} lambdas and {len(gam)} gammas; lemma3_check needs at least 2 of each")
    F = grid.F
    R, D, C = (grid.array(n) for n in ("rate", "distortion", "classification"))
    # planes[i, j, k, l] = R_ij + lam_k D_ij + gamma_l C_ij
    planes = (R[:, :, None, None] + lam[None, None, :, None] * D[:, :, None, None]
              + gam[None, None, None, :] * C[:, :, None, None])
    scale = np.maximum(np.abs(F), np.finfo(float).tiny)[None, None, :, :]
    excess = (F[None, None, :, :] - planes) / scale
    a, b = F.shape
    off_diagonal = ~np.eye(a * b, dtype=bool).reshape(a, b, a, b)
    violations = int(np.sum((excess > tol) & off_diagonal))
    max_rel = float(max(0.0, np.max(np.where(off_diagonal, excess, -np.inf))))
    dF_dl, dF_dg = np.gradient(F, lam, gam)
    with np.errstate(divide="ignore", invalid="ignore"):
        err_d = float(np.median(np.abs(dF_dl - D) / np.abs(D)))
        err_c = float(np.median(np.abs(dF_dg - C) / np.abs(C)))
    hess = _second_differences(F, lam, gam)
    eig = np.linalg.eigvalsh(hess) if len(hess) else np.zeros((0, 2))
    # rounding: an eigenvalue within 1e-9 of the largest |eigenvalue| of 0 counts as <= 0
    atol = 1e-9 * float(np.max(np.abs(eig))) if eig.size else 0.0
    neg = float(np.mean(np.all(eig <= atol, axis=1))) if len(eig) else float("nan")
    return Lemma3Check(
        supporting_plane_violations=violations, supporting_plane_max_rel_violation=max_rel,
        n_pairs=int(off_diagonal.sum()), dF_dlambda=dF_dl, dF_dgamma=dF_dg,
        dF_dlambda_vs_D_rel_err=err_d, dF_dgamma_vs_C_rel_err=err_c,
        hessian_eigenvalues=eig, hessian_negative_fraction=neg,
    )


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
class Partials:
    """Finite-difference partial derivatives of the equilibrium functionals."""

    dR_dlambda: float
    dR_dgamma: float
    dD_dlambda: float
    dD_dgamma: float
    dC_dlambda: float
    dC_dgamma: float
    n_probes: int  # equilibrated probe models (4 for central differences)

    def to_dict(self) -> dict:
        return asdict(self)


def finite_difference_partials(
    model: FreeEnergyModel, sampler: Sampler, x_eval, y_eval, lam: float, gamma: float, *,
    h_lambda: float, h_gamma: float, equilibration: EquilibrationConfig, n_z_measure: int = 8, seed: int = 0,
) -> Partials:
    r"""Central finite differences of R, D, C at equilibrium: the partials of Eq. (31) of [Gao & Chaudhari 2020].

    .. math::

        \frac{\partial X}{\partial \lambda} \approx
        \frac{X(\theta_{\lambda + h_\lambda, \gamma}) - X(\theta_{\lambda - h_\lambda, \gamma})}{2 h_\lambda},
        \qquad
        \frac{\partial X}{\partial \gamma} \approx
        \frac{X(\theta_{\lambda, \gamma + h_\gamma}) - X(\theta_{\lambda, \gamma - h_\gamma})}{2 h_\gamma}

    for :math:`X \in \{R, D, C\}`, where :math:`\theta_{\lambda', \gamma'}` is a
    deep copy of ``model`` equilibrated at :math:`(\lambda', \gamma')` with
    :func:`equilibrate` and ``equilibration`` (``equilibration.steps`` updates,
    the same seed for every probe), and :math:`X` is measured on
    (``x_eval`` (n, C, H, W), ``y_eval`` (n,) or (n, K)) with noise ``seed``.
    ``model`` itself is not changed. Needs ``0 < h_lambda <= lam`` and
    ``0 < h_gamma <= gamma``.
    """
    check_nonnegative("lam", lam)
    check_nonnegative("gamma", gamma)
    check_positive("h_lambda", h_lambda)
    check_positive("h_gamma", h_gamma)
    if h_lambda > lam:
        raise ValueError(f"h_lambda={h_lambda!r} is not valid; it must be <= lam={lam!r} (lam - h_lambda >= 0)")
    if h_gamma > gamma:
        raise ValueError(f"h_gamma={h_gamma!r} is not valid; it must be <= gamma={gamma!r} (gamma - h_gamma >= 0)")
    if not isinstance(equilibration, EquilibrationConfig):
        raise ValueError(f"equilibration={equilibration!r} is not valid; it must be an EquilibrationConfig")
    check_positive("n_z_measure", n_z_measure, integer=True)
    x_eval, y_eval = _check_xy(x_eval, y_eval)

    def probe(lam_p: float, gamma_p: float) -> FreeEnergyTerms:
        m = copy.deepcopy(model)
        equilibrate(m, sampler, lam_p, gamma_p, equilibration, show_progress=False)
        return measure(m, x_eval, y_eval, n_z=n_z_measure, seed=seed)

    return Partials(**central_differences(probe, lam, gamma, h_lambda, h_gamma), n_probes=4)


def central_differences(probe: Callable[[float, float], FreeEnergyTerms], lam: float, gamma: float,
                        h_lambda: float, h_gamma: float) -> dict:
    r"""Central differences of :math:`R, D, C` in :math:`\lambda` and :math:`\gamma`.

    .. math::

        \frac{\partial X}{\partial\lambda} \approx \frac{X(\lambda + h_\lambda, \gamma) - X(\lambda - h_\lambda, \gamma)}{2h_\lambda},
        \qquad X \in \{R, D, C\},

    and likewise in :math:`\gamma`. ``probe(lam', gamma')`` returns the
    :class:`~ctd_lib.free_energy.FreeEnergyTerms` of a model equilibrated at
    (``lam'``, ``gamma'``); it is called four times, in the order
    :math:`+h_\lambda, -h_\lambda, +h_\gamma, -h_\gamma`. Returns the six
    derivatives keyed ``dR_dlambda``, ``dR_dgamma``, ..., ``dC_dgamma``.
    """
    lp, lm = probe(lam + h_lambda, gamma), probe(lam - h_lambda, gamma)
    gp, gm = probe(lam, gamma + h_gamma), probe(lam, gamma - h_gamma)
    out = {}
    for short, name in (("R", "rate"), ("D", "distortion"), ("C", "classification")):
        out[f"d{short}_dlambda"] = float((getattr(lp, name) - getattr(lm, name)) / (2.0 * h_lambda))
        out[f"d{short}_dgamma"] = float((getattr(gp, name) - getattr(gm, name)) / (2.0 * h_gamma))
    return out


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
    C = result.array("classification", split)
    return float(np.max(np.abs(C - C[0])) / C[0])


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


def fixed_multiplier_control(model: FreeEnergyModel, x, y, lam: float, gamma: float,
                             config: IsoClassificationConfig | None = None, *,
                             eval_size: int | None = None) -> np.ndarray:
    r"""The classification loss under the equilibrations of :func:`iso_classification` at *fixed* multipliers.

    A copy of ``model`` is equilibrated ``config.steps`` times at (``lam``, ``gamma``)
    with exactly the equilibration of step :math:`k` of the process (same
    configuration, seed ``equilibration.seed + k``) and measured the same way.
    The result, :math:`C_0, \dots, C_{\text{steps}}` (steps + 1,), separates the
    drift of a model that is not quite at equilibrium from the effect of
    Eq. (31): an iso-classification path should follow it, not necessarily
    :math:`C_0`.
    """
    config, x_eval, y_eval, sampler = _prepare(config, x, y, eval_size, lam=lam, gamma=gamma)
    model = copy.deepcopy(model)
    out = [measure(model, x_eval, y_eval, n_z=config.n_z_measure, seed=config.seed).classification]
    for k in range(config.steps):
        equilibrate(model, sampler, lam, gamma, replace(config.equilibration, seed=config.equilibration.seed + k),
                    show_progress=False)
        out.append(measure(model, x_eval, y_eval, n_z=config.n_z_measure, seed=config.seed).classification)
    return np.asarray(out)
