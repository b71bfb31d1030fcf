r"""Chapter 5's experiment: the equilibrium surface, Lemma 3 and the iso-classification process.

Seed 004 (Gao & Chaudhari 2020), Secs. 2-3 and 5.1, Figs. 1, 2 and 4. With the
rate, distortion and classification loss (Eqs. 1 and 4)

.. math::

    R = \mathbb{E}_x\Big[\int dz\, e(z|x)\log\frac{e(z|x)}{m(z)}\Big], \quad
    D = \mathbb{E}_x\Big[-\int dz\, e(z|x)\log d(x|z)\Big], \quad
    C = \mathbb{E}_x\Big[-\int dz\, e(z|x)\log c(y_x|z)\Big],

and the free energy :math:`F(\lambda, \gamma) = \min_\theta R + \lambda D + \gamma C`
(Eq. 8), :func:`run`

1. trains one model per grid point :math:`(\lambda_i, \gamma_j)` of ``lambdas`` x
   ``gammas`` from scratch (:func:`~ctd_lib.free_energy.surface.equilibrium_surface`)
   and checks Lemma 3 on it (:func:`~ctd_lib.free_energy.surface.lemma3_check`:
   supporting planes, :math:`\partial_\lambda F = D`, :math:`\partial_\gamma F = C`,
   :math:`\operatorname{Hess} F \preceq 0`);
2. equilibrates the model at the first point of ``equilibrium_change`` for the
   second one with the schedule :math:`\eta(t)` of Sec. 5.1 and compares the free
   energies before and after (Fig. 4a);
3. runs the iso-classification process (Remark 7, Eq. 31)

   .. math::

       \dot\lambda = -\alpha\,\frac{\partial C}{\partial\gamma}, \qquad
       \dot\gamma = \alpha\,\frac{\partial C}{\partial\lambda}

   from each of ``iso_starts``
   (:func:`~ctd_lib.free_energy.iso_classification.iso_classification`), with the
   same equilibrations at fixed multipliers as a control
   (:func:`~ctd_lib.free_energy.iso_classification.fixed_multiplier_control`), and
   measures along each path Remark 10 (Eq. 29), :math:`\dot R = -\lambda\dot D`, and
   the first law (Eq. 7 with :math:`\sigma = 0`), :math:`dR = -\lambda\,dD - \gamma\,dC`.

:func:`metrics` and :func:`claims` turn a :class:`EquilibriumSurfaceResult` into
what the chapter's results file records.

Choices where the paper is silent are those of :mod:`ctd_lib.free_energy` (common
random numbers in every measurement and probe, Euler steps rescaled by
``step_rel``); a starting point that is not on the grid is trained from scratch
the way the grid's models are (:func:`start_model`).
"""
from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .._util.checks import check_choice, check_count, check_positive
from ..data import Task, fetch_mnist10k, make_task
from ..free_energy.equilibrate import (
    EquilibrationConfig,
    EquilibrationLog,
    array_sampler,
    equilibrate,
    train_equilibrium,
)
from ..free_energy.functionals import measure
from ..free_energy.iso_classification import (
    FixedMultiplierPath,
    IsoClassificationConfig,
    IsoClassificationResult,
    first_law_check,
    fixed_multiplier_path,
    iso_c_max_rel_change,
    iso_classification,
    remark10_check,
)
from ..free_energy.model import DECODERS, MARGINALS, FreeEnergyModel, FreeEnergyModelConfig, make_free_energy_model
from ..free_energy.surface import Lemma3Check, SurfaceGrid, equilibrium_surface, lemma3_check, rel_diff
from ..results import SCALES, Claim

__all__ = ["EquilibriumChange", "EquilibriumSurfaceConfig", "EquilibriumSurfaceResult", "GRID_STARTS", "IsoRun",
           "claims", "equilibrium_change_check", "iso_run", "load_data", "metrics", "run", "start_model",
           "train_parent"]

TASK = "mnist10k-all"  # every digit of the mnist10k train/test splits
GRID_STARTS = ("parent", "scratch")  # how the grid's models start (EquilibriumSurfaceConfig.grid_start)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(float(v)))


def _check_grid(name: str, value) -> tuple:
    ok = isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)
    if not ok or len(value) < 3 or any(b <= a for a, b in zip(value, value[1:])) or min(value) < 0:
        raise ValueError(f"{name}={value!r} is not valid; it must be at least 3 increasing values >= 0 "
                         "(second differences need three points)")
    return tuple(value)


