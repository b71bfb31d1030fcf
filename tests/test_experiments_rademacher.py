"""Chapter 4's experiment at tiny sizes: shapes, consistency, determinism and parameter validation."""
import math

import numpy as np
import pytest
import torch

from ctd_lib.experiments.rademacher_bound import RademacherCheckConfig, run_check, run_draw
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
])
def test_config_validation_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RademacherCheckConfig(**kwargs)


def test_run_draw_rejects_bad_draw():
    with pytest.raises(ValueError, match="draw"):
        run_draw(RademacherCheckConfig(**TINY), -1)
