"""Couplings: marginals, references in POT, closed forms (seed 000 Eqs. 6, 12a, Sec. 3.4; seed 004 Eq. 36).

Every case is float64 and seeded; tolerances are stated next to each assertion.
"""
import math
import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import xlogy

from ctd_lib.transport.blocks import BlockAssignment, BlockPlan, block_plan, match_blocks
from ctd_lib.transport.costs import check_cost, check_weights, feature_cost, pixel_cost, uniform
from ctd_lib.transport.dense import OTPlan, entropic_plan, exact_plan
from ctd_lib.transport.gaussian import bures_w2, wasserstein2
from ctd_lib.transport.proximal import proximal_gap, proximal_plan


def points(seed, ns=20, nt=25, d=3, shift=0.5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(ns, d)), rng.normal(size=(nt, d)) + shift


def weights(seed, n):
    w = np.random.default_rng(seed).uniform(0.2, 1.0, n)
    return w / w.sum()


def two_clusters(rng, n, offset):
    """Two well-separated Gaussian clusters at x = -4 and x = +4, shifted by ``offset``."""
    side = rng.integers(2, size=n)
    return 0.7 * rng.normal(size=(n, 2)) + np.where(side[:, None] == 0, -4.0, 4.0) * np.array([1.0, 0.0]) + offset


def marginal_gap(P, a, b):
    return max(np.abs(P.sum(1) - a).max(), np.abs(P.sum(0) - b).max())


# ----------------------------------------------------------------------------
# Costs and weights
# ----------------------------------------------------------------------------


def test_costs_are_squared_euclidean_after_flattening():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(4, 2, 3)), rng.normal(size=(5, 2, 3))
    ref = ((xs.reshape(4, 1, 6) - xt.reshape(1, 5, 6)) ** 2).sum(-1)
    C = pixel_cost(torch.as_tensor(xs, dtype=torch.float32), xt)  # tensors are accepted
    assert C.dtype == np.float64 and C.shape == (4, 5)
    np.testing.assert_allclose(C, ref, rtol=1e-6)  # float32 input
    np.testing.assert_allclose(feature_cost(xs.reshape(4, 6), xt.reshape(5, 6)), ref, rtol=1e-12, atol=1e-12)


def test_uniform_and_weights():
    np.testing.assert_array_equal(uniform(4), np.full(4, 0.25))
    np.testing.assert_array_equal(check_weights("a", None, 3), np.full(3, 1 / 3))
    w = weights(0, 7)
    np.testing.assert_array_equal(check_weights("a", w, 7), w)


# ----------------------------------------------------------------------------
# Exact and entropic couplings
# ----------------------------------------------------------------------------


def test_exact_plan_marginals_and_cost_match_emd2():
    a, b, C = weights(2, 20), weights(3, 25), feature_cost(*points(1))
    r = exact_plan(a, b, C)
    assert isinstance(r, OTPlan) and r.method == "emd" and r.reg == 0.0 and r.converged
    assert r.marginal_err <= 1e-12 and marginal_gap(r.plan, a, b) <= 1e-12  # network simplex: exact marginals
    assert r.cost == pytest.approx(ot.emd2(a, b, C), rel=1e-12)


def test_exact_plan_budget_exhausted_warns():
    a, b, C = None, None, feature_cost(*points(4, 40, 40))
    with pytest.warns(RuntimeWarning, match="did not reach optimality"):
        r = exact_plan(a, b, C, max_iter=3)
    assert not r.converged


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log"])
def test_entropic_plan_equals_ot_sinkhorn(method):
    """Reference: POT called directly with the same epsilon (reg x median C)."""
    a, b, C = weights(5, 20), weights(6, 25), feature_cost(*points(7))
    r = entropic_plan(a, b, C, reg=0.1, method=method)
    eps = 0.1 * np.median(C)
    ref = ot.sinkhorn(a, b, C, eps, method=method, numItermax=5000, stopThr=1e-9)
    assert r.reg == pytest.approx(eps, rel=1e-15) and r.method == method and r.converged
    np.testing.assert_allclose(r.plan, ref, rtol=0, atol=1e-15)  # same call, same numbers
    assert r.marginal_err <= 1e-9 and marginal_gap(r.plan, a, b) == pytest.approx(r.marginal_err, abs=1e-18)
    assert r.cost == pytest.approx((ref * C).sum(), rel=1e-12)