def _check_pairs(name: str, value, *, positive: bool = False) -> tuple:
    if (not isinstance(value, (list, tuple)) or not value
            or any(not isinstance(p, (list, tuple)) or len(p) != 2 for p in value)):
        raise ValueError(f"{name}={value!r} is not valid; it must be a non-empty list of [lambda, gamma] pairs")
    for pair in value:
        if not all(_is_number(v) for v in pair) or any(v < 0 or (positive and v == 0) for v in pair):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{name}={value!r} is not valid; lambda and gamma must be finite numbers {bound}")
    return tuple(tuple(p) for p in value)


@dataclass(frozen=True, kw_only=True)
class EquilibriumSurfaceConfig:
    """Parameters of chapter 5 (the notebook's ``parameters`` cell, validated); defaults are the CPU scale."""

    n_per_class: int = 300  # training images per digit (mnist10k train split)
    n_val_per_class: int = 100  # held-out images per digit
    lambdas: tuple = (0.25, 0.5, 1.0)  # grid of the equilibrium surface
    gammas: tuple = (2.0, 4.0, 8.0)
    grid_start: str = "parent"  # "parent": every grid model from one model trained long; "scratch": each from scratch
    parent_point: tuple = (0.5, 4.0)  # (lambda, gamma) at which the parent is trained (grid_start="parent")
    parent_steps: int = 6000  # updates of the parent, from scratch, cosine-annealed to 0
    train_steps: int = 1500  # updates of each grid model (from the parent, or from scratch), cosine-annealed to 0
    train_lr: float = 1e-3  # peak of the cosine schedule (Appendix A)
    batch_size: int = 64  # mini-batch of every update
    n_z: int = 1  # latent samples per input in training
    n_z_measure: int = 8  # latent samples per input when measuring R, D, C
    marginal: str = "standard"  # m(z): "standard" or "learned"
    decoder: str = "gaussian"  # d(x|z): "gaussian" (squared error) or "bernoulli"
    equilibrium_change: tuple = ((0.5, 2.0), (0.51, 2.08))  # Fig. 4a: (lambda, gamma) before and after
    iso_starts: tuple = ((0.25, 4.0), (1.0, 4.0))  # Fig. 2: starting (lambda, gamma) of the iso runs
    iso_steps: int = 8  # steps of Eq. (31)
    alpha: float = 1.0  # time scale of Eq. (31); != 0
    dt: float = 1.0  # Euler step
    step_rel: float | None = 0.15  # larger relative change of lambda or gamma per step (None: plain Euler)
    fd_rel_lambda: float = 0.1  # finite-difference half-width relative to lambda, in (0, 1)
    fd_rel_gamma: float = 0.1  # the same relative to gamma
    fd_steps: int = 300  # equilibration of each finite-difference probe (= equil_steps: the response a step gets)
    iso_eval_size: int | None = 1000  # training digits the iso runs measure R, D, C on (None: all)
    equil_steps: int = 300  # T of the schedule eta(t) after each change
    peak_lr: float = 5e-4  # peak of eta(t); Sec. 5.1 uses 1.5e-3
    iso_c_tolerance: float = 0.05  # "C constant" (and "F kept"): relative change below this
    derivative_tolerance: float = 0.1  # Remark 10 and the first law: relative residual below this
    symmetry_tolerance: float = 0.25  # dC/dlambda against dD/dgamma at the probes (their own precision, see text)
    seed: int = 0  # initial weights, mini-batches, latent noise, data subsets
    threads: int = 1  # torch threads while running (the same seed gives the same numbers on any CPU)
    scale: str = "cpu"  # "cpu", "paper" or "smoke": recorded with the results

    def __post_init__(self):
        for name in ("n_per_class", "n_val_per_class", "parent_steps", "train_steps", "batch_size", "n_z",
                     "n_z_measure", "iso_steps", "fd_steps", "equil_steps", "threads"):
            check_positive(name, getattr(self, name), integer=True)
        if self.iso_eval_size is not None:
            check_positive("iso_eval_size", self.iso_eval_size, integer=True)
        for name in ("train_lr", "peak_lr", "dt", "step_rel", "fd_rel_lambda", "fd_rel_gamma", "iso_c_tolerance",
                     "derivative_tolerance", "symmetry_tolerance"):
            value = getattr(self, name)
            if name == "step_rel" and value is None:
                continue
            if not _is_number(value):  # a string such as "0.1" would pass float() and fail later
                raise ValueError(f"{name}={value!r} is not valid; it must be a positive finite number"
                                 + (" or None" if name == "step_rel" else ""))
            check_positive(name, value)
        for name in ("fd_rel_lambda", "fd_rel_gamma"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; it must be in (0, 1) "
                                 "so that the lower probe keeps a positive multiplier")
        object.__setattr__(self, "lambdas", _check_grid("lambdas", self.lambdas))
        object.__setattr__(self, "gammas", _check_grid("gammas", self.gammas))
        object.__setattr__(self, "iso_starts", _check_pairs("iso_starts", self.iso_starts, positive=True))
        point = self.parent_point
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise ValueError(f"parent_point={point!r} is not valid; it must be one [lambda, gamma] pair")
        object.__setattr__(self, "parent_point", _check_pairs("parent_point", [point], positive=True)[0])
        check_choice("grid_start", self.grid_start, GRID_STARTS)
        change = _check_pairs("equilibrium_change", self.equilibrium_change)
        if len(change) != 2:
            raise ValueError(f"equilibrium_change={self.equilibrium_change!r} is not valid; "
                             "it must be [[lambda, gamma], [lambda', gamma']]")
        object.__setattr__(self, "equilibrium_change", change)
        if not _is_number(self.alpha) or self.alpha == 0:
            raise ValueError(f"alpha={self.alpha!r} is not valid; the time scale of Eq. (31) must be a finite "
                             "number != 0")
        check_choice("marginal", self.marginal, MARGINALS)
        check_choice("decoder", self.decoder, DECODERS)
        check_count("seed", self.seed)
        check_choice("scale", self.scale, SCALES)

    def parameters(self) -> dict:
        """The plain dict recorded in the results' provenance (lists where the notebook has lists)."""
        out = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = [list(p) if isinstance(p, tuple) else p for p in v] if isinstance(v, tuple) else v
        return out

    def model_config(self) -> FreeEnergyModelConfig:
        """The model of Appendix A with the chosen marginal and decoder (weights seeded with ``seed``)."""
        return FreeEnergyModelConfig(marginal=self.marginal, decoder=self.decoder, seed=self.seed)

    def train_config(self) -> EquilibrationConfig:
        """Training a grid model: Adam with cosine annealing from ``train_lr`` to 0 over ``train_steps`` (Appendix A)."""
        return EquilibrationConfig(steps=self.train_steps, peak_lr=self.train_lr, batch_size=self.batch_size,
                                   n_z=self.n_z, schedule="cosine", seed=self.seed)

    def parent_config(self) -> EquilibrationConfig:
        """Training the parent from scratch: the same, over ``parent_steps`` (seed + 1: its own batches)."""
        return EquilibrationConfig(steps=self.parent_steps, peak_lr=self.train_lr, batch_size=self.batch_size,
                                   n_z=self.n_z, schedule="cosine", seed=self.seed + 1)

    def equil_config(self) -> EquilibrationConfig:
        r"""Equilibration after a change: :math:`\eta(t) = (t/T)^2(1-t/T)^5` of Sec. 5.1, peak ``peak_lr``."""
        return EquilibrationConfig(steps=self.equil_steps, peak_lr=self.peak_lr, batch_size=self.batch_size,
                                   n_z=self.n_z, schedule="paper", seed=self.seed)

    def iso_config(self) -> IsoClassificationConfig:
        """The iso-classification process of Eq. (31) with this chapter's steps, probes and equilibration."""
        return IsoClassificationConfig(steps=self.iso_steps, alpha=self.alpha, dt=self.dt,
                                       fd_rel_lambda=self.fd_rel_lambda, fd_rel_gamma=self.fd_rel_gamma,
                                       fd_steps=self.fd_steps, equilibration=self.equil_config(),
                                       n_z_measure=self.n_z_measure, step_rel=self.step_rel, seed=self.seed)


