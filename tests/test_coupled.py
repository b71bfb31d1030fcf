"""Tests of ctd_lib.coupled: the coupled (Definition 2, Eq. 12) and uncoupled (Eqs. 9-10) transfer distances.

Everything runs on the CPU on tiny tasks (20 MNIST images per task, two blocks
of 10) with a 784-32-10 MLP and 30 SGD steps per trajectory; tolerances are
stated next to each comparison.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import ot
import pytest
import torch

import ctd_lib.task_distance.coupled as coupled
from ctd_lib.data import make_task
from ctd_lib.geometry.length import flat_parameters, kl_categorical, path_length, set_flat_parameters
from ctd_lib.models import make_model
from ctd_lib.task_distance.coupled import (
    CoupledConfig,
    authors_scale,
    coupled_transfer_distance,
    initial_coupling,
    pair_kl_cost,
    proximal_update,
    tau_at,
    train_source_model,
    uncoupled_transfer_distance,
)

BASE = dict(steps=30, lr=0.05, batch_size=16, block_size=10, length_checkpoints=3, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp():
    return make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=0, hidden=(32,))


@pytest.fixture(scope="module")
def tasks():
    source = make_task("mnist10k-01", n_per_class=10, seed=0)  # labels 0, 1 of a 10-way head
    target = make_task("mnist10k-23", n_per_class=10, seed=0)  # labels 2, 3
    return source, target


@pytest.fixture(scope="module")
def source_model(tasks):
    return train_source_model(tasks[0], _mlp, steps=30, lr=0.1, batch_size=10, seed=0)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, model.training


@pytest.fixture(scope="module")
def run3(tasks, source_model):
    """K = 3 outer iterations with a tolerance too small to stop early; the source model's state around it."""
    before = _snapshot(source_model)
    res = coupled_transfer_distance(*tasks, source_model, CoupledConfig(**BASE, outer_iters=3, tol=1e-12))
    return res, before, _snapshot(source_model)


# ----------------------------------------------------------------------------
# tau schedule
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "arcsine"])
@pytest.mark.parametrize("steps", [2, 5, 37])
def test_tau_at_endpoints_and_monotone(schedule, steps):
    taus = np.array([tau_at(s, steps, schedule) for s in range(steps)])
    assert taus[0] == 0.0 and taus[-1] == 1.0  # exactly: the first step is on the source, the last on the target
    assert np.all(np.diff(taus) > 0)
    if schedule == "arcsine" and steps > 2:  # slow near both tasks: smaller first and last increments than linear
        h = 1.0 / (steps - 1)
        assert taus[1] < h and 1.0 - taus[-2] < h


def test_tau_at_rejects_bad_arguments():
    with pytest.raises(ValueError, match="schedule"):
        tau_at(0, 10, "cosine")
    with pytest.raises(ValueError, match="step"):
        tau_at(10, 10, "linear")


def test_trajectory_log_taus(run3):
    res = run3[0]
    for log in res.logs:
        assert log.tau[0] == 0.0 and log.tau[-1] == 1.0 and np.all(np.diff(log.tau) > 0)
        assert log.checkpoint_tau[0] == 0.0 and log.checkpoint_tau[-1] == 1.0
        assert len(log.checkpoints) == len(log.checkpoint_tau) == len(log.checkpoint_buffers) == BASE["length_checkpoints"] + 1


# ----------------------------------------------------------------------------
# ground cost, Eq. (12b)
# ----------------------------------------------------------------------------


def _reference_cost(model, checkpoints, taus, xs, xt, I, J):
    """sqrt(2 KL) between consecutive checkpoints at x_tau of the segment's start, one pair at a time, float64."""
    net = copy.deepcopy(model).double().eval()
    total = 0.0
    for m in range(len(checkpoints) - 1):
        x = ((1 - taus[m]) * xs[I].double() + taus[m] * xt[J].double())[None]
        set_flat_parameters(net, checkpoints[m].double())
        with torch.no_grad():
            before = net(x)
        set_flat_parameters(net, checkpoints[m + 1].double())
        with torch.no_grad():
            after = net(x)
        total += math.sqrt(2.0 * max(float(kl_categorical(before, after)[0]), 0.0))
    return total


