r"""VAE-based task distances, Fig. 7a-b of [Gao & Chaudhari 2021] (Secs. 5.2 and 5.5).

    "we transfer a variational autoencoder (VAE) from the source to the target task and compute the
    length of weight trajectory on the manifold. We transfer the VAE in two ways, (i) by directly
    fitting the model on the target task, and (ii) by interpolating the task using a mixture
    distribution as described in Sec. 3.1."

The VAE is chapter 5's encoder-decoder (:mod:`ctd_lib.free_energy.model`) trained on the ELBO,
the rate plus the distortion of Eqs. (1) and (4) of [Gao & Chaudhari 2020] with
:math:`\lambda = 1, \gamma = 0` (no classifier term):

.. math::

    R + D = \mathbb{E}_x\, \mathrm{KL}\big(e_w(z\mid x)\,\|\,N(0, I)\big)
          + \mathbb{E}_x\, \mathbb{E}_{z\sim e_w(z\mid x)} \big[-\log d_w(x\mid z)\big].

``kind="mixture"`` (Fig. 7a) trains on :math:`(1-\tau) p_s + \tau p_t`, :math:`\tau = s/(S-1)` at
step :math:`s` of :math:`S` (Eq. 9, the uncoupled transfer of Sec. 3.1); ``kind="fine-tuning"``
(Fig. 7b) trains on :math:`p_t` alone. Both start from the VAE trained on the source
(:func:`train_source_vae`). The length is the polyline through ``checkpoints + 1`` evenly spaced
checkpoints :math:`w_0, \dots, w_M` of the trajectory (Eqs. 2, 4-5, the ``"manifold"`` convention of
:mod:`ctd_lib.geometry.length`, the expectation inside the root; Eq. 11 prints it outside):

.. math::

    \ell = \sum_{m=0}^{M-1} \sqrt{\mathbb{E}_{x\in X}\, 2\,\mathrm{KL}\big[p_{w_m}(\cdot\mid x),
           p_{w_{m+1}}(\cdot\mid x)\big]},

on a fixed set :math:`X` of ``samples`` inputs, half source and half target, drawn once with the seed.

Choices made where the paper is silent:

* **Which distribution's Fisher metric** (``fisher``). ``"decoder"``: the reconstruction
  :math:`p_w(x'\mid x) = d_w(x'\mid \mu_w(x))`, the decoder's likelihood at the encoder mean; for the
  Gaussian decoder of variance 1/2 per pixel :math:`\mathrm{KL} = \|\hat x_a - \hat x_b\|^2`, for the
  Bernoulli decoder the Bernoulli KL, summed over pixels. ``"encoder"``: the diagonal Gaussians
  :math:`e_w(z\mid x)`, closed form. ``"joint"``: the exact KL of the joint
  :math:`e_w(z\mid x)\, d_w(x'\mid z)` by the chain rule,
  :math:`\mathrm{KL}[e_a\|e_b] + \mathbb{E}_{z\sim e_a}\mathrm{KL}[d_a(\cdot\mid z)\|d_b(\cdot\mid z)]`, the
  inner expectation over ``n_z`` fixed draws (common random numbers); it is the Fisher metric of one
  statistical model, unlike a sum of the other two. All three are KLs of the model's distributions,
  so the length does not change under reparametrisations of the weights that leave them unchanged.
* **Optimiser.** Adam (fresh state at each transfer): a VAE's summed-pixel loss has gradients whose
  scale varies by orders of magnitude between tasks, which plain SGD handles poorly at a fixed rate.
* **Randomness.** Mini-batches and mixture draws from ``numpy`` generators, the reparametrisation
  noise from a seeded ``torch.Generator``, dropout off; the same seed gives the same number.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._util.checks import check_choice, check_count, check_device, check_positive
from ..data import Task
from ..free_energy.functionals import distortion, hamiltonian_loss, rate
from ..free_energy.model import DECODERS, ENCODERS, FreeEnergyModel, FreeEnergyModelConfig, make_free_energy_model
from .coupled import checkpoint_steps

__all__ = ["FISHERS", "KINDS", "VAELength", "VAELengthConfig", "VAEPairJob", "chord_lengths", "polyline_length",
           "train_source_vae", "vae_model_config", "vae_transfer_length"]

FISHERS = ("decoder", "encoder", "joint")
KINDS = ("mixture", "fine-tuning")


@dataclass(frozen=True, kw_only=True)
class VAELengthConfig:
    """Training and measurement of a VAE transfer.

    >>> VAELengthConfig(fisher="joint").checkpoints
    10
    """

    steps: int = 200  # Adam steps of the transfer
    lr: float = 1e-3  # Adam learning rate (source training and transfer)
    batch_size: int = 32
    source_steps: int = 300  # Adam steps of train_source_vae (48 epochs of 200 images at batch 32)
    checkpoints: int = 10  # chords M of the polyline; checkpoints at round(linspace(0, steps, M + 1))
    samples: int = 256  # fixed inputs of the length, half source, half target
    fisher: str = "decoder"  # one of FISHERS
    n_z: int = 1  # latent draws of the "joint" metric's inner expectation
    hidden: int = 64  # FreeEnergyModelConfig.hidden (a small MLP: 784-64-2*8 encoder, 8-64-784 decoder)
    latent: int = 8  # FreeEnergyModelConfig.latent
    decoder: str = "gaussian"  # "gaussian" (variance 1/2 per pixel) or "bernoulli"
    encoder: str = "mlp"  # "mlp" or "conv"
    seed: int = 0  # weights, mini-batches, mixture draws, noise and the measurement inputs
    device: str = "cpu"

    def __post_init__(self):
        for name in ("steps", "batch_size", "source_steps", "checkpoints", "samples", "n_z", "hidden", "latent"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("lr", self.lr)
        check_choice("fisher", self.fisher, FISHERS)
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("encoder", self.encoder, ENCODERS)
        check_count("seed", self.seed)
        check_device("device", self.device)
        if self.checkpoints > self.steps:
            raise ValueError(f"checkpoints={self.checkpoints!r} is not valid; it must be <= steps={self.steps}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VAELength:
    """What :func:`vae_transfer_length` returns: ``length`` = ``increments.sum()``, the chords at
    ``checkpoint_steps``, the ELBO (R + D) of the final VAE on the target half of the inputs."""

    length: float
    increments: np.ndarray  # (checkpoints,) chord lengths
    checkpoint_steps: np.ndarray  # (checkpoints + 1,) steps of the checkpoints
    kind: str
    fisher: str
    elbo_target: float
    wall_s: float


def vae_model_config(task: Task, cfg: VAELengthConfig) -> FreeEnergyModelConfig:
    """The VAE of ``cfg`` for the inputs of ``task``: standard marginal, no dropout, a linear classifier (unused)."""
    return FreeEnergyModelConfig(input_shape=tuple(task.input_shape), hidden=cfg.hidden, latent=cfg.latent,
                                 classifier_hidden=0, num_classes=task.num_classes, decoder=cfg.decoder,
                                 encoder=cfg.encoder, seed=cfg.seed)


def _clone_state(model: FreeEnergyModel) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _train(model: FreeEnergyModel, xs: Tensor, xt: Tensor, taus: np.ndarray, cfg: VAELengthConfig,
           keep: Sequence[int], rng: np.random.Generator, gen: torch.Generator) -> list[dict]:
    """Adam on the ELBO (R + D of the Hamiltonian, gamma = 0), step s on a batch of Binomial(B, taus[s]) target
    and B minus that source inputs, drawn with replacement; returns the state dicts at the steps in ``keep`` (0 = before the first step)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    b, ns, xall = cfg.batch_size, len(xs), torch.cat([xs, xt])
    labels = torch.zeros(b, dtype=torch.long, device=xs.device)  # unused: gamma = 0
    states, wanted = [], set(keep)
    model.train()
    for s, tau in enumerate(taus):
        if s in wanted:
            states.append(_clone_state(model))
        nt = int(rng.binomial(b, tau))
        idx = np.concatenate([rng.integers(0, ns, b - nt), ns + rng.integers(0, len(xt), nt)])
        r, d, _ = hamiltonian_loss(model, xall[torch.from_numpy(idx)], labels, 1.0, 0.0, generator=gen)
        loss = r + d
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if len(taus) in wanted:
        states.append(_clone_state(model))
    return states