@pytest.mark.filterwarnings("ignore:entropic_plan")
def test_absolute_reg_and_auto_method():
    C = feature_cost(*points(8))
    assert entropic_plan(None, None, C, reg=0.05).method == "sinkhorn"  # eps >= 1e-2 median: scaling form
    assert entropic_plan(None, None, C, reg=0.005, max_iter=10).method == "sinkhorn_log"  # below: log domain
    r = entropic_plan(None, None, C, reg=0.3, relative=False)
    assert r.reg == 0.3


def test_log_solver_at_1e_4_of_median_cost_has_no_nan_and_exact_marginals():
    """reg = 1e-4 x median(C), "auto" -> log domain; max_iter=20,000, tol=1e-9.

    Sinkhorn needs a number of sweeps that explodes as eps -> 0 on generic data,
    so the data here have a well-separated optimal coupling: each target point
    is a noisy copy of one source point (two copies per source, ns=10, nt=20).
    """
    rng = np.random.default_rng(9)
    xs = rng.normal(size=(10, 4))
    xt = np.concatenate([xs + 0.1 * rng.normal(size=xs.shape), xs + 0.1 * rng.normal(size=xs.shape)])
    C = feature_cost(xs, xt)
    r = entropic_plan(None, None, C, reg=1e-4, max_iter=20_000, tol=1e-9)
    assert r.method == "sinkhorn_log" and r.converged
    assert not np.isnan(r.plan).any()
    assert marginal_gap(r.plan, uniform(10), uniform(20)) <= 1e-6
    # the plan sends each source point to its two copies
    np.testing.assert_allclose(r.plan[np.arange(10), np.arange(10)] + r.plan[np.arange(10), np.arange(10, 20)], 0.1,
                               atol=1e-6)


def test_log_solver_on_generic_data_at_tiny_reg_never_returns_nan():
    """Generic data at reg = 1e-4: not converged in 200 sweeps, which is said; no NaN either way."""
    C = feature_cost(*points(10, 20, 30, 2))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = entropic_plan(None, None, C, reg=1e-4, max_iter=200)
    assert not r.converged and not np.isnan(r.plan).any()


def test_scaling_sinkhorn_breakdown_at_small_reg_is_flagged():
    """The prototype's silent failure: the scaling form at 1e-3 x the cost returns a plan of mass ~0."""
    C = feature_cost(*points(11, 20, 30, 2))
    with pytest.warns(RuntimeWarning, match="sinkhorn did not converge"):
        r = entropic_plan(None, None, C, reg=1e-3, method="sinkhorn", max_iter=500)
    assert not r.converged and not (r.marginal_err <= 1e-6)


def test_non_convergence_warns_and_is_recorded():
    C = feature_cost(*points(12))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = entropic_plan(None, None, C, reg=0.01, max_iter=2)
    assert r.converged is False and r.marginal_err > 1e-6


# ----------------------------------------------------------------------------
# The proximal update, Eq. (12a)
# ----------------------------------------------------------------------------


def proximal_problem(seed=13, ns=15, nt=18):
    xs, xt = points(seed, ns, nt, 2)
    C = feature_cost(xs, xt)
    prev = exact_plan(None, None, C).plan
    return C, 0.5 * prev + 0.5 * np.outer(uniform(ns), uniform(nt))  # a feasible, strictly positive previous plan


def test_proximal_lam_zero_is_sinkhorn_exactly():
    C, prev = proximal_problem()
    r = proximal_plan(None, None, C, prev, reg=0.05, lam=0.0)
    ref = entropic_plan(None, None, C, reg=0.05)
    np.testing.assert_array_equal(r.plan, ref.plan)  # delegated: identical
    assert r.log["delegated"] == "lam == 0" and r.reg == ref.reg


def test_proximal_tiny_lam_approaches_sinkhorn_continuously():
    C, prev = proximal_problem()
    sink = entropic_plan(None, None, C, reg=0.05).plan
    dist = [np.abs(proximal_plan(None, None, C, prev, reg=0.05, lam=lam).plan - sink).max() for lam in (1e-1, 1e-3, 1e-5)]
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] <= 1e-7  # lam = 1e-5: the proximal term is ~1e-5 x |G - prev|^2 ~ 1e-8


