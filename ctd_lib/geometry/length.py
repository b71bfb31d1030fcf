r"""Fisher-Rao geometry of a classifier's conditional distribution.

The statistical manifold here is :math:`\{p_w(y \mid x)\}` with inputs drawn
from a data distribution :math:`p(x)`. Its metric is the Fisher information
matrix (FIM), and an infinitesimal step :math:`dw` has squared length

.. math::

    ds^2 = 2\,\mathrm{KL}\big[p_w, p_{w+dw}\big] = dw^\top g(w)\, dw + O(|dw|^3),

Eq. (2) of [Gao & Chaudhari 2021], with
:math:`g(w) = \mathbb{E}_{x}\,\mathbb{E}_{y \sim p_w(\cdot\mid x)}
[\nabla_w \log p_w(y\mid x) \nabla_w \log p_w(y\mid x)^\top]` (Eq. 3 and the
display after it). The length of a trajectory is the integral of
:math:`|ds|` (Eqs. 4-5), which we accumulate step by step without ever forming
:math:`g`.

Two conventions appear in the paper and both are kept, by name:

``"manifold"``
    :math:`\sqrt{\mathbb{E}_x\, 2\mathrm{KL}[p_w(\cdot\mid x), p_{w+dw}(\cdot\mid x)]}`:
    the Riemannian line element of Eq. (2) for the joint model
    :math:`p(x) p_w(y\mid x)`; summing it gives the Fisher-Rao length of Eq. (5).
``"per_sample"``
    :math:`\mathbb{E}_x \sqrt{2\mathrm{KL}[p_w(\cdot\mid x), p_{w+dw}(\cdot\mid x)]}`:
    the expectation outside the root, as printed in Eq. (11) and used for the
    per-pair ground cost of Eq. (12b) and in Theorem 5.

By Jensen's inequality ``per_sample <= manifold`` at every step.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._util.checks import check_choice

__all__ = [
    "CONVENTIONS", "LengthIncrement", "LengthMeter", "TrajectoryLength", "flat_parameters", "kl_categorical",
    "length_increment", "path_length", "set_flat_parameters"
]

CONVENTIONS = ("manifold", "per_sample")


def kl_categorical(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    r"""Per-sample :math:`\mathrm{KL}[p \,\|\, q]` between categorical distributions.

    .. math::

        \mathrm{KL}[p \,\|\, q](x) = \sum_y p(y\mid x)\,\big(\log p(y\mid x) - \log q(y\mid x)\big)

    Parameters
    ----------
    logits_p, logits_q : (N, C) tensors of unnormalised log-probabilities.

    Returns
    -------
    (N,) tensor. Entries can be slightly negative from round-off; callers that
    take a square root use :func:`length_increment`, which clamps and counts them.

    >>> import torch
    >>> kl_categorical(torch.zeros(1, 2), torch.zeros(1, 2)).item()
    0.0
    >>> round(kl_categorical(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]])).item(), 6)
    0.143841
    """
    if logits_p.shape != logits_q.shape or logits_p.dim() != 2:
        raise ValueError(
            f"logits_p and logits_q must be (N, C) tensors of one shape; got "
            f"{tuple(logits_p.shape)} and {tuple(logits_q.shape)}"
        )
    logp = torch.log_softmax(logits_p, dim=1)
    logq = torch.log_softmax(logits_q, dim=1)
    return (logp.exp() * (logp - logq)).sum(dim=1)


@dataclass(frozen=True)
class LengthIncrement:
    """One step's line element under both conventions (see module docstring)."""

    manifold: float
    per_sample: float
    n_clamped: int
    min_raw_kl: float


