"""The fine-tuning and Task2Vec baselines of Sec. 5.2 (seed 000)."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctd_lib.data import make_task
from ctd_lib.geometry.fim import fisher_matrix
from ctd_lib.geometry.length import set_flat_parameters
from ctd_lib.geometry.sgd import SGDConfig, accuracy, minibatch_sampler, train_sgd
from ctd_lib.models import make_model
from ctd_lib.task_distance.finetune import FineTuneConfig, fine_tuning_distance
from ctd_lib.task_distance.task2vec import (
    Task2VecConfig,
    _fit_head,
    classifier_layer,
    embed_tasks,
    fisher_diagonal,
    task2vec_distance,
    task2vec_embedding,
    task2vec_matrix,
)


def mlp(seed=0, hidden=(32,), num_classes=10):
    return make_model("mlp", in_shape=(1, 28, 28), num_classes=num_classes, seed=seed, hidden=hidden)


@pytest.fixture(scope="module")
def tasks():
    return {
        "tr01": make_task("mnist10k-01", n_per_class=40),
        "va01": make_task("mnist10k-01", "test", n_per_class=40),
        "tr23": make_task("mnist10k-23", n_per_class=40),
        "va23": make_task("mnist10k-23", "test", n_per_class=40),
    }


@pytest.fixture(scope="module")
def source01(tasks):
    """A small MLP that fits digits 0/1 (validation accuracy 1.0)."""
    m = mlp()
    train_sgd(m, minibatch_sampler(tasks["tr01"].x, tasks["tr01"].y, 32), SGDConfig(steps=100, lr=0.1),
              track_length=False, show_progress=False)
    return m


@pytest.fixture(scope="module")
def probe():
    """The Task2Vec probe: the same MLP trained on all ten digits (the reference task)."""
    ref = make_task("mnist10k-all", n_per_class=20)
    m = mlp()
    train_sgd(m, minibatch_sampler(ref.x, ref.y, 32), SGDConfig(steps=200, lr=0.1), track_length=False,
              show_progress=False)
    return m


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- fine-tuning distance


def test_zero_when_the_source_already_meets_the_threshold(tasks, source01):
    r = fine_tuning_distance(source01, tasks["tr01"], tasks["va01"], FineTuneConfig(max_steps=20))
    assert r.initial_val_acc >= 0.95 * r.final_val_acc
    assert r.steps_to_threshold == 0
    assert r.distance == 0.0 and r.fisher_rao_length == 0.0
    assert r.cumulative_euclidean[-1] > 0  # SGD did move: the zero is the definition's, not a frozen model


def test_positive_when_transferring_to_new_classes(tasks, source01):
    cfg = FineTuneConfig(max_steps=60)
    r = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], cfg)
    k = r.steps_to_threshold
    assert 0 < k <= cfg.max_steps
    assert r.initial_val_acc < r.threshold and r.final_val_acc > 0.5
    assert r.threshold == pytest.approx(0.95 * r.final_val_acc, rel=1e-15)
    assert r.distance == r.cumulative_euclidean[k] > 0
    assert r.fisher_rao_length == r.cumulative_fisher_rao[k] > 0
    hit = list(r.eval_steps).index(k)
    assert r.val_acc[hit] >= r.threshold and np.all(r.val_acc[:hit] < r.threshold)  # the first crossing
    assert r.cumulative_euclidean.shape == r.cumulative_fisher_rao.shape == (cfg.max_steps + 1,)
    assert r.config == cfg
    # the final model is the end of that same trajectory: plain SGD with the same settings lands there
    plain = copy.deepcopy(source01)
    train_sgd(plain, minibatch_sampler(tasks["tr23"].x, tasks["tr23"].y, cfg.batch_size),
              SGDConfig(steps=cfg.max_steps, lr=cfg.lr, seed=cfg.seed), track_length=False, show_progress=False)
    for p, q in zip(r.final_model.parameters(), plain.parameters()):
        assert torch.equal(p, q)
    assert accuracy(r.final_model, tasks["va23"].x, tasks["va23"].y) == r.final_val_acc
    assert r.final_model is not source01


def test_same_seed_same_numbers_and_caller_model_untouched(tasks, source01):
    before = state(source01)
    cfg = FineTuneConfig(max_steps=15, seed=4)
    a = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], cfg)
    b = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], cfg)
    for k, v in state(source01).items():
        assert torch.equal(v, before[k]), k
    assert a.distance == b.distance and a.steps_to_threshold == b.steps_to_threshold
    assert np.array_equal(a.cumulative_euclidean, b.cumulative_euclidean)
    assert np.array_equal(a.cumulative_fisher_rao, b.cumulative_fisher_rao)
    assert np.array_equal(a.val_acc, b.val_acc)
    c = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], FineTuneConfig(max_steps=15, seed=5))
    assert not np.array_equal(a.cumulative_euclidean, c.cumulative_euclidean)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-3)])
def test_lengths_and_accuracies_match_an_independent_checkpointed_run(tasks, source01, momentum, weight_decay):
    """float64: cumulative length = cumsum |w_{k+1} - w_k| of the weights themselves (rtol 1e-10),
    and the accuracy recorded at step k is that of w_k (the sampler hook reads it before the update)."""
    src = copy.deepcopy(source01).double()
    cfg = FineTuneConfig(max_steps=25, lr=0.05, momentum=momentum, weight_decay=weight_decay, seed=3)
    r = fine_tuning_distance(src, tasks["tr23"], tasks["va23"], cfg)
    ref = copy.deepcopy(src)
    run = train_sgd(ref, minibatch_sampler(tasks["tr23"].x.double(), tasks["tr23"].y, cfg.batch_size),
                    SGDConfig(steps=25, lr=0.05, momentum=momentum, weight_decay=weight_decay, seed=3,
                              checkpoint_every=1), track_length=False, show_progress=False)
    steps = [float((b - a).norm()) for a, b in zip(run.checkpoints[:-1], run.checkpoints[1:])]
    np.testing.assert_allclose(r.cumulative_euclidean, np.concatenate([[0.0], np.cumsum(steps)]),
                               rtol=1e-10, atol=1e-14)
    assert np.all(np.diff(r.cumulative_euclidean) >= 0) and np.all(np.diff(r.cumulative_fisher_rao) >= 0)
    xv, yv = tasks["va23"].x.double(), tasks["va23"].y
    accs = []
    for w in run.checkpoints:
        set_flat_parameters(ref, w)
        accs.append(accuracy(ref, xv, yv))
    assert np.array_equal(r.eval_steps, np.arange(26)) and np.array_equal(r.val_acc, accs)


def test_coarser_evaluation_grid(tasks, source01):
    fine = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], FineTuneConfig(max_steps=23))
    coarse = fine_tuning_distance(source01, tasks["tr23"], tasks["va23"], FineTuneConfig(max_steps=23, eval_every=5))
    assert list(coarse.eval_steps) == [0, 5, 10, 15, 20, 23]
    np.testing.assert_array_equal(coarse.val_acc, fine.val_acc[coarse.eval_steps])  # same trajectory
    assert coarse.steps_to_threshold in coarse.eval_steps
    assert fine.steps_to_threshold <= coarse.steps_to_threshold <= 23  # a subset of steps crosses later
    assert coarse.distance >= fine.distance


@pytest.mark.parametrize("kwargs, name", [
    ({"lr": 0.0}, "lr"), ({"momentum": -0.1}, "momentum"), ({"weight_decay": -1.0}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"), ({"max_steps": 0}, "max_steps"), ({"max_steps": 2.5}, "max_steps"),
    ({"eval_every": 0}, "eval_every"), ({"threshold_frac": 0.0}, "threshold_frac"),
    ({"threshold_frac": 1.5}, "threshold_frac"), ({"seed": "a"}, "seed"),
])
def test_fine_tune_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        FineTuneConfig(**kwargs)


def test_labels_outside_the_head_are_rejected(tasks):
    with pytest.raises(ValueError, match="target_train"):
        fine_tuning_distance(mlp(num_classes=2), tasks["tr23"], tasks["va23"], FineTuneConfig(max_steps=2))


# ---------------------------------------------------------------------------- Fisher diagonal


def loop_fisher(model, x, y, fisher):
    """Reference: one autograd.grad per (sample, label), squared and weighted."""
    params = [p for p in model.parameters()]
    out = [torch.zeros_like(p) for p in params]
    for n in range(x.shape[0]):
        logp = torch.log_softmax(model(x[n : n + 1]), dim=1)[0]
        if fisher == "empirical":
            labels = [(int(y[n]), 1.0)]
        else:
            labels = [(c, float(logp[c].detach().exp())) for c in range(len(logp))]
        for c, w in labels:
            g = torch.autograd.grad(logp[c], params, retain_graph=True)
            for o, gi in zip(out, g):
                o += w * gi.square()
    return [o / x.shape[0] for o in out]


@pytest.fixture(scope="module")
def tiny64(tasks):
    torch.manual_seed(0)
    m = mlp(hidden=(8,)).double().eval()
    return m, tasks["tr01"].x[::7][:12].double(), tasks["tr01"].y[::7][:12]


@pytest.mark.parametrize("fisher", ["empirical", "exact"])
def test_fisher_diagonal_matches_a_per_sample_autograd_loop(tiny64, fisher):
    model, x, y = tiny64
    got = fisher_diagonal(model, x, y, fisher=fisher, batch_size=5)  # batches of (input, label) rows
    ref = loop_fisher(model, x, y, fisher)
    for (name, g), r in zip(got.items(), ref):
        np.testing.assert_allclose(g.numpy(), r.detach().numpy(), rtol=1e-10, atol=1e-15, err_msg=name)


def test_exact_fisher_diagonal_is_the_diagonal_of_the_dense_fim(tiny64):
    model, x, _ = tiny64
    got = torch.cat([v.reshape(-1) for v in fisher_diagonal(model, x, fisher="exact").values()])
    np.testing.assert_allclose(got.numpy(), torch.diagonal(fisher_matrix(model, x)).numpy(), rtol=1e-10, atol=1e-15)


def test_sampled_labels_estimate_the_exact_diagonal(tiny64):
    """fisher="model" is unbiased: 400 draws per input come within 10% in total and align entrywise."""
    model, x, _ = tiny64
    exact = torch.cat([v.reshape(-1) for v in fisher_diagonal(model, x, fisher="exact").values()]).numpy()
    mc = fisher_diagonal(model, x, fisher="model", mc_samples=400, batch_size=1200,
                         generator=torch.Generator().manual_seed(0))
    mc = torch.cat([v.reshape(-1) for v in mc.values()]).numpy()
    assert mc.sum() == pytest.approx(exact.sum(), rel=0.1)
    assert mc @ exact / np.linalg.norm(mc) / np.linalg.norm(exact) > 0.98


def test_fisher_diagonal_of_a_parameter_subset(tiny64):
    model, x, y = tiny64
    full = fisher_diagonal(model, x, y, fisher="empirical")
    part = fisher_diagonal(model, x, y, fisher="empirical", parameters=["layers.2.weight"])
    assert list(part) == ["layers.2.weight"]
    np.testing.assert_allclose(part["layers.2.weight"].numpy(), full["layers.2.weight"].numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="parameters"):
        fisher_diagonal(model, x, parameters=["nope"])
    with pytest.raises(ValueError, match="y=None"):
        fisher_diagonal(model, x, fisher="empirical")


# ---------------------------------------------------------------------------- Task2Vec


def test_embedding_parameter_sets_and_filter_reduction(tasks, probe):
    task = tasks["tr01"]
    cfg = dict(head_steps=20, n_samples=40, reduction="none")
    e_all = task2vec_embedding(probe, task, Task2VecConfig(parameters="all", **cfg))
    e_feat = task2vec_embedding(probe, task, Task2VecConfig(parameters="features", **cfg))
    e_head = task2vec_embedding(probe, task, Task2VecConfig(parameters="head", **cfg))
    n_head = 32 * 10 + 10
    assert e_all.shape == (784 * 32 + 32 + n_head,) and e_head.shape == (n_head,)
    np.testing.assert_allclose(e_feat, e_all[:-n_head], rtol=1e-12)  # the Fisher of one model, sliced
    np.testing.assert_allclose(e_head, e_all[-n_head:], rtol=1e-12)
    assert np.all(e_all >= 0)
    e_filter = task2vec_embedding(probe, task, Task2VecConfig(**{**cfg, "reduction": "filter"}))
    np.testing.assert_allclose(e_filter, e_feat[: 32 * 784].reshape(32, 784).mean(axis=1), rtol=1e-12)


def test_embedding_leaves_the_probe_untouched_and_is_reproducible(tasks, probe):
    before = state(probe)
    cfg = Task2VecConfig(fisher="model", mc_samples=2, head_steps=10, seed=7)
    a = task2vec_embedding(probe, tasks["tr23"], cfg)
    b = task2vec_embedding(probe, tasks["tr23"], cfg)
    for k, v in state(probe).items():
        assert torch.equal(v, before[k]), k
    assert np.array_equal(a, b)
    assert not np.array_equal(a, task2vec_embedding(probe, tasks["tr23"], Task2VecConfig(fisher="model", seed=8)))


def test_head_fit_trains_only_the_classifier(tasks, probe):
    m = copy.deepcopy(probe)
    name, head = classifier_layer(m)
    assert name == "layers.2"
    before = state(m)
    x, y = tasks["tr23"].x, tasks["tr23"].y
    loss = lambda: float(torch.nn.functional.cross_entropy(m(x), y).detach())  # noqa: E731
    start = loss()
    _fit_head(m, x, y, Task2VecConfig(head_steps=30))
    after = state(m)
    for k in before:
        assert torch.equal(before[k], after[k]) == (not k.startswith("layers.2.")), k
    assert loss() < start


def test_resample_is_closer_than_another_task(probe):
    tasks = {
        "01": make_task("mnist10k-01", n_per_class=40, seed=0),
        "01 again": make_task("mnist10k-01", n_per_class=40, seed=1),
        "89": make_task("mnist10k-89", n_per_class=40, seed=0),
    }
    emb = embed_tasks(probe, tasks, Task2VecConfig(head_steps=50))
    d = task2vec_matrix(emb, ["01", "01 again", "89"])
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert d[0, 1] < d[0, 2] and d[0, 1] < d[1, 2]
    with pytest.raises(ValueError, match="tasks="):
        embed_tasks(probe, [tasks["01"], tasks["01 again"]])


# Fisher diagonals: exact zeros (dead units, blank pixels) and positive values over 18 decades.
nonneg = arrays(np.float64, st.integers(1, 20), elements=st.one_of(st.just(0.0), st.floats(1e-12, 1e6)))


@settings(max_examples=200, deadline=None)
@given(nonneg, nonneg, st.floats(1e-3, 1e3))
def test_task2vec_distance_properties(e1, e2, scale):
    n = min(len(e1), len(e2))
    e1, e2 = e1[:n], e2[:n]
    assume(e1.sum() > 0 and e2.sum() > 0)
    d = task2vec_distance(e1, e2)
    assert 0.0 <= d <= 1.0
    assert d == task2vec_distance(e2, e1)  # symmetric
    assert task2vec_distance(e1, e1) == pytest.approx(0.0, abs=1e-12)
    assert task2vec_distance(scale * e1, scale * e2) == pytest.approx(d, abs=1e-9)  # one scale for both


def test_task2vec_distance_rejects_bad_embeddings():
    with pytest.raises(ValueError, match="e1"):
        task2vec_distance(np.array([1.0, -1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="e2"):
        task2vec_distance(np.array([1.0, 1.0]), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        task2vec_distance(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="names="):
        task2vec_matrix({"a": np.ones(2)}, ["a", "b"])


@pytest.mark.parametrize("kwargs, name", [
    ({"n_samples": 0}, "n_samples"), ({"batch_size": -1}, "batch_size"), ({"parameters": "last"}, "parameters"),
    ({"fisher": "true"}, "fisher"), ({"mc_samples": 0}, "mc_samples"), ({"head_steps": -1}, "head_steps"),
    ({"head_steps": 1.5}, "head_steps"), ({"head_lr": 0.0}, "head_lr"), ({"reduction": "mean"}, "reduction"),
    ({"seed": 1.0}, "seed"),
])
def test_task2vec_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        Task2VecConfig(**kwargs)
