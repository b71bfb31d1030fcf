r"""Chapter 2's experiments: transporting a task with optimal transport.

Seed 000 (Gao & Chaudhari 2021), Sec. 2.2 (Eqs. 6-9), Sec. 3.3 (Eq. 12a) and
Sec. 3.4; seed 004 (2020), Appendix F (Eq. 37, Remark 11). Each function runs
one study and returns numbers; the notebook plots them.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..transport.blocks import block_plan, match_blocks
from ..transport.costs import feature_cost, pixel_cost, uniform
from ..transport.dense import entropic_plan, exact_plan
from ..transport.gaussian import bures_w2, wasserstein2
from ..transport.proximal import proximal_plan

__all__ = ["BlockStudy", "ProximalStudy", "SolverTiming", "SpeedStudy", "batched_vs_loop", "block_size_study", "bures_check", "constant_speed", "displacement_support", "nearest_real_distance", "point_clouds", "proximal_sweep"]

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


def constant_speed(xs: np.ndarray, xt: np.ndarray, taus: Sequence[float], regs: Sequence[float]) -> SpeedStudy:
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
    taus = np.asarray(taus, dtype=float)
    full = np.sqrt(max(float((plans["exact"] * C).sum()), 0.0))  # W2(p_s, p_t)
    ratios = {}
    for label, P in plans.items():
        row = []
        for tau in taus:
            atoms, w = displacement_support(xs, xt, P, tau)
            row.append(wasserstein2(xs, atoms, a=a, b=w) / full)
        ratios[label] = np.asarray(row)
    return SpeedStudy(taus, ratios)


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
    ratio = {m: [] for m in methods}
    secs = {m: [] for m in methods}
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