def test_proximal_stays_closer_to_prev_as_lam_grows():
    C, prev = proximal_problem()
    lams = [0.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6]
    dists = []
    for lam in lams:
        r = proximal_plan(None, None, C, prev, reg=0.05, lam=lam)
        assert r.converged and r.marginal_err <= 1e-6  # marginals of every proximal plan
        dists.append(np.linalg.norm(r.plan - prev))
    assert all(d1 > d2 for d1, d2 in zip(dists, dists[1:])), dists
    assert dists[-1] < 0.05 * dists[0]


def reference_gcg(C, prev, eps, lam, iters=300):
    """An independent solver of Eq. (12a): POT's generic conditional gradient with a
    log-domain Sinkhorn step and an exact line search on the full objective."""
    a, b = uniform(C.shape[0]), uniform(C.shape[1])
    F = lambda G: (G * C).sum() + eps * xlogy(G, G).sum() + lam * ((G - prev) ** 2).sum()  # noqa: E731

    def lp(a, b, Mi, **kw):
        return ot.sinkhorn(a, b, Mi, eps, method="sinkhorn_log", numItermax=20_000, stopThr=1e-13, log=True)

    def line_search(cost, G, dG, Mi, cost_G, df_G, **kw):
        r = minimize_scalar(lambda t: F(G + t * dG), bounds=(0, 1), method="bounded", options={"xatol": 1e-12})
        return r.x, r.nfev, r.fun

    return ot.optim.generic_conditional_gradient(
        a, b, C, lambda G: ((G - prev) ** 2).sum(), lambda G: 2 * (G - prev), lam, None, lp, line_search,
        G0=prev, numItermax=iters, stopThr=1e-15, stopThr2=1e-17)


@pytest.mark.parametrize("lam", [1.0, 100.0])
def test_proximal_dual_solver_matches_an_independent_conditional_gradient(lam):
    C, prev = proximal_problem()
    eps = 0.05 * np.median(C)
    dual = proximal_plan(None, None, C, prev, reg=0.05, lam=lam)
    ref = reference_gcg(C, prev, eps, lam)
    assert dual.converged and abs(dual.log["gap"]) <= 1e-7  # Frank-Wolfe gap: certified optimal
    np.testing.assert_allclose(dual.plan, ref, atol=1e-7)  # plan entries ~ 1/270
    F = lambda G: (G * C).sum() + eps * xlogy(G, G).sum() + lam * ((G - prev) ** 2).sum()  # noqa: E731
    assert F(dual.plan) <= F(ref) + 1e-9


def test_gcg_stalling_is_flagged_not_silent():
    """POT's gcg line search ignores the entropy: from an unregularised optimum it never moves."""
    C = feature_cost(*points(14, 15, 18, 2))
    prev = exact_plan(None, None, C).plan
    with pytest.warns(RuntimeWarning, match="optimality gap"):
        r = proximal_plan(None, None, C, prev, reg=0.05, lam=1.0, solver="gcg")
    assert not r.converged and r.log["gap"] > 1e-3
    ok = proximal_plan(None, None, C, prev, reg=0.05, lam=1.0)  # the dual solver handles it
    assert ok.converged and np.linalg.norm(ok.plan - prev) > 0.01


def test_proximal_gap_is_an_upper_bound_on_suboptimality():
    C, prev = proximal_problem()
    eps, lam = 0.05 * np.median(C), 50.0
    opt = proximal_plan(None, None, C, prev, reg=0.05, lam=lam)
    a, b = uniform(C.shape[0]), uniform(C.shape[1])
    F = lambda G: (G * C).sum() + eps * (G * np.log(G)).sum() + lam * ((G - prev) ** 2).sum()  # noqa: E731
    for G in (prev, np.outer(a, b), 0.5 * (prev + opt.plan)):
        gap = proximal_gap(a, b, C, prev, G, eps=eps, lam=lam)
        assert F(G) - F(opt.plan) <= gap + 1e-10
        assert F(G) - F(opt.plan) >= -1e-10  # opt is optimal
        # weak duality: a bound at every iterate of the inner Sinkhorn, tightening as it converges
        bounds = [proximal_gap(a, b, C, prev, G, eps=eps, lam=lam, max_iter=k) for k in (10, 30, 100, 5_000)]
        assert all(np.isfinite(bounds)) and all(x >= y for x, y in zip(bounds, bounds[1:])), bounds
        assert F(G) - F(opt.plan) <= bounds[0] + 1e-10
        assert bounds[-1] == pytest.approx(gap, abs=1e-12)