def test_pair_kl_cost_against_direct_computation(tasks, source_model):
    source, target = tasks
    plan = initial_coupling(source_model, source, target, CoupledConfig(**BASE))
    w0 = flat_parameters(source_model)
    gen = torch.Generator().manual_seed(0)
    checkpoints = [w0 + 0.05 * m * torch.randn(w0.shape, generator=gen) for m in range(3)]
    taus = [0.0, 0.3, 1.0]
    model = copy.deepcopy(source_model)
    w_before = flat_parameters(model)
    costs = pair_kl_cost(model, checkpoints, taus, source.x, target.x, plan, chunk=37)  # chunks cut across blocks
    assert torch.equal(flat_parameters(model), w_before) and model.training  # weights and mode restored
    A = plan.assignment
    assert [c.shape for c in costs] == [(len(i), len(j)) for i, j in zip(A.source_blocks, A.target_blocks)]
    for k, (r, c) in [(0, (0, 0)), (0, (3, 7)), (1, (9, 2)), (1, (5, 5))]:
        i, j = int(A.source_blocks[k][r]), int(A.target_blocks[k][c])
        ref = _reference_cost(source_model, checkpoints, taus, source.x, target.x, i, j)
        assert ref > 1e-3  # the check is not trivially 0 = 0
        assert costs[k][r, c] == pytest.approx(ref, rel=1e-4)  # float32 network against float64


def test_pair_kl_cost_zero_for_constant_trajectory(tasks, source_model):
    source, target = tasks
    plan = initial_coupling(source_model, source, target, CoupledConfig(**BASE))
    w = flat_parameters(source_model)
    costs = pair_kl_cost(copy.deepcopy(source_model), [w, w.clone(), w.clone()], [0.0, 0.5, 1.0],
                         source.x, target.x, plan)
    assert all(np.all(c == 0.0) for c in costs)


def test_pair_kl_cost_uses_each_checkpoints_batchnorm_statistics(tasks):
    """Equal weights but different running statistics: a change of p_w in eval mode, seen only with ``buffers``."""
    source, target = tasks
    net = make_model("small-cnn", in_shape=(1, 28, 28), num_classes=10, seed=0)
    plan = initial_coupling(net, source, target, CoupledConfig(**BASE, initial_cost="pixels"))
    w = flat_parameters(net)
    bufs0 = [b.clone() for b in net.buffers()]
    bufs1 = [b + 0.5 if b.is_floating_point() else b.clone() for b in net.buffers()]
    args = ([w, w.clone()], [0.0, 1.0], source.x, target.x, plan)
    assert all(np.all(c == 0.0) for c in pair_kl_cost(net, *args))
    costs = pair_kl_cost(net, *args, buffers=[bufs0, bufs1])
    assert all(np.all(c > 0.0) for c in costs)
    assert all(torch.equal(a, b) for a, b in zip(net.buffers(), bufs0))  # buffers restored


def test_ground_cost_comes_from_the_previous_trajectory(run3, tasks, source_model):
    """C^{k+1} of Eq. (12b) is measured on trajectory k: recompute it from the second-to-last log."""
    res = run3[0]
    log = res.logs[-2]
    costs = pair_kl_cost(copy.deepcopy(source_model), log.checkpoints, log.checkpoint_tau, tasks[0].x, tasks[1].x,
                         res.coupling, buffers=log.checkpoint_buffers)
    for c, g in zip(costs, res.ground_cost):
        np.testing.assert_array_equal(c, g)


# ----------------------------------------------------------------------------
# proximal update, Eq. (12a)
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_and_costs(tasks, source_model):
    plan = initial_coupling(source_model, *tasks, CoupledConfig(**BASE))
    rng = np.random.default_rng(0)
    costs = [rng.uniform(0.5, 2.0, size=p.shape) for p in plan.plans]
    return plan, costs


