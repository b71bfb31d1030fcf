"""Samplers of the interpolated task: endpoints, midpoints, Beta moments (seed 000 Eqs. 7-9, Sec. 3.4; seed 004 Remark 11)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctd_lib.transport.blocks import block_plan, match_blocks
from ctd_lib.transport.costs import feature_cost
from ctd_lib.transport.dense import entropic_plan
from ctd_lib.transport.interpolation import (
    INTERPOLATIONS,
    InterpolatedBatch,
    beta_mixup_sample,
    displacement_sample,
    make_sampler,
    mixture_sample,
)

NUM_CLASSES = 5


def tasks(seed=0, ns=12, nt=15, shape=(2, 3)):
    rng = np.random.default_rng(seed)
    xs = torch.as_tensor(rng.normal(size=(ns, *shape)), dtype=torch.float32)
    xt = torch.as_tensor(rng.normal(size=(nt, *shape)) + 3.0, dtype=torch.float32)
    ys, yt = rng.integers(0, 3, ns), rng.integers(2, NUM_CLASSES, nt)
    return xs, ys, xt, yt


def couplings(xs, xt):
    """A dense OTPlan, its ndarray, a BlockPlan and explicit pairs, all on (ns, nt)."""
    C = feature_cost(xs, xt)
    dense = entropic_plan(None, None, C, reg=0.1)
    blocks = block_plan(C, match_blocks(xs, xt, 5), reg=0.1)
    pairs = (np.arange(min(len(xs), len(xt))), np.arange(min(len(xs), len(xt)))[::-1])
    return {"otplan": dense, "array": dense.plan, "blocks": blocks, "pairs": pairs}


def onehot(y):
    return torch.nn.functional.one_hot(torch.as_tensor(y), NUM_CLASSES).float()


def sample(kind, xs, ys, xt, yt, coupling, tau, n, rng):
    if kind == "displacement":
        return displacement_sample(xs, ys, xt, yt, coupling, tau, n, rng, num_classes=NUM_CLASSES)
    if kind == "beta-mixup":
        return beta_mixup_sample(xs, ys, xt, yt, coupling, tau, n, rng, num_classes=NUM_CLASSES)
    return mixture_sample(xs, ys, xt, yt, tau, n, rng, num_classes=NUM_CLASSES)


def rows_of(x, pool):
    """Index of each row of ``x`` in ``pool`` (exact equality), -1 if absent."""
    eq = (x.reshape(len(x), 1, -1) == pool.reshape(1, len(pool), -1)).all(-1)
    return torch.where(eq.any(1), eq.float().argmax(1), torch.full((len(x),), -1))


@pytest.mark.parametrize("kind", INTERPOLATIONS)
@pytest.mark.parametrize("coupling", ["otplan", "array", "blocks", "pairs"])
def test_endpoints_are_exactly_source_and_target_samples(kind, coupling):
    xs, ys, xt, yt = tasks()
    cpl = couplings(xs, xt)[coupling]
    for tau, pool, labels in ((0.0, xs, ys), (1.0, xt, yt)):
        x, y = sample(kind, xs, ys, xt, yt, cpl, tau, 64, np.random.default_rng(1))
        idx = rows_of(x, pool)
        assert (idx >= 0).all()  # bit-exact copies of samples of that task
        torch.testing.assert_close(y, onehot(labels[idx.numpy()]), rtol=0, atol=0)  # with their one-hot labels


def test_displacement_midpoints_of_an_identity_plan():
    xs, ys, xt, yt = tasks(ns=10, nt=10)
    x, y = displacement_sample(xs, ys, xt, yt, np.eye(10) / 10, 0.5, 200, np.random.default_rng(2), num_classes=NUM_CLASSES)
    mid = 0.5 * xs + 0.5 * xt
    idx = rows_of(x, mid)
    assert (idx >= 0).all() and len(idx.unique()) == 10  # every midpoint, and only midpoints (float32-exact)
    torch.testing.assert_close(y, 0.5 * onehot(ys[idx.numpy()]) + 0.5 * onehot(yt[idx.numpy()]), rtol=0, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 0.99), st.integers(0, 10_000))
def test_displacement_lies_on_segments_of_coupled_pairs(tau, seed):
    """Inputs (i, 0) and (0, 1000 + j) let us read the pair (i, j) back from x."""
    ns, nt = 7, 9
    xs = np.stack([np.arange(ns), np.zeros(ns)], 1)
    xt = np.stack([np.zeros(nt), 1000.0 + np.arange(nt)], 1)
    rng = np.random.default_rng(seed)
    P = rng.random((ns, nt)) * (rng.random((ns, nt)) < 0.4)
    P[0, 0] += 1e-3
    P /= P.sum()
    ys, yt = rng.integers(0, NUM_CLASSES, ns), rng.integers(0, NUM_CLASSES, nt)
    x, y = displacement_sample(xs, ys, xt, yt, P, tau, 50, rng, num_classes=NUM_CLASSES)
    x = x.double().numpy()
    i = np.rint(x[:, 0] / (1 - tau)).astype(int)
    j = np.rint(x[:, 1] / tau - 1000).astype(int)
    np.testing.assert_allclose(x[:, 0], (1 - tau) * i, atol=1e-3)  # float32 inputs
    np.testing.assert_allclose(x[:, 1], tau * (1000 + j), atol=1e-3)
    assert (P[i, j] > 0).all()  # only coupled pairs
    ref = (1 - tau) * onehot(ys[i]) + tau * onehot(yt[j])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tau", [0.1, 0.3, 0.5, 0.9])
def test_beta_mixup_coefficients_are_in_unit_interval_with_mean_tau(tau):
    """x = t for inputs 0 -> 1, so x reads t back; 20,000 draws, sd(t) <= 0.36: se <= 0.0026."""
    n = 20_000
    xs, xt = np.zeros((4, 1)), np.ones((4, 1))
    ys, yt = np.zeros(4, dtype=int), np.ones(4, dtype=int)
    x, y = beta_mixup_sample(xs, ys, xt, yt, np.eye(4) / 4, tau, n, np.random.default_rng(3), num_classes=2)
    t = x[:, 0].double()
    assert (t >= 0).all() and (t <= 1).all()
    assert abs(t.mean().item() - tau) <= 0.02
    torch.testing.assert_close(y[:, 1].double(), t, rtol=0, atol=1e-7)  # the same t for the label
    assert t.std().item() > 0.2  # a Beta draw, not the constant tau


def test_mixture_draws_target_with_probability_tau():
    xs, ys, xt, yt = tasks()
    n, tau = 20_000, 0.3
    x, y = mixture_sample(xs, ys, xt, yt, tau, n, np.random.default_rng(4), num_classes=NUM_CLASSES)
    from_t = rows_of(x, xt) >= 0
    assert (from_t | (rows_of(x, xs) >= 0)).all()  # every sample is a real sample
    assert abs(from_t.float().mean().item() - tau) <= 0.02  # se = 0.0032
    assert ((y == 0) | (y == 1)).all()  # one-hot, of its own task's label
    torch.testing.assert_close(y[from_t], onehot(yt[rows_of(x[from_t], xt).numpy()]), rtol=0, atol=0)


@pytest.mark.parametrize("kind", INTERPOLATIONS)
def test_labels_are_distributions_and_shapes_dtypes(kind):
    xs, ys, xt, yt = tasks()
    cpl = couplings(xs, xt)["blocks"]
    for tau in (0.0, 0.37, 0.8, 1.0):
        b = sample(kind, xs, ys, xt, yt, cpl, tau, 33, np.random.default_rng(5))
        assert isinstance(b, InterpolatedBatch)
        assert b.x.shape == (33, 2, 3) and b.x.dtype == torch.float32 and b.x.device.type == "cpu"
        assert b.y.shape == (33, NUM_CLASSES) and b.y.dtype == torch.float32
        assert (b.y >= 0).all()
        torch.testing.assert_close(b.y.sum(1), torch.ones(33), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", INTERPOLATIONS)
def test_same_seed_same_samples(kind):
    xs, ys, xt, yt = tasks()
    cpl = couplings(xs, xt)["otplan"]
    b1 = sample(kind, xs, ys, xt, yt, cpl, 0.4, 40, np.random.default_rng(6))
    b2 = sample(kind, xs, ys, xt, yt, cpl, 0.4, 40, np.random.default_rng(6))
    b3 = sample(kind, xs, ys, xt, yt, cpl, 0.4, 40, np.random.default_rng(7))
    assert torch.equal(b1.x, b2.x) and torch.equal(b1.y, b2.y)
    assert not torch.equal(b1.x, b3.x)


@pytest.mark.parametrize("kind", INTERPOLATIONS)
def test_make_sampler_equals_the_functions(kind):
    xs, ys, xt, yt = tasks()
    cpl = couplings(xs, xt)["blocks"]
    s = make_sampler(kind, xs, ys, xt, yt, cpl, num_classes=NUM_CLASSES)
    b1 = s(0.6, 25, np.random.default_rng(8))
    b2 = sample(kind, xs, ys, xt, yt, cpl, 0.6, 25, np.random.default_rng(8))
    assert torch.equal(b1.x, b2.x) and torch.equal(b1.y, b2.y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_samples_land_on_the_device():
    xs, ys, xt, yt = tasks()
    b = displacement_sample(xs, ys, xt, yt, couplings(xs, xt)["otplan"], 0.5, 8, np.random.default_rng(0),
                            num_classes=NUM_CLASSES, device="cuda")
    assert b.x.device.type == "cuda" and b.y.device.type == "cuda"


XS, YS, XT, YT = tasks()
PLAN = couplings(XS, XT)["array"]
RNG = np.random.default_rng(0)


def disp(**kw):
    args = dict(xs=XS, ys=YS, xt=XT, yt=YT, pairs_or_plan=PLAN, tau=0.5, n=4, rng=RNG, num_classes=NUM_CLASSES)
    args.update(kw)
    return displacement_sample(**args)


BAD = [
    ("tau", lambda: disp(tau=-0.1)),
    ("tau", lambda: disp(tau=1.5)),
    ("tau", lambda: beta_mixup_sample(XS, YS, XT, YT, PLAN, float("nan"), 4, RNG, num_classes=NUM_CLASSES)),
    ("tau", lambda: mixture_sample(XS, YS, XT, YT, 2.0, 4, RNG, num_classes=NUM_CLASSES)),
    ("n", lambda: disp(n=0)),
    ("n", lambda: mixture_sample(XS, YS, XT, YT, 0.5, -3, RNG, num_classes=NUM_CLASSES)),
    ("rng", lambda: disp(rng=0)),
    ("xs", lambda: disp(xs=XS[:0], ys=YS[:0])),
    ("xt", lambda: mixture_sample(XS, YS, XT[:0], YT[:0], 0.5, 4, RNG, num_classes=NUM_CLASSES)),
    ("xs and xt", lambda: disp(xt=XT[:, :1])),
    ("ys", lambda: disp(ys=YS[:-1])),
    ("yt", lambda: disp(yt=YT.astype(float))),
    ("yt", lambda: disp(yt=YT + NUM_CLASSES)),
    ("num_classes", lambda: disp(num_classes=0)),
    ("pairs_or_plan", lambda: disp(pairs_or_plan=PLAN[:, :-1])),
    ("pairs_or_plan", lambda: disp(pairs_or_plan=-PLAN)),
    ("pairs_or_plan", lambda: disp(pairs_or_plan=(np.array([0, 99]), np.array([0, 1])))),
    ("pairs_or_plan", lambda: disp(pairs_or_plan=couplings(XS[:5], XT)["blocks"])),
    ("kind", lambda: make_sampler("geodesic", XS, YS, XT, YT, PLAN, num_classes=NUM_CLASSES)),
    ("coupling", lambda: make_sampler("displacement", XS, YS, XT, YT, num_classes=NUM_CLASSES)),
]


@pytest.mark.parametrize("name,call", BAD, ids=[f"{n}-{k}" for k, (n, _) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_argument(name, call):
    with pytest.raises(ValueError, match=name):
        call()


def _block_tasks():
    rng = np.random.default_rng(3)
    xs, xt = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 1.0
    plan = block_plan(feature_cost(xs, xt), match_blocks(xs, xt, 8), reg=0.1)
    return xs, xt, plan


def test_per_batch_block_sampling_draws_a_mini_batch_from_one_block():
    xs, xt, plan = _block_tasks()
    block_of_i = np.empty(40, dtype=int)
    block_of_j = np.empty(40, dtype=int)
    for k, (I, J) in enumerate(zip(plan.assignment.source_blocks, plan.assignment.target_blocks)):
        block_of_i[I], block_of_j[J] = k, k
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(200):
        i, j = plan.sample_pairs(16, rng, block_sampling="per_batch")
        assert len(set(block_of_i[i])) == 1 and np.array_equal(block_of_i[i], block_of_j[j])
        seen.append(block_of_i[i][0])
    # blocks are drawn by their mass (here equal): every block appears, none dominates
    counts = np.bincount(seen, minlength=plan.assignment.n_blocks)
    assert counts.min() > 0 and counts.max() < 0.4 * len(seen)
    # per_sample mixes blocks within one mini-batch (the check can fail: per_batch never does)
    i, _ = plan.sample_pairs(16, np.random.default_rng(0), block_sampling="per_sample")
    assert len(set(block_of_i[i])) > 1


def test_per_batch_reaches_the_sampler_and_keeps_per_sample_draws_unchanged():
    xs, xt, plan = _block_tasks()
    ys, yt = np.zeros(40, dtype=int), np.ones(40, dtype=int)
    a = make_sampler("displacement", xs, ys, xt, yt, plan, num_classes=2)(0.5, 16, np.random.default_rng(1))
    b = make_sampler("displacement", xs, ys, xt, yt, plan, num_classes=2,
                     block_sampling="per_sample")(0.5, 16, np.random.default_rng(1))
    c = make_sampler("displacement", xs, ys, xt, yt, plan, num_classes=2,
                     block_sampling="per_batch")(0.5, 16, np.random.default_rng(1))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    with pytest.raises(ValueError, match="block_sampling"):
        make_sampler("displacement", xs, ys, xt, yt, plan, num_classes=2, block_sampling="per_block")


@pytest.mark.parametrize("table_entries", [1 << 22, 0])  # every pair at once, and the loop over blocks
def test_block_sampling_draws_are_numpys_choice_exactly(table_entries, monkeypatch):
    """The cached cdfs give the very draws of Generator.choice(p=...) (so seeds keep their numbers), on blocks of
    unequal shapes (43 source and 37 target samples in blocks of at most 8) and on the padded blocks of equal ones."""
    import ctd_lib.transport.blocks as blocks_module

    monkeypatch.setattr(blocks_module, "_TABLE_ENTRIES", table_entries)
    rng0 = np.random.default_rng(4)
    ys, yt = rng0.normal(size=(43, 3)), rng0.normal(size=(37, 3)) + 1.0
    uneven = block_plan(feature_cost(ys, yt), match_blocks(ys, yt, 8), reg=0.1)
    assert len({p.shape for p in uneven.plans}) > 1
    for plan in (_block_tasks()[2], uneven):
        for seed in (5, 6, 7):
            i, j = plan.sample_pairs(64, np.random.default_rng(seed))
            rng = np.random.default_rng(seed)
            mass = np.array([p.sum() for p in plan.plans])
            blocks = rng.choice(len(plan.plans), size=64, p=mass / mass.sum())
            ri, rj = np.empty(64, dtype=np.int64), np.empty(64, dtype=np.int64)
            for k in np.unique(blocks):
                where = np.flatnonzero(blocks == k)
                p = plan.plans[k].ravel()
                r, c = np.divmod(rng.choice(p.size, size=where.size, p=p / p.sum()), plan.plans[k].shape[1])
                ri[where], rj[where] = plan.assignment.source_blocks[k][r], plan.assignment.target_blocks[k][c]
            np.testing.assert_array_equal(i, ri)
            np.testing.assert_array_equal(j, rj)
    xs, xt, plan = _block_tasks()
    mass = np.array([p.sum() for p in plan.plans])
    # one block per mini-batch: the block as choice(p=mass) draws it, then its pairs as choice(p=plan) draws them
    for seed in range(20):
        i, j = plan.sample_pairs(16, np.random.default_rng(seed), block_sampling="per_batch")
        rng = np.random.default_rng(seed)
        k = int(rng.choice(len(plan.plans), size=1, p=mass / mass.sum())[0])
        p = plan.plans[k].ravel()
        r, c = np.divmod(rng.choice(p.size, size=16, p=p / p.sum()), plan.plans[k].shape[1])
        np.testing.assert_array_equal(i, plan.assignment.source_blocks[k][r])
        np.testing.assert_array_equal(j, plan.assignment.target_blocks[k][c])
