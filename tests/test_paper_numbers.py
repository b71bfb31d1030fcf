"""The paper's printed matrices and reported Mantel statistics (ctd_lib.task_distance.paper_numbers):
the transcription's shapes, names and provenance, the Mantel test under each convention against the
library's tests and scikit-bio, the attainable p-values, and the re-analysis on synthetic transcriptions."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ctd_lib.task_distance import mantel_asymmetric, symmetrize
from ctd_lib.task_distance.paper_numbers import (
    FIG2_TASKS,
    FIG3_TASKS,
    MANTEL_CONVENTIONS,
    PAPER_MATRICES,
    REPORTED_MANTEL,
    SEC54_TASKS,
    SEED_FILE,
    UNATTRIBUTED_FRAGMENTS,
    MantelConvention,
    PrintedMatrix,
    ReportedMantel,
    compare_under_conventions,
    exact_p_counts,
    mantel_convention,
    min_attainable_p,
    monte_carlo_rounding_probability,
    normalise_quote,
    reanalyse,
)

SEED = Path(os.environ.get("CTD_SEEDS", "/work/shared/seeds")) / SEED_FILE


def _random(n, rng, symmetric=False):
    D = 0.1 + rng.random((n, n))
    if symmetric:
        D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    return D


def _conv(entries="ordered-pairs", diagonal=False, method="pearson", alternative="greater"):
    return MantelConvention(entries=entries, diagonal=diagonal, method=method, alternative=alternative)


# ----------------------------------------------------------------------------
# the transcription
# ----------------------------------------------------------------------------


def test_matrices_have_the_shapes_and_task_names_the_text_gives():
    fig2 = [k for k in PAPER_MATRICES if k.startswith("fig2")]
    fig357 = [k for k in PAPER_MATRICES if k[:4] in ("fig3", "fig5", "fig7")]
    assert fig2 == ["fig2a", "fig2b", "fig2c", "fig2d"]  # Sec. 5.4: "4x4 distance matrices", four panels
    assert len(fig357) == 4 + 2 + 4
    for k in fig2:
        assert PAPER_MATRICES[k].tasks == FIG2_TASKS and PAPER_MATRICES[k].values.shape == (4, 4)
    for k in fig357:
        assert PAPER_MATRICES[k].tasks == FIG3_TASKS and PAPER_MATRICES[k].values.shape == (5, 5)
    assert len(FIG3_TASKS) == 5 and "flowers" in FIG3_TASKS  # "five tasks (... and flowers)"
    for k, m in PAPER_MATRICES.items():
        assert m.key == k and m.n == len(m.tasks) and m.source and m.damage and m.tasks_from


def test_known_cells_are_distances_and_each_is_printed_in_the_quoted_text():
    """Never invent a number: every finite cell is a nonnegative number that appears in the matrix's own quotes."""
    known = 0
    for m in PAPER_MATRICES.values():
        v = m.values
        assert not v.flags.writeable
        finite = v[np.isfinite(v)]
        assert np.all(finite >= 0)
        for x in finite:
            assert any(re.search(rf"(?<![\d.]){re.escape(f'{x:g}')}(?![\d])", q) for q in m.prose), (m.key, x)
            known += 1
    assert known == 6  # the Sec. 5.4 pair: three matrices, two directions each


def test_sec54_pair_rows_are_sources():
    cp, ft, t2v = (PAPER_MATRICES[f"sec54-{k}"] for k in ("coupled", "finetune", "task2vec"))
    assert cp.tasks == ft.tasks == SEC54_TASKS == ("MNIST", "CIFAR-10")
    # "For transferring from MNIST to CIFAR-10, the coupled transfer distance is 0.18 (0.06 in the other direction)"
    assert (cp.values[0, 1], cp.values[1, 0]) == (0.18, 0.06)
    assert (ft.values[0, 1], ft.values[1, 0]) == (554.2, 20.6)
    assert t2v.values[0, 1] == t2v.values[1, 0] == 0.149
    assert np.isnan(np.diag(cp.values)).all()  # the diagonal is not in the text


def test_a_figure_matrix_with_no_cell_says_so():
    for k in ("fig2a", "fig3c", "fig5b", "fig7d"):
        m = PAPER_MATRICES[k]
        if m.off_diagonal_known < m.off_diagonal_total:
            assert "not in the extracted text" in m.damage and not m.complete