def _block_marginals_ok(plan, rtol=1e-6):
    K = plan.assignment.n_blocks
    for p in plan.plans:
        a, b = 1.0 / (K * p.shape[0]), 1.0 / (K * p.shape[1])
        np.testing.assert_allclose(p.sum(1), a, rtol=rtol, atol=0)
        np.testing.assert_allclose(p.sum(0), b, rtol=rtol, atol=0)


@pytest.mark.parametrize("lam", [0.0, 0.05, 1.0, 1e4])
def test_proximal_update_keeps_marginals(plan_and_costs, lam):
    plan, costs = plan_and_costs
    new = proximal_update(plan, costs, lam, reg=0.05)
    assert new.converged
    _block_marginals_ok(new)
    assert new.cost == pytest.approx(sum(float((p * c).sum()) for p, c in zip(new.plans, costs)), rel=1e-12)
    np.testing.assert_allclose(new.eps, [0.05 * np.median(c) for c in costs], rtol=1e-12)


def test_proximal_update_huge_lambda_stays_put(plan_and_costs):
    plan, costs = plan_and_costs
    new = proximal_update(plan, costs, 1e6, reg=0.05)
    for p, q in zip(plan.plans, new.plans):
        assert np.abs(p - q).max() <= 1e-4 * p.max()  # O(1/lam) away from the previous plan


def test_proximal_update_lambda_zero_is_sinkhorn_of_new_cost(plan_and_costs):
    plan, costs = plan_and_costs
    new = proximal_update(plan, costs, 0.0, reg=0.05)
    K = plan.assignment.n_blocks
    moved = 0.0
    for p_old, p, C in zip(plan.plans, new.plans, costs):
        a, b = np.full(C.shape[0], 1 / C.shape[0]), np.full(C.shape[1], 1 / C.shape[1])
        ref = ot.sinkhorn(a, b, C, 0.05 * np.median(C), method="sinkhorn_log", numItermax=100_000, stopThr=1e-13) / K
        np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6 * ref.max())  # POT as the independent reference
        moved = max(moved, np.abs(p - p_old).max() / p_old.max())
    assert moved > 0.1  # the new cost really changed the plan, so lam = 1e6 above is a real test


def test_proximal_update_rejects_mismatched_costs(plan_and_costs):
    plan, costs = plan_and_costs
    with pytest.raises(ValueError, match="block costs"):
        proximal_update(plan, costs[:-1], 0.1, reg=0.05)
    with pytest.raises(ValueError, match="shape"):
        proximal_update(plan, [c[:, :-1] for c in costs], 0.1, reg=0.05)


# ----------------------------------------------------------------------------
# the alternating algorithm
# ----------------------------------------------------------------------------


def test_source_model_unchanged(run3):
    _, (state0, mode0), (state1, mode1) = run3
    assert mode0 == mode1
    assert state0.keys() == state1.keys() and all(torch.equal(state0[k], state1[k]) for k in state0)


def test_every_outer_iteration_restarts_from_the_source_weights(run3, source_model):
    w_s = flat_parameters(source_model)
    for log in run3[0].logs:
        assert torch.equal(log.checkpoints[0], w_s)  # w^k(0) = w_s, Eq. (12c)
    assert not torch.equal(run3[0].logs[0].checkpoints[-1], w_s)  # and the trajectories do move


def test_full_run_bookkeeping(run3):
    res = run3[0]
    assert len(res.per_iteration) == len(res.per_iteration_other) == len(res.logs) == 3
    assert res.distance == res.per_iteration[-1] and res.log is res.logs[-1]
    assert res.ground_cost is not None and res.coupling.solver == "proximal"
    assert res.config["outer_iters"] == 3 and res.convention == "manifold"
    for d, d_other, log in zip(res.per_iteration, res.per_iteration_other, res.logs):
        assert d == log.length.length("manifold") and d_other == log.length.length("per_sample")
        assert 0 < d_other <= d * (1 + 1e-12)  # Jensen: E sqrt(2 KL) <= sqrt(E 2 KL), step by step