def train_source_vae(task: Task, cfg: VAELengthConfig | None = None) -> FreeEnergyModel:
    """A VAE of :func:`vae_model_config` trained ``cfg.source_steps`` Adam steps on the ELBO of ``task``."""
    cfg = VAELengthConfig() if cfg is None else cfg
    model = make_free_energy_model(vae_model_config(task, cfg)).to(cfg.device)
    x = task.x.to(cfg.device, next(model.parameters()).dtype)
    _train(model, x, x, np.zeros(cfg.source_steps), cfg, [], np.random.default_rng([cfg.seed, 2]),
           torch.Generator().manual_seed(cfg.seed + 2))
    return model.eval()


def _decoder_kl(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """KL[d_a || d_b] summed over pixels, from decoder means (gaussian) or logits (bernoulli): (..., n)."""
    a, b = a.flatten(-3), b.flatten(-3)
    if kind == "gaussian":  # variance 1/2: ||a - b||^2 / (2 * 1/2)
        return (a - b).pow(2).sum(-1)
    p = torch.sigmoid(a)
    return (p * (F.logsigmoid(a) - F.logsigmoid(b)) + (1 - p) * (F.logsigmoid(-a) - F.logsigmoid(-b))).sum(-1)


def _gauss_kl(mu_a: Tensor, lv_a: Tensor, mu_b: Tensor, lv_b: Tensor) -> Tensor:
    return 0.5 * (lv_b - lv_a + (lv_a.exp() + (mu_a - mu_b).pow(2)) / lv_b.exp() - 1.0).sum(-1)


@torch.no_grad()
def chord_lengths(model: FreeEnergyModel, checkpoints: Sequence[Mapping[str, Tensor]], x: Tensor, *,
                  fisher: str = "decoder", n_z: int = 1, seed: int = 0) -> np.ndarray:
    r"""The chords :math:`\sqrt{\mathbb{E}_x 2\mathrm{KL}[p_{w_m}(\cdot\mid x), p_{w_{m+1}}(\cdot\mid x)]}`
    between consecutive state dicts of ``checkpoints`` (loaded into a copy of ``model``), on inputs ``x``.

    ``fisher`` is one of :data:`FISHERS` (module docstring); the ``"joint"`` metric's :math:`n_z` draws
    :math:`z = \mu_{w_m}(x) + \sigma_{w_m}(x)\epsilon` use the same :math:`\epsilon` (from ``seed``) for
    every chord. Returns (len(checkpoints) - 1,) float64.
    """
    check_choice("fisher", fisher, FISHERS)
    check_positive("n_z", n_z, integer=True)
    if len(checkpoints) < 2:
        raise ValueError(f"checkpoints holds {len(checkpoints)} state dict(s); a length needs at least 2")
    net = copy.deepcopy(model).eval()
    p = next(net.parameters())
    x = x.to(p.device, p.dtype)
    kind = net.config.decoder
    eps = torch.randn((n_z, x.shape[0], net.config.latent), generator=torch.Generator().manual_seed(seed),
                      dtype=p.dtype).to(p.device)
    out, prev = [], None
    for state in checkpoints:
        net.load_state_dict(state)
        mu, lv = net.encode(x)
        cur = {"mu": mu, "lv": lv, "rec": net.decode(mu)}
        if fisher == "joint":
            cur["z"] = (mu + torch.exp(0.5 * lv) * eps).reshape(-1, mu.shape[-1])
            cur["dec_z"] = net.decode(cur["z"]).reshape(n_z, *x.shape)
        if prev is not None:
            enc = _gauss_kl(prev["mu"], prev["lv"], mu, lv)
            if fisher == "decoder":
                kl = _decoder_kl(kind, prev["rec"], cur["rec"])
            elif fisher == "encoder":
                kl = enc
            else:
                dec_b = net.decode(prev["z"]).reshape(n_z, *x.shape)
                kl = enc + _decoder_kl(kind, prev["dec_z"], dec_b).mean(0)
            out.append(float(torch.sqrt(torch.clamp(2.0 * kl.double().mean(), min=0.0))))
        prev = cur
    return np.asarray(out, dtype=np.float64)


def polyline_length(model: FreeEnergyModel, checkpoints: Sequence[Mapping[str, Tensor]], x: Tensor, *,
                    fisher: str = "decoder", n_z: int = 1, seed: int = 0) -> float:
    """The sum of :func:`chord_lengths`: the Fisher-Rao length (Eqs. 2, 5) of the polyline through ``checkpoints``."""
    return float(chord_lengths(model, checkpoints, x, fisher=fisher, n_z=n_z, seed=seed).sum())


def vae_transfer_length(source: Task, target: Task, source_vae: FreeEnergyModel, cfg: VAELengthConfig | None = None,
                        *, kind: str = "mixture") -> VAELength:
    r"""Length of the weight trajectory of a VAE moved from ``source`` to ``target`` (Fig. 7a-b).

    Parameters
    ----------
    source, target : tasks with inputs (N, C, H, W) in [0, 1] of the VAE's ``input_shape``; labels are unused.
    source_vae : the VAE trained on ``source`` (:func:`train_source_vae`); deep-copied, left untouched.
        Its dtype is the dtype of the computation.
    cfg : :class:`VAELengthConfig` (defaults if None); its model fields are not used here.
    kind : ``"mixture"`` (Fig. 7a, :math:`\tau = s/(S-1)`) or ``"fine-tuning"`` (Fig. 7b, :math:`\tau = 1`).

    Returns
    -------
    VAELength
    """
    t0 = time.perf_counter()
    cfg = VAELengthConfig() if cfg is None else cfg
    if not isinstance(cfg, VAELengthConfig):
        raise ValueError(f"cfg={cfg!r} is not valid; it must be a VAELengthConfig")
    check_choice("kind", kind, KINDS)
    shape = tuple(source_vae.config.input_shape)
    for name, task in (("source", source), ("target", target)):
        if tuple(task.x.shape[1:]) != shape or task.x.shape[0] == 0:
            raise ValueError(f"{name} has inputs of shape {tuple(task.x.shape)}; the VAE needs (N > 0, *{shape})")
    model = copy.deepcopy(source_vae)
    p = next(model.parameters())
    xs, xt = source.x.to(p.device, p.dtype), target.x.to(p.device, p.dtype)
    pick = np.random.default_rng([cfg.seed, 0])
    half = cfg.samples // 2
    ns, nt = min(half, len(xs)), min(cfg.samples - half, len(xt))
    x_eval = torch.cat([xs[torch.as_tensor(pick.choice(len(xs), ns, replace=False))],
                        xt[torch.as_tensor(pick.choice(len(xt), nt, replace=False))]])
    taus = np.linspace(0.0, 1.0, cfg.steps) if kind == "mixture" else np.ones(cfg.steps)
    keep = np.asarray(checkpoint_steps(cfg.steps, cfg.checkpoints))  # the coupled distance's checkpoints
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        states = _train(model, xs, xt, taus, cfg, keep.tolist(), np.random.default_rng([cfg.seed, 1]),
                        torch.Generator().manual_seed(cfg.seed + 1))
    inc = chord_lengths(model, states, x_eval, fisher=cfg.fisher, n_z=cfg.n_z, seed=cfg.seed)
    with torch.no_grad():
        model.eval()
        xe = x_eval[ns:]
        mu, lv = model.encode(xe)
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(cfg.seed),
                                                   dtype=mu.dtype).to(mu.device)
        elbo = float((rate(model, xe) + distortion(model, xe, z)).mean())
    return VAELength(length=float(inc.sum()), increments=inc, checkpoint_steps=keep, kind=kind, fisher=cfg.fisher,
                     elbo_target=elbo, wall_s=time.perf_counter() - t0)