def test_reported_comparisons_name_known_matrices_of_one_size():
    assert len(REPORTED_MANTEL) == 15 and len({r.key for r in REPORTED_MANTEL}) == 15
    for rep in REPORTED_MANTEL:
        A = PAPER_MATRICES[rep.matrix]
        for ref in rep.references:
            B = PAPER_MATRICES[ref.removesuffix(".T")]
            assert B.tasks == A.tasks, (rep.key, ref)
        assert f"r = {rep.r:g}" in rep.quote and f"p = {rep.p:.{rep.p_decimals}f}" in rep.quote
    selves = {r.key for r in REPORTED_MANTEL if r.self_comparison}
    assert selves == {"fig2c", "fig3c", "fig5b"}


@pytest.mark.skipif(not SEED.exists(), reason=f"the seed text {SEED} is not on this machine")
def test_every_quote_is_verbatim_in_the_seed_text():
    text = normalise_quote(SEED.read_text())
    quotes = [q for m in PAPER_MATRICES.values() for q in m.prose] + [r.quote for r in REPORTED_MANTEL]
    missing = [q for q in quotes if normalise_quote(q) not in text]
    assert not missing
    lines = SEED.read_text().split("\n")
    for number, fragment in UNATTRIBUTED_FRAGMENTS:
        assert lines[number - 1].strip() == fragment, number


def test_quote_check_can_fail():
    assert normalise_quote("r = 0.428 p\n= 0.13") in "(r = 0.428 p = 0.13)"
    assert normalise_quote("r = 0.43 p = 0.13") not in "(r = 0.428 p = 0.13)"


def test_printed_matrix_rejects_what_is_not_a_distance():
    with pytest.raises(ValueError, match="finite number >= 0"):
        PrintedMatrix(key="x", where="", quantity="", tasks=("a", "b"), values=np.array([[0, -1.0], [1, 0]]),
                      source="", damage="", tasks_from="")
    with pytest.raises(ValueError, match="2x2"):
        PrintedMatrix(key="x", where="", quantity="", tasks=("a", "b"), values=np.zeros((3, 3)), source="",
                      damage="", tasks_from="")
    with pytest.raises(ValueError, match="p-value"):
        ReportedMantel(key="x", matrix="fig2a", references=("fig2c",), r=0.1, p=1.5, r_decimals=2, p_decimals=2,
                       quote="", where="", reading="")


# ----------------------------------------------------------------------------
# the Mantel test under a convention
# ----------------------------------------------------------------------------