def test_final_coupling_marginals(run3):
    plan = run3[0].coupling
    P = plan.to_dense()
    a, b = plan.assignment.weights()
    np.testing.assert_allclose(P.sum(1), a, rtol=1e-6, atol=0)
    np.testing.assert_allclose(P.sum(0), b, rtol=1e-6, atol=0)
    assert P.sum() == pytest.approx(1.0, abs=1e-6)  # as the marginals
    mask = np.zeros_like(P, dtype=bool)
    for i, j in zip(plan.assignment.source_blocks, plan.assignment.target_blocks):
        mask[np.ix_(i, j)] = True
    assert np.all(P[~mask] == 0)  # block-diagonal


def test_same_seed_same_result_other_seed_differs(run3, tasks, source_model):
    res = run3[0]
    again = coupled_transfer_distance(*tasks, source_model, CoupledConfig(**BASE, outer_iters=3, tol=1e-12))
    assert again.per_iteration == res.per_iteration and again.per_iteration_other == res.per_iteration_other
    for p, q in zip(res.coupling.plans, again.coupling.plans):
        np.testing.assert_array_equal(p, q)
    other = coupled_transfer_distance(*tasks, source_model, CoupledConfig(**{**BASE, "seed": 1}, outer_iters=1))
    assert other.per_iteration[0] != res.per_iteration[0]

    cfg = CoupledConfig(**BASE)
    u1 = uncoupled_transfer_distance(*tasks, source_model, cfg)
    u2 = uncoupled_transfer_distance(*tasks, source_model, cfg)
    u3 = uncoupled_transfer_distance(*tasks, source_model, CoupledConfig(**{**BASE, "seed": 1}))
    assert u1.distance == u2.distance and u1.per_iteration_other == u2.per_iteration_other
    assert u3.distance != u1.distance


