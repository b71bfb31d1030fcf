"""Tests of ctd_lib.task_distance.batched: P trajectories stepped together give what each gives alone.

Float64 on the CPU, tiny tasks (20 MNIST images per task, blocks of 10), 25 SGD steps: the batched
distances, per-iteration distances, losses, lengths and final weights equal the one-model path to 1e-9
relative (the only differences are the rounding of batched against single matrix products).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ctd_lib.data import make_task
from ctd_lib.geometry.length import flat_parameters
from ctd_lib.models import make_model
from ctd_lib.task_distance.batched import (
    StackedModels,
    TrajectoryJob,
    batched_pair_kl_costs,
    coupled_transfer_distances,
    run_trajectories,
    uncoupled_transfer_distances,
)
from ctd_lib.task_distance.coupled import (
    CoupledConfig,
    affine_stem,
    coupled_transfer_distance,
    initial_coupling,
    pair_kl_cost,
    run_trajectory,
    train_source_model,
    uncoupled_transfer_distance,
)

pytestmark = pytest.mark.usefixtures("one_thread")
RTOL = 1e-9
BASE = dict(steps=25, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=8, block_size=10, length_checkpoints=5,
            outer_iters=2, tol=1e-6, eval_every=5)


@pytest.fixture(scope="module")
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _tasks(names, seed=0):
    return [_double(make_task(n, n_per_class=10, seed=seed)) for n in names]


def _double(task):
    return type(task)(name=task.name, x=task.x.double(), y=task.y, classes=task.classes,
                      num_classes=task.num_classes, input_shape=task.input_shape)


@pytest.fixture(scope="module")
def setting(float64):
    names = ["mnist10k-01", "mnist10k-23", "mnist10k-45"]
    train, val = _tasks(names), _tasks(names, seed=1)
    build = lambda s: (lambda: make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=s,  # noqa: E731
                                          hidden=(16,)).double())
    models = [train_source_model(t, build(i), steps=20, lr=0.1, batch_size=10, seed=i) for i, t in enumerate(train)]
    pairs = [(0, 1), (1, 0), (2, 1), (0, 2)]
    return train, val, models, pairs


def _close(a, b, what, rtol=RTOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    scale = np.maximum(np.abs(b), 1e-12)
    assert np.all(np.abs(a - b) <= rtol * scale + 1e-15), f"{what}: max rel {np.max(np.abs(a - b) / scale):.2e}"


@pytest.mark.parametrize("estimator,inputs", [("checkpoints", "interpolated"), ("per_step", "batch"),
                                              ("checkpoints", "held_out")])
def test_coupled_batch_equals_one_at_a_time(setting, estimator, inputs):
    train, val, models, pairs = setting
    cfg = CoupledConfig(**BASE, length_estimator=estimator, length_inputs=inputs, interpolation="displacement",
                        block_sampling="per_batch")
    args = [(train[i], train[j], models[i]) for i, j in pairs]
    vals = [(val[i], val[j]) for i, j in pairs]
    batched = coupled_transfer_distances(args, cfg, vals=vals, batch_size=3, show_progress=False)  # groups 3 + 1
    moved = 0.0
    for (s, t, m), v, b in zip(args, vals, batched):
        ref = coupled_transfer_distance(s, t, m, cfg, source_val=v[0], target_val=v[1], show_progress=False)
        _close(b.per_iteration, ref.per_iteration, "per-iteration distances")
        _close(b.per_iteration_other, ref.per_iteration_other, "the other convention")
        _close(b.log.loss, ref.log.loss, "training losses")
        _close(b.log.eval_val_loss, ref.log.eval_val_loss, "held-out losses")
        _close(b.log.per_step_length.euclidean, ref.log.per_step_length.euclidean, "|dw| length")
        _close(flat_parameters(b.target_model), flat_parameters(ref.target_model), "final weights")
        for cb, cr in zip(b.ground_cost, ref.ground_cost):
            _close(cb, cr, "ground cost (12b)")
        for pb, pr in zip(b.coupling.plans, ref.coupling.plans):
            # the Sinkhorn iterations amplify the ground cost's 1e-15 round-off; at their tolerance they agree
            _close(pb, pr, "coupling (12a)", rtol=1e-6)
        moved = max(moved, float((flat_parameters(ref.target_model) - flat_parameters(m)).norm()))
    assert moved > 0.1  # the trajectories went somewhere: the equality is not that of untouched weights
    assert len({round(b.distance, 6) for b in batched}) == len(pairs)  # and the pairs differ from one another


def test_uncoupled_batch_equals_one_at_a_time(setting):
    train, val, models, pairs = setting
    cfg = CoupledConfig(**BASE)
    args = [(train[i], train[j], models[i]) for i, j in pairs]
    batched = uncoupled_transfer_distances(args, cfg, batch_size=4, show_progress=False)
    for (s, t, m), b in zip(args, batched):
        ref = uncoupled_transfer_distance(s, t, m, cfg, show_progress=False)
        _close(b.distance, ref.distance, "uncoupled distance")
        _close(flat_parameters(b.target_model), flat_parameters(ref.target_model), "final weights")


def test_batch_norm_keeps_per_model_statistics(float64):
    """The CNN with batch norm (dropout off): running statistics, weights and lengths as one at a time."""
    src, tgt = _tasks(["mnist10k-01", "mnist10k-23"])
    models = [make_model("small-cnn", in_shape=(1, 28, 28), num_classes=10, seed=s).double() for s in (0, 1)]
    for m in models:
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout2d):
                mod.p = 0.0
    cfg = CoupledConfig(steps=6, lr=0.05, batch_size=6, block_size=10, length_checkpoints=3)
    plan = initial_coupling(models[0], src, tgt, cfg)
    jobs = [TrajectoryJob(m, src, tgt, "beta-mixup", plan, None, seed) for m, seed in zip(models, (3, 4))]
    batched = run_trajectories(jobs, cfg, show_progress=False)
    for job, (bm, blog) in zip(jobs, batched):
        rm, rlog = run_trajectory(job.source_model, src, tgt, cfg, kind=job.kind, plan=plan, seed=job.seed,
                                  show_progress=False)
        for (k, a), (_, b) in zip(bm.state_dict().items(), rm.state_dict().items()):
            _close(a.double().numpy(), b.double().numpy(), k)
        _close(blog.length.length("manifold"), rlog.length.length("manifold"), "length")
        _close(blog.per_step_length.length("manifold"), rlog.per_step_length.length("manifold"), "per-step length")
        stats = [b for k, b in rm.named_buffers() if k.endswith("running_mean")]
        assert any(float(s.abs().sum()) > 0 for s in stats)  # the statistics did move
    # the two models' statistics differ: each wrote its own slice
    assert not torch.allclose(batched[0][0].features[1].running_mean, batched[1][0].features[1].running_mean)
    # the ground cost with per-checkpoint statistics, as pair_kl_cost gives it alone
    costs = batched_pair_kl_costs([m for m, _ in batched], [log for _, log in batched], [plan, plan], [src, src],
                                  [tgt, tgt], chunk=7)
    for (m, log), c in zip(batched, costs):
        ref = pair_kl_cost(m, log.checkpoints, log.checkpoint_tau, src.x, tgt.x, plan, buffers=log.checkpoint_buffers)
        for a, b in zip(c, ref):
            _close(a, b, "ground cost with batch norm")


def test_dropout_masks_differ_between_models_and_are_reproducible(float64):
    src, tgt = _tasks(["mnist10k-01", "mnist10k-23"])
    base = make_model("small-cnn", in_shape=(1, 28, 28), num_classes=10, seed=0).double()
    for mod in base.modules():
        if isinstance(mod, torch.nn.Dropout2d):
            mod.p = 0.5
    cfg = CoupledConfig(steps=4, lr=0.05, batch_size=6, block_size=10, length_checkpoints=2)
    jobs = [TrajectoryJob(copy.deepcopy(base), src, tgt, "mixture", None, None, 7) for _ in range(2)]
    a = run_trajectories(jobs, cfg, show_progress=False)
    b = run_trajectories(jobs, cfg, show_progress=False)
    # same seed and data for both models: only their dropout masks can tell them apart
    assert not torch.equal(flat_parameters(a[0][0]), flat_parameters(a[1][0]))
    for (ma, _), (mb, _) in zip(a, b):
        assert torch.equal(flat_parameters(ma), flat_parameters(mb))  # a batch is reproducible


def test_bad_input_is_refused_before_training(setting):
    train, _, models, _ = setting
    cfg = CoupledConfig(**BASE)
    other = make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=0, hidden=(8,)).double()
    with pytest.raises(ValueError, match=r"models\[1\].*architecture"):
        StackedModels([models[0], other])
    with pytest.raises(ValueError, match="batch_size"):
        coupled_transfer_distances([(train[0], train[1], models[0])], cfg, batch_size=0)
    with pytest.raises(ValueError, match="jobs is empty"):
        run_trajectories([], cfg)
    small = type(train[1])(name="small", x=train[1].x[:, :, :14, :14], y=train[1].y, classes=train[1].classes,
                           num_classes=10, input_shape=(1, 14, 14))
    with pytest.raises(ValueError, match=r"jobs\[1\].*input"):
        run_trajectories([TrajectoryJob(models[0], train[0], train[1], "mixture"),
                          TrajectoryJob(models[0], small, small, "mixture")], cfg)
    with pytest.raises(ValueError, match="device='cuda:7'"):
        coupled_transfer_distances([(train[0], train[1], models[0])], CoupledConfig(**{**BASE, "device": "cuda:7"}))
    with pytest.raises(ValueError, match="device"):
        coupled_transfer_distances([(train[0], train[1], models[0])], CoupledConfig(**{**BASE, "device": "tpu"}))


def test_float32_batch_agrees_with_one_at_a_time_to_round_off():
    """In float32 the batched products round differently; over 25 steps the distances agree to 1e-4 relative
    (measured: 1.4e-7) and the final weights to 1e-4 of their norm (measured: 1.4e-7)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the module's float64 fixture may be active
    try:
        _float32_case()
    finally:
        torch.set_default_dtype(before)


