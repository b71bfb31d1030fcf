r"""The encoder-decoder-classifier model and its free energy ([Gao & Chaudhari 2020]).

A model is an encoder :math:`e_\theta(z\mid x)` (a diagonal Gaussian), a
marginal :math:`m_\theta(z)`, a decoder :math:`d_\theta(x\mid z)` and a
classifier :math:`c_\theta(y\mid z)` reading the latent code. Its three
functionals are Eqs. (1) and (4) of [Gao & Chaudhari 2020]:

.. math::

    R &= \mathbb{E}_{x}\, \mathrm{KL}\big(e(z\mid x)\,\|\, m(z)\big), \\
    D &= \mathbb{E}_{x}\, \mathbb{E}_{z\sim e(z\mid x)} \big[-\log d(x\mid z)\big], \\
    C &= \mathbb{E}_{x}\, \mathbb{E}_{z\sim e(z\mid x)} \big[-\log c(y_x\mid z)\big],

and training minimises the free energy of Eq. (8),

.. math::

    F(\lambda, \gamma) = \min_\theta\ R + \lambda D + \gamma C,

by SGD on the Hamiltonian of Eq. (11) with the reparametrisation
:math:`z = \mu(x) + \sigma(x)\,\epsilon`, :math:`\epsilon\sim N(0, I)`.
:func:`equilibrate` is the "equilibration" of Sec. 5.1: Adam with the learning
rate schedule :math:`\eta(t) \propto (t/T)^2 (1 - t/T)^5` after each change of
:math:`(\lambda, \gamma)`.

Choices made where the paper is silent:

* **Distortion without its constant.** The Gaussian decoder has variance 1/2 per
  pixel, so :math:`-\log d(x\mid z) = \|x - \hat x(z)\|^2 + \tfrac{P}{2}\log\pi`
  for :math:`P` pixels; the constant is dropped and :math:`D` is the summed
  squared error ("a mean-square error loss", Appendix A). Its mean
  :math:`\hat x` is squashed into (0, 1) by a sigmoid, the range of the data.
  The Bernoulli decoder (``decoder="bernoulli"``) gives the summed binary
  cross-entropy, an exact negative log-likelihood.
* **The marginal.** ``marginal="standard"`` fixes :math:`m(z) = N(0, I)`;
  ``"learned"`` is a diagonal Gaussian :math:`N(\mu_m, \operatorname{diag} e^{s_m})`
  whose mean and log-variance are parameters, initialised at 0 (so both start
  as the same model). The rate is analytic in both cases.
* **No batch normalisation.** Appendix A mentions batch norm; it is left out so
  that the functionals of a model do not depend on running statistics and
  evaluation is a fixed function of the weights.
* **The schedule's normalisation and indexing.** :math:`\eta` is divided by its
  maximum (at :math:`t/T = 2/7`) so that ``peak_lr`` is the largest learning
  rate actually used, and update :math:`s = 0, \dots, T-1` uses
  :math:`\eta(s + 1, T + 1)`: neither the first nor the last update has a zero
  learning rate.
* **Common random numbers.** :func:`measure` draws all latent noise up front from
  a generator seeded by ``seed``: two measurements with the same seed use the
  same :math:`\epsilon` for the same example, whatever the batch size, so
  finite differences between nearby models are not swamped by Monte-Carlo noise.
  :func:`equilibrate` is likewise deterministic given its seed (mini-batch
  order from a ``numpy`` generator, :math:`\epsilon` from a ``torch`` generator,
  dropout from a forked and seeded global generator).

Reference: Y. Gao and P. Chaudhari, *A Free-Energy Principle for
Representation Learning*, ICML 2020.

Examples
--------
>>> round(eta(2, 7), 12), eta(0, 7), eta(7, 7)
(1.0, 0.0, 0.0)
>>> t = FreeEnergyTerms(rate=2.0, distortion=10.0, classification=0.5, accuracy=0.9, n=100)
>>> t.free_energy(lam=0.25, gamma=4.0)
6.5
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_in_range, check_nonnegative, check_positive
from ._progress import progress
from .training import _device_of

__all__ = [
    "DECODERS",
    "ENCODERS",
    "EquilibrationConfig",
    "EquilibrationLog",
    "FreeEnergyModel",
    "FreeEnergyModelConfig",
    "FreeEnergyTerms",
    "MARGINALS",
    "PRESETS",
    "SCHEDULES",
    "Sampler",
    "array_sampler",
    "classification",
    "distortion",
    "equilibrate",
    "eta",
    "hamiltonian_loss",
    "make_free_energy_model",
    "measure",
    "rate",
    "train_equilibrium",
]

MARGINALS = ("standard", "learned")
DECODERS = ("gaussian", "bernoulli")
ENCODERS = ("mlp", "conv")
SCHEDULES = ("paper", "constant", "cosine")


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True, kw_only=True)
class FreeEnergyModelConfig:
    """Architecture of the encoder-decoder-classifier (Appendix A of [Gao & Chaudhari 2020])."""

    input_shape: tuple = (1, 28, 28)  # (C, H, W) of the inputs
    hidden: int = 256  # Appendix A, MNIST: 784-256-16 encoder, 16-256-784 decoder
    latent: int = 16  # dimension of z
    classifier_hidden: int = 12  # one hidden layer of 12 units (Appendix A); 0 = a single linear layer
    num_classes: int = 10  # outputs of c(y|z)
    marginal: str = "standard"  # m(z): fixed N(0, I), or "learned" diagonal Gaussian (mean, log-variance parameters)
    decoder: str = "gaussian"  # d(x|z): Gaussian = squared error (Appendix A), or Bernoulli (pixels as probabilities)
    encoder: str = "mlp"  # "mlp" or "conv" (small conv encoder + transposed-conv decoder, 1x28x28 and 3x32x32)
    dropout: float = 0.0  # after the hidden layer (0.1 in the larger transfer model of Appendix A)
    seed: int = 0  # weight initialisation

    def __post_init__(self):
        shape = self.input_shape
        if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                or not all(_is_int(s) and s > 0 for s in shape)):
            raise ValueError(f"input_shape={shape!r} is not valid; it must be (C, H, W), three positive integers")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        for name in ("hidden", "latent", "num_classes"):
            check_positive(name, getattr(self, name), integer=True)
        if not _is_int(self.classifier_hidden) or self.classifier_hidden < 0:
            raise ValueError(f"classifier_hidden={self.classifier_hidden!r} is not valid; "
                             "it must be an integer >= 0 (0: a single linear layer)")
        check_choice("marginal", self.marginal, MARGINALS)
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("encoder", self.encoder, ENCODERS)
        check_in_range("dropout", self.dropout, 0.0, 0.99)
        if not _is_int(self.seed):
            raise ValueError(f"seed={self.seed!r} is not valid; it must be an integer")
        if self.encoder == "conv":
            _, h, w = self.input_shape
            if h % 4 or w % 4:
                raise ValueError(f"input_shape={self.input_shape!r} is not valid for encoder='conv'; "
                                 "H and W must be multiples of 4 (e.g. (1, 28, 28) or (3, 32, 32))")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, FreeEnergyModelConfig] = {
    "mnist": FreeEnergyModelConfig(),
    "mnist-transfer": FreeEnergyModelConfig(hidden=400, latent=64, classifier_hidden=0, dropout=0.1),
}


class _ConvEncoder(nn.Module):
    """conv 32 (stride 2) - conv 64 (stride 2) - fc hidden - fc 2*latent."""

    def __init__(self, c: int, h: int, w: int, hidden: int, latent: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 2 * latent),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _ConvDecoder(nn.Module):
    """fc hidden - fc 64*(H/4)*(W/4) - deconv 32 (stride 2) - deconv C (stride 2)."""

    def __init__(self, c: int, h: int, w: int, hidden: int, latent: int, dropout: float):
        super().__init__()
        self.shape = (64, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 64 * (h // 4) * (w // 4)), nn.ReLU(),
        )
        self.deconv = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, c, 4, 2, 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.deconv(self.fc(z).reshape(-1, *self.shape))


class FreeEnergyModel(nn.Module):
    r"""Encoder :math:`e(z\mid x)`, marginal :math:`m(z)`, decoder :math:`d(x\mid z)`, classifier :math:`c(y\mid z)`.

    The encoder outputs the mean and log-variance of a diagonal Gaussian; the
    classifier reads :math:`z`. ``forward`` classifies the encoder mean (used
    for accuracy). Build one with :func:`make_free_energy_model`.
    """

    def __init__(self, config: FreeEnergyModelConfig):
        super().__init__()
        if not isinstance(config, FreeEnergyModelConfig):
            raise ValueError(f"config={config!r} is not valid; it must be a FreeEnergyModelConfig")
        self.config = config
        c, h, w = config.input_shape
        d, k = c * h * w, config.latent
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            if config.encoder == "mlp":
                self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, config.hidden), nn.ReLU(),
                                             nn.Dropout(config.dropout), nn.Linear(config.hidden, 2 * k))
                self.decoder = nn.Sequential(nn.Linear(k, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                             nn.Linear(config.hidden, d))
            else:
                self.encoder = _ConvEncoder(c, h, w, config.hidden, k, config.dropout)
                self.decoder = _ConvDecoder(c, h, w, config.hidden, k, config.dropout)
            if config.classifier_hidden > 0:
                self.classifier = nn.Sequential(nn.Linear(k, config.classifier_hidden), nn.ReLU(),
                                                nn.Linear(config.classifier_hidden, config.num_classes))
            else:
                self.classifier = nn.Linear(k, config.num_classes)
        if config.marginal == "learned":
            self.marginal_mean = nn.Parameter(torch.zeros(k))
            self.marginal_logvar = nn.Parameter(torch.zeros(k))
        else:
            self.register_parameter("marginal_mean", None)
            self.register_parameter("marginal_logvar", None)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of :math:`e(z\\mid x)`, each (n, latent), for x of shape (n, C, H, W)."""
        out = self.encoder(x)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Mean of :math:`d(x\\mid z)` (gaussian, in (0, 1)) or its logits (bernoulli), (n, C, H, W)."""
        out = self.decoder(z).reshape(z.shape[0], *self.config.input_shape)
        return torch.sigmoid(out) if self.config.decoder == "gaussian" else out

    def classify(self, z: Tensor) -> Tensor:
        """Logits of :math:`c(y\\mid z)`, (..., num_classes)."""
        return self.classifier(z)

    def forward(self, x: Tensor) -> Tensor:
        """Classification logits at the encoder mean, (n, num_classes)."""
        return self.classify(self.encode(x)[0])


def make_free_energy_model(config: FreeEnergyModelConfig | str = "mnist", **overrides) -> FreeEnergyModel:
    """A :class:`FreeEnergyModel` from a config or a name of :data:`PRESETS`, with field overrides.

    >>> make_free_energy_model("mnist", latent=4).config.latent
    4
    """
    if isinstance(config, str):
        check_choice("config", config, PRESETS)
        config = PRESETS[config]
    elif not isinstance(config, FreeEnergyModelConfig):
        raise ValueError(f"config={config!r} is not valid; give a FreeEnergyModelConfig or one of: "
                         f"{', '.join(repr(k) for k in PRESETS)}")
    valid = {f.name for f in fields(FreeEnergyModelConfig)}
    for key in overrides:
        if key not in valid:
            raise ValueError(f"{key}= is not a field of FreeEnergyModelConfig; valid: {', '.join(sorted(valid))}")
    return FreeEnergyModel(replace(config, **overrides))


# ----------------------------------------------------------------------------
# the functionals, one function each
# ----------------------------------------------------------------------------


def _kl_to_marginal(model: FreeEnergyModel, mu: Tensor, logvar: Tensor) -> Tensor:
    """Analytic KL between diagonal Gaussians, summed over latent dimensions: (n,)."""
    if model.marginal_mean is None:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    m_mu, m_lv = model.marginal_mean, model.marginal_logvar
    return 0.5 * (m_lv - logvar + (logvar.exp() + (mu - m_mu).pow(2)) * torch.exp(-m_lv) - 1.0).sum(-1)


def rate(model: FreeEnergyModel, x: Tensor) -> Tensor:
    r"""Rate of each example, the KL term of Eq. (1) of [Gao & Chaudhari 2020].

    .. math::

        R(x) = \mathrm{KL}\big(e(z\mid x)\,\|\,m(z)\big)
             = \tfrac12 \sum_{k} \Big[\log\frac{\sigma_{m,k}^2}{\sigma_k^2(x)}
               + \frac{\sigma_k^2(x) + (\mu_k(x) - \mu_{m,k})^2}{\sigma_{m,k}^2} - 1\Big]

    where :math:`\mu(x), \sigma^2(x)` are the encoder's mean and variance and
    :math:`\mu_m, \sigma_m^2` the marginal's (0 and 1 for ``marginal="standard"``).
    ``x`` is (n, C, H, W); returns (n,). :math:`R = \mathbb{E}_x R(x)`.
    """
    mu, logvar = model.encode(x)
    return _kl_to_marginal(model, mu, logvar)


def _per_sample(values: Tensor, z: Tensor) -> Tensor:
    return values if z.dim() == 2 else values.reshape(z.shape[0], z.shape[1]).mean(0)


def distortion(model: FreeEnergyModel, x: Tensor, z: Tensor) -> Tensor:
    r"""Distortion of each example, Eq. (1) of [Gao & Chaudhari 2020], averaged over the given codes.

    .. math::

        D(x) = \frac{1}{S}\sum_{s=1}^{S} -\log d(x\mid z_s)
        = \frac{1}{S}\sum_{s} \|x - \hat x(z_s)\|^2 \quad\text{(gaussian, constant dropped)}

    where :math:`\hat x(z)` is the decoder mean and the Gaussian has variance
    1/2 per pixel, so the dropped constant is :math:`\tfrac{P}{2}\log\pi` for
    :math:`P` pixels. For ``decoder="bernoulli"`` :math:`-\log d(x\mid z)` is the
    binary cross-entropy of the pixels against the decoder's probabilities,
    summed over pixels. ``x`` is (n, C, H, W); ``z`` is (n, latent) or
    (S, n, latent) (S samples per example); returns (n,).
    """
    if z.dim() not in (2, 3) or z.shape[-2] != x.shape[0]:
        raise ValueError(f"z has shape {tuple(z.shape)}; it must be (n, latent) or (n_z, n, latent) "
                         f"with n = {x.shape[0]}")
    flat_z = z.reshape(-1, z.shape[-1])
    out = model.decode(flat_z).reshape(flat_z.shape[0], -1)
    target = x.reshape(1, x.shape[0], -1).expand(z.shape[0] if z.dim() == 3 else 1, -1, -1).reshape(out.shape)
    if model.config.decoder == "gaussian":
        per = (target - out).pow(2).sum(-1)
    else:
        per = F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
    return _per_sample(per, z)


def _cross_entropy_each(logits: Tensor, y: Tensor) -> Tensor:
    if y.dim() == 1:
        return F.cross_entropy(logits, y, reduction="none")
    return -(y * torch.log_softmax(logits, dim=-1)).sum(-1)


def classification(model: FreeEnergyModel, z: Tensor, y: Tensor) -> Tensor:
    r"""Classification loss of each example, Eq. (4) of [Gao & Chaudhari 2020], averaged over the codes.

    .. math::

        C(x) = \frac{1}{S}\sum_{s=1}^{S} -\sum_{c} y_c \log c(c\mid z_s)

    where :math:`y` is one-hot for an integer label (so the sum is
    :math:`-\log c(y_x\mid z_s)`) or a label distribution (interpolated tasks).
    ``z`` is (n, latent) or (S, n, latent); ``y`` is int64 (n,) or float (n, num_classes);
    returns (n,).
    """
    n = z.shape[-2]
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} labels but z has {n} codes")
    if y.dim() == 2 and y.shape[1] != model.config.num_classes:
        raise ValueError(f"soft labels y have {y.shape[1]} classes; the model has {model.config.num_classes}")
    logits = model.classify(z.reshape(-1, z.shape[-1]))
    yy = y if z.dim() == 2 else (y.repeat(z.shape[0]) if y.dim() == 1 else y.repeat(z.shape[0], 1))
    return _per_sample(_cross_entropy_each(logits, yy), z)


def _sample_z(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + sigma * eps for eps of shape (n_z, n, latent)."""
    return mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps


def hamiltonian_loss(
    model: FreeEnergyModel, x: Tensor, y: Tensor, lam: float, gamma: float, *, n_z: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Batch means of (R, D, C), differentiable, for SGD on the Hamiltonian of Eq. (11) of [Gao & Chaudhari 2020].

    .. math::

        \mathbb{E}_{x}\,\mathbb{E}_{z\sim e(z\mid x)} H(z; x, \theta, \lambda, \gamma)
        = R + \lambda D + \gamma C \quad \text{(Eq. 8, up to the constant of } D)

    with :math:`z = \mu(x) + \sigma(x)\,\epsilon`, ``n_z`` draws of
    :math:`\epsilon` per example (from ``generator``, a CPU generator, or the
    global one). ``x`` (n, C, H, W); ``y`` int64 (n,) or float (n, num_classes).
    The rate is analytic. ``lam`` and ``gamma`` are validated here; the
    caller forms ``R + lam * D + gamma * C``.
    """
    check_nonnegative("lam", lam)
    check_nonnegative("gamma", gamma)
    check_positive("n_z", n_z, integer=True)
    mu, logvar = model.encode(x)
    eps = torch.randn((n_z, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    z = _sample_z(mu, logvar, eps)
    r = _kl_to_marginal(model, mu, logvar).mean()
    d = distortion(model, x, z).mean()
    c = classification(model, z, y).mean()
    return r, d, c


# ----------------------------------------------------------------------------
# measured functionals
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FreeEnergyTerms:
    """Rate, distortion and classification loss of a model on a data set (averages over examples)."""

    rate: float  # R, nats
    distortion: float  # D, summed squared error (gaussian) or summed BCE (bernoulli)
    classification: float  # C, nats
    accuracy: float  # fraction of argmax c(y | mu(x)) equal to the (argmax) label
    n: int  # number of examples

    def free_energy(self, lam: float, gamma: float) -> float:
        r""":math:`R + \lambda D + \gamma C`, Eq. (8) of [Gao & Chaudhari 2020] at this model."""
        return self.rate + lam * self.distortion + gamma * self.classification

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def mix(a: "FreeEnergyTerms", b: "FreeEnergyTerms", t: float) -> "FreeEnergyTerms":
        r"""Functionals of one model on the mixture :math:`(1-t)p_s + t p_t` (Eq. 23 of [Gao & Chaudhari 2020]).

        .. math::

            X_t = (1 - t) X_s + t X_t, \qquad X \in \{R, D, C, \text{accuracy}\}

        exact because every functional is an expectation over the data.
        ``a`` is measured on :math:`p_s`, ``b`` on :math:`p_t`; ``n`` is ``a.n + b.n``.
        """
        check_in_range("t", t, 0.0, 1.0)
        t = float(t)
        return FreeEnergyTerms(
            rate=(1 - t) * a.rate + t * b.rate,
            distortion=(1 - t) * a.distortion + t * b.distortion,
            classification=(1 - t) * a.classification + t * b.classification,
            accuracy=(1 - t) * a.accuracy + t * b.accuracy,
            n=a.n + b.n,
        )


def _check_xy(x, y) -> tuple[Tensor, Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape[0] == 0:
        raise ValueError("x is empty: there is nothing to measure or train on")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y disagree on the number of examples: {x.shape[0]} and {y.shape[0]}")
    if y.dim() not in (1, 2):
        raise ValueError(f"y has shape {tuple(y.shape)}; it must be int labels (n,) or label distributions (n, K)")
    return x, y


@torch.no_grad()
def measure(model: FreeEnergyModel, x, y, *, n_z: int = 8, batch_size: int = 1024, seed: int = 0) -> FreeEnergyTerms:
    r"""R, D, C (Eqs. 1 and 4 of [Gao & Chaudhari 2020]) and accuracy of ``model`` on (x, y), in eval mode.

    .. math::

        R = \frac1n\sum_i R(x_i), \quad
        D = \frac{1}{n S}\sum_{i,s} -\log d(x_i\mid z_{is}), \quad
        C = \frac{1}{n S}\sum_{i,s} -\log c(y_i\mid z_{is}),

    where :math:`z_{is} = \mu(x_i) + \sigma(x_i)\epsilon_{is}` and :math:`S` = ``n_z``.
    All :math:`\epsilon` are drawn up front from ``torch.Generator().manual_seed(seed)``,
    so the same seed gives the same noise for the same example whatever
    ``batch_size`` is (common random numbers). ``x`` (n, C, H, W), ``y`` int64
    (n,) or float (n, num_classes). The model's train/eval mode is restored.
    """
    check_positive("n_z", n_z, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    x, y = _check_xy(x, y)
    n = x.shape[0]
    dev = _device_of(model)
    gen = torch.Generator().manual_seed(int(seed))
    eps_all = torch.randn((n_z, n, model.config.latent), generator=gen)
    totals = torch.zeros(4, dtype=torch.float64)
    was = model.training
    model.eval()
    try:
        for a in range(0, n, batch_size):
            xb = x[a : a + batch_size].to(dev, torch.float32)
            yb = y[a : a + batch_size].to(dev)
            mu, logvar = model.encode(xb)
            z = _sample_z(mu, logvar, eps_all[:, a : a + batch_size].to(dev))
            pred = model.classify(mu).argmax(-1)
            label = yb if yb.dim() == 1 else yb.argmax(-1)
            totals += torch.stack([
                _kl_to_marginal(model, mu, logvar).double().sum(),
                distortion(model, xb, z).double().sum(),
                classification(model, z, yb).double().sum(),
                (pred == label).double().sum(),
            ]).cpu()
    finally:
        model.train(was)
    r, d, c, acc = (totals / n).tolist()
    return FreeEnergyTerms(rate=r, distortion=d, classification=c, accuracy=acc, n=int(n))


# ----------------------------------------------------------------------------
# equilibration (Sec. 5.1)
# ----------------------------------------------------------------------------

_ETA_MAX = (2 / 7) ** 2 * (5 / 7) ** 5


def eta(t: int, T: int) -> float:
    r"""Equilibration learning-rate profile of Sec. 5.1 of [Gao & Chaudhari 2020], peak 1.

    .. math::

        \eta(t) = \frac{(t/T)^2 (1 - t/T)^5}{(2/7)^2 (5/7)^5}

    where :math:`t` is the number of mini-batch updates since the last change of
    :math:`(\lambda, \gamma)` and :math:`T` their total; the maximum, 1, is at
    :math:`t/T = 2/7` and :math:`\eta(0) = \eta(T) = 0`.
    """
    if not _is_int(T) or T < 1:
        raise ValueError(f"T={T!r} is not valid; a schedule with T < 1 has no updates (T must be an integer >= 1)")
    try:
        tf = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t={t!r} is not valid; it must be a number in [0, T={T}]") from None
    if not 0 <= tf <= T:
        raise ValueError(f"t={t!r} is not valid; it must be a number in [0, T={T}]")
    u = tf / T
    return u * u * (1 - u) ** 5 / _ETA_MAX


@dataclass(frozen=True, kw_only=True)
class EquilibrationConfig:
    """Adam updates that bring a model to equilibrium at fixed (lambda, gamma) (Sec. 5.1)."""

    steps: int = 300  # T, mini-batch updates after a change of (lambda, gamma)
    peak_lr: float = 1.5e-3  # the maximum learning rate of Sec. 5.1
    batch_size: int = 64  # the authors' batch
    n_z: int = 1  # latent samples per input in each update
    schedule: str = "paper"  # eta(t) of Sec. 5.1; "constant"; "cosine" (peak_lr to 0, Appendix A, from scratch)
    seed: int = 0  # mini-batch order, latent noise and dropout

    def __post_init__(self):
        if not _is_int(self.steps) or self.steps < 1:
            raise ValueError(f"steps={self.steps!r} is not valid; a schedule with T < 1 has no updates "
                             "(steps must be an integer >= 1)")
        check_positive("peak_lr", self.peak_lr)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("n_z", self.n_z, integer=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        if not _is_int(self.seed):
            raise ValueError(f"seed={self.seed!r} is not valid; it must be an integer")

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): ``peak_lr * eta(step + 1, steps + 1)`` for "paper"."""
        if self.schedule == "paper":
            return self.peak_lr * eta(step + 1, self.steps + 1)
        if self.schedule == "cosine":
            return self.peak_lr * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))
        return self.peak_lr

    def to_dict(self) -> dict:
        return asdict(self)