# ----------------------------------------------------------------------------
# result types
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EquilibriumChange:
    r"""Equilibration after a small change of the multipliers (Fig. 4a).

    ``F_before`` :math:`= F(\lambda, \gamma)` of the starting model, ``F_after``
    :math:`= R' + \lambda' D' + \gamma' C'` after equilibrating it at
    :math:`(\lambda', \gamma')`, ``F_before_at_new`` the starting model's objective at
    the new multipliers; ``rel_change`` :math:`= |F_{after} - F_{before}| / |F_{before}|`.
    """

    before: tuple  # (lambda, gamma)
    after: tuple  # (lambda', gamma')
    F_before: float
    F_after: float
    F_before_at_new: float
    rel_change: float
    log: EquilibrationLog | None = None  # the equilibration (mini-batch objective, learning rate)


@dataclass(frozen=True)
class IsoRun:
    r"""One iso-classification run (Eq. 31) from ``start`` and its fixed-multiplier control.

    With :math:`C_k` the classification loss after step :math:`k` and :math:`C^{fix}_k`
    the control's (the same equilibrations at the starting multipliers):
    ``c_change`` :math:`= \max_k |C_k - C_0|/C_0` on the training data,
    ``c_change_val`` on the held-out data (what Fig. 2c plots), ``c_change_control``
    and ``c_change_control_val`` the same for the control, ``c_noise_control_val`` the
    control's spread over its equilibrations (the SGD noise floor,
    :meth:`~ctd_lib.free_energy.iso_classification.FixedMultiplierPath.noise`),
    ``c_vs_control`` :math:`= \max_k |C_k - C^{fix}_k| / C^{fix}_k` (training);
    ``dR``, ``dD`` the total changes of rate and distortion; ``remark10`` and
    ``first_law`` the relative violations of Eq. (29) and Eq. (7) (σ = 0).

    From the finite-difference probes of each step: ``symmetry`` (steps,) the relative
    difference of :math:`\partial C/\partial\lambda` and :math:`\partial D/\partial\gamma`
    (both :math:`\partial^2 F/\partial\lambda\partial\gamma`, Lemma 3), and
    ``n_concave`` the steps at which the probed Hessian of :math:`F`,
    :math:`\begin{pmatrix}\partial_\lambda D & \partial_\gamma D\\ \partial_\lambda C & \partial_\gamma C\end{pmatrix}`
    symmetrised, is negative semi-definite. ``lam_gamma_turns`` is :math:`\lambda` at the
    first step where :math:`\dot\gamma = \alpha\,\partial C/\partial\lambda` is positive (None if never).
    """

    start: tuple  # (lambda, gamma) at the start
    c_change: float
    c_change_val: float
    c_change_control: float
    c_change_control_val: float
    c_noise_control_val: float
    c_vs_control: float
    dR: float
    dD: float
    remark10: float
    first_law: float
    lam_end: float
    gam_end: float
    symmetry: np.ndarray  # (steps,) |dC/dlam - dD/dgamma| / max(|.|, |.|) at each step's probes
    n_concave: int  # steps whose probed Hessian of F is negative semi-definite
    lam_gamma_turns: float | None  # lambda at the first step with gamma-dot > 0, None if none
    process: IsoClassificationResult | None = None  # the path (None only in hand-built results)
    control: FixedMultiplierPath | None = None  # the same equilibrations at fixed multipliers

    @property
    def steps(self) -> int:
        return int(len(self.symmetry))