def test_conventions_cover_every_combination_once():
    assert len(MANTEL_CONVENTIONS) == 32 and len(set(MANTEL_CONVENTIONS)) == 32
    assert len({c.label for c in MANTEL_CONVENTIONS}) == 32
    with pytest.raises(ValueError, match="entries"):
        _conv(entries="diagonal-only")


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_ordered_pairs_agree_with_mantel_asymmetric(method, alternative):
    rng = np.random.default_rng(3)
    A = _random(5, rng)
    B = A + 0.8 * rng.random((5, 5))
    ours = mantel_convention(A, B, _conv(method=method, alternative=alternative))
    lib = mantel_asymmetric(A, B, method=method, alternative=alternative)
    assert ours.exact and lib.exact and ours.permutations == lib.permutations == 120
    assert ours.statistic == pytest.approx(lib.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(lib.p_value, abs=1e-15)
    assert 0 < ours.statistic < 1  # not a trivial case


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_symmetrised_case_agrees_with_scikit_bio_directly(method):
    from skbio.stats.distance import mantel

    rng = np.random.default_rng(4)
    A = _random(6, rng)
    B = A + 0.5 * rng.random((6, 6))
    out = {o.convention: o for o in compare_under_conventions(A, B, permutations=999, seed=7)}
    o = out[_conv("symmetrised", method=method)]
    r, p, n = mantel(symmetrize(A), symmetrize(B), method=method, permutations=999, alternative="greater", seed=7)
    assert n == 6 and o.r == pytest.approx(r, abs=1e-12) and o.p_sampled == p
    # the exact p (all 720 relabellings) is what scikit-bio's sampled p estimates: within 4 standard errors
    se = math.sqrt(o.p_exact * (1 - o.p_exact) / 999)
    assert abs(o.p_exact - p) <= 4 * se + 1 / 1000
    assert o.p_exact < 0.2  # a real association, not a trivial case


def test_triangles_and_symmetrisation_agree_on_symmetric_matrices_and_differ_on_asymmetric_ones():
    rng = np.random.default_rng(5)
    A, B = _random(5, rng, symmetric=True), _random(5, rng, symmetric=True)
    res = [mantel_convention(A, B, _conv(e)) for e in ("symmetrised", "lower-triangle", "upper-triangle",
                                                       "ordered-pairs")]
    for r in res[1:]:
        assert r.statistic == pytest.approx(res[0].statistic, abs=1e-12)
        assert r.p_value == pytest.approx(res[0].p_value, abs=1e-12)
    A, B = _random(5, rng), _random(5, rng)
    lo, up = (mantel_convention(A, B, _conv(e)).statistic for e in ("lower-triangle", "upper-triangle"))
    assert abs(lo - up) > 1e-3


@pytest.mark.parametrize("n", [3, 4, 5])
def test_a_matrix_against_itself_gives_r_1_and_p_1_over_n_factorial_under_every_convention(n):
    rng = np.random.default_rng(n)
    D = _random(n, rng)
    for o in compare_under_conventions(D, D, permutations=99):
        assert o.computable, o.reason
        assert o.r == pytest.approx(1.0, abs=1e-12), o.convention.label
        if o.convention.method == "pearson" and o.convention.alternative == "greater":
            assert o.p_exact == pytest.approx(1 / math.factorial(n)), o.convention.label
        else:  # a relabelling may give the same ranks (Spearman), or r = -1 (two-sided): more than the identity
            assert o.p_exact >= 1 / math.factorial(n) - 1e-15, o.convention.label
    pearson = [o.p_exact for o in compare_under_conventions(D, D, permutations=9) if o.convention.method == "pearson"]
    if n > 3:  # with 6 or more compared entries no relabelling reaches |r| = 1 by chance here
        assert max(pearson) == pytest.approx(1 / math.factorial(n))


def test_a_matrix_with_a_symmetry_cannot_reach_1_over_n_factorial():
    """Swapping tasks 0 and 1 leaves D unchanged: |Aut| = 2, so the smallest p is 2/n!."""
    rng = np.random.default_rng(8)
    D = _random(4, rng)
    perm = [1, 0, 2, 3]
    D = (D + D[np.ix_(perm, perm)]) / 2
    assert np.allclose(D, D[np.ix_(perm, perm)])
    assert mantel_convention(D, D, _conv()).p_value == pytest.approx(2 / 24)


@pytest.mark.parametrize("n", [3, 4])
def test_exact_p_values_lie_on_the_lattice_and_never_below_the_minimum(n):
    rng = np.random.default_rng(10 + n)
    total = math.factorial(n)
    seen = []
    for _ in range(40):
        A, B = _random(n, rng), _random(n, rng)
        for conv in (_conv(), _conv("symmetrised", method="spearman"), _conv("lower-triangle", True,
                                                                            alternative="two-sided")):
            p = mantel_convention(A, B, conv).p_value
            assert abs(p * total - round(p * total)) < 1e-9
            seen.append(p)
    assert min(seen) >= min_attainable_p(n) - 1e-15
    assert min(seen) == pytest.approx(min_attainable_p(n))  # attained: 40 random pairs at n <= 4


def test_min_attainable_p_and_the_printed_lattice():
    assert min_attainable_p(3) == 1 / 6 and min_attainable_p(4) == 1 / 24 and min_attainable_p(5) == 1 / 120
    assert exact_p_counts(0.17, 3) == (1,)  # 1/6 = 0.167
    assert exact_p_counts(0.25, 3) == ()  # between 1/6 and 2/6
    assert exact_p_counts(0.98, 4) == () and exact_p_counts(0.96, 4) == (23,)
    assert exact_p_counts(0.005, 5, decimals=3) == ()  # below 1/120 = 0.0083 beyond the printed precision
    assert exact_p_counts(0.005, 5) == (1,)  # to two decimals, 0.005 is [0, 0.01], which holds 1/120
    # at n = 5 the lattice c/120 is finer than two decimals: every printed p from 0.01 up is attainable
    assert all(exact_p_counts(k / 100, 5) for k in range(1, 101))


def test_monte_carlo_rounding_probability():
    assert float(monte_carlo_rounding_probability(0.5, 0.25, 1, decimals=1)) == pytest.approx(0.75)
    # over every printable value the probabilities sum to 1 ((1 + X)/999 never falls on a rounding boundary)
    total = sum(float(monte_carlo_rounding_probability(k / 100, 0.3, 998)) for k in range(101))
    assert total == pytest.approx(1.0, abs=1e-9)
    # against a simulation of the estimator
    rng = np.random.default_rng(0)
    p_hat = (1 + rng.binomial(999, 2 / 24, size=20000)) / 1000
    sim = np.mean(np.abs(p_hat - 0.09) <= 0.005 + 1e-12)
    exact = float(monte_carlo_rounding_probability(0.09, 2 / 24, 999))
    assert sim == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20000))
    assert 0.2 < exact < 0.6