def test_dropout_reproducible_and_masks_shared(tasks):
    """Dropout masks come from the seed, not torch's global state, and the measuring forward reuses them."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(32, 10))
    cfg = CoupledConfig(**{**BASE, "steps": 20, "lr": 1e-7, "length_checkpoints": 1})
    torch.manual_seed(0)
    r1 = uncoupled_transfer_distance(*tasks, net, cfg)
    torch.manual_seed(99)
    state = torch.get_rng_state()
    r2 = uncoupled_transfer_distance(*tasks, net, cfg)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert r1.distance == r2.distance
    # with lr ~ 0 the weights do not move: two different masks would give a length of order 1 per step
    assert r1.distance < 1e-3


def test_one_outer_iteration_does_no_update(tasks, source_model, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("no ground cost or proximal update with outer_iters=1")

    monkeypatch.setattr(coupled, "pair_kl_cost", forbidden)
    monkeypatch.setattr(coupled, "proximal_update", forbidden)
    cfg = CoupledConfig(**BASE, outer_iters=1)
    source, target = tasks
    res = coupled_transfer_distance(source, target, source_model, cfg, source_val=source, target_val=target)
    assert res.ground_cost is None and len(res.per_iteration) == 1 and len(res.logs) == 1
    assert not res.converged
    init = initial_coupling(source_model, source, target, cfg)
    for p, q in zip(res.coupling.plans, init.plans):
        np.testing.assert_array_equal(p, q)  # Gamma^0 is what was used
    assert np.all(np.isfinite(res.log.eval_val_loss)) and len(res.log.eval_val_loss) == len(res.log.eval_tau)


def test_early_stop_compares_consecutive_distances(tasks, source_model):
    res = coupled_transfer_distance(*tasks, source_model, CoupledConfig(**BASE, outer_iters=3, tol=1e9))
    assert len(res.per_iteration) == 2 and res.ground_cost is not None and res.converged


def test_conventions_are_the_two_lengths(run3, tasks, source_model):
    res = run3[0]
    ps = coupled_transfer_distance(*tasks, source_model, CoupledConfig(**BASE, outer_iters=1, convention="per_sample"))
    assert ps.convention == "per_sample"
    # the first trajectory does not depend on the convention: the lists swap
    assert ps.per_iteration[0] == res.per_iteration_other[0] and ps.per_iteration_other[0] == res.per_iteration[0]


def test_samplers_used(tasks, source_model, monkeypatch):
    """Coupled transfer samples the chosen interpolation of the coupling; uncoupled the mixture of Eq. (9)."""
    kinds = []
    real = coupled.make_sampler

    def spy(kind, *args, **kwargs):
        kinds.append((kind, args[4] is None))
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(coupled, "make_sampler", spy)
    cfg = CoupledConfig(**BASE, outer_iters=1, interpolation="displacement")
    coupled_transfer_distance(*tasks, source_model, cfg)
    assert kinds == [("displacement", False)]
    kinds.clear()
    res = uncoupled_transfer_distance(*tasks, source_model, cfg)
    assert kinds == [("mixture", True)]
    assert res.coupling is None and res.ground_cost is None and len(res.per_iteration) == 1


# ----------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [coupled_transfer_distance, uncoupled_transfer_distance])
def test_mismatched_tasks_raise(tasks, source_model, fn):
    source, target = tasks
    small = dataclasses.replace(target, x=torch.rand(target.x.shape[0], 1, 8, 8), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="input shape"):
        fn(source, small, source_model, CoupledConfig(**BASE))
    relabelled = make_task("mnist10k-23", n_per_class=10, seed=0, label_offset=0)  # a 2-way head
    with pytest.raises(ValueError, match="classes"):
        fn(source, relabelled, source_model, CoupledConfig(**BASE))
    empty = dataclasses.replace(target, x=target.x[:0], y=target.y[:0])
    with pytest.raises(ValueError, match="target is an empty task"):
        fn(source, empty, source_model, CoupledConfig(**BASE))
    with pytest.raises(ValueError, match="source is an empty task"):
        fn(dataclasses.replace(source, x=source.x[:0], y=source.y[:0]), target, source_model, CoupledConfig(**BASE))


@pytest.mark.parametrize("field, value", [
    ("outer_iters", 0), ("tol", 0.0), ("tol", -0.1), ("interpolation", "mixture"), ("schedule", "cosine"),
    ("convention", "euclidean"), ("steps", 1), ("block_size", 0), ("reg", 0.0), ("prox_lam", -1.0),
    ("length_checkpoints", 0), ("length_checkpoints", 301), ("initial_cost", "resnet"),
    ("length_estimator", "exact"), ("length_inputs", "test"), ("length_samples", 0), ("block_sampling", "per_block"),
    ("momentum", -0.1), ("weight_decay", -1.0),
])
def test_bad_config_names_the_argument(field, value):
    args = {field: value, **({"length_checkpoints": 1} if field == "steps" else {})}  # only steps is wrong
    with pytest.raises(ValueError, match=rf"\b{field}="):
        CoupledConfig(**args)


def test_authors_scale_is_exact_for_the_polyline(tasks, source_model):
    """Their number, sum over chords of sqrt(E KL) / chords, computed by hand on a trajectory's checkpoints."""
    cfg = CoupledConfig(**{**BASE, "length_checkpoints": 5})
    _, log = coupled.run_trajectory(source_model, *tasks, cfg, kind="mixture", plan=None, seed=3)
    x = torch.cat([tasks[0].x, tasks[1].x])
    net = copy.deepcopy(source_model).eval()
    chords = []
    for a, b in zip(log.checkpoints[:-1], log.checkpoints[1:]):
        set_flat_parameters(net, a)
        pa = net(x).detach()
        set_flat_parameters(net, b)
        chords.append(float(kl_categorical(pa.double(), net(x).detach().double()).mean().sqrt()))
    theirs = sum(chords) / 5
    ours = path_length(net, log.checkpoints, x).manifold
    assert authors_scale(ours, 5) == pytest.approx(theirs, rel=1e-12)
    assert authors_scale(ours, 4) != pytest.approx(theirs, rel=1e-3)  # the chord count matters
    with pytest.raises(ValueError, match="chords"):
        authors_scale(1.0, 0)


# ----------------------------------------------------------------------------
# the length estimators
# ----------------------------------------------------------------------------


def _val(tasks):
    sv = make_task("mnist10k-01", split="test", n_per_class=8, seed=0)
    tv = make_task("mnist10k-23", split="test", n_per_class=8, seed=0)
    return sv, tv


