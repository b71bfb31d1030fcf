"""Chapter 8's check (ctd_lib.experiments.paper_numbers): parameter validation, the run on the paper's
transcription, the metrics, and each claim on a synthetic transcription where it must hold and one
where it must fail."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ctd_lib.experiments.paper_numbers import (
    NOTEBOOK_PARAMETERS,
    PaperNumbersConfig,
    claims,
    markdown_table,
    metrics,
    run_check,
    synthetic_distance_matrix,
)
from ctd_lib.task_distance.paper_numbers import (
    MANTEL_CONVENTIONS,
    PAPER_MATRICES,
    PrintedMatrix,
    ReportedMantel,
    mantel_convention,
)

SMALL = dict(permutations=49, mc_permutations=(999,), synthetic_n=(4,))


@pytest.fixture(scope="module")
def paper():
    return run_check(PaperNumbersConfig(**SMALL))


def _verdicts(check) -> dict:
    return {c.id: c for c in claims(check)}


@pytest.mark.parametrize("name, value", [("permutations", 0), ("mc_permutations", []), ("alpha", 1.5),
                                         ("p_factor", 1.0), ("synthetic_n", [2]), ("synthetic_noise", -1.0),
                                         ("seed", -1), ("scale", "tpu"), ("max_exact", 11)])
def test_bad_parameter_fails_with_its_name(name, value):
    with pytest.raises(ValueError, match=name):
        PaperNumbersConfig(**{name: value})


def test_parameters_are_the_notebook_cell_and_lists_become_tuples():
    cfg = PaperNumbersConfig(mc_permutations=[99, 999], synthetic_n=[4, 5])
    assert cfg.mc_permutations == (99, 999) and cfg.synthetic_n == (4, 5)
    assert list(cfg.parameters()) == list(NOTEBOOK_PARAMETERS) and cfg.parameters()["mc_permutations"] == [99, 999]


def test_paper_run_metrics(paper):
    m = metrics(paper)
    assert m["comparisons_reported"] == 15 and m["conventions"] == 32
    assert 0 <= m["cells_known"] <= m["cells_total"] and m["cells_total"] == 4 * 12 + 10 * 20
    assert m["comparisons_computable"] <= 15 and m["both_reproduced"] <= m["comparisons_computable"]
    assert m["self_r_min_n4"] == pytest.approx(1.0, abs=1e-12) and m["self_r_max_n4"] == pytest.approx(1.0, abs=1e-12)
    assert m["transpose_r_max_n4"] < 1 - 1e-3  # the transpose reading is not trivially 1
    assert m["synthetic_r_min"] < m["synthetic_r_max"] <= 1
    assert m["min_p_n4"] == pytest.approx(1 / 24) and m["min_p_n5"] == pytest.approx(1 / 120)
    assert m["sec54_coupled_asymmetry"] == pytest.approx(0.12) and m["sec54_finetune_asymmetry"] == pytest.approx(533.6)
    assert 0 <= m["mc999_prob_fig2b"] < 0.01


def test_paper_run_verdicts(paper):
    v = _verdicts(paper)
    assert list(v) == ["printed_cells_in_text", "reported_mantel_reproduced", "self_comparison_r",
                       "p_not_below_minimum", "p_on_exact_lattice", "sec54_direction_agrees"]
    for c in v.values():
        assert isinstance(c.holds, bool) and c.evidence and c.source.startswith("Seed 000")
    complete = all(PAPER_MATRICES[k].complete for k in paper.referenced)
    assert v["printed_cells_in_text"].holds == complete
    assert not v["self_comparison_r"].holds  # 0.61, 0.36, 0.39 against r = 1
    assert v["p_not_below_minimum"].holds
    assert not v["p_on_exact_lattice"].holds and "fig2b" in v["p_on_exact_lattice"].evidence
    assert v["sec54_direction_agrees"].holds


# ----------------------------------------------------------------------------
# each claim on a synthetic transcription: one that must hold, one that must fail
# ----------------------------------------------------------------------------


def _matrix(key, values, n):
    return PrintedMatrix(key=key, where=key, quantity="synthetic", tasks=tuple(f"t{i}" for i in range(n)),
                         values=values, source="synthetic", damage="none", tasks_from="synthetic")


def _synthetic(*, n=5, r_shift=0.0, p=None, self_r=1.0, complete=True, sec54_agrees=True):
    rng = np.random.default_rng(0)
    A = synthetic_distance_matrix(n, rng)
    B = A + 0.4 * rng.random((n, n))
    np.fill_diagonal(B, 0.0)
    if not complete:
        A = A.copy()
        A[0, 1] = np.nan
    mats = {"a": _matrix("a", A, n), "b": _matrix("b", B, n)}
    back = 20.6 if sec54_agrees else 600.0
    mats["sec54-coupled"] = _matrix("sec54-coupled", np.array([[np.nan, 0.18], [0.06, np.nan]]), 2)
    mats["sec54-finetune"] = _matrix("sec54-finetune", np.array([[np.nan, 554.2], [back, np.nan]]), 2)
    truth = mantel_convention(np.nan_to_num(A), B, MANTEL_CONVENTIONS[0])  # ordered pairs, Pearson, one-sided
    rep = ReportedMantel(key="syn", matrix="a", references=("b",), r=round(truth.statistic, 2) + r_shift,
                         p=round(truth.p_value, 2) if p is None else p, r_decimals=2, p_decimals=2, quote="synthetic",
                         where="synthetic", reading="synthetic")
    selfrep = ReportedMantel(key="self", matrix="b", references=("b",), r=self_r, p=round(1 / math.factorial(n), 2), r_decimals=2,
                             p_decimals=2, quote="synthetic", where="synthetic", reading="synthetic")
    return run_check(PaperNumbersConfig(**SMALL), matrices=mats, reported=[rep, selfrep])


@pytest.mark.parametrize("claim, holds_kwargs, fails_kwargs", [
    ("printed_cells_in_text", {}, {"complete": False}),
    ("reported_mantel_reproduced", {}, {"r_shift": -0.3}),
    ("self_comparison_r", {}, {"self_r": 0.61}),
    ("p_not_below_minimum", {"n": 4, "p": 0.04}, {"n": 4, "p": 0.01}),
    ("p_on_exact_lattice", {"n": 4, "p": 0.13}, {"n": 4, "p": 0.09}),
    ("sec54_direction_agrees", {}, {"sec54_agrees": False}),
])
def test_each_claim_holds_on_one_synthetic_case_and_fails_on_another(claim, holds_kwargs, fails_kwargs):
    assert _verdicts(_synthetic(**holds_kwargs))[claim].holds, _verdicts(_synthetic(**holds_kwargs))[claim].evidence
    failed = _verdicts(_synthetic(**fails_kwargs))[claim]
    assert not failed.holds and failed.evidence


def test_a_reproduced_synthetic_report_is_found_under_the_raw_convention():
    check = _synthetic()
    c = check.reanalysis.check("syn")
    assert c.both_reproduced and any(label.startswith("b: ordered-pairs, diagonal out, pearson") for label in
                                     c.reproducing)


def test_markdown_table_escapes_and_formats():
    text = markdown_table([{"a|b": float("nan"), "c": (0.1, 0.2), "d": False, "e": "x_y"}], digits=2)
    lines = text.split("\n")
    assert lines[0] == "| a\\|b | c | d | e |" and lines[1] == "| --- | --- | --- | --- |"
    assert lines[2] == "| n/a | 0.10 to 0.20 | no | x\\_y |"


def test_check_is_frozen(paper):
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.wall_time = 0.0