@dataclass(frozen=True)
class EquilibriumSurfaceResult:
    """Everything chapter 5 measures."""

    config: EquilibriumSurfaceConfig
    n_train: int  # training digits
    n_val: int  # held-out digits
    grid: SurfaceGrid  # the equilibrium surface (Fig. 1), models kept
    lemma3: Lemma3Check  # Lemma 3 on the grid
    change: EquilibriumChange  # Fig. 4a
    iso: tuple  # IsoRun per start of ``iso_starts`` (Figs. 2 and 4b)

    @property
    def iso_c_max(self) -> float:
        """Largest relative change of the training C over the iso runs."""
        return max(r.c_change for r in self.iso)

    @property
    def iso_c_max_val(self) -> float:
        return max(r.c_change_val for r in self.iso)

    @property
    def iso_c_control_max(self) -> float:
        return max(r.c_change_control for r in self.iso)

    @property
    def iso_c_control_max_val(self) -> float:
        return max(r.c_change_control_val for r in self.iso)

    @property
    def iso_c_noise_val(self) -> float:
        """The largest SGD noise floor of the held-out C over the runs' controls."""
        return max(r.c_noise_control_val for r in self.iso)

    @property
    def symmetry_max(self) -> float:
        """Largest relative difference of dC/dlambda and dD/dgamma over all probed steps."""
        return float(max(np.max(r.symmetry) for r in self.iso))

    @property
    def n_probe_steps(self) -> int:
        return sum(r.steps for r in self.iso)

    @property
    def n_probe_concave(self) -> int:
        return sum(r.n_concave for r in self.iso)

    @property
    def lambda_range(self) -> tuple[float, float]:
        """The smallest and largest lambda the iso runs visited."""
        lam = np.concatenate([r.process.lam for r in self.iso])
        return float(lam.min()), float(lam.max())

    @property
    def iso_c_vs_control_max(self) -> float:
        return max(r.c_vs_control for r in self.iso)

    @property
    def remark10_err(self) -> float:
        return max(r.remark10 for r in self.iso)

    @property
    def first_law_err(self) -> float:
        return max(r.first_law for r in self.iso)

    @property
    def n_rd_ok(self) -> int:
        """Runs in which the rate rose and the distortion fell (Remark 10)."""
        return sum(r.dR > 0 and r.dD < 0 for r in self.iso)

    def dC_partials(self) -> tuple[np.ndarray, np.ndarray]:
        r"""(:math:`\partial C/\partial\lambda`, :math:`\partial C/\partial\gamma`) at every step of every run."""
        dl = np.array([p.dC_dlambda for r in self.iso for p in r.process.partials])
        dg = np.array([p.dC_dgamma for r in self.iso for p in r.process.partials])
        return dl, dg

    def dD_dgamma(self) -> np.ndarray:
        r""":math:`\partial D/\partial\gamma` at every step of every run (to compare with :math:`\partial C/\partial\lambda`)."""
        return np.array([p.dD_dgamma for r in self.iso for p in r.process.partials])


