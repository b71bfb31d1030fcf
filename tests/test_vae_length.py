"""VAE-based task distances (Fig. 7a-b): reparametrisation invariance, hand-computed chords, determinism,
the config's validation and the pair job through distance_matrix."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from ctd_lib.data import Task
from ctd_lib.free_energy.model import make_free_energy_model
from ctd_lib.task_distance.matrices import distance_matrix
from ctd_lib.task_distance.vae_length import (
    FISHERS,
    KINDS,
    VAELengthConfig,
    VAEPairJob,
    chord_lengths,
    polyline_length,
    train_source_vae,
    vae_model_config,
    vae_transfer_length,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 12, 12)
CFG = VAELengthConfig(steps=30, source_steps=200, batch_size=16, checkpoints=5, samples=32, hidden=16, latent=4,
                      lr=3e-3)


def _task(name: str, seed: int, corner: int, n: int = 40) -> Task:
    """Noise plus a bright 5x5 square at (corner, corner): different corners are different tasks."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, *SHAPE, generator=g)
    x[:, :, corner:corner + 5, corner:corner + 5] += 0.6
    return Task(name=name, x=x.clamp(0, 1), y=torch.zeros(n, dtype=torch.long), classes=(0,), num_classes=1,
                input_shape=SHAPE)


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {"a": _task("a", 0, 0), "b": _task("b", 1, 7), "c": _task("c", 2, 3)}


def _trajectory(task: Task, cfg: VAELengthConfig, steps=(5, 10, 20, 30)) -> tuple:
    """float64 state dicts of one Adam trajectory (train_source_vae is deterministic, so its runs of
    5, 10, ... steps are prefixes of the same run), and the float64 model they fit."""
    states = []
    for k in steps:
        m = train_source_vae(task, VAELengthConfig(**{**cfg.to_dict(), "source_steps": k}))
        states.append({key: v.double() for key, v in m.state_dict().items()})
    return make_free_energy_model(vae_model_config(task, cfg)).double(), states


def _rescale(state: dict, c: torch.Tensor, compensate: bool = True) -> dict:
    """Scale the hidden ReLU units of the encoder and decoder by c > 0 (weights and biases of the layer before
    the ReLU) and the next layer's input weights by 1/c: the same function, other coordinates."""
    s = {k: v.clone() for k, v in state.items()}
    for first, second in (("encoder.1", "encoder.4"), ("decoder.0", "decoder.3")):
        s[f"{first}.weight"] *= c[:, None]
        s[f"{first}.bias"] *= c
        if compensate:
            s[f"{second}.weight"] /= c[None, :]
    return s


@pytest.mark.parametrize("fisher", FISHERS)
def test_length_is_invariant_under_reparametrisation_and_the_check_can_fail(tasks, fisher):
    model, states = _trajectory(tasks["a"], CFG)
    x = torch.cat([tasks["a"].x[:10], tasks["b"].x[:10]]).double()
    c = torch.linspace(0.2, 5.0, CFG.hidden, dtype=torch.float64)
    before = polyline_length(model, states, x, fisher=fisher, n_z=3)
    after = polyline_length(model, [_rescale(s, c) for s in states], x, fisher=fisher, n_z=3)
    assert before > 0 and math.isfinite(before)
    assert after == pytest.approx(before, rel=1e-9)
    broken = polyline_length(model, [_rescale(s, c, compensate=False) for s in states], x, fisher=fisher, n_z=3)
    assert abs(broken - before) > 1e-3 * before


@pytest.mark.parametrize("fisher", FISHERS)
@pytest.mark.parametrize("decoder", ["gaussian", "bernoulli"])
def test_two_checkpoints_give_the_chord_by_hand(tasks, fisher, decoder):
    cfg = VAELengthConfig(**{**CFG.to_dict(), "decoder": decoder})
    model, (sa, sb) = _trajectory(tasks["a"], cfg, steps=(5, 30))
    x = tasks["b"].x[:12].double()
    n_z, seed = 4, 7
    got = chord_lengths(model, [sa, sb], x, fisher=fisher, n_z=n_z, seed=seed)
    ma, mb = (make_free_energy_model(vae_model_config(tasks["a"], cfg)).double() for _ in range(2))
    ma.load_state_dict(sa)
    mb.load_state_dict(sb)
    with torch.no_grad():
        (mu_a, lv_a), (mu_b, lv_b) = ma.encode(x), mb.encode(x)
        enc = kl_divergence(Normal(mu_a, (0.5 * lv_a).exp()), Normal(mu_b, (0.5 * lv_b).exp())).sum(-1)

        def dec_kl(za, zb):  # KL[d_a(.|za) || d_b(.|zb)] summed over pixels
            if decoder == "gaussian":  # N(mean, 1/2) per pixel
                sd = math.sqrt(0.5)
                return kl_divergence(Normal(ma.decode(za), sd), Normal(mb.decode(zb), sd)).flatten(1).sum(-1)
            return kl_divergence(Bernoulli(logits=ma.decode(za)), Bernoulli(logits=mb.decode(zb))).flatten(1).sum(-1)

        if fisher == "encoder":
            kl = enc
        elif fisher == "decoder":
            kl = dec_kl(mu_a, mu_b)
        else:
            eps = torch.randn((n_z, x.shape[0], cfg.latent), generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64)
            kl = enc + torch.stack([dec_kl(mu_a + (0.5 * lv_a).exp() * e, mu_a + (0.5 * lv_a).exp() * e)
                                    for e in eps]).mean(0)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(math.sqrt(float((2 * kl).mean())), rel=1e-10)


