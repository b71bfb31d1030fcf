"""SGD with streaming length bookkeeping."""
import numpy as np
import pytest
import torch
from torch import nn

from ctd_lib.geometry.length import path_length
from ctd_lib.geometry.sgd import (
    SGDConfig,
    accuracy,
    cross_entropy,
    frozen_batchnorm_stats,
    full_batch_sampler,
    measure_length_overhead,
    minibatch_sampler,
    train_sgd,
)


def toy(n=120, d=10, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def mlp(seed=0, d=10, c=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, c))


def test_same_seed_same_numbers():
    x, y = toy()
    runs = [train_sgd(mlp(), minibatch_sampler(x, y, 16), SGDConfig(steps=30, lr=0.1, seed=5)) for _ in range(2)]
    assert np.array_equal(runs[0].losses, runs[1].losses)
    assert runs[0].length.manifold == runs[1].length.manifold
    other = train_sgd(mlp(), minibatch_sampler(x, y, 16), SGDConfig(steps=30, lr=0.1, seed=6))
    assert not np.array_equal(runs[0].losses, other.losses)


def test_tracking_does_not_change_the_trajectory():
    x, y = toy()
    a, b = mlp(), mlp()
    train_sgd(a, minibatch_sampler(x, y, 16), SGDConfig(steps=25, lr=0.1), track_length=True)
    train_sgd(b, minibatch_sampler(x, y, 16), SGDConfig(steps=25, lr=0.1), track_length=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_streaming_length_equals_checkpoint_length_for_full_batch():
    """With the whole data set as the batch, the streamed line elements are those of the
    polyline through every iterate evaluated on the same inputs."""
    x, y = toy(n=60)
    m = mlp().double()
    x = x.double()
    res = train_sgd(m, full_batch_sampler(x, y), SGDConfig(steps=20, lr=0.2, checkpoint_every=1))
    ref = path_length(mlp().double().train(), res.checkpoints, x)
    assert res.length.manifold == pytest.approx(ref.manifold, rel=1e-9)
    assert res.length.per_sample == pytest.approx(ref.per_sample, rel=1e-9)
    assert res.length.euclidean == pytest.approx(ref.euclidean, rel=1e-9)
    assert len(res.length.cumulative["manifold"]) == 20
    assert np.all(np.diff(res.length.cumulative["manifold"]) >= 0)


def test_loss_decreases_on_a_learnable_task():
    x, y = toy(n=300)
    m = mlp()
    before = accuracy(m, x, y)
    res = train_sgd(m, minibatch_sampler(x, y, 32), SGDConfig(steps=300, lr=0.2))
    assert res.losses[-50:].mean() < res.losses[:10].mean()
    assert accuracy(m, x, y) > max(before, 0.8)


def test_soft_labels_match_hard_labels_when_one_hot():
    logits = torch.randn(8, 4)
    y = torch.randint(0, 4, (8,))
    soft = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(cross_entropy(logits, soft), cross_entropy(logits, y))


def test_batchnorm_running_stats_untouched_by_the_measuring_forward():
    m = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    m.train()
    bn = m[1]
    mean, var, nbt = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    with torch.no_grad(), frozen_batchnorm_stats(m):
        m(torch.randn(16, 10) * 5 + 3)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert torch.equal(bn.num_batches_tracked, nbt)
    assert bn.momentum == 0.1
    m(torch.randn(16, 10) * 5 + 3)  # outside the context they update again
    assert not torch.equal(bn.running_mean, mean)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(momentum=-0.1), "momentum"),
        (dict(checkpoint_every=-1), "checkpoint_every"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SGDConfig(**kwargs)


def test_samplers_reject_bad_input():
    x, y = toy()
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_sampler(x, y, 0)
    with pytest.raises(ValueError, match="empty"):
        minibatch_sampler(x[:0], y[:0], 4)
    with pytest.raises(ValueError, match="disagree"):
        full_batch_sampler(x, y[:3])


def test_overhead_measurement_returns_paired_ratios():
    x, y = toy()
    meas = measure_length_overhead(mlp, minibatch_sampler(x, y, 16), SGDConfig(steps=10, lr=0.1), repeats=2)
    assert meas.ratios.shape == (2,)
    assert np.all(meas.ratios > 0)
    np.testing.assert_allclose(meas.ratios, meas.tracked_seconds / meas.plain_seconds)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.0, 0.01), (0.9, 0.0), (0.9, 5e-4)])
def test_euclidean_step_length_matches_weight_differences(momentum, weight_decay):
    """|dw| read off the gradient (or momentum buffer) equals |w_{k+1} - w_k| of the iterates."""
    x, y = toy(n=60)
    x = x.double()
    cfg = SGDConfig(steps=15, lr=0.1, momentum=momentum, weight_decay=weight_decay, checkpoint_every=1)
    res = train_sgd(mlp().double(), full_batch_sampler(x, y), cfg)
    diffs = [float((b - a).norm()) for a, b in zip(res.checkpoints[:-1], res.checkpoints[1:])]
    np.testing.assert_allclose(np.diff(np.r_[0.0, res.length.cumulative["euclidean"]]), diffs, rtol=1e-9)


def test_meter_flushes_in_chunks_and_mixed_batch_sizes():
    from ctd_lib.geometry.length import LengthMeter, length_increment

    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)) for n in [8] * 7 + [3] * 4 + [8]]
    meter = LengthMeter(flush_every=5)
    for a, b in pairs:
        meter.update(a, b)
    res = meter.result()
    ref = [length_increment(a, b) for a, b in pairs]
    np.testing.assert_allclose(np.diff(np.r_[0.0, res.cumulative["manifold"]]), [r.manifold for r in ref], rtol=1e-12)
    np.testing.assert_allclose(np.diff(np.r_[0.0, res.cumulative["per_sample"]]), [r.per_sample for r in ref], rtol=1e-12)
    assert res.steps == len(pairs) and res.n_kl_evals == 8 * 8 + 3 * 4


def test_dropout_masks_are_replayed_for_the_measuring_forward():
    """With the weights (almost) fixed, the length must be (almost) zero even with dropout,
    and tracking must not change the random stream of the run."""
    x, y = toy(n=64)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    res = train_sgd(m, minibatch_sampler(x, y, 16), SGDConfig(steps=20, lr=1e-9))
    assert res.length.manifold < 1e-6
    a, b = mlp(), mlp()
    a.insert(2, nn.Dropout(0.3))
    b.insert(2, nn.Dropout(0.3))
    torch.manual_seed(3)
    train_sgd(a, minibatch_sampler(x, y, 16), SGDConfig(steps=15, lr=0.1), track_length=True)
    torch.manual_seed(3)
    train_sgd(b, minibatch_sampler(x, y, 16), SGDConfig(steps=15, lr=0.1), track_length=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