# ----------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------


def load_data(config: EquilibriumSurfaceConfig) -> tuple[Task, Task]:
    """``n_per_class`` training and ``n_val_per_class`` held-out digits of each class (mnist10k)."""
    fetch_mnist10k()
    train = make_task(TASK, "train", n_per_class=config.n_per_class, seed=config.seed)
    val = make_task(TASK, "test", n_per_class=config.n_val_per_class, seed=config.seed)
    return train, val


def train_parent(config: EquilibriumSurfaceConfig, train: Task) -> FreeEnergyModel | None:
    """The model every grid model starts from (``grid_start="parent"``): trained from scratch at ``parent_point``
    for ``parent_steps`` updates, cosine-annealed to 0; None for ``grid_start="scratch"``."""
    if config.grid_start != "parent":
        return None
    m = make_free_energy_model(config.model_config())
    lam, gamma = config.parent_point
    train_equilibrium(m, array_sampler(train.x, train.y), lam, gamma, config.parent_config())
    return m


def start_model(config: EquilibriumSurfaceConfig, grid: SurfaceGrid, train: Task, lam: float,
                gamma: float, parent: FreeEnergyModel | None = None) -> FreeEnergyModel:
    """A copy of the grid's model at (``lam``, ``gamma``) if that is a grid point, else one trained the way the
    grid's models are (``config.train_config()``, from a copy of ``parent`` or from scratch)."""
    try:
        return copy.deepcopy(grid.model(lam, gamma))
    except ValueError:
        if config.grid_start == "parent" and parent is None:
            raise ValueError("grid_start='parent' needs the parent model to train a start off the grid") from None
        m = copy.deepcopy(parent) if parent is not None else make_free_energy_model(config.model_config())
        train_equilibrium(m, array_sampler(train.x, train.y), lam, gamma, config.train_config())
        return m


def equilibrium_change_check(config: EquilibriumSurfaceConfig, grid: SurfaceGrid, train: Task,
                             parent: FreeEnergyModel | None = None) -> EquilibriumChange:
    r"""Fig. 4a: equilibrate the model at :math:`(\lambda, \gamma)` for :math:`(\lambda', \gamma')` and compare
    :math:`F` before and after (Sec. 5.1: the free energy should be about the same)."""
    (l0, g0), (l1, g1) = config.equilibrium_change
    base = start_model(config, grid, train, l0, g0, parent)
    before = measure(base, train.x, train.y, n_z=config.n_z_measure, seed=config.seed)
    moved = copy.deepcopy(base)
    log = equilibrate(moved, array_sampler(train.x, train.y), l1, g1, config.equil_config())
    after = measure(moved, train.x, train.y, n_z=config.n_z_measure, seed=config.seed)
    F_before, F_after = before.free_energy(l0, g0), after.free_energy(l1, g1)
    return EquilibriumChange(before=(l0, g0), after=(l1, g1), F_before=F_before, F_after=F_after,
                             F_before_at_new=before.free_energy(l1, g1),
                             rel_change=abs(F_after - F_before) / abs(F_before), log=log)


def _probed_hessian(p) -> np.ndarray:
    r"""The Hessian of :math:`F` from one step's probes, Lemma 3: :math:`\partial_\lambda F = D`, :math:`\partial_\gamma F = C`,
    symmetrised (its two off-diagonal estimates averaged)."""
    off = 0.5 * (p.dD_dgamma + p.dC_dlambda)
    return np.array([[p.dD_dlambda, off], [off, p.dC_dgamma]])


