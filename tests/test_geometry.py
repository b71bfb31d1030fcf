"""Properties of the Fisher-Rao line element and the exact FIM (seed 000, Eqs. 2-5)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ctd_lib.geometry.fim import fim_kl_check, fisher_matrix
from ctd_lib.geometry.length import flat_parameters, kl_categorical, length_increment, path_length, set_flat_parameters


def tanh_mlp(d_in=12, hidden=9, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, classes)).double().eval()


def test_kl_matches_torch_kl_div():
    p, q = torch.randn(50, 7, dtype=torch.float64), torch.randn(50, 7, dtype=torch.float64)
    ref = torch.nn.functional.kl_div(
        torch.log_softmax(q, 1), torch.log_softmax(p, 1), log_target=True, reduction="none"
    ).sum(1)
    torch.testing.assert_close(kl_categorical(p, q), ref, rtol=1e-12, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(2, 12), st.integers(0, 10_000))
def test_per_sample_never_exceeds_manifold(n, c, seed):
    """Jensen: E sqrt(2KL) <= sqrt(E 2KL) for every batch."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, c, generator=g, dtype=torch.float64), torch.randn(n, c, generator=g, dtype=torch.float64)
    inc = length_increment(a, b)
    assert inc.per_sample <= inc.manifold + 1e-12
    assert inc.manifold >= 0


def test_negative_kl_is_clamped_and_counted(monkeypatch):
    import ctd_lib.geometry.length as geo

    fake = torch.tensor([-1e-9, 2e-4, -3e-10, 8e-4], dtype=torch.float64)
    monkeypatch.setattr(geo, "kl_categorical", lambda a, b: fake)
    inc = geo.length_increment(torch.zeros(4, 3), torch.zeros(4, 3))
    assert inc.n_clamped == 2
    assert inc.min_raw_kl == pytest.approx(-1e-9)
    assert inc.manifold == pytest.approx(math.sqrt(2 * (2e-4 + 8e-4) / 4))
    assert inc.per_sample == pytest.approx((math.sqrt(4e-4) + math.sqrt(1.6e-3)) / 4)


def dense_fisher_by_loop(model, x):
    """Independent reference: per-sample, per-class gradients with plain autograd."""
    params = [p for p in model.parameters()]
    logp = torch.log_softmax(model(x), 1)
    probs = logp.exp().detach()
    P = sum(p.numel() for p in params)
    F = torch.zeros(P, P, dtype=x.dtype)
    for n in range(x.shape[0]):
        for c in range(logp.shape[1]):
            g = torch.autograd.grad(logp[n, c], params, retain_graph=True)
            v = torch.cat([t.reshape(-1) for t in g])
            F += probs[n, c] * torch.outer(v, v)
    return F / x.shape[0]


def test_fisher_matches_autograd_loop():
    m = tanh_mlp()
    x = torch.randn(16, 12, dtype=torch.float64)
    torch.testing.assert_close(fisher_matrix(m, x), dense_fisher_by_loop(m, x), rtol=1e-10, atol=1e-12)


def test_fisher_is_symmetric_psd():
    m = tanh_mlp()
    F = fisher_matrix(m, torch.randn(32, 12, dtype=torch.float64))
    torch.testing.assert_close(F, F.T)
    assert torch.linalg.eigvalsh(F).min() > -1e-12


def test_two_kl_matches_fim_quadratic_form_for_small_steps():
    """Eq. 2: 2 KL[p_w, p_{w+dw}] = dw^T g dw + O(|dw|^3); the ratio tends to 1 linearly."""
    m = tanh_mlp()
    x = torch.randn(64, 12, dtype=torch.float64)
    d = torch.randn(flat_parameters(m).numel(), dtype=torch.float64)
    chk = fim_kl_check(m, x, d, [1e-5, 1e-4, 1e-3, 1e-2])
    err = np.abs(chk.ratio - 1)
    assert err[0] < 1e-4
    assert err[1] < 1e-3
    # the error shrinks roughly in proportion to the step (third-order remainder)
    assert err[2] < err[3] and err[1] < err[2]
    # and the model is left where it was
    torch.testing.assert_close(flat_parameters(m), flat_parameters(tanh_mlp()))


def test_fim_kl_check_rejects_bad_input():
    m = tanh_mlp()
    x = torch.randn(4, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="direction"):
        fim_kl_check(m, x, torch.zeros(3, dtype=torch.float64), [1e-3])
    with pytest.raises(ValueError, match="step_sizes"):
        fim_kl_check(m, x, flat_parameters(m), [0.0])


def relu_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)).double().eval()


def rescale(vec, model, c):
    """Map a flat vector through the ReLU rescaling (layer 1 times c, layer 2's weight / c)."""
    set_flat_parameters(model, vec)
    with torch.no_grad():
        model[0].weight.mul_(c)
        model[0].bias.mul_(c)
        model[2].weight.div_(c)
    return flat_parameters(model)


@pytest.mark.parametrize("c", [0.25, 3.0, 17.0])
def test_path_length_invariant_under_reparametrisation(c):
    m = relu_mlp()
    x = torch.randn(40, 12, dtype=torch.float64)
    w0 = flat_parameters(m)
    ckpts = [w0 + 0.05 * k * torch.randn_like(w0) for k in range(6)]
    mapped = [rescale(v, relu_mlp(), c) for v in ckpts]
    a, b = path_length(m, ckpts, x), path_length(m, mapped, x)
    assert b.manifold == pytest.approx(a.manifold, rel=1e-10)
    assert b.per_sample == pytest.approx(a.per_sample, rel=1e-10)
    assert abs(b.euclidean / a.euclidean - 1) > 0.05  # the Euclidean length is not invariant


def test_path_length_zero_for_constant_path_and_needs_two_points():
    m = relu_mlp()
    x = torch.randn(5, 12, dtype=torch.float64)
    w = flat_parameters(m)
    assert path_length(m, [w, w, w], x).manifold == 0.0
    with pytest.raises(ValueError, match="checkpoints"):
        path_length(m, [w], x)


def test_path_length_triangle_inequality_under_refinement():
    """The FR distance of a chord is at most the length of the refined polyline (to first order)."""
    m = tanh_mlp()
    x = torch.randn(30, 12, dtype=torch.float64)
    w0 = flat_parameters(m)
    d = torch.randn_like(w0) * 0.02
    bent = [w0, w0 + d + 0.02 * torch.randn_like(w0), w0 + 2 * d]
    chord = [w0, w0 + 2 * d]
    assert path_length(m, chord, x).manifold <= path_length(m, bent, x).manifold