def test_unknown_cells_are_refused_with_a_count_and_reported_as_not_computable():
    rng = np.random.default_rng(1)
    A, B = _random(4, rng), _random(4, rng)
    A[0, 1] = np.nan
    with pytest.raises(ValueError, match="1 entries"):
        mantel_convention(A, B, _conv())
    B[2, 2] = np.nan  # only the diagonal-in conventions read it
    outs = compare_under_conventions(A, B, permutations=9)
    assert not any(o.computable for o in outs)
    assert all("not in the text" in o.reason and np.isnan(o.r) for o in outs)
    with pytest.raises(ValueError, match="at least 3 tasks"):
        mantel_convention(np.zeros((2, 2)), np.zeros((2, 2)), _conv())


# ----------------------------------------------------------------------------
# the re-analysis
# ----------------------------------------------------------------------------


def _transcription(rng, n=5):
    tasks = tuple(f"t{i}" for i in range(n))
    A = _random(n, rng)
    B = A + 0.4 * rng.random((n, n))
    np.fill_diagonal(B, 0.0)
    mats = {k: PrintedMatrix(key=k, where=k, quantity="synthetic", tasks=tasks, values=v, source="synthetic",
                             damage="none", tasks_from="synthetic") for k, v in (("a", A), ("b", B))}
    return mats, A, B


def _reported(r, p, r_decimals=2):
    return ReportedMantel(key="syn", matrix="a", references=("b",), r=r, p=p, r_decimals=r_decimals, p_decimals=2,
                          quote="synthetic", where="synthetic", reading="synthetic")


def test_reanalysis_reproduces_a_synthetic_report_and_rejects_a_wrong_one():
    rng = np.random.default_rng(2)
    mats, A, B = _transcription(rng)
    truth = mantel_asymmetric(A, B)
    good = _reported(round(truth.statistic, 2), round(truth.p_value, 2))
    wrong_r = _reported(round(truth.statistic, 2) - 0.3, round(truth.p_value, 2))
    wrong_p = _reported(round(truth.statistic, 2), 0.9)
    ra = reanalyse([good, wrong_r, wrong_p], mats, permutations=99)
    g, wr, wp = ra.checks
    assert g.computable and g.n_computable == 32
    assert g.both_reproduced and "b: ordered-pairs, diagonal out, pearson, one-sided" in g.reproducing
    assert not any(abs(o.r - wrong_r.r) <= 0.005 for o in wr.outcomes)
    assert wr.r_reproduced is False
    assert wr.both_reproduced is False and wp.p_reproduced is False
    assert ra.summary_rows()[0]["both"] is True and len(ra.convention_rows("syn")) == 32


def test_reanalysis_of_the_paper_cannot_compute_what_the_text_does_not_print():
    ra = reanalyse(permutations=9, mc_permutations=(999,))
    by = {c.reported.key: c for c in ra.checks}
    for c in ra.checks:
        complete = PAPER_MATRICES[c.reported.matrix].complete and all(
            PAPER_MATRICES[r.removesuffix(".T")].complete for r in c.reported.references)
        assert c.computable == complete
        if not c.computable:
            assert c.r_reproduced is None and c.both_reproduced is None
    # p-values that no exact test on 4 tasks prints (lattice c/24)
    assert {k for k, c in by.items() if not c.p_on_exact_lattice} == {"fig2b", "fig2c", "fig2d"}
    assert not any(c.p_below_minimum for c in ra.checks)
    assert by["fig2a"].p_counts == (3,)  # 3/24 = 0.125
    # 0.98 at n = 4: unlikely from 999 random relabellings (the nearest exact p is 23/24 = 0.958)
    (K, c, prob), = by["fig2b"].monte_carlo
    assert K == 999 and c in (23, 24) and prob < 0.01


def test_reanalyse_refuses_an_unknown_reference():
    bad = ReportedMantel(key="x", matrix="fig2a", references=("fig9z",), r=0.1, p=0.5, r_decimals=2, p_decimals=2,
                         quote="", where="", reading="")
    with pytest.raises(ValueError, match="fig9z"):
        reanalyse([bad])
    with pytest.raises(ValueError, match="p_factor"):
        reanalyse(p_factor=1.0)
