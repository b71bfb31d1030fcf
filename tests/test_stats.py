"""Mantel tests for asymmetric task-distance matrices (seed 000, Sec. 5.3).

The independent reference is scikit-bio's ``mantel`` on symmetric inputs; the
rest are properties of the exact permutation test and closed forms.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from skbio.stats.distance import mantel as skbio_mantel

from ctd_lib.task_distance.stats import (
    DistanceComparison,
    MantelResult,
    compare_distance_matrices,
    mantel_asymmetric,
    mantel_symmetric,
    normalized_r,
    symmetrize,
)


def hollow(X):
    X = np.array(X, dtype=float)
    np.fill_diagonal(X, 0.0)
    return X


def random_asym(n, rng, scale=1.0):
    return hollow(1.0 + scale * rng.random((n, n)))


def random_sym(n, rng):
    X = rng.random((n, n))
    return hollow(X + X.T)


def offdiag(X):
    return X[~np.eye(X.shape[0], dtype=bool)]


def upper(X):
    return X[np.triu_indices(X.shape[0], k=1)]


# ----------------------------------------------------------------------------
# symmetrize
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("how, op", [("mean", lambda x, y: (x + y) / 2), ("max", np.maximum), ("min", np.minimum)])
def test_symmetrize_is_symmetric_hollow_and_matches_elementwise(how, op):
    rng = np.random.default_rng(0)
    D = rng.normal(size=(5, 5))
    S = symmetrize(D, how)
    assert np.array_equal(S, S.T)  # exact, as scikit-bio requires
    assert np.all(np.diag(S) == 0)
    expected = hollow(op(D, D.T))
    np.testing.assert_array_equal(S, expected)


def test_symmetrize_leaves_symmetric_hollow_matrices_alone():
    S = random_sym(6, np.random.default_rng(1))
    for how in ("mean", "max", "min"):
        np.testing.assert_array_equal(symmetrize(S, how), S)


# ----------------------------------------------------------------------------
# The statistic: definitions and closed forms
# ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 7), st.integers(0, 10_000), st.sampled_from(["pearson", "spearman"]))
def test_statistic_is_the_correlation_over_ordered_pairs(n, seed, method):
    """Against numpy/scipy on the off-diagonal entries (rtol 1e-12)."""
    rng = np.random.default_rng(seed)
    A, B = random_asym(n, rng), random_asym(n, rng)
    res = mantel_asymmetric(A, B, method=method, permutations=9, seed=seed)
    a, b = offdiag(A), offdiag(B)
    pearson = np.corrcoef(a, b)[0, 1]
    rho = sps.spearmanr(a, b)[0]
    expected = pearson if method == "pearson" else rho
    assert res.statistic == pytest.approx(expected, rel=1e-12, abs=1e-14)
    # The paper's normalised r (ddof=1 reading) is Pearson's correlation, whatever the method.
    assert res.normalized_r == pytest.approx(pearson, rel=1e-12, abs=1e-14)
    assert res.spearman_rho == pytest.approx(rho, rel=1e-12, abs=1e-14)
    assert -1.0 - 1e-12 <= res.statistic <= 1.0 + 1e-12


def test_normalized_r_literal_formula():
    """r = 1/(n^2 - n - 1) sum_{i != j} (a-abar)(b-bbar)/(sd_a sd_b), written out by hand."""
    rng = np.random.default_rng(2)
    n = 5
    A, B = random_asym(n, rng), random_asym(n, rng)
    a, b = offdiag(A), offdiag(B)
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += (A[i, j] - a.mean()) * (B[i, j] - b.mean()) / (sa * sb)
    r = total / (n * n - n - 1)
    assert normalized_r(a, b) == pytest.approx(r, rel=1e-12)
    assert mantel_asymmetric(A, B).normalized_r == pytest.approx(r, rel=1e-12)
    # A matrix against itself scores exactly 1 (the ddof=0 reading would give m/(m-1)).
    assert normalized_r(a, a) == pytest.approx(1.0, abs=1e-12)


def test_symmetric_inputs_ordered_pairs_equal_upper_triangle():
    """Each upper entry appears twice among ordered pairs; Pearson and Spearman are unchanged (rtol 1e-12)."""
    rng = np.random.default_rng(3)
    A, B = random_sym(7, rng), random_sym(7, rng)
    assert np.corrcoef(offdiag(A), offdiag(B))[0, 1] == pytest.approx(np.corrcoef(upper(A), upper(B))[0, 1], rel=1e-12)
    assert sps.spearmanr(offdiag(A), offdiag(B))[0] == pytest.approx(sps.spearmanr(upper(A), upper(B))[0], rel=1e-12)


# ----------------------------------------------------------------------------
# Independent reference: scikit-bio on symmetric inputs
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
@pytest.mark.parametrize("seed", [0, 2])
def test_matches_scikit_bio_on_symmetric_inputs(method, alternative, seed):
    """Statistic: rtol 1e-12. p-value: exact (720 relabellings) vs scikit-bio's 9999 random ones.

    scikit-bio's p has sampling sd sqrt(p(1-p)/9999) <= 0.005, so a tolerance
    of 0.03 is about 6 sd; the +1 in (1 + #)/(1 + K) shifts it by < 1e-4.
    """
    rng = np.random.default_rng(seed)
    A = random_sym(6, rng)
    B = hollow(A + 3.0 * random_sym(6, rng))  # moderately correlated: p in the informative range
    ours = mantel_asymmetric(A, B, method=method, alternative=alternative)
    assert ours.exact and ours.permutations == 720
    ref_stat, ref_p, ref_n = skbio_mantel(A, B, method=method, permutations=9999, alternative=alternative, seed=seed)
    assert ref_n == 6
    assert ours.statistic == pytest.approx(ref_stat, rel=1e-12)
    assert abs(ours.p_value - ref_p) <= 0.03
    # Our wrapper passes the call through unchanged.
    wrapped = mantel_symmetric(A, B, method=method, permutations=9999, alternative=alternative, seed=seed)
    assert wrapped.statistic == ref_stat and wrapped.p_value == ref_p
    assert wrapped.normalized_r == pytest.approx(np.corrcoef(upper(A), upper(B))[0, 1], rel=1e-12)
    assert wrapped.spearman_rho == pytest.approx(sps.spearmanr(upper(A), upper(B))[0], rel=1e-12)
    assert wrapped.normalized_r == pytest.approx(ours.normalized_r, rel=1e-12)
    assert wrapped.spearman_rho == pytest.approx(ours.spearman_rho, rel=1e-12)


# ----------------------------------------------------------------------------
# Exact enumeration
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 4, 5, 6])
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_exact_p_is_a_multiple_of_one_over_n_factorial(n, alternative):
    rng = np.random.default_rng(n)
    A, B = random_asym(n, rng), random_asym(n, rng)
    res = mantel_asymmetric(A, B, alternative=alternative)
    k = res.p_value * math.factorial(n)
    assert res.exact and res.permutations == math.factorial(n)
    assert abs(k - round(k)) < 1e-9 and 1 <= round(k) <= math.factorial(n)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_identical_matrices_give_the_minimum_p(n):
    """A generic asymmetric A has no non-trivial automorphism: only the identity reaches r = 1."""
    rng = np.random.default_rng(10 + n)
    A = random_asym(n, rng)
    floor = 1.0 / math.factorial(n)
    for method in ("pearson", "spearman"):
        assert mantel_asymmetric(A, A, method=method).p_value == pytest.approx(floor, rel=1e-12)
        assert mantel_asymmetric(A, A, method=method, alternative="two-sided").p_value == pytest.approx(floor, rel=1e-12)
    # A monotone (non-linear) transform is perfect for Spearman; -A is perfect for "less".
    assert mantel_asymmetric(A, np.exp(A), method="spearman").p_value == pytest.approx(floor, rel=1e-12)
    assert mantel_asymmetric(A, -A, alternative="less").p_value == pytest.approx(floor, rel=1e-12)
    # No other B does better.
    for _ in range(5):
        assert mantel_asymmetric(A, random_asym(n, rng)).p_value >= floor - 1e-15


def test_automorphisms_raise_the_floor():
    """A circulant A_ij = f((j - i) mod n) is fixed by the n cyclic shifts, so p(A, A) = n / n!."""
    n = 5
    f = np.array([0.0, 1.0, 2.5, 4.5, 7.0])  # distinct, f(k) != f(-k): no reflections
    A = np.array([[f[(j - i) % n] for j in range(n)] for i in range(n)])
    res = mantel_asymmetric(A, A)
    assert res.p_value == pytest.approx(n / math.factorial(n), rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 6), st.integers(0, 10_000), st.sampled_from(["greater", "less", "two-sided"]))
def test_exact_test_is_invariant_to_joint_relabelling_and_to_swapping(n, seed, alternative):
    """Relabelling both matrices by one sigma, or swapping A and B, leaves r and the exact p unchanged."""
    rng = np.random.default_rng(seed)
    A, B = random_asym(n, rng), random_asym(n, rng)
    base = mantel_asymmetric(A, B, alternative=alternative)
    s = rng.permutation(n)
    relabelled = mantel_asymmetric(A[np.ix_(s, s)], B[np.ix_(s, s)], alternative=alternative)
    swapped = mantel_asymmetric(B, A, alternative=alternative)
    for other in (relabelled, swapped):
        assert other.statistic == pytest.approx(base.statistic, rel=1e-12, abs=1e-14)
        assert other.p_value == pytest.approx(base.p_value, rel=1e-12)


def test_null_p_values_are_roughly_uniform():
    """200 independent pairs, n = 5 exact (120 relabellings).

    Under the null P(p <= 0.05) = 6/120 = 0.05; with 200 trials the sd of the
    fraction is sqrt(0.05 * 0.95 / 200) ~ 0.015, so [0.01, 0.11] is about
    +-4 sd. The mean p (expected 121/240 ~ 0.504, sd ~ 0.29/sqrt(200) ~ 0.02) must
    lie in [0.42, 0.59].
    """
    rng = np.random.default_rng(2024)
    ps = np.array([mantel_asymmetric(random_asym(5, rng), random_asym(5, rng)).p_value for _ in range(200)])
    assert 0.01 <= np.mean(ps <= 0.05) <= 0.11
    assert 0.42 <= ps.mean() <= 0.59


# ----------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------


def test_sampled_p_values_are_reproducible_and_in_range():
    rng = np.random.default_rng(5)
    n = 9  # beyond max_exact = 8
    A = random_asym(n, rng)
    B = hollow(A + 2.0 * rng.random((n, n)))
    r1 = mantel_asymmetric(A, B, permutations=499, seed=7)
    r2 = mantel_asymmetric(A, B, permutations=499, seed=7)
    assert r1 == r2 and not r1.exact and r1.permutations == 499
    assert 0.0 < r1.p_value <= 1.0
    k = r1.p_value * 500
    assert abs(k - round(k)) < 1e-9  # p = (1 + #) / (1 + K)
    default = mantel_asymmetric(A, B)
    assert not default.exact and default.permutations == 9999
    # A generator works as the seed too, and is reproducible from the same state.
    g1 = mantel_asymmetric(A, B, permutations=99, seed=np.random.default_rng(3))
    g2 = mantel_asymmetric(A, B, permutations=99, seed=np.random.default_rng(3))
    assert g1.p_value == g2.p_value


def test_sampled_agrees_with_exact():
    """Same n = 6 problem: 9999 random relabellings vs all 720 (tolerance 0.03, ~6 sampling sd)."""
    rng = np.random.default_rng(6)
    A = random_asym(6, rng)
    B = hollow(A + 3.0 * rng.random((6, 6)))
    exact = mantel_asymmetric(A, B)
    sampled = mantel_asymmetric(A, B, permutations=9999, seed=1)
    assert exact.exact and not sampled.exact
    assert sampled.statistic == exact.statistic
    assert abs(sampled.p_value - exact.p_value) <= 0.03


# ----------------------------------------------------------------------------
# Asymmetry matters
# ----------------------------------------------------------------------------


def test_upper_agree_lower_anti_agree_closed_form():
    """A = c + U above and c + 2U^T below; B = c + U above and c - 2U^T below (U of zero mean).

    Over ordered pairs r = (|U|^2 - 4|U|^2) / (5|U|^2) = -3/5; symmetrised,
    the upper triangles are c + 1.5U and c - 0.5U, so r = -1. Tolerance 1e-12.
    """
    rng = np.random.default_rng(8)
    n = 6
    iu = np.triu_indices(n, k=1)
    u = rng.normal(size=iu[0].size)
    u -= u.mean()
    U = np.zeros((n, n))
    U[iu] = u
    c = 10.0  # keeps the entries positive, like distances; correlations ignore it
    A = hollow(c + U + 2.0 * U.T)
    B = hollow(c + U - 2.0 * U.T)
    assert np.array_equal(upper(A), upper(B))
    both = compare_distance_matrices(A, B, permutations=999)
    assert isinstance(both, DistanceComparison) and both.how == "mean"
    assert both.asymmetric.statistic == pytest.approx(-0.6, abs=1e-12)
    assert both.symmetrized.statistic == pytest.approx(-1.0, abs=1e-12)


def test_symmetrising_can_hide_total_disagreement():
    """A = S + K, B = S - K (S symmetric, K antisymmetric): symmetrize(A) == symmetrize(B), so the
    symmetrised r is 1 with a tiny p, while over ordered pairs
    r = (|S~|^2 - |K|^2) / (|S~|^2 + |K|^2) (S~ = S centred off the diagonal), here negative.
    """
    rng = np.random.default_rng(9)
    n = 6
    S = random_sym(n, rng)
    G = rng.normal(size=(n, n))
    K = 2.0 * (G - G.T)
    A, B = hollow(5.0 + S + K), hollow(5.0 + S - K)
    np.testing.assert_array_equal(symmetrize(A), symmetrize(B))
    both = compare_distance_matrices(A, B)
    s = offdiag(S) - offdiag(S).mean()
    k = offdiag(K)
    closed = (s @ s - k @ k) / (s @ s + k @ k)
    assert closed < 0
    assert both.asymmetric.statistic == pytest.approx(closed, rel=1e-12)
    assert both.symmetrized.statistic == pytest.approx(1.0, abs=1e-12)
    # scikit-bio samples relabellings with replacement, so about 9999/720 draws are the identity:
    # p ~ (1 + 14) / 10000; 0.01 leaves ample room.
    assert both.symmetrized.p_value <= 0.01
    assert both.asymmetric.p_value > 0.5


# ----------------------------------------------------------------------------
# Results and bad inputs
# ----------------------------------------------------------------------------


def test_result_is_frozen():
    rng = np.random.default_rng(11)
    res = mantel_asymmetric(random_asym(4, rng), random_asym(4, rng))
    assert isinstance(res, MantelResult) and res.method == "pearson" and res.alternative == "greater"
    with pytest.raises(AttributeError):
        res.p_value = 0.0


_rng = np.random.default_rng(12)
GOOD = random_asym(4, _rng)
GOOD_SYM = random_sym(4, _rng)
CONST = hollow(np.ones((4, 4)))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: mantel_asymmetric(np.ones((3, 4)), GOOD), "A"),
        (lambda: mantel_asymmetric(GOOD, np.ones(4)), "B"),
        (lambda: mantel_asymmetric(GOOD, random_asym(5, _rng)), "B"),
        (lambda: mantel_asymmetric(GOOD[:2, :2], GOOD[:2, :2]), "A"),
        (lambda: mantel_asymmetric(hollow(np.where(np.eye(4) == 0, np.nan, 0) + GOOD), GOOD), "A"),
        (lambda: mantel_asymmetric(GOOD, GOOD + np.inf), "B"),
        (lambda: mantel_asymmetric(CONST, GOOD), "A"),
        (lambda: mantel_asymmetric(GOOD, CONST + 3 * np.eye(4)), "B"),  # diagonal ignored: still constant
        (lambda: mantel_asymmetric(GOOD, GOOD, method="kendall"), "method"),
        (lambda: mantel_asymmetric(GOOD, GOOD, alternative="bigger"), "alternative"),
        (lambda: mantel_asymmetric(GOOD, GOOD, permutations=0), "permutations"),
        (lambda: mantel_asymmetric(GOOD, GOOD, permutations=2.5), "permutations"),
        (lambda: mantel_asymmetric(GOOD, GOOD, permutations=True), "permutations"),
        (lambda: mantel_asymmetric(GOOD, GOOD, max_exact=11), "max_exact"),
        (lambda: mantel_asymmetric(GOOD, GOOD, max_exact=-1), "max_exact"),
        (lambda: mantel_symmetric(GOOD, GOOD_SYM), "A"),
        (lambda: mantel_symmetric(GOOD_SYM, GOOD_SYM + np.eye(4)), "B"),
        (lambda: mantel_symmetric(CONST, GOOD_SYM), "A"),
        (lambda: mantel_symmetric(GOOD_SYM, GOOD_SYM, permutations=-5), "permutations"),
        (lambda: mantel_symmetric(GOOD_SYM, GOOD_SYM, method="pearsonr"), "method"),
        (lambda: mantel_symmetric(GOOD_SYM, GOOD_SYM, alternative="two_sided"), "alternative"),
        (lambda: symmetrize(np.ones((2, 3))), "D"),
        (lambda: symmetrize([[0, np.nan], [1, 0]]), "D"),
        (lambda: symmetrize(GOOD, how="average"), "how"),
        (lambda: compare_distance_matrices(GOOD, GOOD, how="sum"), "how"),
    ],
)
def test_bad_inputs_raise_one_line_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(name) and "\n" not in msg


def test_symmetrised_constant_names_the_symmetrised_matrix():
    """A non-constant antisymmetric-plus-constant A symmetrises to a constant matrix."""
    G = np.random.default_rng(13).normal(size=(4, 4))
    A = hollow(3.0 + G - G.T)
    with pytest.raises(ValueError, match=r"^symmetrize\(A"):
        compare_distance_matrices(A, GOOD)


def test_weighted_tau_rows_against_scipy_and_its_properties():
    from scipy.stats import weightedtau

    from ctd_lib.task_distance.stats import weighted_tau_rows
    rng = np.random.default_rng(0)
    A = rng.random((5, 5))
    same = weighted_tau_rows(A, A)
    np.testing.assert_allclose(same.per_row, 1.0)
    rev = weighted_tau_rows(A, -A)  # every row in the opposite order
    np.testing.assert_allclose(rev.per_row, -1.0)
    B = rng.random((5, 5))
    got = weighted_tau_rows(A, B)
    keep = np.arange(5) != 2
    assert got.per_row[2] == pytest.approx(weightedtau(-A[2, keep], -B[2, keep]).statistic, abs=1e-15)
    assert got.mean == pytest.approx(got.per_row.mean())
    # the diagonal is ignored
    A2 = A.copy()
    np.fill_diagonal(A2, 100.0)
    np.testing.assert_array_equal(weighted_tau_rows(A2, B).per_row, got.per_row)
    # the nearest targets weigh most: swapping the two nearest costs more than swapping the two farthest
    ref = np.tile(np.arange(5.0), (5, 1))
    near, far = ref.copy(), ref.copy()
    near[0, [1, 2]] = near[0, [2, 1]]
    far[0, [3, 4]] = far[0, [4, 3]]
    assert weighted_tau_rows(near, ref).per_row[0] < weighted_tau_rows(far, ref).per_row[0] < 1
    with pytest.raises(ValueError, match="reference"):
        weighted_tau_rows(A, np.zeros((4, 4)))