def iso_run(start: tuple, process: IsoClassificationResult, control: FixedMultiplierPath) -> IsoRun:
    """Summarise one iso-classification path and its fixed-multiplier control (see :class:`IsoRun`)."""
    C, C_fix = process.array("classification"), control.array("classification")
    eig = [np.linalg.eigvalsh(_probed_hessian(p)) for p in process.partials]
    sym = rel_diff([p.dC_dlambda for p in process.partials], [p.dD_dgamma for p in process.partials])
    turns = [k for k, p in enumerate(process.partials) if process.config["alpha"] * p.dC_dlambda > 0]
    return IsoRun(
        start=tuple(start), c_change=iso_c_max_rel_change(process),
        c_change_val=iso_c_max_rel_change(process, split="val"),
        c_change_control=control.max_rel_change(), c_change_control_val=control.max_rel_change(split="val"),
        c_noise_control_val=control.noise(split="val"),
        c_vs_control=float(np.max(np.abs(C - C_fix) / C_fix)),
        dR=float(process.array("rate")[-1] - process.array("rate")[0]),
        dD=float(process.array("distortion")[-1] - process.array("distortion")[0]),
        remark10=remark10_check(process), first_law=first_law_check(process),
        lam_end=float(process.lam[-1]), gam_end=float(process.gamma[-1]), symmetry=np.asarray(sym, float),
        n_concave=int(sum(bool(np.all(e <= 0)) for e in eig)),
        lam_gamma_turns=float(process.lam[turns[0]]) if turns else None, process=process, control=control,
    )


def run(config: EquilibriumSurfaceConfig) -> EquilibriumSurfaceResult:
    """The whole chapter: data, the grid and Lemma 3, Fig. 4a, the iso-classification runs and their controls.

    Runs with ``config.threads`` torch threads (restored afterwards) and the global
    torch generator seeded with ``config.seed``.
    """
    if not isinstance(config, EquilibriumSurfaceConfig):
        raise ValueError(f"config={config!r} is not valid; it must be an EquilibriumSurfaceConfig")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        train, val = load_data(config)
        parent = train_parent(config, train)
        grid = equilibrium_surface(train.x, train.y, val.x, val.y, list(config.lambdas), list(config.gammas),
                                   model_config=config.model_config(), train_config=config.train_config(),
                                   n_z_measure=config.n_z_measure, parent=parent, keep_models=True)
        l3 = lemma3_check(grid)
        change = equilibrium_change_check(config, grid, train, parent)
        iso_config = config.iso_config()
        runs = []
        for lam, gam in config.iso_starts:
            m = start_model(config, grid, train, lam, gam, parent)
            process = iso_classification(m, train.x, train.y, val.x, val.y, lam, gam, iso_config,
                                         eval_size=config.iso_eval_size)
            # the same equilibrations at fixed multipliers: the drift of a model not quite at equilibrium
            control = fixed_multiplier_path(m, train.x, train.y, lam, gam, iso_config, x_val=val.x, y_val=val.y,
                                            eval_size=config.iso_eval_size)
            runs.append(iso_run((lam, gam), process, control))
    finally:
        torch.set_num_threads(threads_before)
    return EquilibriumSurfaceResult(config=config, n_train=len(train.y), n_val=len(val.y), grid=grid, lemma3=l3,
                                    change=change, iso=tuple(runs))


# ----------------------------------------------------------------------------
# what the results file records
# ----------------------------------------------------------------------------


def _path(run: IsoRun) -> dict:
    r, ctrl = run.process, run.control
    if r is None or ctrl is None:
        raise ValueError(f"the iso run from {run.start} carries no path or control; metrics need both")
    return dict(start=list(run.start), lam=r.lam.tolist(), gamma=r.gamma.tolist(), rate=r.array("rate").tolist(),
                distortion=r.array("distortion").tolist(), classification=r.array("classification").tolist(),
                classification_val=r.array("classification", "val").tolist(),
                accuracy_val=r.array("accuracy", "val").tolist(), free_energy=r.free_energy.tolist(),
                control_classification=ctrl.array("classification").tolist(),
                control_classification_val=ctrl.array("classification", "val").tolist(),
                dC_dlambda=[p.dC_dlambda for p in r.partials], dC_dgamma=[p.dC_dgamma for p in r.partials],
                dD_dlambda=[p.dD_dlambda for p in r.partials], dD_dgamma=[p.dD_dgamma for p in r.partials],
                symmetry_rel_diff=run.symmetry.tolist(), probed_hessian_concave_steps=run.n_concave,
                lambda_where_gamma_turns_up=run.lam_gamma_turns, n_clipped=int(r.n_clipped))