def length_increment(logits_before: torch.Tensor, logits_after: torch.Tensor) -> LengthIncrement:
    r"""Line element of one step, Eq. (2)/(5) of [Gao & Chaudhari 2021].

    .. math::

        ds_{\mathrm{manifold}} = \sqrt{\tfrac1N \textstyle\sum_n 2\mathrm{KL}_n}, \qquad
        ds_{\mathrm{per\ sample}} = \tfrac1N \textstyle\sum_n \sqrt{2\mathrm{KL}_n}

    where :math:`\mathrm{KL}_n = \mathrm{KL}[p_w(\cdot\mid x_n), p_{w+dw}(\cdot\mid x_n)]`.
    Negative KL values (round-off) are clamped to zero and counted in
    ``n_clamped``; the most negative raw value is kept in ``min_raw_kl``.

    >>> import torch
    >>> inc = length_increment(torch.zeros(4, 3), torch.zeros(4, 3))
    >>> (inc.manifold, inc.per_sample, inc.n_clamped)
    (0.0, 0.0, 0)
    """
    return _increment_from_kl(kl_categorical(logits_before.detach().double(), logits_after.detach().double()))


def _increment_from_kl(kl: torch.Tensor) -> LengthIncrement:
    neg = kl < 0
    n_clamped = int(neg.sum())
    min_raw = min(0.0, float(kl.min())) if kl.numel() else 0.0
    two_kl = 2.0 * kl.clamp_min(0.0)
    return LengthIncrement(
        manifold=math.sqrt(float(two_kl.mean())),
        per_sample=float(two_kl.sqrt().mean()),
        n_clamped=n_clamped,
        min_raw_kl=min_raw,
    )


class LengthMeter:
    """Streaming accumulator of trajectory length, one :meth:`update` per step.

    The hot path only keeps references to the two logit tensors of each step
    (and :math:`|dw|` when given); every ``flush_every`` steps they are reduced
    together, in float64, to the per-step line elements (Eq. 2) under both
    conventions. :meth:`result` gives the Fisher-Rao length, the Euclidean length
    :math:`\\sum |dw|`, running totals, and the count of negative KL values
    clamped to zero (never hidden). Upcasting the logits to float64 before the
    softmax removes most negative values: the KL of two exactly normalised
    distributions is non-negative, and only float64 round-off remains.
    """

    def __init__(self, flush_every: int = 128) -> None:
        self.flush_every = flush_every
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._dw: list[torch.Tensor] = []
        self._man: list[np.ndarray] = []
        self._per: list[np.ndarray] = []
        self._n_clamped = 0
        self._n_evals = 0
        self._min_raw = 0.0
        self._steps = 0

    @property
    def steps(self) -> int:
        return self._steps

    def update(self, logits_before: torch.Tensor, logits_after: torch.Tensor, dw_norm=None) -> None:
        """Record one step: logits of :math:`p_w` and :math:`p_{w+dw}` on the same inputs, optionally :math:`|dw|`."""
        self._pending.append((logits_before.detach(), logits_after.detach()))
        self._steps += 1
        if dw_norm is not None:
            self._dw.append(torch.as_tensor(dw_norm, dtype=torch.float64))
        if len(self._pending) >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        i = 0
        while i < len(pending):  # runs of equal shape are reduced in one batched call
            j = i
            while j < len(pending) and pending[j][0].shape == pending[i][0].shape:
                j += 1
            a = torch.stack([p[0] for p in pending[i:j]]).double()
            b = torch.stack([p[1] for p in pending[i:j]]).double()
            k, n, c = a.shape
            kl = kl_categorical(a.reshape(k * n, c), b.reshape(k * n, c)).reshape(k, n)
            self._n_clamped += int((kl < 0).sum())
            self._n_evals += kl.numel()
            self._min_raw = min(self._min_raw, float(kl.min()))
            two_kl = 2.0 * kl.clamp_min(0.0)
            self._man.append(two_kl.mean(dim=1).sqrt().numpy())
            self._per.append(two_kl.sqrt().mean(dim=1).numpy())
            i = j

    def result(self) -> TrajectoryLength:
        self._flush()
        if self._dw and len(self._dw) != self._steps:
            raise RuntimeError("dw_norm was given for some steps and not others")
        man = np.concatenate(self._man) if self._man else np.zeros(0)
        per = np.concatenate(self._per) if self._per else np.zeros(0)
        dw = torch.stack(self._dw).numpy() if self._dw else np.zeros(len(man))
        cum = {"manifold": np.cumsum(man), "per_sample": np.cumsum(per), "euclidean": np.cumsum(dw)}
        last = lambda a: float(a[-1]) if len(a) else 0.0  # noqa: E731
        return TrajectoryLength(
            manifold=last(cum["manifold"]),
            per_sample=last(cum["per_sample"]),
            euclidean=last(cum["euclidean"]),
            steps=len(man),
            n_clamped=self._n_clamped,
            n_kl_evals=self._n_evals,
            min_raw_kl=self._min_raw,
            cumulative=cum,
        )