Sampler = Callable[[int, np.random.Generator], tuple[Tensor, Tensor]]


def array_sampler(x, y) -> Sampler:
    """Uniform mini-batches (without replacement inside a batch) from fixed arrays.

    ``x`` (N, C, H, W), ``y`` int64 (N,) or float (N, num_classes), numpy or torch.
    The sampler maps ``(batch_size, rng)`` to a batch; a batch larger than N is all of it.
    """
    x, y = _check_xy(x, y)
    n = x.shape[0]

    def sample(batch_size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.from_numpy(rng.choice(n, size=min(int(batch_size), n), replace=False))
        return x[idx], y[idx]

    return sample


@dataclass(frozen=True)
class EquilibrationLog:
    """What :func:`equilibrate` returns."""

    objective: np.ndarray  # (steps,) mini-batch R + lam D + gamma C before each update
    lr: np.ndarray  # (steps,) learning rate used
    lam: float  # lambda of the run
    gamma: float  # gamma of the run
    wall_time: float  # seconds
    terms: np.ndarray = field(default=None, repr=False)  # (steps, 3) mini-batch R, D, C before each update


def equilibrate(
    model: FreeEnergyModel, sampler: Sampler, lam: float, gamma: float, config: EquilibrationConfig | None = None,
    *, show_progress: bool | None = None,
) -> EquilibrationLog:
    r"""Equilibration of Sec. 5.1 of [Gao & Chaudhari 2020]: Adam on Eq. (8) at fixed :math:`(\lambda, \gamma)`.

    .. math::

        \theta^{s+1} = \mathrm{Adam}\Big(\theta^s,\ \nabla_\theta \big[R + \lambda D + \gamma C\big]_{\text{batch}},\
        \eta_s\Big), \qquad \eta_s = \eta_{\max}\, \eta(s + 1, T + 1)

    for ``config.schedule == "paper"`` (:func:`eta`), where :math:`T` = ``config.steps``
    and :math:`\eta_{\max}` = ``config.peak_lr``. A fresh Adam each call. The
    model is updated in place in train mode (its mode is restored). Mini-batches
    come from ``sampler(batch_size, np.random.default_rng(seed))``, the latent
    noise from ``torch.Generator().manual_seed(seed)`` and dropout from the
    global generator forked and seeded with ``seed``: the same weights, config
    and seed give the same weights after.
    """
    check_nonnegative("lam", lam)
    check_nonnegative("gamma", gamma)
    config = EquilibrationConfig() if config is None else config
    if not isinstance(config, EquilibrationConfig):
        raise ValueError(f"config={config!r} is not valid; it must be an EquilibrationConfig or None")
    lam, gamma = float(lam), float(gamma)
    dev = _device_of(model)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.peak_lr)
    objective = np.empty(config.steps)
    lrs = np.array([config.lr_at(s) for s in range(config.steps)])
    terms = np.empty((config.steps, 3))
    was = model.training
    model.train()
    fork_devices = [dev.index if dev.index is not None else 0] if dev.type == "cuda" else []
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(config.seed)
            for s in progress(range(config.steps), desc=f"equilibrate lam={lam:g} gamma={gamma:g}",
                              enabled=show_progress):
                xb, yb = sampler(config.batch_size, rng)
                xb, yb = xb.to(dev, torch.float32), yb.to(dev)
                r, d, c = hamiltonian_loss(model, xb, yb, lam, gamma, n_z=config.n_z, generator=gen)
                loss = r + lam * d + gamma * c
                for group in opt.param_groups:
                    group["lr"] = lrs[s]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                terms[s] = torch.stack([r.detach(), d.detach(), c.detach()]).cpu().numpy()
                objective[s] = terms[s, 0] + lam * terms[s, 1] + gamma * terms[s, 2]
    finally:
        model.train(was)
    if not np.all(np.isfinite(objective)):
        warnings.warn(f"equilibrate at lam={lam:g}, gamma={gamma:g}: the objective became non-finite "
                      "(lower peak_lr?)", RuntimeWarning, stacklevel=2)
    return EquilibrationLog(objective=objective, lr=lrs, lam=lam, gamma=gamma,
                            wall_time=time.perf_counter() - t0, terms=terms)


def train_equilibrium(
    model: FreeEnergyModel, sampler: Sampler, lam: float, gamma: float, config: EquilibrationConfig | None = None,
    *, show_progress: bool | None = None,
) -> EquilibrationLog:
    r"""Train from scratch to the equilibrium surface at :math:`(\lambda, \gamma)`, Eq. (8) of [Gao & Chaudhari 2020].

    .. math::

        \theta_{\lambda,\gamma} \approx \operatorname*{argmin}_\theta R + \lambda D + \gamma C

    The same loop as :func:`equilibrate`; the default configuration is the one
    meant for training from scratch: cosine annealing from ``peak_lr = 1e-3``
    (Appendix A) over 2000 updates.
    """
    if config is None:
        config = EquilibrationConfig(steps=2000, peak_lr=1e-3, schedule="cosine")
    return equilibrate(model, sampler, lam, gamma, config, show_progress=show_progress)
