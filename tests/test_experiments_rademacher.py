"""Chapter 4's experiment at tiny sizes (shapes, consistency, determinism), parameter validation, and
the chapter's metrics and claims on hand-built results (each claim: one that holds, one that fails)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from ctd_lib.experiments.rademacher_bound import (
    NOTEBOOK_PARAMETERS,
    LinearHeadSummary,
    RademacherCheck,
    RademacherCheckConfig,
    claims,
    metrics,
    run_check,
    run_draw,
)
from ctd_lib.task_distance.rademacher import n_for_nonvacuous

TINY = dict(n_train=20, n_population=60, draws=2, K=3, hidden=8, source_steps=10, batch_size=16, transfer_steps=12,
            block_size=100, rademacher_draws=50, loss_lower_draws=5, loss_lower_steps=10, fit_steps=20, eps_points=11)


@pytest.fixture(scope="module")
def tiny():
    before = torch.get_num_threads()
    check = run_check(RademacherCheckConfig(**TINY), show_progress=False)  # runs with config.threads = 1
    assert torch.get_num_threads() == before  # restored
    return check


def test_shapes_and_ranges(tiny):
    K, M = 3, tiny.loss_bound
    assert tiny.taus.shape == (K + 1,) and tiny.taus[0] == 0.0 and tiny.taus[-1] == 1.0
    assert np.all(np.diff(tiny.taus) > 0)
    for curve in (tiny.train_curve_coupled, tiny.population_curve_coupled, tiny.train_curve_uncoupled,
                  tiny.population_curve_uncoupled):
        assert curve.shape == (K + 1,) and np.all((curve >= 0) & (curve <= M))
    for arr in (tiny.avg_gap_coupled, tiny.avg_gap_uncoupled, tiny.speed_term_coupled, tiny.loss_change_term_coupled):
        assert arr.shape == (2,)
    assert np.all(tiny.speed_term_coupled > 0) and np.all(tiny.speed_term_uncoupled > 0)
    gap_curve = tiny.population_curve_coupled - tiny.train_curve_coupled
    assert tiny.max_gap_along_trajectory == pytest.approx(gap_curve.max())
    assert 0 <= tiny.a2_fraction_coupled <= 1 and len(tiny.draws) == 2


def test_tail_and_bound_are_consistent(tiny):
    assert tiny.eps.shape == (11,) and tiny.eps[0] == 0 and tiny.eps[-1] == tiny.loss_bound
    assert np.all(np.diff(tiny.tail_coupled) <= 0) and np.all(np.diff(tiny.tail_uncoupled) <= 0)
    assert np.all((tiny.tail_coupled >= 0) & (tiny.tail_coupled <= 1))
    assert np.all((tiny.bound > 0) & (tiny.bound <= 1))
    assert np.all(tiny.bound[~tiny.bound_applicable] == 1.0)
    np.testing.assert_array_equal(tiny.bound_applicable, tiny.eps > tiny.threshold)
    assert tiny.threshold == pytest.approx(2 * tiny.speed_term_coupled.mean())
    assert isinstance(tiny.bound_violations, int)
    assert tiny.bound_violations == int((tiny.tail_coupled > tiny.bound).sum())
    assert tiny.coupled_vs_uncoupled_speed_term_ratio > 0
    n = tiny.n_needed
    assert n == math.inf or n >= 1
    assert n_for_nonvacuous(0.1, 3, 2.0, 1.0) == math.inf


def test_linear_head_summary(tiny):
    lin = tiny.linear
    assert lin.rademacher.shape == (2, 3) and lin.gap.shape == (2, 3) and lin.classical_bound.shape == (3,)
    assert np.all(lin.rademacher > 0) and np.all(lin.classical_bound > 2 * lin.contraction_upper.mean(0) - 1e-12)
    assert np.all(lin.loss_lower <= lin.contraction_upper + 4 * lin.loss_lower_stderr + 1e-12)
    assert np.all((lin.fraction_exceeding >= 0) & (lin.fraction_exceeding <= 1))


def test_run_draw_is_deterministic(tiny):
    cfg = RademacherCheckConfig(**TINY)
    again = run_draw(cfg, 1)
    first = tiny.draws[1]
    np.testing.assert_array_equal(again.coupled.gap, first.coupled.gap)
    np.testing.assert_array_equal(again.uncoupled.population_loss, first.uncoupled.population_loss)
    assert again.coupled.speed_term == first.coupled.speed_term
    np.testing.assert_array_equal(again.linear.gap, first.linear.gap)
    assert tiny.draws[0].coupled.avg_gap != first.coupled.avg_gap  # the draws differ


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_train=21), "n_train"),
    (dict(K=0), "K"),
    (dict(K=10, transfer_steps=15), "transfer_steps"),
    (dict(source_digits=(3, 3)), "source_digits"),
    (dict(target_digits=(5, 10)), "target_digits"),
    (dict(delta=1.0), "delta"),
    (dict(rademacher_taus=(0.0, 1.5)), "rademacher_taus"),
    (dict(model="resnet"), "model"),
    (dict(loss_bound=0.0), "loss_bound"),
    (dict(interpolation="mixture"), "interpolation"),
    (dict(radius=-1.0), "radius"),
    (dict(eps_points=1), "eps_points"),
    (dict(seed=-1), "seed"),
    (dict(threads=-1), "threads"),
    (dict(n_in_exponent=1), "n_in_exponent"),
    (dict(gap_threshold=0.0), "gap_threshold"),
    (dict(gap_threshold=-0.1), "gap_threshold"),
    (dict(gap_threshold="0.1"), "gap_threshold"),
    (dict(scale="gpu"), "scale"),
    (dict(source_lr="0.1"), "source_lr"),
    (dict(transfer_lr=0.0), "transfer_lr"),
    (dict(loss_bound=True), "loss_bound"),
    (dict(delta="0.05"), "delta"),
    (dict(draws=0), "draws"),
    (dict(n_population=2.5), "n_population"),
    (dict(hidden=0), "hidden"),
    (dict(source_steps=-1), "source_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(outer_iters=0), "outer_iters"),
    (dict(block_size=0), "block_size"),
    (dict(source_digits=[3]), "source_digits"),
])
def test_config_validation_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RademacherCheckConfig(**kwargs)


def test_run_draw_rejects_bad_draw():
    with pytest.raises(ValueError, match="draw"):
        run_draw(RademacherCheckConfig(**TINY), -1)


def test_config_accepts_the_notebooks_lists_and_records_its_parameters():
    cfg = RademacherCheckConfig(source_digits=[3, 8], target_digits=[5, 6], scale="smoke")
    assert cfg.source_digits == (3, 8) and cfg.target_digits == (5, 6)  # stored as tuples (hashable, frozen)
    params = cfg.parameters()
    assert tuple(params) == NOTEBOOK_PARAMETERS and params["scale"] == "smoke"
    assert params["source_digits"] == [3, 8] and params["gap_threshold"] == 0.1
    assert "threads" not in params and "results_dir" not in params


# ----------------------------------------------------------------------------
# metrics and claims on a hand-built result (no training)
# ----------------------------------------------------------------------------


def _synthetic(**changes) -> RademacherCheck:
    """A small consistent RademacherCheck (3 draws, K = 2, M = 2) whose four claims all hold."""
    eps = np.linspace(0.0, 2.0, 5)
    bound = np.array([1.0, 1.0, 0.5, 0.1, 0.01])
    linear = LinearHeadSummary(
        taus=np.array([0.0, 1.0]), rademacher=np.full((3, 2), 0.3), contraction_upper=np.full((3, 2), 0.3),
        loss_lower=np.full((3, 2), 0.1), loss_lower_stderr=np.full((3, 2), 0.01),
        classical_bound=np.array([1.5, 1.4]), gap=np.full((3, 2), 0.2), fraction_exceeding=np.array([0.0, 0.0]),
        delta=0.05)
    base = RademacherCheck(
        taus=np.array([0.0, 0.5, 1.0]), avg_gap_coupled=np.array([0.05, 0.1, 0.15]),
        avg_gap_uncoupled=np.array([0.1, 0.2, 0.3]), train_curve_coupled=np.array([0.2, 0.3, 0.2]),
        population_curve_coupled=np.array([0.3, 0.4, 0.3]), train_curve_uncoupled=np.array([0.2, 0.4, 0.3]),
        population_curve_uncoupled=np.array([0.4, 0.6, 0.5]), speed_term_coupled=np.array([0.2, 0.3, 0.4]),
        speed_term_uncoupled=np.array([0.3, 0.4, 0.35]), loss_change_term_coupled=np.array([0.1, 0.2, 0.3]),
        loss_change_term_uncoupled=np.array([0.2, 0.3, 0.4]), a2_fraction_coupled=0.75,
        max_gap_along_trajectory=0.1, eps=eps, tail_coupled=np.array([1.0, 0.0, 0.0, 0.0, 0.0]),
        tail_uncoupled=np.array([1.0, 0.3, 0.0, 0.0, 0.0]), bound=bound, bound_applicable=bound < 1,
        threshold=0.6, bound_loss_change=bound, threshold_loss_change=0.4, bound_violations=0,
        coupled_vs_uncoupled_speed_term_ratio=0.9, coupled_distance=np.ones(3), uncoupled_distance=np.ones(3),
        coupled_per_sample_length=np.ones(3), uncoupled_per_sample_length=np.ones(3),
        source_accuracy=np.full(3, 0.95), linear=linear, n=20, K=2, loss_bound=2.0, gap_threshold=0.1,
        wall_time=0.0)
    return dataclasses.replace(base, **changes)


def _verdict(result, claim_id):
    (claim,) = [c for c in claims(result) if c.id == claim_id]
    return claim


def test_synthetic_result_all_claims_hold():
    cs = claims(_synthetic())
    assert [c.id for c in cs] == ["gap_small_along_trajectory", "theorem5_not_exceeded",
                                  "coupled_speed_term_smaller", "classical_bound_holds"]
    assert all(c.holds is True for c in cs)


def test_claim_gap_small_along_trajectory():
    ok = _verdict(_synthetic(max_gap_along_trajectory=0.2), "gap_small_along_trajectory")  # limit 0.1 * M = 0.2
    bad = _verdict(_synthetic(max_gap_along_trajectory=0.21), "gap_small_along_trajectory")
    assert ok.holds and not bad.holds
    assert bad.evidence == ("largest mean gap over 3 instants: 0.210 against 10% of M = 0.200 (held-out loss up to "
                            "0.400; 3 draws, N = 20)")
    assert not _verdict(_synthetic(max_gap_along_trajectory=0.1, gap_threshold=0.04),
                        "gap_small_along_trajectory").holds  # the threshold is the result's, not a constant


def test_claim_theorem5_not_exceeded():
    ok = _verdict(_synthetic(), "theorem5_not_exceeded")
    bad = _verdict(_synthetic(bound_violations=2), "theorem5_not_exceeded")
    assert ok.holds and not bad.holds
    assert ok.evidence == ("0 violations on 5 values of eps in [0, M]; the bound applies only for eps > 2S = 0.60 "
                           "(M = 2): below 1 at 3 values")
    vacuous = _verdict(_synthetic(bound=np.ones(5), threshold=4.0), "theorem5_not_exceeded")
    assert vacuous.holds and vacuous.evidence.endswith("it is vacuous at these sizes")


def test_claim_coupled_speed_term_smaller():
    ok = _verdict(_synthetic(), "coupled_speed_term_smaller")
    bad = _verdict(_synthetic(coupled_vs_uncoupled_speed_term_ratio=1.05), "coupled_speed_term_smaller")
    assert ok.holds and not bad.holds
    assert ok.evidence == "mean ratio coupled/uncoupled 0.900; coupled smaller in 2 of 3 draws"


def test_claim_classical_bound_holds():
    r = _synthetic()
    ok = _verdict(dataclasses.replace(r, linear=dataclasses.replace(r.linear, fraction_exceeding=np.array([0.0, 0.05]))),
                  "classical_bound_holds")
    bad = _verdict(dataclasses.replace(r, linear=dataclasses.replace(r.linear, fraction_exceeding=np.array([0.0, 0.34]))),
                   "classical_bound_holds")
    assert ok.holds and not bad.holds
    assert bad.evidence == ("tau 0.0: gap above the bound in 0% of draws (bound 1.500); tau 1.0: gap above the bound "
                            "in 34% of draws (bound 1.400) (allowed: delta = 0.05)")


def test_metrics_of_a_synthetic_result():
    r = _synthetic()
    m = metrics(r)
    assert set(m) == {"max_gap_along_trajectory", "bound_violations", "coupled_vs_uncoupled_speed_term_ratio",
                      "speed_term_coupled_mean", "speed_term_uncoupled_mean", "loss_change_term_coupled_mean",
                      "threshold_over_M", "bound_min_probability", "n_for_nonvacuous", "a2_fraction_coupled",
                      "avg_gap_coupled_mean", "avg_gap_uncoupled_mean", "rademacher_linear", "classical_bound",
                      "linear_gap_mean", "linear_fraction_exceeding", "tail_coupled", "bound", "eps"}
    assert m["speed_term_coupled_mean"] == pytest.approx(0.3) and m["threshold_over_M"] == pytest.approx(0.3)
    assert m["bound_min_probability"] == 0.01 and isinstance(m["bound_violations"], int)
    assert m["n_for_nonvacuous"] == float(n_for_nonvacuous(2.0, 2, 2.0, float(r.speed_term_coupled.mean())))
    np.testing.assert_allclose(m["rademacher_linear"], [0.3, 0.3])


def test_claims_and_metrics_of_a_run(tiny):
    assert len(claims(tiny)) == 4 and all(isinstance(c.holds, bool) for c in claims(tiny))
    assert metrics(tiny)["bound_violations"] == tiny.bound_violations
