r"""The equilibrium surface and Lemma 3 ([Gao & Chaudhari 2020]).

The optimal free energy :math:`F(\lambda, \gamma) = \min_\theta R + \lambda D + \gamma C`
(Eq. 8) is a minimum of affine functions of :math:`(\lambda, \gamma)`, hence
concave (Lemma 3), with

.. math::

    \frac{\partial F}{\partial \lambda} = D, \qquad \frac{\partial F}{\partial \gamma} = C,
    \qquad \operatorname{Hess} F \preceq 0 .

:func:`equilibrium_surface` trains one model per grid point and
:func:`lemma3_check` tests these three properties on the measured grid.

The iso-classification process (Remark 7, Eq. 31) that walks on this surface is in
:mod:`ctd_lib.free_energy.iso_classification`, its finite differences in
:mod:`ctd_lib.free_energy.finite_differences`.

Choices made where the paper is silent:

* **Surface grid training.** Every grid point is trained from the same initial
  weights and seed: from scratch, from a common ``parent`` model, or (with
  ``warm_start``) from the previous grid point in raster order; all are measured
  with the same noise seed.
* **Lemma 3's derivatives are tested by secant bracketing** (:func:`lemma3_check`),
  which has no discretisation error, rather than by comparing finite differences
  with :math:`D` and :math:`C` at one point.

Reference: Y. Gao and P. Chaudhari, *A Free-Energy Principle for
Representation Learning*, ICML 2020.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .._util.checks import check_choice, check_nonnegative, check_positive
from .._util.progress import progress
from .equilibrate import EquilibrationConfig, array_sampler, train_equilibrium
from .functionals import FreeEnergyTerms, _check_xy, measure
from .model import FreeEnergyModel, FreeEnergyModelConfig, make_free_energy_model

__all__ = ["Lemma3Check", "SPLITS", "SurfaceGrid", "TERM_NAMES", "equilibrium_surface", "lemma3_check"]

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
    warm_start: bool = False, parent: FreeEnergyModel | None = None, keep_models: bool = False,
    show_progress: bool | None = None,
) -> SurfaceGrid:
    r"""Equilibrium functionals on a grid, the surface of Lemma 3 / Eq. (13) of [Gao & Chaudhari 2020].

    .. math::

        \theta_{ij} \approx \operatorname*{argmin}_\theta R + \lambda_i D + \gamma_j C,
        \qquad F_{ij} = R(\theta_{ij}) + \lambda_i D(\theta_{ij}) + \gamma_j C(\theta_{ij})

    One model per grid point, built from ``model_config`` (a config or a preset
    name, same seed everywhere) and trained with :func:`train_equilibrium` and
    ``train_config`` (same seed everywhere); with ``warm_start`` each point
    starts from the previous one in raster order instead, and with ``parent`` (a
    model of ``model_config``'s architecture, e.g. one trained long at the
    grid's centre) every point starts from a copy of it: an annealed
    equilibration from a nearby equilibrium reaches the surface in far fewer
    updates than training from scratch. Each model is measured
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
    if parent is not None:
        if warm_start:
            raise ValueError("warm_start=True and parent= are exclusive; give one way to start the grid's models")
        if not isinstance(parent, FreeEnergyModel) or parent.config.to_dict() | {"seed": 0} != \
                base.config.to_dict() | {"seed": 0}:
            raise ValueError(f"parent={type(parent).__name__} is not valid; it must be a FreeEnergyModel of the "
                             "architecture of model_config")
        base = parent
    sampler = array_sampler(x, y)
    train: list[list[FreeEnergyTerms | None]] = [[None] * len(gammas) for _ in lambdas]
    val: list[list[FreeEnergyTerms | None]] = [[None] * len(gammas) for _ in lambdas]
    models: list[list[FreeEnergyModel | None]] | None = [[None] * len(gammas) for _ in lambdas] if keep_models else None
    points = [(i, j) for i in range(len(lambdas)) for j in range(len(gammas))]
    previous = None
    t0 = time.perf_counter()
    for i, j in progress(points, desc="equilibrium surface", enabled=show_progress):
        model = copy.deepcopy(previous if (warm_start and previous is not None) else base)
        train_equilibrium(model, sampler, lambdas[i], gammas[j], train_config, show_progress=False)
        train[i][j] = measure(model, xm, ym, n_z=n_z_measure)
        val[i][j] = measure(model, xv, yv, n_z=n_z_measure)
        previous = model
        if models is not None:
            models[i][j] = model
    config = {"model": base.config.to_dict(), "train": train_config.to_dict(), "n_z_measure": n_z_measure,
              "measure_size": measure_size, "warm_start": bool(warm_start), "parent": parent is not None}
    return SurfaceGrid(lambdas=lambdas, gammas=gammas, train=train, val=val, config=config,
                       wall_time=time.perf_counter() - t0, models=models)


# ----------------------------------------------------------------------------
# Lemma 3
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lemma3Check:
    """Numerical checks of Lemma 3 on a :class:`SurfaceGrid` (see :func:`lemma3_check`)."""

    supporting_plane_violations: int  # pairs with F[k,l] > R_ij + lam_k D_ij + gamma_l C_ij + tol*|F[k,l]|
    supporting_plane_max_rel_violation: float  # max over pairs of (F[k,l] - plane) / |F[k,l]|, 0 if none
    n_pairs: int  # ordered pairs of distinct grid points checked
    secant_lambda: np.ndarray  # (a-1, b) (F[i+1,j] - F[i,j]) / (lam_{i+1} - lam_i)
    secant_gamma: np.ndarray  # (a, b-1) (F[i,j+1] - F[i,j]) / (gamma_{j+1} - gamma_j)
    lambda_secants_bracketed: int  # secants with D[i+1,j] <= secant <= D[i,j] (within tol)
    gamma_secants_bracketed: int  # secants with C[i,j+1] <= secant <= C[i,j] (within tol)
    lambda_secant_max_rel_violation: float  # max distance of a secant outside [D[i+1,j], D[i,j]], / |secant|
    gamma_secant_max_rel_violation: float  # the same for C
    cross_dC_dlambda: np.ndarray  # (m,) central difference of C in lambda at interior points
    cross_dD_dgamma: np.ndarray  # (m,) central difference of D in gamma at the same points
    hessian_eigenvalues: np.ndarray  # (m, 2) at interior points, ascending; concave => both <= 0
    hessian_negative_fraction: float  # fraction of interior points with both eigenvalues <= 0 (nan if none)

    @property
    def n_lambda_secants(self) -> int:
        return int(self.secant_lambda.size)

    @property
    def n_gamma_secants(self) -> int:
        return int(self.secant_gamma.size)

    @property
    def secants_bracketed(self) -> bool:
        """Whether every secant lies between the derivatives at its two ends (D along lambda, C along gamma)."""
        return (self.lambda_secants_bracketed == self.n_lambda_secants
                and self.gamma_secants_bracketed == self.n_gamma_secants)

    def to_dict(self) -> dict:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
        out.update(n_lambda_secants=self.n_lambda_secants, n_gamma_secants=self.n_gamma_secants)
        return out


def _bracket_violation(secant: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Distance of each secant outside [lo, hi], relative to |secant| (0 inside)."""
    out = np.maximum(secant - hi, 0.0) + np.maximum(lo - secant, 0.0)
    return out / np.maximum(np.abs(secant), np.finfo(float).tiny)


def rel_diff(a, b) -> np.ndarray:
    r"""Symmetric relative difference :math:`|a - b| / \max(|a|, |b|)` (0 where both are 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)


def max_rel_change(x) -> float:
    r""":math:`\max_k |x_k - x_0| / |x_0|` of a sequence (0 if it never moved; ``inf`` when :math:`x_0 = 0` and it moved)."""
    x = np.asarray(x, dtype=np.float64)
    dev = float(np.max(np.abs(x - x[0])))
    return dev / abs(float(x[0])) if x[0] != 0 else (0.0 if dev == 0 else float("inf"))


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
    model at :math:`(k, l)`.

    * **Supporting planes.** The first inequality is the definition of :math:`F` as
      a minimum of affine functions (each model's plane lies above :math:`F`): a
      violation means the model at :math:`(k, l)` is not at the minimum.
    * **Secant bracketing** (the derivatives, without discretisation error). If
      :math:`F` is concave with :math:`\partial_\lambda F = D`, then :math:`D` is
      non-increasing in :math:`\lambda` and, by the mean-value theorem, every secant
      lies between the derivatives at its ends:

      .. math::

          D_{i+1,j} \le \frac{F_{i+1,j} - F_{ij}}{\lambda_{i+1} - \lambda_i} \le D_{ij},
          \qquad
          C_{i,j+1} \le \frac{F_{i,j+1} - F_{ij}}{\gamma_{j+1} - \gamma_j} \le C_{ij}.

      This holds on any grid, however coarse; a finite difference compared with
      :math:`D` at one point (the test this replaces) carries an error of the order
      of the step times the curvature.
    * **Symmetry of the Hessian**, :math:`\partial_\lambda C = \partial_\gamma D`
      (both are :math:`\partial^2 F/\partial\lambda\partial\gamma`): central
      differences at interior points, returned for the caller to compare (on a
      coarse grid they are secants over two steps; the iso-classification probes
      give the local values).
    * **Concavity**: Hessians by central second differences at interior points.

    ``tol`` is a relative slack for the plane inequality and the brackets. Needs at
    least 2 values of each multiplier (3 for any Hessian or cross difference).
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
    sec_l = np.diff(F, axis=0) / np.diff(lam)[:, None]
    sec_g = np.diff(F, axis=1) / np.diff(gam)[None, :]
    viol_l = _bracket_violation(sec_l, D[:-1, :], D[1:, :])
    viol_g = _bracket_violation(sec_g, C[:, :-1], C[:, 1:])
    cross_c, cross_d = [], []
    for i in range(1, a - 1):
        for j in range(1, b - 1):
            cross_c.append((C[i + 1, j] - C[i - 1, j]) / (lam[i + 1] - lam[i - 1]))
            cross_d.append((D[i, j + 1] - D[i, j - 1]) / (gam[j + 1] - gam[j - 1]))
    hess = _second_differences(F, lam, gam)
    eig = np.linalg.eigvalsh(hess) if len(hess) else np.zeros((0, 2))
    # rounding: an eigenvalue within 1e-9 of the largest |eigenvalue| of 0 counts as <= 0
    atol = 1e-9 * float(np.max(np.abs(eig))) if eig.size else 0.0
    neg = float(np.mean(np.all(eig <= atol, axis=1))) if len(eig) else float("nan")
    return Lemma3Check(
        supporting_plane_violations=violations, supporting_plane_max_rel_violation=max_rel,
        n_pairs=int(off_diagonal.sum()), secant_lambda=sec_l, secant_gamma=sec_g,
        lambda_secants_bracketed=int(np.sum(viol_l <= tol)), gamma_secants_bracketed=int(np.sum(viol_g <= tol)),
        lambda_secant_max_rel_violation=float(viol_l.max()), gamma_secant_max_rel_violation=float(viol_g.max()),
        cross_dC_dlambda=np.asarray(cross_c, float), cross_dD_dgamma=np.asarray(cross_d, float),
        hessian_eigenvalues=eig, hessian_negative_fraction=neg,
    )