@dataclass(frozen=True)
class VAEPairJob:
    """A picklable ``pair_fn`` of :func:`~ctd_lib.task_distance.matrices.distance_matrix`.

    ``tasks`` maps names to tasks (CPU), ``source_states`` names to the state dicts of their source VAEs
    (built from :func:`vae_model_config` of the task and ``config``). ``job(s, t)`` returns
    ``(length, extras)``; :meth:`from_tasks` trains the source VAEs.
    """

    tasks: dict
    source_states: dict
    config: VAELengthConfig
    kind: str = "mixture"

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)

    @classmethod
    def from_tasks(cls, tasks: Mapping[str, Task], config: VAELengthConfig, kind: str = "mixture") -> VAEPairJob:
        states = {name: _clone_state(train_source_vae(task, config)) for name, task in tasks.items()}
        return cls(tasks=dict(tasks), source_states=states, config=config, kind=kind)

    def for_pair(self, source: str, target: str) -> VAEPairJob:
        """The smaller job holding only what the pair needs (shipped to an executor's worker)."""
        return VAEPairJob(tasks={n: self.tasks[n] for n in {source, target}},
                          source_states={source: self.source_states[source]}, config=self.config, kind=self.kind)

    def __call__(self, source: str, target: str) -> tuple[float, dict]:
        for name in (source, target):
            check_choice("task", name, self.tasks)
        check_choice("source", source, self.source_states)
        state = self.source_states[source]
        vae = make_free_energy_model(vae_model_config(self.tasks[source], self.config))
        vae = vae.to(self.config.device, next(iter(state.values())).dtype)
        vae.load_state_dict(state)
        r = vae_transfer_length(self.tasks[source], self.tasks[target], vae, self.config, kind=self.kind)
        return r.length, {"increments": r.increments.tolist(), "elbo_target": r.elbo_target, "wall_s": r.wall_s,
                          "kind": r.kind, "fisher": r.fisher}