def test_proximal_gap_is_finite_where_the_inner_sinkhorn_cannot_converge():
    """At a small epsilon the inner Sinkhorn is far from its 1e-12 tolerance after 20 sweeps; the bound is
    still finite and still above the true suboptimality (it was NaN when S had to be the converged plan)."""
    C, prev = proximal_problem(seed=3, ns=20, nt=20)
    eps, lam = 0.002 * np.median(C), 5.0
    opt = proximal_plan(None, None, C, prev, reg=0.002, lam=lam, max_iter=5_000, tol=1e-12)
    a, b = uniform(20), uniform(20)
    F = lambda G: (G * C).sum() + eps * xlogy(G, G).sum() + lam * ((G - prev) ** 2).sum()  # noqa: E731
    G = 0.9 * opt.plan + 0.1 * np.outer(a, b)
    bound = proximal_gap(a, b, C, prev, G, eps=eps, lam=lam, max_iter=20)
    assert np.isfinite(bound) and F(G) - F(opt.plan) <= bound + 1e-10
    # and it stops early once the bound meets a target
    assert proximal_gap(a, b, C, prev, G, eps=eps, lam=lam, target=10 * bound) <= 10 * bound


def test_proximal_warm_start_is_pots_log_sinkhorn():
    """The dual solver's warm start repeats ot.sinkhorn(method="sinkhorn_log") with a faster logsumexp."""
    from ctd_lib.transport.proximal import _log_sinkhorn_potentials

    for seed, reg in ((0, 0.05), (1, 0.005), (2, 0.5)):
        C, _ = proximal_problem(seed=seed)
        eps = reg * np.median(C)
        a, b = uniform(C.shape[0]), uniform(C.shape[1])
        with np.errstate(over="ignore"):  # POT also returns exp(log_u), which may overflow; unused here
            _, log = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", numItermax=200, stopThr=1e-6, log=True,
                                 warn=False)
        u, v = _log_sinkhorn_potentials(a, b, C / eps, max_iter=200, tol=1e-6)
        np.testing.assert_allclose(u, log["log_u"], rtol=0, atol=1e-11)
        np.testing.assert_allclose(v, log["log_v"], rtol=0, atol=1e-11)


# ----------------------------------------------------------------------------
# Block-diagonal couplings, Sec. 3.4
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["centroid", "sorted", "random"])
def test_match_blocks_partitions_both_sides_evenly(method):
    fs, ft = points(15, 95, 103, 5)
    asg = match_blocks(fs, ft, 30, method=method)
    assert isinstance(asg, BlockAssignment) and asg.method == method and asg.n_blocks == math.ceil(103 / 30)
    for blocks, n in ((asg.source_blocks, 95), (asg.target_blocks, 103)):
        np.testing.assert_array_equal(np.sort(np.concatenate(blocks)), np.arange(n))
        sizes = [len(b) for b in blocks]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 30
    a, b = asg.weights()
    assert a.sum() == pytest.approx(1.0, abs=1e-12) and b.sum() == pytest.approx(1.0, abs=1e-12)


def test_random_blocks_depend_on_seed_only():
    fs, ft = points(16, 40, 40)
    r1, r2 = match_blocks(fs, ft, 10, method="random", seed=3), match_blocks(fs, ft, 10, method="random", seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(r1.source_blocks, r2.source_blocks))
    r3 = match_blocks(fs, ft, 10, method="random", seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(r1.source_blocks, r3.source_blocks))


