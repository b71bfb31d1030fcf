r"""Wasserstein distances: the exact :math:`W_2` between two weighted point clouds, and its
closed form between Gaussians (the Bures metric), used for the W2 baselines of Fig. 7c-d of
[Gao & Chaudhari 2021]."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

from .costs import check_weights, pixel_cost
from .dense import exact_plan

__all__ = ["bures_w2", "wasserstein2"]

# ----------------------------------------------------------------------------
# Wasserstein distances
# ----------------------------------------------------------------------------


def wasserstein2(xs, xt, *, a=None, b=None, features: Callable | None = None,
                 max_iter: int = 10_000_000) -> float:
    r"""The exact 2-Wasserstein distance between two weighted point clouds.

    .. math::

        W_2(\hat p_s, \hat p_t) = \Big(\min_{\Gamma \in \Pi(a, b)}
        \textstyle\sum_{ij} \Gamma_{ij} \|x_s^i - x_t^j\|_2^2\Big)^{1/2},

    Sec. 2.2 of [Gao & Chaudhari 2021], by the network simplex (``ot.emd2``).

    Parameters
    ----------
    xs : (Ns, ...) inputs (flattened), or features; xt : (Nt, ...) likewise.
    a, b : (Ns,), (Nt,) weights (None: uniform).
    features : optional map applied to ``xs`` and ``xt`` first (e.g. a frozen
        feature extractor); precomputed features can be passed as ``xs``, ``xt``.

    >>> wasserstein2(np.array([[0.0], [1.0]]), np.array([[3.0], [4.0]]))
    3.0
    """
    if features is not None:
        with torch.no_grad():
            xs, xt = features(xs), features(xt)
    C = pixel_cost(xs, xt)
    a, b = check_weights("a", a, C.shape[0]), check_weights("b", b, C.shape[1])
    r = exact_plan(a, b, C, max_iter=max_iter)
    return math.sqrt(max(r.cost, 0.0))


def bures_w2(m1, S1, m2, S2) -> float:
    r"""Closed-form :math:`W_2` between Gaussians :math:`N(m_1, \Sigma_1)` and :math:`N(m_2, \Sigma_2)`.

    .. math::

        W_2^2 = \|m_1 - m_2\|^2 + \mathrm{tr}\Big(\Sigma_1 + \Sigma_2
        - 2\big(\Sigma_2^{1/2} \Sigma_1 \Sigma_2^{1/2}\big)^{1/2}\Big)

    Parameters
    ----------
    m1, m2 : (d,) means; S1, S2 : (d, d) symmetric positive semi-definite covariances.

    Returns the distance :math:`W_2` (not squared); the trace term is clamped at
    0 against round-off.

    >>> bures_w2(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2))
    5.196152422706632
    """
    m1, m2 = np.atleast_1d(np.asarray(m1, dtype=np.float64)), np.atleast_1d(np.asarray(m2, dtype=np.float64))
    S1, S2 = np.atleast_2d(np.asarray(S1, dtype=np.float64)), np.atleast_2d(np.asarray(S2, dtype=np.float64))
    d = m1.shape[0]
    for name, m in (("m1", m1), ("m2", m2)):
        if m.shape != (d,) or not np.isfinite(m).all():
            raise ValueError(f"{name} must be a finite ({d},) mean; got shape {m.shape}")
    for name, S in (("S1", S1), ("S2", S2)):
        if S.shape != (d, d) or not np.isfinite(S).all():
            raise ValueError(f"{name} must be a finite ({d}, {d}) covariance; got shape {S.shape}")
    r2 = np.real(scipy.linalg.sqrtm(S2))
    cross = np.real(scipy.linalg.sqrtm(r2 @ S1 @ r2))
    w2sq = float(((m1 - m2) ** 2).sum()) + max(float(np.trace(S1 + S2 - 2 * cross)), 0.0)
    return math.sqrt(w2sq)
