r"""The exact Fisher information matrix of a small classifier, and the check that
:math:`2\,\mathrm{KL}[p_w, p_{w+dw}] \approx dw^\top g(w)\, dw` (Eq. 2 of [Gao & Chaudhari 2021])."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from .length import flat_parameters, kl_categorical, set_flat_parameters

__all__ = ["FimKlCheck", "fim_kl_check", "fisher_matrix"]

# ----------------------------------------------------------------------------
# The exact Fisher information matrix of a small network
# ----------------------------------------------------------------------------


def fisher_matrix(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    r"""Exact FIM of :math:`p_w(y\mid x)` with :math:`x` uniform on the rows of ``x``.

    .. math::

        g(w) = \frac1N \sum_{n=1}^N \sum_{c=1}^C p_w(c\mid x_n)\,
               \nabla_w \log p_w(c\mid x_n)\, \nabla_w \log p_w(c\mid x_n)^\top

    (Eq. 3 of [Gao & Chaudhari 2021] for the factorisation
    :math:`p(x)p_w(y\mid x)`), with the expectation over :math:`y` summed
    exactly rather than sampled. Per-sample gradients come from
    ``torch.func.vmap(jacrev(...))``; the model must be in a mode without
    batch coupling (``eval()`` for batch norm).

    Parameters
    ----------
    model : a network whose trainable parameters define :math:`w` (P of them).
    x : (N, ...) inputs.

    Returns
    -------
    (P, P) symmetric positive semi-definite tensor, in the parameters' dtype.
    Memory is O(N C P + P^2): meant for networks of a few thousand parameters.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def log_probs(p, xi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return torch.log_softmax(out, dim=1).squeeze(0)

    jac = vmap(jacrev(log_probs), in_dims=(None, 0))(params, x)  # dict name -> (N, C, *shape)
    J = torch.cat([jac[n].reshape(x.shape[0], jac[n].shape[1], -1) for n in names], dim=2)  # (N, C, P)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)  # (N, C)
    weighted = J * probs.sqrt().unsqueeze(2)
    Jw = weighted.reshape(-1, J.shape[2])
    return Jw.T @ Jw / x.shape[0]


@dataclass(frozen=True)
class FimKlCheck:
    """2 KL against the FIM quadratic form for steps ``t * direction``.

    ``ratio[i] = 2 E_x KL[p_w, p_{w + t_i d}] / (t_i^2 d^T g(w) d)``; it tends to 1
    as ``t -> 0`` (Eq. 2), until round-off takes over.
    """

    step_sizes: np.ndarray
    two_kl: np.ndarray
    quadratic: np.ndarray
    ratio: np.ndarray


def fim_kl_check(
    model: nn.Module, x: torch.Tensor, direction: torch.Tensor, step_sizes: Sequence[float], fim: torch.Tensor | None = None
) -> FimKlCheck:
    r"""Compare :math:`2\,\mathbb{E}_x \mathrm{KL}` with :math:`dw^\top g\, dw` along a direction (Eq. 2).

    Parameters
    ----------
    model : the network at :math:`w` (left unchanged on return), in ``eval()`` mode.
    x : (N, ...) inputs defining :math:`\mathbb{E}_x`.
    direction : (P,) flat direction :math:`d`, in the layout of :func:`flat_parameters`.
    step_sizes : the :math:`t` values; :math:`dw = t d`.
    fim : the (P, P) FIM if already computed (else :func:`fisher_matrix`).
    """
    w0 = flat_parameters(model)
    if direction.shape != w0.shape:
        raise ValueError(f"direction must have shape {tuple(w0.shape)}; got {tuple(direction.shape)}")
    steps = np.asarray(list(step_sizes), dtype=float)
    if steps.size == 0 or not np.all(steps > 0):
        raise ValueError(f"step_sizes must be a non-empty list of positive numbers; got {list(step_sizes)}")
    g = fisher_matrix(model, x) if fim is None else fim
    direction = direction.to(w0.dtype)
    dgd = float(direction @ g @ direction)
    with torch.no_grad():
        base = model(x)
    two_kl, quad = [], []
    try:
        for t in steps:
            set_flat_parameters(model, w0 + float(t) * direction)
            with torch.no_grad():
                moved = model(x)
            two_kl.append(2.0 * float(kl_categorical(base, moved).mean()))
            quad.append(float(t) ** 2 * dgd)
    finally:
        set_flat_parameters(model, w0)
    two_kl_a, quad_a = np.asarray(two_kl), np.asarray(quad)
    return FimKlCheck(steps, two_kl_a, quad_a, two_kl_a / quad_a)