def metrics(result: EquilibriumSurfaceResult) -> dict:
    """The chapter's metrics: the checks' numbers, the grid's functionals, the iso paths and their controls."""
    l3, grid = result.lemma3, result.grid
    return {
        "iso_c_max_rel_change": float(result.iso_c_max),
        "iso_c_max_rel_change_val": float(result.iso_c_max_val),
        "iso_c_max_rel_change_fixed_multipliers": float(result.iso_c_control_max),
        "iso_c_max_rel_change_fixed_multipliers_val": float(result.iso_c_control_max_val),
        "iso_c_noise_floor_val": float(result.iso_c_noise_val),
        "iso_c_max_rel_diff_vs_fixed_multipliers": float(result.iso_c_vs_control_max),
        "remark10_rel_err": float(result.remark10_err),
        "first_law_rel_err": float(result.first_law_err),
        "lambda_secants_bracketed": int(l3.lambda_secants_bracketed), "n_lambda_secants": l3.n_lambda_secants,
        "gamma_secants_bracketed": int(l3.gamma_secants_bracketed), "n_gamma_secants": l3.n_gamma_secants,
        "lambda_secant_max_rel_violation": float(l3.lambda_secant_max_rel_violation),
        "gamma_secant_max_rel_violation": float(l3.gamma_secant_max_rel_violation),
        "grid_cross_dC_dlambda": l3.cross_dC_dlambda, "grid_cross_dD_dgamma": l3.cross_dD_dgamma,
        "symmetry_max_rel_diff": float(result.symmetry_max),
        "probed_hessian_concave_steps": int(result.n_probe_concave), "n_probed_steps": int(result.n_probe_steps),
        "supporting_plane_violations": int(l3.supporting_plane_violations),
        "supporting_plane_max_rel_violation": float(l3.supporting_plane_max_rel_violation),
        "hessian_negative_fraction": float(l3.hessian_negative_fraction),
        "grid_hessian_eigenvalues": l3.hessian_eigenvalues,
        "equilibration_F_rel_change": float(result.change.rel_change),
        "iso_lambda_range": list(result.lambda_range),
        "grid_rate": grid.array("rate"), "grid_distortion": grid.array("distortion"),
        "grid_classification": grid.array("classification"),
        "grid_classification_val": grid.array("classification", "val"), "grid_free_energy": grid.F,
        "grid_wall_time_s": float(grid.wall_time),
        "iso_paths": [_path(r) for r in result.iso],
    }


def _control_text(result: EquilibriumSurfaceResult) -> str:
    return (f"the same equilibrations at fixed multipliers move the held-out C by up to "
            f"{result.iso_c_control_max_val:.1%} (training {result.iso_c_control_max:.1%}; SGD noise floor of "
            f"the held-out C {result.iso_c_noise_val:.1%})")


