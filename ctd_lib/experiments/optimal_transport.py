r"""Chapter 2's experiments: transporting a task with optimal transport.

Seed 000 (Gao & Chaudhari 2021), Sec. 2.2 (Eqs. 6-9), Sec. 3.3 (Eq. 12a) and
Sec. 3.4; seed 004 (2020), Appendix F (Eq. 37, Remark 11). Each function runs
one study and returns numbers; :func:`run` runs them all in the notebook's order
from an :class:`OptimalTransportConfig` and returns an
:class:`OptimalTransportResult`, from which :func:`metrics` and :func:`claims`
derive what the results file records. The notebook plots.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from .._util.checks import check_choice, check_count, check_in_range, check_nonnegative, check_positive
from ..data import TASKS, Task, fetch_mnist10k, make_task
from ..models import make_model
from ..results import SCALES, Claim
from ..task_distance import penultimate_features, train_source_model
from ..transport.blocks import block_plan, match_blocks
from ..transport.costs import feature_cost, pixel_cost, uniform
from ..transport.dense import OTPlan, entropic_plan, exact_plan
from ..transport.gaussian import bures_w2, wasserstein2
from ..transport.interpolation import make_sampler
from ..transport.proximal import proximal_plan

__all__ = ["BlockStudy", "BuresCheck", "MnistCouplings", "NearestRealStudy", "OptimalTransportConfig",
           "OptimalTransportResult", "ProximalStudy", "SolverTiming", "SpeedStudy", "ToyClouds", "batched_vs_loop",
           "block_size_study", "bures_check", "claims", "constant_speed", "displacement_support", "metrics",
           "nearest_real_distance", "point_clouds", "proximal_sweep", "run"]


def point_clouds(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D clouds of ``n`` points: an elongated blob on the left, a crescent on the right."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, 2)) * np.array([0.35, 1.2]) + np.array([-2.5, 0.0])
    theta = rng.uniform(-0.5 * np.pi, 0.5 * np.pi, size=n)
    r = 1.6 + 0.15 * rng.normal(size=n)
    xt = np.stack([1.5 + r * np.cos(theta), r * np.sin(theta)], axis=1)
    return xs, xt


def displacement_support(xs: np.ndarray, xt: np.ndarray, plan: np.ndarray, tau: float, *, min_mass: float = 1e-12):
    r"""Atoms and weights of :math:`\hat p_\tau = \sum_{ij}\Gamma_{ij}\,\delta_{(1-\tau)x_s^i + \tau x_t^j}` (Eq. 7)."""
    i, j = np.nonzero(plan > min_mass)
    w = plan[i, j]
    return (1 - tau) * xs[i] + tau * xt[j], w / w.sum()


@dataclass(frozen=True)
class SpeedStudy:
    taus: np.ndarray
    ratios: dict  # label -> W2(p_s, p_tau) / W2(p_s, p_t) for each tau

    def max_dev(self, label: str) -> float:
        return float(np.max(np.abs(self.ratios[label] - self.taus)))


def constant_speed(xs: np.ndarray, xt: np.ndarray, taus: Sequence[float] | np.ndarray,
                   regs: Sequence[float]) -> SpeedStudy:
    r""":math:`W_2(\hat p_s, \hat p_\tau) / W_2(\hat p_s, \hat p_t)` against :math:`\tau`.

    For the exact plan (``ot.emd``) displacement interpolation is a constant-speed
    geodesic, :math:`W_2(p_s, p_\tau) = \tau\, W_2(p_s, p_t)` (Sec. 2.2); entropic
    plans (relative :math:`\epsilon` in ``regs``) spread each atom's mass and bend it.
    """
    a, b = uniform(len(xs)), uniform(len(xt))
    C = pixel_cost(xs, xt)
    plans = {"exact": exact_plan(a, b, C).plan}
    for r in regs:
        plans[f"entropic, eps = {r:g} x median"] = entropic_plan(a, b, C, reg=r).plan
    tau_grid = np.asarray(taus, dtype=float)
    full = np.sqrt(max(float((plans["exact"] * C).sum()), 0.0))  # W2(p_s, p_t)
    ratios = {}
    for label, P in plans.items():
        row = []
        for tau in tau_grid:
            atoms, w = displacement_support(xs, xt, P, tau)
            row.append(wasserstein2(xs, atoms, a=a, b=w) / full)
        ratios[label] = np.asarray(row)
    return SpeedStudy(tau_grid, ratios)


def bures_check(n: int, seed: int) -> tuple[float, float]:
    """Exact W2 between samples of two 2-D Gaussians, and the closed form (Bures) of their laws."""
    rng = np.random.default_rng(seed)
    m1, m2 = np.array([0.0, 0.0]), np.array([3.0, 1.0])
    S1 = np.array([[1.0, 0.3], [0.3, 0.5]])
    S2 = np.array([[0.6, -0.2], [-0.2, 1.4]])
    x1 = rng.multivariate_normal(m1, S1, size=n)
    x2 = rng.multivariate_normal(m2, S2, size=n)
    return wasserstein2(x1, x2), bures_w2(m1, S1, m2, S2)


def nearest_real_distance(x: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """Distance from each interpolated input to its nearest real image (how far off the data it lies)."""
    a = x.reshape(x.shape[0], -1).double()
    b = real.reshape(real.shape[0], -1).double()
    return torch.cdist(a, b).min(dim=1).values.numpy()


@dataclass(frozen=True)
class ProximalStudy:
    lams: np.ndarray  # dimensionless lambda (lam * median(C) * n absolute)
    dist_to_prev: np.ndarray  # ||Gamma_lam - Gamma_prev||_F
    dist_to_new: np.ndarray  # ||Gamma_lam - Gamma_0||_F (Gamma_0: Sinkhorn on the new cost)
    cost: np.ndarray  # <Gamma_lam, C_new>
    lam0_max_abs_diff: float  # |proximal(lam=0) - sinkhorn| max entry


def proximal_sweep(C_prev: np.ndarray, C_new: np.ndarray, lams: Sequence[float], reg: float) -> ProximalStudy:
    r"""Eq. (12a) on a new cost, from the plan of the previous cost, over a range of :math:`\lambda`.

    :math:`\lambda` is given dimensionless: the absolute weight is
    :math:`\tilde\lambda \cdot \mathrm{median}(C)\cdot N_s`, on the scale at which
    the proximal term competes with the transport cost (a unit-mass plan has
    :math:`\|\Gamma\|_F^2 \approx 1/N_s`).
    """
    a, b = uniform(C_prev.shape[0]), uniform(C_prev.shape[1])
    prev = entropic_plan(a, b, C_prev, reg=reg).plan
    fresh = entropic_plan(a, b, C_new, reg=reg).plan
    scale = float(np.median(C_new)) * C_new.shape[0]
    dp, dn, cost = [], [], []
    for lam in lams:
        G = proximal_plan(a, b, C_new, prev, reg=reg, lam=lam * scale).plan
        dp.append(np.linalg.norm(G - prev))
        dn.append(np.linalg.norm(G - fresh))
        cost.append(float((G * C_new).sum()))
    zero = proximal_plan(a, b, C_new, prev, reg=reg, lam=0.0).plan
    return ProximalStudy(np.asarray(lams, float), np.asarray(dp), np.asarray(dn), np.asarray(cost),
                         float(np.abs(zero - fresh).max()))


@dataclass(frozen=True)
class BlockStudy:
    block_sizes: np.ndarray
    methods: tuple
    cost_ratio: dict  # method -> block plan cost / full plan cost, per block size
    seconds: dict  # method -> seconds to match blocks and solve them, per block size
    full_cost: float
    full_seconds: float


def block_size_study(fs: np.ndarray, ft: np.ndarray, block_sizes: Sequence[int], reg: float,
                     methods: Sequence[str] = ("centroid", "sorted", "random"), seed: int = 0) -> BlockStudy:
    """Transport cost of block-diagonal plans against the full entropic plan, on one ground cost."""
    C = feature_cost(fs, ft)
    t0 = time.perf_counter()
    full = entropic_plan(uniform(len(fs)), uniform(len(ft)), C, reg=reg)
    full_s = time.perf_counter() - t0
    ratio: dict[str, list[float]] = {m: [] for m in methods}
    secs: dict[str, list[float]] = {m: [] for m in methods}
    for B in block_sizes:
        for m in methods:
            t0 = time.perf_counter()
            bp = block_plan(C, match_blocks(fs, ft, int(B), method=m, seed=seed), reg=reg)
            secs[m].append(time.perf_counter() - t0)
            ratio[m].append(bp.cost / full.cost)
    return BlockStudy(np.asarray(block_sizes), tuple(methods), {k: np.asarray(v) for k, v in ratio.items()},
                      {k: np.asarray(v) for k, v in secs.items()}, float(full.cost), full_s)


@dataclass(frozen=True)
class SolverTiming:
    n: int
    block_size: int
    torch_seconds: np.ndarray
    pot_seconds: np.ndarray
    max_abs_diff: float

    @property
    def speedup(self) -> float:
        return float(np.median(self.pot_seconds) / np.median(self.torch_seconds))


def batched_vs_loop(n: int, block_size: int, reg: float, repeats: int, seed: int, dim: int = 64) -> SolverTiming:
    """The batched torch block solver against POT's per-block loop, same blocks and epsilons, alternating."""
    rng = np.random.default_rng(seed)
    fs, ft = rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + 0.5
    assignment = match_blocks(fs, ft, block_size, method="sorted")
    C = feature_cost(fs, ft)
    costs = [C[np.ix_(I, J)] for I, J in zip(assignment.source_blocks, assignment.target_blocks)]
    tt, tp = [], []
    diff = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        bt = block_plan(costs, assignment, reg=reg, solver="torch")
        tt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bp = block_plan(costs, assignment, reg=reg, solver="pot")
        tp.append(time.perf_counter() - t0)
        diff = max(diff, max(float(np.abs(p - q).max()) for p, q in zip(bt.plans, bp.plans)))
    return SolverTiming(n, block_size, np.asarray(tt), np.asarray(tp), diff)


