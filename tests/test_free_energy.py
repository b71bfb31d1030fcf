"""Properties of ctd_lib.free_energy: the functionals of Eqs. (1), (4), (8) and equilibration (Sec. 5.1)."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from ctd_lib.data import make_task
from ctd_lib.free_energy.equilibrate import EquilibrationConfig, array_sampler, equilibrate, eta, train_equilibrium
from ctd_lib.free_energy.functionals import FreeEnergyTerms, classification, distortion, hamiltonian_loss, measure, rate
from ctd_lib.free_energy.model import PRESETS, FreeEnergyModelConfig, make_free_energy_model

TINY = dict(hidden=32, latent=4, classifier_hidden=8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return make_task("mnist10k-all", "train", n_per_class=20)  # 200 images


def tiny(**kw):
    return make_free_energy_model("mnist", **{**TINY, **kw})


def flat_weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---------------------------------------------------------------- the model


def test_presets_follow_appendix_a():
    m = make_free_energy_model("mnist")
    assert m.encoder[1].in_features == 784 and m.encoder[1].out_features == 256 and m.config.latent == 16
    assert m.classifier[0].out_features == 12
    t = make_free_energy_model("mnist-transfer")
    assert t.config.hidden == 400 and t.config.latent == 64 and isinstance(t.classifier, torch.nn.Linear)
    assert PRESETS["mnist-transfer"].dropout == 0.1


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = tiny(seed=3), tiny(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(flat_weights(a), flat_weights(b))
    assert not torch.equal(flat_weights(a), flat_weights(tiny(seed=4)))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_shapes(shape, encoder):
    m = make_free_energy_model(input_shape=shape, encoder=encoder, hidden=16, latent=3, num_classes=4)
    x = torch.rand(5, *shape)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    assert m.decode(mu).shape == (5, *shape)
    assert m.classify(mu).shape == m(x).shape == (5, 4)
    r, d, c = hamiltonian_loss(m, x, torch.arange(5) % 4, 1.0, 2.0, n_z=2)
    (r + d + 2 * c).backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("bad, match", [
    (dict(marginal="vamp"), "marginal"), (dict(decoder="laplace"), "decoder"), (dict(encoder="resnet"), "encoder"),
    (dict(latent=0), "latent"), (dict(hidden=-1), "hidden"), (dict(classifier_hidden=-1), "classifier_hidden"),
    (dict(dropout=1.5), "dropout"), (dict(input_shape=(28, 28)), "input_shape"),
    (dict(encoder="conv", input_shape=(1, 30, 30)), "input_shape"),
])
def test_bad_model_config(bad, match):
    with pytest.raises(ValueError, match=match):
        FreeEnergyModelConfig(**bad)


def test_make_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="config"):
        make_free_energy_model("cifar")
    with pytest.raises(ValueError, match="width"):
        make_free_energy_model("mnist", width=3)


# ---------------------------------------------------------------- functionals


def test_rate_zero_at_the_standard_marginal_and_positive_elsewhere():
    m = tiny()
    last = m.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(6, 1, 28, 28)
    assert torch.allclose(rate(m, x), torch.zeros(6), atol=1e-7)
    with torch.no_grad():
        last.bias[0] = 0.5  # a mean away from 0
    assert torch.all(rate(m, x) > 0)
    with torch.no_grad():
        last.bias.zero_()
        last.bias[-1] = -0.7  # a variance away from 1
    assert torch.all(rate(m, x) > 0)


def test_rate_matches_monte_carlo_kl_with_a_learned_marginal():
    torch.manual_seed(0)
    m = tiny(marginal="learned")
    with torch.no_grad():
        m.marginal_mean.copy_(torch.tensor([0.3, -0.5, 0.1, 0.8]))
        m.marginal_logvar.copy_(torch.tensor([0.2, -0.4, 0.6, 0.0]))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        analytic = rate(m, x).double()
        mu, logvar = m.encode(x)
        e = Normal(mu.double(), (0.5 * logvar.double()).exp())
        prior = Normal(m.marginal_mean.double(), (0.5 * m.marginal_logvar.double()).exp())
        z = e.sample((200_000,))
        mc = (e.log_prob(z) - prior.log_prob(z)).sum(-1)
    # Monte-Carlo standard error is below 0.005 here; 5 standard errors
    assert torch.allclose(mc.mean(0), analytic, atol=5 * float(mc.std(0).max()) / math.sqrt(200_000) + 1e-6)


def test_gaussian_distortion_is_the_negative_log_likelihood_without_its_constant():
    m = tiny()
    x, z = torch.rand(4, 1, 28, 28), torch.randn(4, 4)
    with torch.no_grad():
        xhat = m.decode(z)
        nll = -Normal(xhat, math.sqrt(0.5)).log_prob(x).sum((1, 2, 3))
        got = distortion(m, x, z)
    assert torch.allclose(got, nll - 784 / 2 * math.log(math.pi), rtol=1e-5, atol=1e-3)


def test_bernoulli_distortion_is_the_negative_log_likelihood():
    m = tiny(decoder="bernoulli")
    x, z = (torch.rand(4, 1, 28, 28) > 0.5).float(), torch.randn(4, 4)
    with torch.no_grad():
        nll = -Bernoulli(logits=m.decode(z)).log_prob(x).sum((1, 2, 3))
        assert torch.allclose(distortion(m, x, z), nll, rtol=1e-5)


def test_distortion_of_a_perfect_decoder_is_zero(monkeypatch):
    m = tiny()
    x = torch.rand(5, 1, 28, 28)
    monkeypatch.setattr(m, "decode", lambda z: x.repeat(z.shape[0] // 5, 1, 1, 1))
    assert torch.equal(distortion(m, x, torch.randn(5, 4)), torch.zeros(5))
    assert torch.equal(distortion(m, x, torch.randn(3, 5, 4)), torch.zeros(5))


def test_several_codes_are_averaged():
    m = tiny()
    x, z = torch.rand(5, 1, 28, 28), torch.randn(3, 5, 4)
    y = torch.tensor([0, 3, 9, 1, 1])
    with torch.no_grad():
        d = torch.stack([distortion(m, x, z[s]) for s in range(3)]).mean(0)
        c = torch.stack([classification(m, z[s], y) for s in range(3)]).mean(0)
        assert torch.allclose(distortion(m, x, z), d, rtol=1e-6)
        assert torch.allclose(classification(m, z, y), c, rtol=1e-6)


def test_soft_labels():
    m = tiny()
    z, y = torch.randn(2, 6, 4), torch.tensor([0, 1, 2, 3, 4, 5])
    y2 = torch.tensor([9, 8, 7, 6, 5, 4])
    one_hot = torch.nn.functional.one_hot(y, 10).float()
    with torch.no_grad():
        assert torch.allclose(classification(m, z, one_hot), classification(m, z, y), rtol=1e-6)
        # linear in the label distribution: C((1-t) y + t y2) = (1-t) C(y) + t C(y2)
        mixed = 0.7 * one_hot + 0.3 * torch.nn.functional.one_hot(y2, 10).float()
        expect = 0.7 * classification(m, z, y) + 0.3 * classification(m, z, y2)
        assert torch.allclose(classification(m, z, mixed), expect, rtol=1e-6)
    with pytest.raises(ValueError, match="classes"):
        classification(m, z, torch.ones(6, 3) / 3)


def test_hamiltonian_loss_rejects_negative_multipliers():
    m, x, y = tiny(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"lam=-1.*>= 0"):
        hamiltonian_loss(m, x, y, -1, 1.0)
    with pytest.raises(ValueError, match=r"gamma=-0.5.*>= 0"):
        hamiltonian_loss(m, x, y, 1.0, -0.5)


# ---------------------------------------------------------------- measure


def test_measure_is_deterministic_and_independent_of_batch_size(task):
    m = tiny(dropout=0.3)
    m.train()
    a = measure(m, task.x, task.y, n_z=4, seed=7)
    assert m.training  # mode restored
    b = measure(m, task.x, task.y, n_z=4, seed=7)
    assert a == b
    c = measure(m, task.x, task.y, n_z=4, seed=7, batch_size=33)
    for name in ("rate", "distortion", "classification", "accuracy"):
        assert getattr(c, name) == pytest.approx(getattr(a, name), rel=1e-5)  # float32 per batch, float64 sums
    assert measure(m, task.x, task.y, n_z=4, seed=8).distortion != a.distortion


def test_measure_agrees_with_the_functionals(task):
    m = tiny().eval()
    x, y = task.x[:50], task.y[:50]
    t = measure(m, x, y, n_z=3, seed=1)
    with torch.no_grad():
        assert t.rate == pytest.approx(float(rate(m, x).double().mean()), rel=1e-5)
        assert t.accuracy == pytest.approx(float((m(x).argmax(1) == y).double().mean()))
        # soft one-hot labels give the same numbers
        assert measure(m, x, torch.nn.functional.one_hot(y, 10).float(), n_z=3, seed=1) == t
    assert t.n == 50


def test_terms_free_energy_and_mix():
    a = FreeEnergyTerms(rate=1.0, distortion=20.0, classification=0.5, accuracy=0.9, n=10)
    b = FreeEnergyTerms(rate=3.0, distortion=10.0, classification=1.5, accuracy=0.5, n=30)
    assert a.free_energy(0.5, 2.0) == pytest.approx(12.0)
    m0, m1, mh = FreeEnergyTerms.mix(a, b, 0.0), FreeEnergyTerms.mix(a, b, 1.0), FreeEnergyTerms.mix(a, b, 0.25)
    assert (m0.rate, m0.distortion, m0.classification, m0.accuracy) == (1.0, 20.0, 0.5, 0.9)
    assert (m1.rate, m1.distortion, m1.classification, m1.accuracy) == (3.0, 10.0, 1.5, 0.5)
    assert mh.distortion == pytest.approx(17.5) and mh.n == 40
    # F of the mixture is the mixture of F (each functional is an expectation)
    assert mh.free_energy(0.3, 4) == pytest.approx(0.75 * a.free_energy(0.3, 4) + 0.25 * b.free_energy(0.3, 4))
    assert a.to_dict()["distortion"] == 20.0
    with pytest.raises(ValueError, match="t="):
        FreeEnergyTerms.mix(a, b, 1.5)


# ---------------------------------------------------------------- equilibration


def test_eta_profile():
    T = 70
    values = np.array([eta(t, T) for t in range(T + 1)])
    assert values[0] == 0 and values[-1] == 0
    assert values.max() == pytest.approx(1.0) and values.argmax() == 20  # t/T = 2/7
    assert eta(0.5, 1) == pytest.approx(0.5**7 / ((2 / 7) ** 2 * (5 / 7) ** 5))
    with pytest.raises(ValueError, match="T < 1"):
        eta(0, 0)
    with pytest.raises(ValueError, match="t="):
        eta(8, 7)


@pytest.mark.parametrize("bad, match", [
    (dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(peak_lr=0.0), "peak_lr"),
    (dict(batch_size=0), "batch_size"), (dict(n_z=0), "n_z"), (dict(schedule="step"), "schedule"),
])
def test_bad_equilibration_config(bad, match):
    with pytest.raises(ValueError, match=match):
        EquilibrationConfig(**bad)


def test_schedules():
    paper = EquilibrationConfig(steps=50)
    lrs = np.array([paper.lr_at(s) for s in range(50)])
    assert np.all(lrs > 0) and lrs.max() <= 1.5e-3 and lrs.max() > 0.99 * 1.5e-3
    cos = EquilibrationConfig(steps=50, schedule="cosine", peak_lr=1e-3)
    assert cos.lr_at(0) == 1e-3 and 0 < cos.lr_at(49) < 1e-5
    assert EquilibrationConfig(schedule="constant").lr_at(123) == 1.5e-3


def test_equilibrate_lowers_the_objective(task):
    cfg = EquilibrationConfig(steps=60, peak_lr=3e-3, schedule="constant", batch_size=32, seed=5)
    m = tiny()
    log = equilibrate(m, array_sampler(task.x, task.y), 0.5, 4.0, cfg, show_progress=False)
    assert log.objective.shape == log.lr.shape == (60,) and log.terms.shape == (60, 3)
    assert log.objective[-15:].mean() < log.objective[:15].mean()
    np.testing.assert_allclose(log.objective, log.terms @ np.array([1.0, 0.5, 4.0]))
    assert (log.lam, log.gamma) == (0.5, 4.0)


def test_equilibrate_is_deterministic_given_its_seed(task):
    sampler = array_sampler(task.x, task.y)
    cfg = EquilibrationConfig(steps=5, batch_size=32, seed=5)
    a, b, c = tiny(dropout=0.1), tiny(dropout=0.1), tiny(dropout=0.1)
    la = equilibrate(a, sampler, 0.5, 4.0, cfg, show_progress=False)
    lb = equilibrate(b, sampler, 0.5, 4.0, cfg, show_progress=False)
    assert torch.equal(flat_weights(a), flat_weights(b))  # bitwise, dropout included
    np.testing.assert_array_equal(la.objective, lb.objective)
    equilibrate(c, sampler, 0.5, 4.0, EquilibrationConfig(steps=5, batch_size=32, seed=6), show_progress=False)
    assert not torch.equal(flat_weights(a), flat_weights(c))


def test_equilibrate_with_soft_labels_and_a_learned_marginal(task):
    m = tiny(marginal="learned")
    soft = torch.nn.functional.one_hot(task.y, 10).float() * 0.8 + 0.02
    before = m.marginal_logvar.detach().clone()
    log = train_equilibrium(m, array_sampler(task.x, soft), 1.0, 2.0,
                            EquilibrationConfig(steps=20, schedule="cosine"), show_progress=False)
    assert np.all(np.isfinite(log.objective)) and not torch.equal(before, m.marginal_logvar.detach())
    assert log.lr[0] == 1.5e-3


def test_equilibrate_rejects_negative_multipliers_before_work(task):
    sampler = array_sampler(task.x, task.y)
    m = tiny()
    w = flat_weights(m)
    with pytest.raises(ValueError, match=r"lam=-0.1.*>= 0"):
        equilibrate(m, sampler, -0.1, 1.0)
    with pytest.raises(ValueError, match=r"gamma=-2.*>= 0"):
        equilibrate(m, sampler, 0.1, -2)
    assert torch.equal(w, flat_weights(m))


def test_array_sampler():
    x, y = torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10)
    s = array_sampler(x, y)
    xb, yb = s(4, np.random.default_rng(0))
    assert xb.shape == (4, 1, 1, 1) and torch.equal(xb.reshape(-1).long(), yb) and len(set(yb.tolist())) == 4
    assert torch.equal(s(4, np.random.default_rng(0))[1], yb)
    assert s(50, np.random.default_rng(0))[0].shape[0] == 10
    with pytest.raises(ValueError, match="disagree"):
        array_sampler(x, y[:3])
