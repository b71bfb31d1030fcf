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

The functionals live in :mod:`ctd_lib.free_energy.functionals`, equilibration in
:mod:`ctd_lib.free_energy.equilibrate` (each with its examples).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor, nn

from .._util.checks import check_choice, check_in_range, check_positive

__all__ = [
    "DECODERS", "ENCODERS", "FreeEnergyModel", "FreeEnergyModelConfig", "MARGINALS", "PRESETS",
    "make_free_energy_model"
]

MARGINALS = ("standard", "learned")
DECODERS = ("gaussian", "bernoulli")
ENCODERS = ("mlp", "conv")


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
        self.encoder: nn.Module
        self.decoder: nn.Module
        self.classifier: nn.Module
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