def claims(result: EquilibriumSurfaceResult) -> list[Claim]:
    r"""The chapter's claims, each with its verdict and the numbers behind it.

    * ``iso_c_constant``: :math:`\max_k |C_k - C_0| / C_0` of the held-out C (Fig. 2c) < ``iso_c_tolerance``
      on every run (Remark 7); the training C and the fixed-multiplier control beside it;
    * ``rate_up_distortion_down``: :math:`\Delta R > 0` and :math:`\Delta D < 0` on every run (Remark 10, Eq. 29);
    * ``remark10_relation``: the violation of :math:`dR = -\lambda\,dD` < ``derivative_tolerance``;
    * ``multipliers_rise``: :math:`\lambda` and :math:`\gamma` both end higher than they start on every run
      (Fig. 2b);
    * ``free_energy_concave``: no supporting plane violated, Hess F ⪯ 0 at every interior grid point and at every
      probed step (Lemma 3);
    * ``derivatives_of_F``: every secant of F lies between the D (along lambda) or C (along gamma) at its ends
      (Lemma 3: :math:`\partial_\lambda F = D`, :math:`\partial_\gamma F = C`, F concave);
    * ``hessian_symmetric``: :math:`\partial C/\partial\lambda = \partial D/\partial\gamma` within
      ``symmetry_tolerance`` at every probed step (Lemma 3: both are a mixed second derivative of F);
    * ``equilibration_keeps_F``: :math:`|\Delta F| / |F|` < ``iso_c_tolerance`` (Sec. 5.1, Fig. 4a).
    """
    cfg, l3, ch = result.config, result.lemma3, result.change
    remark10_err = result.remark10_err
    (l0, g0), (l1, g1) = ch.before, ch.after
    lo, hi = result.lambda_range
    sym = np.concatenate([r.symmetry for r in result.iso])
    turns = [r.lam_gamma_turns for r in result.iso if r.lam_gamma_turns is not None]
    turn_text = (f"gamma-dot first turns positive at lambda = {min(turns):.3g}" if turns else
                 f"gamma-dot is negative at every step (dC/dlambda < 0 for lambda in [{lo:.3g}, {hi:.3g}])")
    return [
        Claim(id="iso_c_constant", statement="C stays constant along the iso-classification process",
              source="Seed 004, Remark 7, Sec. 5.1 (Fig. 2c)",
              holds=bool(result.iso_c_max_val < cfg.iso_c_tolerance),
              evidence=f"largest relative change of the held-out C over {len(result.iso)} runs of {cfg.iso_steps} "
                       f"steps: {result.iso_c_max_val:.1%} (tolerance {cfg.iso_c_tolerance:.0%}); training C: "
                       f"{result.iso_c_max:.1%}; {_control_text(result)}"),
        Claim(id="rate_up_distortion_down", statement="Along iso-classification D decreases and R increases",
              source="Seed 004, Remark 10, Eq. (29)", holds=result.n_rd_ok == len(result.iso),
              evidence="; ".join(f"start {r.start}: R {r.dR:+.2f}, D {r.dD:+.2f}" for r in result.iso)),
        Claim(id="remark10_relation", statement="dR = -lambda dD along the process",
              source="Seed 004, Remark 10, Eq. (29)", holds=bool(remark10_err < cfg.derivative_tolerance),
              evidence=f"|sum(dR + lambda dD)| / sum|dR| = {remark10_err:.1%} at worst (tolerance "
                       f"{cfg.derivative_tolerance:.0%}); with the gamma dC term (Eq. 7) "
                       f"{result.first_law_err:.1%}"),
        Claim(id="multipliers_rise", statement="Both lambda and gamma rise along the iso-classification process",
              source="Seed 004, Fig. 2b (from (0.25, 4) to about (3.5, 26))",
              holds=all(r.lam_end > r.start[0] and r.gam_end > r.start[1] for r in result.iso),
              evidence="; ".join(f"{r.start} -> ({r.lam_end:.3g}, {r.gam_end:.3g})" for r in result.iso)
                       + f"; lambda covered [{lo:.3g}, {hi:.3g}]; {turn_text}"),
        Claim(id="free_energy_concave", statement="F(lambda, gamma) is concave",
              source="Seed 004, Lemma 3",
              holds=(l3.supporting_plane_violations == 0 and l3.hessian_negative_fraction == 1
                     and result.n_probe_concave == result.n_probe_steps),
              evidence=f"{l3.supporting_plane_violations} of {l3.n_pairs} supporting-plane inequalities violated "
                       f"(largest {l3.supporting_plane_max_rel_violation:.2%}); Hessian negative semi-definite at "
                       f"{l3.hessian_negative_fraction:.0%} of the interior grid points and at "
                       f"{result.n_probe_concave} of {result.n_probe_steps} probed steps of the iso runs"),
        Claim(id="derivatives_of_F", statement="D = dF/dlambda and C = dF/dgamma",
              source="Seed 004, Lemma 3 (Appendix B)", holds=l3.secants_bracketed,
              evidence=f"secants of F between the neighbouring derivatives: {l3.lambda_secants_bracketed} of "
                       f"{l3.n_lambda_secants} along lambda (D), {l3.gamma_secants_bracketed} of "
                       f"{l3.n_gamma_secants} along gamma (C); largest excursions "
                       f"{l3.lambda_secant_max_rel_violation:.2%} and {l3.gamma_secant_max_rel_violation:.2%}"),
        Claim(id="hessian_symmetric", statement="dC/dlambda = dD/dgamma (the mixed second derivative of F)",
              source="Seed 004, Lemma 3, Eqs. (29) and (31)",
              holds=bool(result.symmetry_max < cfg.symmetry_tolerance),
              evidence=f"largest relative difference over {result.n_probe_steps} probed steps "
                       f"{result.symmetry_max:.1%} (tolerance {cfg.symmetry_tolerance:.0%}), median "
                       f"{float(np.median(sym)):.1%}, within tolerance at {int(np.sum(sym < cfg.symmetry_tolerance))} "
                       f"of {sym.size}; on the grid's interior: "
                       + ", ".join(f"{c:.3g} vs {d:.3g}" for c, d in zip(l3.cross_dC_dlambda, l3.cross_dD_dgamma))),
        Claim(id="equilibration_keeps_F", statement="Equilibration after a small change of (lambda, gamma) keeps F",
              source="Seed 004, Sec. 5.1 (Fig. 4a)", holds=bool(ch.rel_change < cfg.iso_c_tolerance),
              evidence=f"({l0:g}, {g0:g}) to ({l1:g}, {g1:g}): F {ch.F_before:.2f} to {ch.F_after:.2f}, relative "
                       f"change {ch.rel_change:.2%} (tolerance {cfg.iso_c_tolerance:.0%})"),
    ]