@dataclass(frozen=True)
class TrajectoryLength:
    """Length of a weight trajectory.

    Attributes
    ----------
    manifold, per_sample : Fisher-Rao length under each convention (module docstring).
    euclidean : :math:`\\sum_k |w_{k+1} - w_k|_2`, parametrisation-dependent.
    steps : number of increments summed.
    n_clamped : negative KL values (round-off) clamped to zero, out of ``n_kl_evals``.
    min_raw_kl : the most negative raw KL seen (0 if none).
    cumulative : arrays of running totals after each step, by convention name.
    """

    manifold: float
    per_sample: float
    euclidean: float
    steps: int
    n_clamped: int
    n_kl_evals: int
    min_raw_kl: float
    cumulative: dict

    def length(self, convention: str = "manifold") -> float:
        """The Fisher-Rao length under ``convention`` ("manifold" or "per_sample")."""
        check_choice("convention", convention, CONVENTIONS)
        return self.manifold if convention == "manifold" else self.per_sample


# ----------------------------------------------------------------------------
# Flat parameter vectors
# ----------------------------------------------------------------------------


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All trainable parameters of ``model`` concatenated into one detached vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).clone()


def set_flat_parameters(model: nn.Module, vector: torch.Tensor) -> None:
    """Write a flat vector (as from :func:`flat_parameters`) into ``model`` in place."""
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    if vector.numel() != n:
        raise ValueError(f"vector has {vector.numel()} entries; the model has {n} trainable parameters")
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


# ----------------------------------------------------------------------------
# Length of a polyline of checkpoints
# ----------------------------------------------------------------------------


def path_length(model: nn.Module, checkpoints: Sequence[torch.Tensor], x: torch.Tensor) -> TrajectoryLength:
    r"""Fisher-Rao and Euclidean length of the polyline through ``checkpoints``.

    .. math::

        L = \sum_k \sqrt{2\,\mathbb{E}_x \mathrm{KL}[p_{w_k}(\cdot\mid x), p_{w_{k+1}}(\cdot\mid x)]}

    on the fixed inputs ``x`` (and the ``per_sample`` convention beside it), Eq. (5)
    of [Gao & Chaudhari 2021] discretised at the checkpoints. The model is
    evaluated in its current mode (use ``eval()``) and restored afterwards.

    Parameters
    ----------
    model : network whose flat parameter layout matches the checkpoints.
    checkpoints : sequence of (P,) flat vectors, at least two.
    x : (N, ...) evaluation inputs.
    """
    if len(checkpoints) < 2:
        raise ValueError(f"checkpoints must hold at least 2 weight vectors; got {len(checkpoints)}")
    w_orig = flat_parameters(model)
    meter = LengthMeter()
    try:
        set_flat_parameters(model, checkpoints[0])
        with torch.no_grad():
            prev = model(x)
        for a, b in zip(checkpoints[:-1], checkpoints[1:]):
            set_flat_parameters(model, b)
            with torch.no_grad():
                cur = model(x)
            meter.update(prev, cur, dw_norm=float((b - a).norm()))
            prev = cur
    finally:
        set_flat_parameters(model, w_orig)
    return meter.result()
