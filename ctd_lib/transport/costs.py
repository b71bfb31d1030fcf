r"""Ground costs and weights of the couplings: squared Euclidean costs between pixels or
features, and the checks every solver applies to its inputs (costs finite and non-negative,
weights non-negative and summing to one)."""
from __future__ import annotations

import warnings

import numpy as np
import ot
import torch

from .._util.checks import check_positive

__all__ = ["check_cost", "check_weights", "feature_cost", "pixel_cost", "uniform"]

# ----------------------------------------------------------------------------
# Costs and weights
# ----------------------------------------------------------------------------


def _as_2d_float64(name: str, x) -> np.ndarray:
    """``x`` (array or tensor, shape (n, ...)) as a float64 (n, d) array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty or has no sample dimension; got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has samples of size 0; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return x


def _sqeuclidean(name_s: str, xs, name_t: str, xt) -> np.ndarray:
    xs, xt = _as_2d_float64(name_s, xs), _as_2d_float64(name_t, xt)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"{name_s} and {name_t} have samples of different sizes: {xs.shape[1]} and {xt.shape[1]}")
    return ot.dist(xs, xt, metric="sqeuclidean")


def pixel_cost(xs, xt) -> np.ndarray:
    r"""Squared Euclidean ground cost between inputs, :math:`C_{ij} = \|x_s^i - x_t^j\|_2^2`.

    The ground metric of the :math:`W_2` coupling in Sec. 2.2 of
    [Gao & Chaudhari 2021].

    Parameters
    ----------
    xs : (Ns, ...) array or tensor; every dimension after the first is flattened.
    xt : (Nt, ...) array or tensor with the same sample size as ``xs``.

    Returns
    -------
    (Ns, Nt) float64 array.

    >>> pixel_cost(np.zeros((1, 2, 2)), np.ones((2, 2, 2)))
    array([[4., 4.]])
    """
    return _sqeuclidean("xs", xs, "xt", xt)


def feature_cost(fs, ft) -> np.ndarray:
    r"""Squared Euclidean cost between features, :math:`C_{ij} = \|\varphi(x_s^i) - \varphi(x_t^j)\|_2^2`.

    The cost that initialises :math:`\Gamma^0` in Sec. 3.4 of [Gao & Chaudhari 2021].

    Parameters
    ----------
    fs : (Ns, d) features of the source samples (further dimensions are flattened).
    ft : (Nt, d) features of the target samples.

    Returns
    -------
    (Ns, Nt) float64 array.
    """
    return _sqeuclidean("fs", fs, "ft", ft)


def check_cost(C, ns: int | None = None, nt: int | None = None) -> np.ndarray:
    """Return ``C`` as a float64 (ns, nt) array; ``ValueError`` naming ``C`` if it is not one.

    The cost need not be non-negative, but it must be finite. ``ns`` and ``nt``
    (when given) are the numbers of source and target samples.
    """
    if isinstance(C, torch.Tensor):
        C = C.detach().cpu().numpy()
    try:
        C = np.asarray(C, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("C must be a 2-D array of numbers") from None
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"C must be a non-empty 2-D (ns, nt) array; got shape {C.shape}")
    if (ns is not None and C.shape[0] != ns) or (nt is not None and C.shape[1] != nt):
        raise ValueError(f"C has shape {C.shape}; expected ({ns}, {nt})")
    if not np.isfinite(C).all():
        raise ValueError("C has NaN or infinite entries")
    return C


def uniform(n: int) -> np.ndarray:
    """The uniform weights :math:`1/n` on ``n`` samples, a float64 (n,) array.

    >>> uniform(4)
    array([0.25, 0.25, 0.25, 0.25])
    """
    check_positive("n", n, integer=True)
    return np.full(n, 1.0 / n)


def check_weights(name: str, w, n: int | None = None, *, atol: float = 1e-8) -> np.ndarray:
    """Return marginal weights ``w`` as a float64 (n,) array, or raise ``ValueError`` naming ``name``.

    Valid weights are 1-D, non-empty, finite, non-negative and sum to 1 within
    ``atol``; ``None`` means uniform on ``n`` samples.
    """
    if w is None:
        if n is None:
            raise ValueError(f"{name} is None and its length is unknown")
        return uniform(n)
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of weights") from None
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of weights; got shape {w.shape}")
    if n is not None and w.size != n:
        raise ValueError(f"{name} has {w.size} weights; expected {n}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must have finite non-negative entries")
    if abs(w.sum() - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1 (within {atol:g}); it sums to {w.sum():.12g}")
    return w


def _marginal_error(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """max(|P 1 - a|_inf, |P^T 1 - b|_inf); NaN if ``P`` has NaN."""
    if not np.isfinite(P).all():
        return float("nan")
    return float(max(np.abs(P.sum(1) - a).max(), np.abs(P.sum(0) - b).max()))


def _epsilon(reg, relative: bool, C: np.ndarray) -> float:
    check_positive("reg", reg)
    if not relative:
        return float(reg)
    med = float(np.median(C))
    if not med > 0:
        raise ValueError(
            f"reg is relative to median(C), which is {med:g}; pass relative=False with an absolute reg"
        )
    return float(reg) * med


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