def test_refining_the_polyline_never_shortens_it(tasks):
    """For the Gaussian decoder the chord is an L2 distance between reconstructions: the triangle inequality."""
    model, states = _trajectory(tasks["a"], CFG, steps=(5, 10, 20, 30))
    x = tasks["c"].x[:16].double()
    fine = polyline_length(model, states, x)
    coarse = polyline_length(model, states[::3], x)
    assert fine >= coarse > 0


def test_same_seed_same_length_and_self_transfer_is_shorter(tasks):
    src = train_source_vae(tasks["a"], CFG)
    for kind in KINDS:
        r1 = vae_transfer_length(tasks["a"], tasks["b"], src, CFG, kind=kind)
        r2 = vae_transfer_length(tasks["a"], tasks["b"], src, CFG, kind=kind)
        assert r1.length == r2.length and np.array_equal(r1.increments, r2.increments)
        assert r1.length == pytest.approx(r1.increments.sum())
        assert r1.increments.shape == (CFG.checkpoints,) and list(r1.checkpoint_steps[[0, -1]]) == [0, CFG.steps]
        assert math.isfinite(r1.elbo_target) and r1.wall_s > 0 and r1.kind == kind
        itself = vae_transfer_length(tasks["a"], tasks["a"], src, CFG, kind=kind)
        assert 0 < itself.length < r1.length
    other_seed = vae_transfer_length(tasks["a"], tasks["b"], src, VAELengthConfig(**{**CFG.to_dict(), "seed": 1}))
    assert other_seed.length != r1.length
    assert train_source_vae(tasks["a"], CFG).state_dict()["encoder.1.weight"].equal(src.state_dict()["encoder.1.weight"])


@pytest.mark.parametrize("field, value", [("steps", 0), ("lr", -1.0), ("batch_size", 2.5), ("fisher", "hessian"),
                                          ("decoder", "laplace"), ("seed", -1), ("device", "tpu"), ("samples", 0),
                                          ("checkpoints", 500)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}=") as info:
        VAELengthConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_bad_arguments_are_refused(tasks):
    with pytest.raises(ValueError, match="choose one of: 'decoder', 'encoder', 'joint'"):
        VAELengthConfig(fisher="fim")
    src = train_source_vae(tasks["a"], CFG)
    with pytest.raises(ValueError, match="^kind="):
        vae_transfer_length(tasks["a"], tasks["b"], src, CFG, kind="coupled")
    wrong = Task(name="w", x=torch.rand(4, 1, 8, 8), y=torch.zeros(4, dtype=torch.long), classes=(0,), num_classes=1,
                 input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="target has inputs of shape"):
        vae_transfer_length(tasks["a"], wrong, src, CFG)
    with pytest.raises(ValueError, match="at least 2"):
        polyline_length(src, [src.state_dict()], tasks["a"].x[:4])


def test_pair_job_pickles_and_fills_a_distance_matrix(tasks):
    job = VAEPairJob.from_tasks(tasks, CFG, kind="fine-tuning")
    clone = pickle.loads(pickle.dumps(job))
    value, extras = clone("a", "b")
    assert isinstance(value, float) and isinstance(extras, dict) and len(extras["increments"]) == CFG.checkpoints
    assert value == job("a", "b")[0] == job.for_pair("a", "b")("a", "b")[0]
    names = list(tasks)
    D = distance_matrix(names, job, method="vae-fine-tuning", params=CFG.to_dict(), show_progress=False)
    assert D.values.shape == (3, 3) and np.all(np.diag(D.values) == 0)
    assert np.all(np.isfinite(D.off_diagonal())) and np.all(D.off_diagonal() > 0)
    assert D.values[0, 1] == value and D.extras[("a", "b")]["kind"] == "fine-tuning"
    with pytest.raises(ValueError, match="^kind="):
        VAEPairJob(tasks=tasks, source_states={}, config=CFG, kind="bogus")