# ----------------------------------------------------------------------------
# the chapter as one call: configuration, run, metrics and claims
# ----------------------------------------------------------------------------

_POSITIVE_INTS = ("n_points", "bures_n", "n_per_class", "feature_steps", "grid_pairs", "nn_samples", "prox_n",
                  "block_size", "timing_n", "timing_repeats")
_SEQUENCES = ("taus", "speed_regs", "prox_lams", "block_sizes")


@dataclass(frozen=True, kw_only=True)
class OptimalTransportConfig:
    """Parameters of chapter 2 (the notebook's ``parameters`` cell, validated).

    Every bad value raises a one-line :class:`ValueError` naming the parameter,
    before any work. Sequences are stored as tuples.
    """

    n_points: int = 80  # points per 2-D cloud
    taus: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)  # instants shown and measured
    speed_regs: tuple = (0.05, 0.5, 2.0)  # entropic epsilons (x median cost) for the constant-speed figure
    bures_n: int = 1500  # samples per Gaussian for the W2-against-Bures check
    source_task: str = "mnist10k-0-4"  # task whose images are transported
    target_task: str = "mnist10k-5-9"  # task they are transported to
    n_per_class: int = 60  # images per class, per task
    feature_steps: int = 300  # SGD steps of the source network whose features define the feature cost
    ot_reg: float = 0.05  # entropic epsilon of the MNIST couplings (x median cost)
    grid_pairs: int = 3  # coupled pairs shown per interpolation method
    nn_samples: int = 200  # interpolated samples per tau for the distance-to-data measure
    prox_n: int = 150  # samples per side for the proximal study
    prox_lams: tuple = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # dimensionless lambda of Eq. (12a)
    block_sizes: tuple = (10, 20, 30, 60, 150)  # block sizes B of the block-diagonal study
    block_size: int = 30  # the paper's B, at which block_vs_full_cost_ratio is reported
    timing_n: int = 2000  # samples per side for the batched-solver timing (benchmarks/ runs 10,000)
    timing_repeats: int = 3  # alternating timing repeats
    block_cost_tol: float = 0.25  # claim: block plan cost within this fraction of the full plan's
    seed: int = 0  # seeds the clouds, the tasks, the source network and every sampler
    scale: str = "cpu"  # "cpu", "paper" or "smoke": which results file is written

    def __post_init__(self):
        for name in _SEQUENCES:
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise ValueError(f"{name}={values!r} is not valid; it must be a non-empty list of numbers")
            object.__setattr__(self, name, tuple(values))
        for name in _POSITIVE_INTS:
            check_positive(name, getattr(self, name), integer=True)
        for name in ("ot_reg", "block_cost_tol"):
            check_positive(name, getattr(self, name))
        for t in self.taus:
            check_in_range("taus", t, 0.0, 1.0)
        for r in self.speed_regs:
            check_positive("speed_regs", r)
        for lam in self.prox_lams:
            check_nonnegative("prox_lams", lam)
        if not any(float(lam) > 0 for lam in self.prox_lams):
            raise ValueError(f"prox_lams={list(self.prox_lams)!r} is not valid; it needs at least one lambda > 0")
        for b in self.block_sizes:
            check_positive("block_sizes", b, integer=True)
        if self.block_size not in self.block_sizes:
            raise ValueError(f"block_size={self.block_size!r} must be one of block_sizes={list(self.block_sizes)}")
        check_choice("source_task", self.source_task, sorted(TASKS))
        check_choice("target_task", self.target_task, sorted(TASKS))
        check_count("seed", self.seed)
        check_choice("scale", self.scale, SCALES)

    def parameters(self) -> dict:
        """The plain dict recorded as the results' provenance (sequences as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class ToyClouds:
    """The two 2-D clouds of :func:`point_clouds` and their exact OT plan (Eq. 6 with :math:`\\epsilon = 0`)."""

    xs: np.ndarray  # (n, 2) source cloud
    xt: np.ndarray  # (n, 2) target cloud
    plan: np.ndarray  # (n, n) exact plan, mass 1


@dataclass(frozen=True)
class BuresCheck:
    """Exact :math:`W_2` between samples of two Gaussians against the Bures closed form of their laws."""

    empirical: float  # W2 between the two samples (network simplex)
    closed_form: float  # W2 between the two Gaussians (Bures)
    n: int  # samples per Gaussian

    @property
    def rel_err(self) -> float:
        return abs(self.empirical - self.closed_form) / self.closed_form


@dataclass(frozen=True)
class MnistCouplings:
    """The two MNIST tasks, their features, couplings and samplers (the data of the chapter's figures)."""

    source: Task
    target: Task
    source_features: np.ndarray  # (N_s, d) penultimate features of the source network
    target_features: np.ndarray  # (N_t, d)
    plans: dict[str, OTPlan]  # "pixel OT", "feature OT" -> entropic plan
    samplers: Mapping[str, Callable[..., Any]]  # "pixel OT", "feature OT", "Beta-mixup" -> sampler(tau, n, rng)


@dataclass(frozen=True)
class NearestRealStudy:
    """Mean distance from interpolated samples to the nearest real image, per sampler and :math:`\\tau`."""

    taus: np.ndarray  # (T,) instants
    curves: dict[str, np.ndarray]  # sampler label -> (T,) mean distance

    @property
    def mid(self) -> int:
        """Index of the instant closest to :math:`\\tau = 0.5`."""
        return int(np.argmin(np.abs(np.asarray(self.taus) - 0.5)))

    @property
    def ratio(self) -> float:
        """Beta-mixup over displacement (feature coupling), at :math:`\\tau \\approx 0.5`."""
        return float(self.curves["Beta-mixup"][self.mid] / self.curves["feature OT"][self.mid])


@dataclass(frozen=True, kw_only=True)
class OptimalTransportResult:
    """Everything chapter 2 measures. ``clouds`` and ``couplings`` only feed the figures
    (:func:`metrics` and :func:`claims` do not read them), so a result built by hand may leave them ``None``."""

    config: OptimalTransportConfig
    speed: SpeedStudy
    bures: BuresCheck
    nearest: NearestRealStudy
    proximal: ProximalStudy
    blocks: BlockStudy
    timing: SolverTiming
    clouds: ToyClouds | None = None
    couplings: MnistCouplings | None = None

    @property
    def block_index(self) -> int:
        """Position of ``config.block_size`` in the block study."""
        return list(self.blocks.block_sizes).index(self.config.block_size)

    @property
    def block_ratio(self) -> float:
        """Block (centroid-matched, :math:`B` = ``block_size``) over full plan cost."""
        return float(self.blocks.cost_ratio["centroid"][self.block_index])


def run(config: OptimalTransportConfig) -> OptimalTransportResult:
    r"""Every study of chapter 2, in the notebook's order.

    1. Two 2-D clouds coupled by exact OT, Eq. (6) of seed 000 with
       :math:`\epsilon = 0`: :math:`\Gamma^* = \operatorname{argmin}_{\Gamma\in\Pi}\langle\Gamma, C\rangle`.
    2. The constant speed of displacement interpolation (Eqs. 7-8),
       :math:`W_2(\hat p_s, \hat p_\tau) = \tau W_2(\hat p_s, \hat p_t)`, for the exact and entropic
       plans (:func:`constant_speed`), and :math:`W_2` against the Bures formula (:func:`bures_check`).
    3. Two MNIST tasks, a source network trained for ``feature_steps`` whose penultimate features
       define a feature cost, entropic plans on pixels and on features, and the displacement and
       Beta-mixup samplers of Sec. 3.4; the mean distance of their samples to real images.
    4. The proximal update, Eq. (12a), over ``prox_lams`` (:func:`proximal_sweep`).
    5. Block-diagonal couplings against the full plan (:func:`block_size_study`) and the batched
       block solver against POT's loop (:func:`batched_vs_loop`).
    """
    c = config
    torch.manual_seed(c.seed)
    xs, xt = point_clouds(c.n_points, c.seed)
    clouds = ToyClouds(xs, xt, exact_plan(uniform(c.n_points), uniform(c.n_points), pixel_cost(xs, xt)).plan)
    speed = constant_speed(xs, xt, np.linspace(0, 1, 11), c.speed_regs)
    w2_emp, w2_bures = bures_check(c.bures_n, c.seed)

    fetch_mnist10k()
    src = make_task(c.source_task, split="train", n_per_class=c.n_per_class, seed=c.seed)
    tgt = make_task(c.target_task, split="train", n_per_class=c.n_per_class, seed=c.seed)
    net = train_source_model(src, lambda: make_model("mlp", in_shape=tuple(src.x.shape[1:]),
                                                     num_classes=src.num_classes, seed=c.seed),
                             steps=c.feature_steps, lr=0.05, batch_size=64, seed=c.seed)
    fs, ft = penultimate_features(net, src.x), penultimate_features(net, tgt.x)
    a, b = uniform(len(src.y)), uniform(len(tgt.y))
    plans = {
        "pixel OT": entropic_plan(a, b, pixel_cost(src.x.numpy(), tgt.x.numpy()), reg=c.ot_reg),
        "feature OT": entropic_plan(a, b, feature_cost(fs, ft), reg=c.ot_reg),
    }
    samplers = {
        "pixel OT": make_sampler("displacement", src.x, src.y, tgt.x, tgt.y, plans["pixel OT"], num_classes=10),
        "feature OT": make_sampler("displacement", src.x, src.y, tgt.x, tgt.y, plans["feature OT"], num_classes=10),
        "Beta-mixup": make_sampler("beta-mixup", src.x, src.y, tgt.x, tgt.y, plans["feature OT"], num_classes=10),
    }
    real = torch.cat([src.x, tgt.x])
    curves = {}
    for label, sampler in samplers.items():
        rng = np.random.default_rng(c.seed + 1)
        curves[label] = np.array([nearest_real_distance(sampler(tau, c.nn_samples, rng).x, real).mean()
                                  for tau in c.taus])

    sub = slice(0, c.prox_n)
    prox = proximal_sweep(feature_cost(fs[sub], ft[sub]), pixel_cost(src.x[sub].numpy(), tgt.x[sub].numpy()),
                          c.prox_lams, c.ot_reg)
    blocks = block_size_study(fs, ft, c.block_sizes, c.ot_reg, seed=c.seed)
    timing = batched_vs_loop(c.timing_n, c.block_size, c.ot_reg, c.timing_repeats, c.seed)
    return OptimalTransportResult(
        config=c, speed=speed, bures=BuresCheck(w2_emp, w2_bures, c.bures_n),
        nearest=NearestRealStudy(np.asarray(c.taus, dtype=float), curves), proximal=prox, blocks=blocks,
        timing=timing, clouds=clouds, couplings=MnistCouplings(src, tgt, fs, ft, plans, samplers),
    )


def metrics(result: OptimalTransportResult) -> dict:
    """The numbers chapter 2 records in its results file."""
    speed, bs, timing, prox = result.speed, result.blocks, result.timing, result.proximal
    return {
        "constant_speed_max_dev": speed.max_dev("exact"),
        **{f"constant_speed_max_dev_{k}": speed.max_dev(k) for k in speed.ratios if k != "exact"},
        "bures_rel_err": result.bures.rel_err,
        "block_vs_full_cost_ratio": result.block_ratio,
        **{f"block_vs_full_cost_ratio_{m}_B{int(B)}": float(r) for m in bs.methods
           for B, r in zip(bs.block_sizes, bs.cost_ratio[m])},
        "batched_block_speedup": timing.speedup,
        "batched_block_max_abs_diff": timing.max_abs_diff,
        "nn_distance_ratio_beta_mixup_vs_displacement": result.nearest.ratio,
        "proximal_lambda0_max_abs_diff": prox.lam0_max_abs_diff,
        "proximal_dist_to_prev": prox.dist_to_prev,
    }


def claims(result: OptimalTransportResult) -> list[Claim]:
    """Chapter 2's claims, each with the numbers and the threshold behind its verdict."""
    cfg = result.config
    dev_exact = result.speed.max_dev("exact")
    bures = result.bures
    block_ratio = result.block_ratio
    nn_ratio = result.nearest.ratio
    lam0 = result.proximal.lam0_max_abs_diff
    return [
        Claim(id="displacement_constant_speed",
              statement="Displacement interpolation with the exact plan has constant speed",
              source="Seed 000, Sec. 2.2", holds=dev_exact < 1e-6,
              evidence=f"max |W2(p_s,p_tau)/W2(p_s,p_t) - tau| = {dev_exact:.1e} over 11 instants (tolerance 1e-6)"),
        Claim(id="w2_matches_bures", statement="Exact W2 between Gaussian samples approaches the closed form",
              source="Seed 000, Sec. 2.2 (W2 metric)", holds=bures.rel_err < 0.05,
              evidence=f"{bures.empirical:.4f} against {bures.closed_form:.4f}: {bures.rel_err:.2%} with "
                       f"{bures.n} samples (tolerance 5%)"),
        Claim(id="block_plan_close_to_full",
              statement=f"Block-diagonal couplings (B={cfg.block_size}) cost about as much as the full plan",
              source="Seed 000, Sec. 3.4", holds=block_ratio <= 1 + cfg.block_cost_tol,
              evidence=f"cost ratio {block_ratio:.3f} with centroid matching (tolerance {cfg.block_cost_tol:.0%}); "
                       f"random blocks {result.blocks.cost_ratio['random'][result.block_index]:.3f}"),
        Claim(id="beta_mixup_avoids_artefacts", statement="Beta-mixup keeps interpolated samples closer to real images",
              source="Seed 000, Sec. 3.4", holds=nn_ratio < 1,
              evidence=f"mean distance to the nearest real image at tau=0.5: Beta-mixup / displacement = {nn_ratio:.2f}"),
        Claim(id="proximal_lambda0_is_sinkhorn", statement="Eq. (12a) with lambda = 0 is the Sinkhorn plan",
              source="Seed 000, Eq. (12a)", holds=lam0 < 1e-12,
              evidence=f"largest entry difference {lam0:.1e}"),
    ]