@pytest.mark.parametrize("relative", [True, False])
def test_batched_torch_blocks_agree_with_pot_loop(relative):
    """Unequal blocks (ns=95, nt=103, B=30 -> 4 blocks of 23-24 x 25-26); plans within 1e-7."""
    fs, ft = points(17, 95, 103, 5)
    C = feature_cost(fs, ft)
    asg = match_blocks(fs, ft, 30)
    reg = 0.05 if relative else 0.05 * np.median(C)
    pot = block_plan(C, asg, reg=reg, relative=relative, solver="pot")
    bt = block_plan(C, asg, reg=reg, relative=relative, solver="torch")
    assert pot.converged and bt.converged
    np.testing.assert_array_equal(pot.eps, bt.eps)  # the same epsilon per block, to the bit
    for p, q in zip(pot.plans, bt.plans):
        assert p.shape == q.shape
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-7)
    assert bt.cost == pytest.approx(pot.cost, rel=1e-8)
    a, b = asg.weights()
    for r in (pot, bt):
        assert r.marginal_err <= 1e-9  # per block, in units of the total mass
        D = r.to_dense(95, 103)
        assert marginal_gap(D, a, b) <= 1e-9 and D.sum() == pytest.approx(1.0, abs=1e-9)
        for I, J, p in zip(asg.source_blocks, asg.target_blocks, r.plans):
            np.testing.assert_allclose(p.sum(1), 1 / (4 * len(I)), atol=1e-9)
            np.testing.assert_allclose(p.sum(0), 1 / (4 * len(J)), atol=1e-9)


def test_block_costs_as_callable_or_list_give_the_same_plan():
    fs, ft = points(18, 60, 50, 4)
    C = feature_cost(fs, ft)
    asg = match_blocks(fs, ft, 20, method="sorted")
    ref = block_plan(C, asg, reg=0.1)
    by_fn = block_plan(lambda I, J: feature_cost(fs[I], ft[J]), asg, reg=0.1)
    by_list = block_plan([C[np.ix_(I, J)] for I, J in zip(asg.source_blocks, asg.target_blocks)], asg, reg=0.1)
    for r in (by_fn, by_list):
        for p, q in zip(ref.plans, r.plans):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-14)