def test_polyline_through_every_step_equals_the_per_step_length(tasks, source_model):
    """On one fixed input set, checkpoints at every step give the per-step estimator, and both match
    geometry.path_length through the saved checkpoints (an independent computation)."""
    sv, tv = _val(tasks)
    val = (sv, tv, None)
    steps = 12
    every = CoupledConfig(**{**BASE, "steps": steps, "length_checkpoints": steps, "length_inputs": "held_out",
                             "length_samples": 16})
    per = dataclasses.replace(every, length_estimator="per_step", length_checkpoints=3)
    m1, l1 = coupled.run_trajectory(source_model, *tasks, every, kind="mixture", plan=None, val=val, seed=1)
    m2, l2 = coupled.run_trajectory(source_model, *tasks, per, kind="mixture", plan=None, val=val, seed=1)
    assert torch.equal(flat_parameters(m1), flat_parameters(m2))  # the estimator does not change the trajectory
    assert l1.length.steps == l2.length.steps == steps
    assert l1.length.manifold == pytest.approx(l2.length.manifold, rel=1e-12)
    assert l1.length.per_sample == pytest.approx(l2.length.per_sample, rel=1e-12)
    x = coupled.held_out_inputs(sv, tv, 16, seed=1)
    net = copy.deepcopy(source_model).eval()
    ref = path_length(net, l1.checkpoints, x)
    assert l1.length.manifold == pytest.approx(ref.manifold, rel=1e-9)
    assert l1.length.euclidean == pytest.approx(ref.euclidean, rel=1e-6)
    # the per-step length on each step's mini-batch is another quantity (different inputs, train mode)
    assert l1.per_step_length.manifold != pytest.approx(l1.length.manifold, rel=1e-3)


def test_polyline_through_two_checkpoints_is_the_chord(tasks, source_model):
    sv, tv = _val(tasks)
    cfg = CoupledConfig(**{**BASE, "length_checkpoints": 1, "length_inputs": "held_out", "length_samples": 16})
    model, log = coupled.run_trajectory(source_model, *tasks, cfg, kind="mixture", plan=None, val=(sv, tv, None),
                                        seed=2)
    x = coupled.held_out_inputs(sv, tv, 16, seed=2)
    with torch.no_grad():
        kl = kl_categorical(source_model.eval()(x).double(), model.eval()(x).double())
    assert log.length.steps == 1
    assert log.length.manifold == pytest.approx(float((2 * kl.clamp_min(0).mean()).sqrt()), rel=1e-9)
    assert log.length.per_sample == pytest.approx(float((2 * kl.clamp_min(0)).sqrt().mean()), rel=1e-9)


def test_interpolated_inputs_follow_the_chords_tau(tasks, source_model):
    """"interpolated" chords are measured on points of p_tau: different inputs (and length) than held-out ones,
    reproducible with the seed, and the per-step estimator on them differs from the coarse polyline."""
    cfg = CoupledConfig(**{**BASE, "length_checkpoints": 5, "length_samples": 32})
    plan = initial_coupling(source_model, *tasks, cfg)
    _, a = coupled.run_trajectory(source_model, *tasks, cfg, kind="displacement", plan=plan, seed=4)
    _, b = coupled.run_trajectory(source_model, *tasks, cfg, kind="displacement", plan=plan, seed=4)
    assert a.length.manifold == b.length.manifold and a.length.steps == 5
    _, c = coupled.run_trajectory(source_model, *tasks, dataclasses.replace(cfg, length_estimator="per_step"),
                                  kind="displacement", plan=plan, seed=4)
    assert c.length.steps == BASE["steps"] and c.length.manifold > a.length.manifold


def test_per_step_batch_is_the_old_estimator(tasks, source_model):
    """length_estimator="per_step", length_inputs="batch": the reported length is the per-step meter."""
    cfg = CoupledConfig(**{**BASE, "length_estimator": "per_step", "length_inputs": "batch"})
    _, log = coupled.run_trajectory(source_model, *tasks, cfg, kind="mixture", plan=None, seed=5)
    assert log.length is log.per_step_length
    assert log.length.steps == BASE["steps"]
    # the Euclidean length sums |dw| per step: at least the straight-line distance from start to end
    end_to_end = float((log.checkpoints[-1] - log.checkpoints[0]).norm())
    assert log.length.euclidean >= end_to_end > 0


