r"""The rate, distortion and classification functionals, Eqs. (1) and (4) of
[Gao & Chaudhari 2020], the Hamiltonian of Eq. (11) that training minimises, and
:func:`measure`, which evaluates all three with common random numbers.

Examples
--------
>>> t = FreeEnergyTerms(rate=2.0, distortion=10.0, classification=0.5, accuracy=0.9, n=100)
>>> t.free_energy(lam=0.25, gamma=4.0)
6.5
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._util.checks import check_in_range, check_nonnegative, check_positive
from .._util.torch_state import device_of
from .model import FreeEnergyModel

__all__ = ["FreeEnergyTerms", "classification", "distortion", "hamiltonian_loss", "measure", "rate"]

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
    def mix(a: FreeEnergyTerms, b: FreeEnergyTerms, t: float) -> FreeEnergyTerms:
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
    dev = device_of(model)
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
