"""Theorem 5, the clipped losses and the Rademacher estimates of ctd_lib.rademacher: closed forms and properties."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctd_lib.geometry.length import flat_parameters, length_increment
from ctd_lib.task_distance.rademacher import (
    RademacherEstimate,
    check_instants,
    classical_bound,
    clipped_cross_entropy,
    clipped_logistic_loss,
    contraction_upper,
    fit_linear_ball,
    n_for_nonvacuous,
    rademacher_linear,
    rademacher_loss_class_lower,
    theorem5_bound,
    theorem5_threshold,
    trajectory_gap,
)

# ----------------------------------------------------------------------------- losses


def test_clipped_cross_entropy_is_bounded_and_equals_ce_below_M():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(200, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (200,), generator=g)
    M = 1.5
    ell = clipped_cross_entropy(logits, y, M)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert ell.shape == (200,) and float(ell.max()) <= M and float(ell.min()) >= 0
    below = ce < M
    assert 0 < int(below.sum()) < 200  # both regimes are exercised
    torch.testing.assert_close(ell[below], ce[below], rtol=0, atol=1e-12)
    assert torch.all(ell[~below] == M)
    onehot = F.one_hot(y, 3).double()  # soft labels that are one-hot give the same loss
    torch.testing.assert_close(clipped_cross_entropy(logits, onehot, M), ell, rtol=0, atol=1e-12)
    soft = torch.softmax(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=1)
    ref = -(soft * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(clipped_cross_entropy(logits, soft, M), ref.clamp(max=M), rtol=0, atol=1e-12)


def test_clipped_logistic_is_binary_clipped_cross_entropy():
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(30, 4, generator=g, dtype=torch.float64)
    w = 2 * torch.randn(4, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(30, generator=g) < 0.5, -1.0, 1.0).double()
    logits = torch.stack([torch.zeros(30, dtype=torch.float64), phi @ w], dim=1)  # p(+1) = sigmoid(<w, phi>)
    ref = clipped_cross_entropy(logits, ((y + 1) / 2).long(), 1.0)
    torch.testing.assert_close(clipped_logistic_loss(w, phi, y, 1.0), ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- Theorem 5


def test_theorem5_bound_equals_formula_by_hand():
    b = theorem5_bound(1.0, n=50, K=4, loss_bound=2.0, trajectory_term=0.1)
    assert b.applicable and b.threshold == pytest.approx(0.2)
    assert b.probability == pytest.approx(8 * math.exp(-2 * 50 * 0.8 ** 2 / 4), rel=1e-12)
    # the printed form: no N in the exponent
    p = theorem5_bound(1.9, n=50, K=1, loss_bound=1.0, trajectory_term=0.0, n_in_exponent=False)
    assert p.probability == pytest.approx(2 * math.exp(-2 * 1.9 ** 2), rel=1e-12) and not p.n_in_exponent
    assert theorem5_bound(0.3, n=1, K=10, loss_bound=1.0, trajectory_term=0.0).probability == 1.0  # capped at 1


def test_theorem5_bound_is_monotone_in_eps_and_n():
    eps = np.linspace(0.21, 2.0, 40)
    probs = [theorem5_bound(e, n=30, K=5, loss_bound=2.0, trajectory_term=0.1).probability for e in eps]
    assert np.all(np.diff(probs) <= 0) and probs[-1] < probs[0]
    by_n = [theorem5_bound(0.8, n=n, K=5, loss_bound=2.0, trajectory_term=0.1).probability for n in (1, 10, 100, 1000)]
    assert np.all(np.diff(by_n) <= 0) and by_n[-1] < 1e-10
    printed = theorem5_bound(0.8, n=100, K=5, loss_bound=2.0, trajectory_term=0.1, n_in_exponent=False)
    assert printed.probability >= by_n[2]  # N >= 1 only tightens the bound


def test_theorem5_not_applicable_at_or_below_threshold():
    assert theorem5_threshold(0.25) == 0.5
    b = theorem5_bound(0.5, n=10, K=3, loss_bound=1.0, trajectory_term=0.25, strict=False)
    assert not b.applicable and b.probability == 1.0
    with pytest.raises(ValueError, match="eps"):
        theorem5_bound(0.5, n=10, K=3, loss_bound=1.0, trajectory_term=0.25)


def test_n_for_nonvacuous_is_the_smallest_n():
    eps, K, M, T, p = 0.9, 10, 2.0, 0.2, 0.05
    n = n_for_nonvacuous(eps, K, M, T, target_prob=p)
    assert theorem5_bound(eps, n=n, K=K, loss_bound=M, trajectory_term=T).probability <= p
    assert theorem5_bound(eps, n=n - 1, K=K, loss_bound=M, trajectory_term=T).probability > p
    assert n_for_nonvacuous(0.4, K, M, T) == math.inf


@pytest.mark.parametrize("taus", [[0.0, 1.0], [0.0, 0.1, 0.5, 1.0], [0.0, 0.0, 0.5], [0.2, 0.3]])
def test_check_instants_accepts(taus):
    np.testing.assert_array_equal(check_instants(taus), np.asarray(taus, dtype=float))


@pytest.mark.parametrize("taus", [[0.0, 0.5, 0.5], [0.0, 0.6, 0.4], [0.5, 0.2, 0.8], [-0.1, 0.5], [0.0, 1.2],
                                  [0.3], [[0.0, 1.0]], [0.0, float("nan")], "ab"])
def test_check_instants_rejects(taus):
    with pytest.raises(ValueError, match="taus"):
        check_instants(taus)


# ----------------------------------------------------------------------------- the gap along a trajectory


def _toy(seed=0):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed)
    batches = lambda n: [(torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64),  # noqa: E731
                          torch.randint(0, 3, (n,), generator=g)) for _ in range(2)]
    return model, batches(16), batches(64)


def test_trajectory_gap_identical_checkpoints_have_zero_terms():
    model, train, pop = _toy()
    w = flat_parameters(model)
    res = trajectory_gap(model, [w, w.clone()], [0.0, 1.0], train, pop, loss_bound=2.0)
    assert res.speed_term == 0.0 and res.loss_change_term == 0.0 and res.train_loss_change[0] == 0.0
    assert res.gap.shape == (2,) and res.avg_gap == pytest.approx(res.gap[1])
    np.testing.assert_allclose(res.gap, res.population_loss - res.train_loss, atol=0)
    assert res.a2_holds.all()


def test_trajectory_gap_speed_term_matches_length_increment_and_restores_model():
    model, train, pop = _toy(1)
    w0 = flat_parameters(model)
    w1 = w0 + 0.05 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(2), dtype=w0.dtype)
    res = trajectory_gap(model, [w0, w1], [0.0, 1.0], train, pop, loss_bound=1.0)
    torch.testing.assert_close(flat_parameters(model), w0, rtol=0, atol=0)  # left unchanged
    with torch.no_grad():
        before = model(pop[1][0])
        from ctd_lib.geometry.length import set_flat_parameters

        set_flat_parameters(model, w1)
        after = model(pop[1][0])
        ell = (clipped_cross_entropy(after, pop[1][1], 1.0) - clipped_cross_entropy(before, pop[1][1], 1.0)).abs()
    assert res.speed_term == pytest.approx(length_increment(before, after).per_sample, rel=1e-10)
    assert res.loss_change_term == pytest.approx(float(ell.mean()), rel=1e-10) and res.speed_term > 0
    assert np.all(res.train_loss <= 1.0) and np.all(res.population_loss <= 1.0)


def test_trajectory_gap_rejects_mismatched_lengths():
    model, train, pop = _toy()
    w = flat_parameters(model)
    with pytest.raises(ValueError, match="checkpoints"):
        trajectory_gap(model, [w], [0.0, 1.0], train, pop, loss_bound=1.0)
    with pytest.raises(ValueError, match="taus"):
        trajectory_gap(model, [w, w], [0.5, 0.2], train, pop, loss_bound=1.0)


# ----------------------------------------------------------------------------- Rademacher complexity


def _unit_vectors(n, d, seed):
    u = np.random.default_rng(seed).standard_normal((n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def test_exact_supremum_against_brute_force():
    """r/N ||sum sigma_i phi_i|| is never exceeded by any unit direction and is approached by the best of many."""
    rng = np.random.default_rng(0)
    N, d, r = 6, 3, 1.7
    phi = rng.standard_normal((N, d))
    U = _unit_vectors(20000, d, 1)
    exact, brute = [], []
    for sigma in itertools.product((-1.0, 1.0), repeat=N):  # every sigma: the expectation is exact
        s = np.asarray(sigma) @ phi
        exact.append(r / N * np.linalg.norm(s))
        brute.append(float((r * U @ s / N).max()))
    exact, brute = np.asarray(exact), np.asarray(brute)
    assert np.all(brute <= exact + 1e-12) and np.all(brute >= 0.999 * exact)
    est = rademacher_linear(phi, r, n_draws=20000, seed=3)
    assert abs(est.value - exact.mean()) < 4 * est.stderr  # the Monte-Carlo mean is unbiased
    assert est.n == N and est.radius == r and est.n_draws == 20000


def test_rademacher_linear_orthonormal_features_closed_form():
    N = 16
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((N, N)))
    est = rademacher_linear(Q, 2.0, n_draws=200)
    assert est.value == pytest.approx(2.0 * math.sqrt(N) / N, rel=1e-12) and est.stderr < 1e-12


def test_rademacher_linear_scales_with_r_and_inverse_sqrt_n():
    rng = np.random.default_rng(0)
    d = 40
    phi = rng.standard_normal((400, d))
    a, b = rademacher_linear(phi, 1.0, seed=5), rademacher_linear(phi, 3.0, seed=5)
    assert b.value == pytest.approx(3.0 * a.value, rel=1e-12)
    for n in (100, 400):  # Gaussian features: E||sum sigma phi|| ~ sqrt(N d), so R ~ r sqrt(d / N)
        est = rademacher_linear(phi[:n], 1.0, n_draws=500, seed=n)
        assert est.value * math.sqrt(n / d) == pytest.approx(1.0, rel=0.05)


def test_loss_class_lower_estimate_below_contraction_upper():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((50, 5))
    y = np.where(phi @ np.ones(5) + 0.5 * rng.standard_normal(50) > 0, 1.0, -1.0)
    upper = contraction_upper(rademacher_linear(phi, 2.0, n_draws=2000, seed=1))
    low = rademacher_loss_class_lower(phi, y, 2.0, loss_bound=1.0, n_draws=40, steps=60, seed=2)
    assert 0 < low.value <= upper + 3 * low.stderr
    assert isinstance(low, RademacherEstimate) and low.n_draws == 40


def test_loss_class_lower_matches_linearisation_for_small_radius():
    """Near w = 0 the logistic loss is log 2 - m / 2: the loss class's complexity is half the linear class's."""
    rng = np.random.default_rng(1)
    phi = rng.standard_normal((40, 3))
    y = np.where(rng.random(40) < 0.5, -1.0, 1.0)
    r = 1e-3
    lin = rademacher_linear(phi, r, n_draws=4000, seed=0)
    low = rademacher_loss_class_lower(phi, y, r, loss_bound=2.0, n_draws=4000, steps=5, seed=0)
    assert low.value / lin.value == pytest.approx(0.5, rel=0.03)
    assert contraction_upper(lin, 2.0) == pytest.approx(2 * lin.value)


def test_fit_linear_ball_stays_in_ball_and_minimises():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((60, 4))
    y = np.where(phi @ np.array([3.0, -1.0, 0.0, 1.0]) > 0, 1.0, -1.0)  # separable: the ball constraint binds
    r = 1.5
    w = fit_linear_ball(phi, y, r, steps=500)
    assert float(w.norm()) <= r + 1e-12 and float(w.norm()) > 0.99 * r
    loss = lambda v: float(F.softplus(-torch.as_tensor(y) * (torch.as_tensor(phi) @ v)).mean())  # noqa: E731
    others = torch.as_tensor(_unit_vectors(500, 4, 2) * r * rng.random((500, 1)) ** 0.25)
    assert all(loss(w) <= loss(v) + 1e-9 for v in others)  # convex: the projected GD point beats the ball


def test_classical_bound_holds_on_a_synthetic_problem():
    """gap <= 2 R_N + M sqrt(2 log(1/delta) / N) in at least 1 - delta - slack of draws (here: all)."""
    rng = np.random.default_rng(0)
    d, N, r, M, delta = 5, 50, 2.0, 1.0, 0.1
    w_star = np.array([1.0, -1.0, 0.5, 0.0, 0.0])

    def sample(n):
        phi = rng.standard_normal((n, d))
        return phi, np.where(phi @ w_star + rng.standard_normal(n) > 0, 1.0, -1.0)

    pop_phi, pop_y = sample(5000)
    holds = []
    for k in range(30):
        phi, y = sample(N)
        w = fit_linear_ball(phi, y, r, steps=200)
        gap = float(clipped_logistic_loss(w, pop_phi, pop_y, M).mean() - clipped_logistic_loss(w, phi, y, M).mean())
        bound = classical_bound(contraction_upper(rademacher_linear(phi, r, n_draws=200, seed=k)), N, delta, M)
        holds.append(gap <= bound)
    assert np.mean(holds) >= 1 - delta - 0.05
    assert classical_bound(0.1, 100, 0.05, 2.0) == pytest.approx(0.2 + 2.0 * math.sqrt(2 * math.log(20) / 100))


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("call, name", [
    (lambda: theorem5_bound(0.5, n=10, K=0, loss_bound=1.0, trajectory_term=0.0), "K"),
    (lambda: theorem5_bound(0.5, n=10, K=1, loss_bound=0.0, trajectory_term=0.0), "loss_bound"),
    (lambda: theorem5_bound(0.5, n=0, K=1, loss_bound=1.0, trajectory_term=0.0), "n"),
    (lambda: theorem5_bound(0.5, n=10, K=1, loss_bound=1.0, trajectory_term=-0.1), "trajectory_term"),
    (lambda: theorem5_bound(float("inf"), n=10, K=1, loss_bound=1.0, trajectory_term=0.0), "eps"),
    (lambda: theorem5_threshold(float("nan")), "trajectory_term"),
    (lambda: clipped_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), -1.0), "loss_bound"),
    (lambda: clipped_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 2]), 1.0), "y"),
    (lambda: rademacher_linear(np.eye(3), -1.0), "radius"),
    (lambda: rademacher_linear(np.eye(3), 1.0, n_draws=0), "n_draws"),
    (lambda: rademacher_linear(np.zeros(3), 1.0), "features"),
    (lambda: rademacher_loss_class_lower(np.eye(3), [0, 1, 1], 1.0, loss_bound=1.0), "labels_pm1"),
    (lambda: rademacher_loss_class_lower(np.eye(3), [1, -1, 1], 1.0, loss_bound=1.0, steps=0), "steps"),
    (lambda: classical_bound(0.1, 10, 1.5), "delta"),
    (lambda: classical_bound(-0.1, 10, 0.1), "rademacher"),
    (lambda: classical_bound(0.1, 0, 0.1), "n"),
    (lambda: contraction_upper(0.3), "estimate"),
    (lambda: fit_linear_ball(np.eye(3), [1, -1, 1], 0.0), "radius"),
    (lambda: n_for_nonvacuous(0.5, 1, 1.0, 0.0, target_prob=0.0), "target_prob"),
])
def test_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