def test_held_out_inputs_need_held_out_data(tasks, source_model):
    cfg = CoupledConfig(**{**BASE, "length_inputs": "held_out"})
    with pytest.raises(ValueError, match="held_out"):
        coupled.run_trajectory(source_model, *tasks, cfg, kind="mixture", plan=None)


def _two_layer(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def test_straight_line_length_does_not_depend_on_spacing():
    """A deterministic straight path in weight space: its polyline length is the same at any spacing (1%)."""
    net = _two_layer()
    x = torch.randn(64, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w0 = flat_parameters(net)
    w1 = w0 + 0.05 * torch.randn(w0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lengths = [path_length(net, [w0 + (w1 - w0) * k / n for k in range(n + 1)], x).manifold for n in (2, 5, 20, 100)]
    assert max(lengths) / min(lengths) - 1 < 0.01
    with torch.no_grad():
        set_flat_parameters(net, w0)
        curved = [w0 + (w1 - w0) * k / 20 + 0.05 * math.sin(math.pi * k / 20) * torch.ones_like(w0) for k in range(21)]
    assert path_length(net, curved, x).manifold > 1.01 * lengths[-1]  # a detour is longer: the check can fail


def test_gradient_descent_length_converges_as_the_spacing_shrinks():
    net = _two_layer()
    x = torch.randn(64, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    logits = []
    for _ in range(64):
        with torch.no_grad():
            logits.append(net(x).clone())
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        logits.append(net(x).clone())
    L = [coupled.polyline_from_logits(torch.stack(logits), c).manifold for c in (4, 8, 16, 32, 64)]
    gaps = np.abs(np.diff(L))
    assert np.all(gaps[1:] < gaps[:-1])  # successive refinements change it less and less
    assert gaps[-1] / L[-1] < 0.01


def test_polyline_from_logits_checks_its_input():
    with pytest.raises(ValueError, match="logits"):
        coupled.polyline_from_logits(torch.zeros(1, 3, 2), 1)
    with pytest.raises(ValueError, match="chords"):
        coupled.polyline_from_logits(torch.zeros(5, 3, 2), 5)


def test_arcsine_schedule_is_symmetric_and_ends_on_the_target():
    steps = 41
    taus = np.array([tau_at(s, steps, "arcsine") for s in range(steps)])
    assert taus[-1] == 1.0 and taus[0] == 0.0
    np.testing.assert_allclose(taus + taus[::-1], 1.0, atol=1e-15)
    lin = np.array([tau_at(s, steps, "linear") for s in range(steps)])
    assert not np.allclose(taus, lin)  # and it is not the linear schedule


def test_authors_preset():
    cfg = CoupledConfig.authors()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (8e-4, 0.9, 5e-4, 20)
    assert (cfg.schedule, cfg.interpolation, cfg.block_sampling, cfg.block_size) == ("arcsine", "displacement",
                                                                                   "per_batch", 25)
    assert (cfg.steps, cfg.length_estimator, cfg.length_checkpoints) == (20000, "checkpoints", 100)
    assert CoupledConfig.authors(steps=400).steps == 400
    with pytest.raises(ValueError, match="batchsize"):
        CoupledConfig.authors(batchsize=3)


def test_trajectory_uses_momentum_and_weight_decay(tasks, source_model):
    """The optimiser's settings reach the trajectory: each changes the final weights."""
    ends = []
    for extra in ({}, {"momentum": 0.9}, {"weight_decay": 0.1}):
        m, _ = coupled.run_trajectory(source_model, *tasks, CoupledConfig(**{**BASE, **extra}), kind="mixture",
                                      plan=None, seed=0)
        ends.append(flat_parameters(m))
    assert not torch.equal(ends[0], ends[1]) and not torch.equal(ends[0], ends[2])