def test_batched_blocks_at_tiny_reg_have_no_nan_and_say_when_unconverged():
    fs, ft = points(19, 95, 103, 5)
    C = feature_cost(fs, ft)
    asg = match_blocks(fs, ft, 30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = block_plan(C, asg, reg=1e-4, max_iter=300)
    assert not any(np.isnan(p).any() for p in r.plans)
    if not r.converged:
        assert any("did not converge" in str(w.message) for w in caught)
    assert marginal_gap(r.to_dense(), *asg.weights()) <= 1e-1 / 4  # loose: what 300 sweeps give


def test_block_non_convergence_warns():
    fs, ft = points(20, 95, 103, 5)
    asg = match_blocks(fs, ft, 30)
    for solver in ("torch", "pot"):
        with pytest.warns(RuntimeWarning, match="did not converge"):
            r = block_plan(feature_cost(fs, ft), asg, reg=0.01, solver=solver, max_iter=2)
        assert not r.converged


def test_exact_blocks_are_emd_per_block():
    fs, ft = points(21, 40, 45, 3)
    C = feature_cost(fs, ft)
    asg = match_blocks(fs, ft, 15)
    r = block_plan(C, asg, exact=True)
    K = asg.n_blocks
    for I, J, p in zip(asg.source_blocks, asg.target_blocks, r.plans):
        np.testing.assert_allclose(p, ot.emd(uniform(len(I)), uniform(len(J)), C[np.ix_(I, J)]) / K, atol=1e-15)
    assert r.converged and r.marginal_err <= 1e-12 and r.solver == "emd"


def test_matched_blocks_are_cheaper_than_random_blocks_on_clustered_data():
    """Two Gaussian clusters per side; block cost / full entropic cost, matched < random."""
    rng = np.random.default_rng(22)
    fs, ft = two_clusters(rng, 120, 0.0), two_clusters(rng, 130, np.array([0.5, 1.0]))
    C = feature_cost(fs, ft)
    full = entropic_plan(None, None, C, reg=0.05).cost
    ratio = {m: block_plan(C, match_blocks(fs, ft, 20, method=m), reg=0.05).cost / full for m in ("centroid", "sorted", "random")}
    assert ratio["centroid"] < 0.8 * ratio["random"], ratio
    assert ratio["sorted"] < 0.8 * ratio["random"], ratio


def test_sample_pairs_follow_the_block_plan():
    fs, ft = points(23, 12, 14, 2)
    asg = match_blocks(fs, ft, 5)
    r = block_plan(feature_cost(fs, ft), asg, reg=0.2)
    D = r.to_dense()
    i, j = r.sample_pairs(200_000, np.random.default_rng(0))
    assert (D[i, j] > 0).all()  # only pairs inside blocks
    freq = np.zeros_like(D)
    np.add.at(freq, (i, j), 1.0 / len(i))
    assert np.abs(freq - D).max() <= 4e-3  # max entry ~0.04: binomial sd <= 4.4e-4, so ~9 sd
    i2, j2 = r.sample_pairs(50, np.random.default_rng(0))
    np.testing.assert_array_equal(i2, r.sample_pairs(50, np.random.default_rng(0))[0])  # same seed, same pairs


@settings(max_examples=15, deadline=None)
@given(st.integers(5, 60), st.integers(5, 60), st.integers(2, 25), st.integers(0, 10_000))
def test_block_plans_have_block_marginals(ns, nt, B, seed):
    fs, ft = points(seed, ns, nt, 3)
    if math.ceil(max(ns, nt) / B) > min(ns, nt):
        with pytest.raises(ValueError, match="block_size"):
            match_blocks(fs, ft, B)
        return
    asg = match_blocks(fs, ft, B, method=["centroid", "sorted", "random"][seed % 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = block_plan(feature_cost(fs, ft), asg, reg=0.2)
    assert isinstance(r, BlockPlan)
    gap = marginal_gap(r.to_dense(), *asg.weights())
    if r.converged:
        assert gap <= 1e-9
    else:  # a tiny block with a nearly diagonal kernel can need >2000 sweeps: it must say so
        assert any("did not converge" in str(w.message) for w in caught)
        assert gap <= r.marginal_err * (1 + 1e-9) + 1e-15


# ----------------------------------------------------------------------------
# Wasserstein distances
# ----------------------------------------------------------------------------


def test_w2_of_gaussian_samples_is_near_bures():
    rng = np.random.default_rng(24)
    m1, m2 = np.array([0.0, 0.0]), np.array([2.0, 1.0])
    S1, S2 = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[2.0, -0.4], [-0.4, 1.0]])
    xs, xt = rng.multivariate_normal(m1, S1, 1500), rng.multivariate_normal(m2, S2, 1500)
    assert wasserstein2(xs, xt) == pytest.approx(bures_w2(m1, S1, m2, S2), rel=0.05)  # sampling error ~1-2%


def test_bures_matches_pot_and_the_1d_closed_form():
    rng = np.random.default_rng(25)
    for d in (1, 2, 5):
        A, Bm = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        S1, S2 = A @ A.T + 0.1 * np.eye(d), Bm @ Bm.T + 0.1 * np.eye(d)
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        ref = float(ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2))
        assert bures_w2(m1, S1, m2, S2) == pytest.approx(ref, rel=1e-8)
    assert bures_w2([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(math.sqrt(9 + 1), rel=1e-12)  # (m1-m2)^2 + (s1-s2)^2


def test_w2_identities():
    x = np.random.default_rng(26).normal(size=(50, 3))
    assert wasserstein2(x, x) <= 1e-6  # zero up to the round-off of |x|^2 + |y|^2 - 2 x.y
    assert wasserstein2(x, x + np.array([3.0, 4.0, 0.0])) == pytest.approx(5.0, rel=1e-9)  # a translation
    a = weights(27, 50)
    assert wasserstein2(x, x[::-1], a=a, b=a[::-1]) <= 1e-6
    feats = lambda t: 2.0 * np.asarray(t)  # noqa: E731
    assert wasserstein2(x, x + 1.0, features=feats) == pytest.approx(2 * wasserstein2(x, x + 1.0), rel=1e-9)


# ----------------------------------------------------------------------------
# Bad input fails fast, naming the argument
# ----------------------------------------------------------------------------

C_OK = feature_cost(*points(28, 6, 7))
PREV = np.outer(uniform(6), uniform(7))
FS, FT = points(29, 30, 31)
ASG = match_blocks(FS, FT, 10)

BAD = [
    ("xs", lambda: pixel_cost(np.zeros((0, 3)), np.zeros((2, 3)))),
    ("xt", lambda: pixel_cost(np.zeros((2, 3)), np.zeros((0, 3)))),
    ("xs and xt", lambda: pixel_cost(np.zeros((2, 3)), np.zeros((2, 4)))),
    ("fs and ft", lambda: feature_cost(np.zeros((2, 3)), np.zeros((2, 4)))),
    ("C", lambda: check_cost(np.zeros((3, 4)), 3, 5)),
    ("C", lambda: check_cost(np.full((3, 4), np.nan))),
    ("C", lambda: check_cost(np.zeros(4))),
    ("C", lambda: entropic_plan(None, None, np.array([[0.0, np.inf]]), reg=0.1)),
    ("C", lambda: exact_plan(None, None, np.zeros((0, 3)))),
    ("a", lambda: exact_plan(np.array([0.5, 0.6, -0.1, 0, 0, 0]), None, C_OK)),
    ("a", lambda: exact_plan(np.full(6, 0.2), None, C_OK)),
    ("a", lambda: exact_plan(np.full(5, 0.2), None, C_OK)),
    ("b", lambda: entropic_plan(None, np.full(7, 0.1), C_OK, reg=0.1)),
    ("b", lambda: entropic_plan(None, np.array([]), C_OK, reg=0.1)),
    ("reg", lambda: entropic_plan(None, None, C_OK, reg=0.0)),
    ("reg", lambda: entropic_plan(None, None, C_OK, reg=-1.0)),
    ("reg", lambda: entropic_plan(None, None, np.zeros((3, 3)), reg=0.1)),  # median 0: relative reg undefined
    ("method", lambda: entropic_plan(None, None, C_OK, reg=0.1, method="greenkhorn")),
    ("max_iter", lambda: entropic_plan(None, None, C_OK, reg=0.1, max_iter=0)),
    ("n", lambda: uniform(0)),
    ("lam", lambda: proximal_plan(None, None, C_OK, PREV, reg=0.1, lam=-1.0)),
    ("prev", lambda: proximal_plan(None, None, C_OK, PREV[:, :5], reg=0.1, lam=1.0)),
    ("prev", lambda: proximal_plan(None, None, C_OK, -PREV, reg=0.1, lam=1.0)),
    ("prev", lambda: proximal_plan(None, None, C_OK, PREV * np.nan, reg=0.1, lam=1.0)),
    ("solver", lambda: proximal_plan(None, None, C_OK, PREV, reg=0.1, lam=1.0, solver="newton")),
    ("reg", lambda: proximal_plan(None, None, C_OK, PREV, reg=0, lam=1.0)),
    ("block_size", lambda: match_blocks(FS, FT, 0)),
    ("block_size", lambda: match_blocks(FS, FT, 2.5)),
    ("block_size", lambda: match_blocks(FS[:2], FT, 10)),
    ("method", lambda: match_blocks(FS, FT, 10, method="kmeans")),
    ("fs and ft", lambda: match_blocks(FS, FT[:, :2], 10)),
    ("fs", lambda: match_blocks(np.zeros((0, 3)), FT, 10)),
    ("reg", lambda: block_plan(feature_cost(FS, FT), ASG)),
    ("reg", lambda: block_plan(feature_cost(FS, FT), ASG, reg=0.0)),
    ("C", lambda: block_plan(feature_cost(FS, FT)[:, :-1], ASG, reg=0.1)),
    ("C", lambda: block_plan([np.zeros((2, 2))], ASG, reg=0.1)),
    ("solver", lambda: block_plan(feature_cost(FS, FT), ASG, reg=0.1, solver="jax")),
    ("assignment", lambda: block_plan(feature_cost(FS, FT), None, reg=0.1)),
    ("m2", lambda: bures_w2(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))),
    ("S2", lambda: bures_w2(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))),
    ("a", lambda: wasserstein2(FS, FT, a=np.ones(30))),
]


@pytest.mark.parametrize("name,call", BAD, ids=[f"{n}-{k}" for k, (n, _) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_argument(name, call):
    with pytest.raises(ValueError, match=name):
        call()