def _float32_case():
    names = ["mnist10k-01", "mnist10k-23"]
    train = [make_task(n, n_per_class=10, seed=0) for n in names]
    models = [train_source_model(t, lambda: make_model("mlp", in_shape=(1, 28, 28), num_classes=10, seed=0,
                                                       hidden=(16,)), steps=20, lr=0.1, batch_size=10, seed=0)
              for t in train]
    assert next(models[0].parameters()).dtype == torch.float32
    cfg = CoupledConfig(**BASE)
    args = [(train[0], train[1], models[0]), (train[1], train[0], models[1])]
    for b, (s, t, m) in zip(coupled_transfer_distances(args, cfg, show_progress=False), args):
        ref = coupled_transfer_distance(s, t, m, cfg, show_progress=False)
        np.testing.assert_allclose(b.per_iteration, ref.per_iteration, rtol=1e-4)
        w, wr = flat_parameters(b.target_model), flat_parameters(ref.target_model)
        assert float((w - wr).norm()) <= 1e-4 * float(wr.norm())


def test_affine_stem_gives_the_ground_cost_of_the_whole_network(setting):
    """The MLP's first layer applied once per sample and combined per pair (Eq. 12b is then exact algebra):
    the same cost as the whole network on every pair, to 1e-12 in float64; one case per code path."""
    train, _, models, _ = setting
    cfg = CoupledConfig(**BASE)
    src, tgt = train[0], train[1]
    plan = initial_coupling(models[0], src, tgt, cfg)
    net, log = run_trajectory(models[0], src, tgt, cfg, kind="mixture", plan=None, seed=3, show_progress=False)
    wrapped = torch.nn.Sequential(copy.deepcopy(net))  # not an MLP: no stem, every pair through the network
    assert affine_stem(net) is not None and affine_stem(wrapped) is None
    slow = pair_kl_cost(wrapped, log.checkpoints, log.checkpoint_tau, src.x, tgt.x, plan, chunk=50)
    for chunk in (1, 50, 4096):  # a block's rows one at a time, a few at a time, all at once
        fast = pair_kl_cost(net, log.checkpoints, log.checkpoint_tau, src.x, tgt.x, plan, chunk=chunk)
        for a, b in zip(fast, slow):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    assert max(float(np.max(a)) for a in fast) > 1e-3  # the cost is not trivially zero


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("P,B", [(1, 8), (5, 32), (20, 256), (3, 1000)])
def test_batched_losses_are_each_models_cross_entropy_bit_for_bit(P, B, dtype):
    """One call for all models' soft-label losses gives what cross_entropy gives each model alone."""
    from ctd_lib.geometry.sgd import cross_entropy
    from ctd_lib.task_distance.batched import _losses

    gen = torch.Generator().manual_seed(P * B)
    logits = torch.randn(P, B, 10, generator=gen, dtype=dtype)
    y = torch.softmax(torch.randn(P, B, 10, generator=gen, dtype=dtype), dim=2)
    alone = torch.stack([cross_entropy(logits[p], y[p]) for p in range(P)])
    assert torch.equal(_losses(logits, y), alone)
    hard = torch.randint(0, 10, (P, B), generator=gen)
    assert torch.equal(_losses(logits, hard), torch.stack([cross_entropy(logits[p], hard[p]) for p in range(P)]))
