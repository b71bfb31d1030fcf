r"""Couplings between two empirical distributions: exact, entropic, proximal, block-diagonal.

A coupling of :math:`\hat p_s = \sum_i a_i \delta_{x_s^i}` and
:math:`\hat p_t = \sum_j b_j \delta_{x_t^j}` is a matrix in the transport polytope

.. math::

    \Pi(a, b) = \{\Gamma \in \mathbb{R}_+^{N_s \times N_t} :
    \Gamma 1_{N_t} = a,\ \Gamma^\top 1_{N_s} = b\}.

This module computes

* the exact optimal coupling (network simplex, :func:`exact_plan`), Eq. (36) of
  [Gao & Chaudhari 2020];
* the entropic coupling of Eq. (6) of [Gao & Chaudhari 2021]
  (Sinkhorn, :func:`entropic_plan`);
* the proximal coupling update of Eq. (12a) (:func:`proximal_plan`);
* block-diagonal couplings, Sec. 3.4 (:func:`match_blocks`, :func:`block_plan`),
  with a batched log-domain Sinkhorn in torch over all blocks at once;
* exact :math:`W_2` between point clouds and its closed form between
  Gaussians (:func:`wasserstein2`, :func:`bures_w2`).

Every iterative solver measures the marginal error of what it returns and
warns (``RuntimeWarning``) and records ``converged=False`` when it is above
tolerance or the plan holds NaN; none returns garbage without a word.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import ot
import scipy.linalg
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp, wrightomega, xlogy

from ._checks import check_choice, check_nonnegative, check_positive

__all__ = [
    "BLOCK_METHODS",
    "BlockAssignment",
    "BlockPlan",
    "OTPlan",
    "batched_sinkhorn",
    "block_plan",
    "bures_w2",
    "check_cost",
    "check_weights",
    "entropic_plan",
    "exact_plan",
    "feature_cost",
    "match_blocks",
    "pixel_cost",
    "proximal_gap",
    "proximal_plan",
    "uniform",
    "wasserstein2",
]

BLOCK_METHODS = ("centroid", "sorted", "random")
SINKHORN_METHODS = ("auto", "sinkhorn", "sinkhorn_log")
PROXIMAL_SOLVERS = ("dual", "gcg")
LOG_DOMAIN_BELOW = 1e-2  # "auto" uses the log-domain Sinkhorn when eps < this x median(C)


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


# ----------------------------------------------------------------------------
# Dense couplings
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OTPlan:
    """A coupling and how it was computed.

    Attributes
    ----------
    plan : (Ns, Nt) float64 coupling :math:`\\Gamma`.
    cost : :math:`\\langle \\Gamma, C\\rangle`, the transport cost (without regularisers).
    reg : the absolute entropic :math:`\\epsilon` used (0 for the exact plan).
    method : "emd", "sinkhorn", "sinkhorn_log" or "proximal".
    converged : False when the solver stopped early or the marginals are off (a warning was emitted).
    n_iter : iterations of the solver (outer iterations for the proximal solvers; -1 for the
        network simplex, which does not report them).
    marginal_err : :math:`\\max(\\|\\Gamma 1 - a\\|_\\infty, \\|\\Gamma^\\top 1 - b\\|_\\infty)`.
    log : solver-specific details (POT's log, the proximal optimality gap, ...).
    """

    plan: np.ndarray
    cost: float
    reg: float
    method: str
    converged: bool
    n_iter: int
    marginal_err: float
    log: dict = field(default_factory=dict, compare=False, repr=False)


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def exact_plan(a, b, C, *, max_iter: int = 10_000_000) -> OTPlan:
    r"""The exact optimal coupling, by the network simplex (``ot.emd``).

    .. math::

        \Gamma^* = \mathop{\mathrm{argmin}}_{\Gamma \in \Pi(a, b)} \langle \Gamma, C \rangle,

    Eq. (36) of [Gao & Chaudhari 2020] (Eq. (6) of [Gao & Chaudhari 2021] without the entropy).

    Parameters
    ----------
    a : (Ns,) source weights (None: uniform).
    b : (Nt,) target weights (None: uniform).
    C : (Ns, Nt) ground cost.
    max_iter : network-simplex iterations before giving up (then ``converged=False``, with a warning).

    >>> r = exact_plan(None, None, np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> r.plan, r.cost, r.converged
    (array([[0.5, 0. ],
           [0. , 0.5]]), 0.0, True)
    """
    C = check_cost(C)
    a, b = check_weights("a", a, C.shape[0]), check_weights("b", b, C.shape[1])
    check_positive("max_iter", max_iter, integer=True)
    with warnings.catch_warnings(record=True) as caught:  # POT's own warnings are re-issued as ours
        warnings.simplefilter("always")
        P, log = ot.emd(a, b, C, numItermax=max_iter, log=True)
    converged = log.get("result_code", 1) == 1 and not log.get("warning")
    err = _marginal_error(P, a, b)
    if not converged:
        why = log.get("warning") or (str(caught[0].message) if caught else f"result code {log.get('result_code')}")
        _warn(f"exact_plan: the network simplex did not reach optimality ({why}); marginal error {err:.2e}")
    return OTPlan(plan=P, cost=float((P * C).sum()), reg=0.0, method="emd", converged=bool(converged),
                  n_iter=-1, marginal_err=err, log=log)


def _sinkhorn(a, b, C, eps, method, max_iter, tol):
    # POT's numerical warnings are kept in the log; the caller judges the result and warns once
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        warnings.simplefilter("always")
        P, log = ot.sinkhorn(a, b, C, eps, method=method, numItermax=max_iter, stopThr=tol, log=True, warn=False)
    log["pot_warnings"] = [str(w.message) for w in caught]
    return np.asarray(P, dtype=np.float64), log


def entropic_plan(a, b, C, *, reg: float, relative: bool = True, method: str = "auto",
                  max_iter: int = 5000, tol: float = 1e-9, marginal_tol: float = 1e-6) -> OTPlan:
    r"""The entropic coupling of Eq. (6) of [Gao & Chaudhari 2021], by Sinkhorn's algorithm.

    .. math::

        \Gamma^* = \mathop{\mathrm{argmin}}_{\Gamma \in \Pi(a, b)}
        \langle \Gamma, C \rangle - \epsilon H(\Gamma), \qquad
        H(\Gamma) = -\textstyle\sum_{ij} \Gamma_{ij} \log \Gamma_{ij},

    where :math:`\epsilon` is ``reg`` times the median of :math:`C` when
    ``relative`` (the default: the same ``reg`` means the same blur whatever the
    scale of the cost), else ``reg`` itself.

    Parameters
    ----------
    a : (Ns,) source weights (None: uniform).
    b : (Nt,) target weights (None: uniform).
    C : (Ns, Nt) ground cost.
    reg : the entropic regulariser, > 0.
    relative : whether ``reg`` is in units of median(C).
    method : "sinkhorn" (scaling form), "sinkhorn_log" (log domain) or "auto":
        the log domain when :math:`\epsilon < 10^{-2}\,\mathrm{median}|C|`, where the
        scaling form under- and overflows (at :math:`10^{-3}` of the cost it
        returns a plan of total mass ~0 without raising).
    max_iter, tol : Sinkhorn's iteration budget and stopping threshold (``ot.sinkhorn``'s
        ``numItermax`` and ``stopThr``, the 2-norm of the marginal violation).
    marginal_tol : largest max-abs marginal error accepted as converged.

    Returns
    -------
    :class:`OTPlan`; ``converged`` is False, with a ``RuntimeWarning``, when the
    marginal error exceeds ``marginal_tol`` or the plan holds NaN.

    >>> r = entropic_plan(None, None, np.array([[0.0, 1.0], [1.0, 0.0]]), reg=0.1, relative=False)
    >>> np.round(r.plan, 6), r.method, r.converged
    (array([[4.99977e-01, 2.30000e-05],
           [2.30000e-05, 4.99977e-01]]), 'sinkhorn', True)
    """
    C = check_cost(C)
    a, b = check_weights("a", a, C.shape[0]), check_weights("b", b, C.shape[1])
    check_choice("method", method, SINKHORN_METHODS)
    check_positive("max_iter", max_iter, integer=True)
    check_positive("tol", tol)
    check_positive("marginal_tol", marginal_tol)
    eps = _epsilon(reg, relative, C)
    if method == "auto":
        method = "sinkhorn_log" if eps < LOG_DOMAIN_BELOW * float(np.median(np.abs(C))) else "sinkhorn"
    P, log = _sinkhorn(a, b, C, eps, method, max_iter, tol)
    err = _marginal_error(P, a, b)
    converged = bool(np.isfinite(err) and err <= marginal_tol)
    if not converged:
        what = "a plan with NaN" if not np.isfinite(err) else f"marginal error {err:.2e} > marginal_tol={marginal_tol:g}"
        _warn(f"entropic_plan: {method} did not converge in {log.get('niter', max_iter)} iterations "
              f"(eps={eps:.3g}): {what}")
    cost = float((P * C).sum()) if np.isfinite(err) else float("nan")
    return OTPlan(plan=P, cost=cost, reg=eps, method=method, converged=converged,
                  n_iter=int(log.get("niter", max_iter)), marginal_err=err, log=log)


# ----------------------------------------------------------------------------
# The proximal coupling update, Eq. (12a)
# ----------------------------------------------------------------------------


def _proximal_objective(G, C, prev, eps, lam) -> float:
    return float((G * C).sum() + eps * xlogy(G, G).sum() + lam * ((G - prev) ** 2).sum())


def _proximal_dual(a, b, C, prev, eps, lam, max_iter, tol):
    r"""Maximise the smooth concave dual of Eq. (12a) with L-BFGS.

    For potentials :math:`f, g` the Lagrangian is minimised entrywise by the
    root of :math:`\epsilon \log G + 2\lambda G = z`,
    :math:`z = f_i + g_j - C_{ij} - \epsilon + 2\lambda \Gamma^{k-1}_{ij}`, i.e.
    :math:`G = \tfrac{\epsilon}{2\lambda}\,\omega(z/\epsilon + \log(2\lambda/\epsilon))`
    with :math:`\omega` the Wright omega function; the dual gradient is the
    marginal violation, so L-BFGS's ``gtol`` bounds the marginal error.
    """
    ns, nt = C.shape
    shift = math.log(2 * lam / eps)
    base = -C - eps + 2 * lam * prev

    def primal(f, g):
        return (eps / (2 * lam)) * wrightomega((f[:, None] + g[None, :] + base) / eps + shift)

    def neg_dual(v):
        f, g = v[:ns], v[ns:]
        G = primal(f, g)
        val = (f @ a + g @ b + (G * (C - f[:, None] - g[None, :])).sum()
               + eps * xlogy(G, G).sum() + lam * ((G - prev) ** 2).sum())
        return -val, -np.concatenate([a - G.sum(1), b - G.sum(0)])

    # warm start: the potentials of the lam = 0 problem (a short log-domain Sinkhorn)
    _, log = _sinkhorn(a, b, C, eps, "sinkhorn_log", 200, 1e-6)
    v0 = np.concatenate([eps * np.asarray(log["log_u"]) + eps, eps * np.asarray(log["log_v"])])
    v0 = np.where(np.isfinite(v0), v0, 0.0)
    res = minimize(neg_dual, v0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=max_iter, maxfun=2 * max_iter, maxcor=30, gtol=tol, ftol=0.0))
    return primal(res.x[:ns], res.x[ns:]), int(res.nit), {"message": str(res.message), "dual": -float(res.fun)}


def _proximal_gcg(a, b, C, prev, eps, lam, max_iter, tol):
    """POT's generalised conditional gradient with a log-domain inner Sinkhorn."""
    with warnings.catch_warnings(), np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # inner Sinkhorn warnings; the result is judged by the caller
        G, log = ot.optim.gcg(a, b, C, eps, lam, f=lambda G: ((G - prev) ** 2).sum(), df=lambda G: 2 * (G - prev),
                              G0=prev.copy(), numItermax=max_iter, numInnerItermax=10_000, stopThr=tol,
                              stopThr2=0.0, log=True, method="sinkhorn_log", warn=False)
    return np.asarray(G), len(log["loss"]) - 1, {"loss": log["loss"]}


def proximal_gap(a, b, C, prev, G, *, eps: float, lam: float, max_iter: int = 100_000, tol: float = 1e-12) -> float:
    r"""Frank-Wolfe gap of ``G`` for Eq. (12a): an upper bound on its suboptimality.

    .. math::

        F(G) - F^* \le \langle C + 2\lambda (G - \Gamma^{k-1}), G - S \rangle
        + \epsilon\,(\Omega(G) - \Omega(S)),
        \quad S = \mathrm{Sinkhorn}_\epsilon\big(C + 2\lambda(G - \Gamma^{k-1})\big),

    where :math:`F` is the objective of Eq. (12a), :math:`\Omega(G) = \sum G \log G`,
    by convexity of the proximal term; it is 0 exactly at the optimum.
    Arrays: ``a`` (Ns,), ``b`` (Nt,), ``C``, ``prev``, ``G`` (Ns, Nt). The inner
    Sinkhorn starts from the potentials that best explain ``G``; NaN if it does
    not reach ``tol`` within ``max_iter`` sweeps (then no bound is known).
    """
    Mi = C + 2 * lam * (G - prev)
    S = _warm_log_sinkhorn(a, b, Mi / eps, G, max_iter=max_iter, tol=tol)
    if S is None:
        return float("nan")
    return float((Mi * (G - S)).sum() + eps * (xlogy(G, G).sum() - xlogy(S, S).sum()))


def _warm_log_sinkhorn(a, b, Me, G, *, max_iter: int, tol: float) -> np.ndarray | None:
    """Log-domain Sinkhorn for kernel exp(-Me), started from the potentials that best explain ``G``.

    Near the optimum of Eq. (12a) ``G`` is already (nearly) of the form
    exp(u_i + v_j - Me_ij), so the start is (nearly) the answer. Returns None
    if the marginal error stays above ``tol`` after ``max_iter`` sweeps.
    """
    with np.errstate(divide="ignore"):
        la, lb = np.log(a), np.log(b)
    R = np.log(np.maximum(G, 1e-300)) + Me
    u = R.mean(1) - R.mean() / 2
    v = R.mean(0) - R.mean() / 2
    for it in range(1, max_iter + 1):
        v = lb - logsumexp(u[:, None] - Me, axis=0)
        u = la - logsumexp(v[None, :] - Me, axis=1)
        if it % 10 == 0:
            S = np.exp(u[:, None] + v[None, :] - Me)
            if np.abs(S.sum(0) - b).max() < tol:
                return S
    return None


def proximal_plan(a, b, C, prev, *, reg: float, lam: float, relative: bool = True, solver: str = "dual",
                  max_iter: int = 500, tol: float = 1e-10, marginal_tol: float = 1e-6,
                  gap_tol: float = 1e-6) -> OTPlan:
    r"""The proximal coupling update of Eq. (12a) of [Gao & Chaudhari 2021].

    .. math::

        \Gamma^k = \mathop{\mathrm{argmin}}_{\Gamma \in \Pi(a, b)}
        \langle \Gamma, C^k \rangle - \epsilon H(\Gamma) + \lambda \|\Gamma - \Gamma^{k-1}\|_F^2,

    where :math:`H(\Gamma) = -\sum_{ij}\Gamma_{ij}\log\Gamma_{ij}`, :math:`\epsilon` is ``reg``
    (times median(C) when ``relative``) and :math:`\Gamma^{k-1}` is ``prev``. The
    paper writes the entropy with unit weight; :math:`\epsilon` makes it explicit.
    Entries of a coupling are :math:`O(1/(N_s N_t))`, so :math:`\lambda` must be of
    order :math:`N_s N_t \times` the cost scale for the proximal term to matter.

    ``lam == 0`` is delegated to :func:`entropic_plan` (same :math:`\epsilon`,
    "auto" method), which is then reproduced exactly: POT's ``gcg`` only
    approaches the Sinkhorn plan geometrically (its Armijo line search accepts
    a step of 0.99 towards it per outer iteration) and stops when the cost
    stalls. ``lam -> 0`` approaches that plan continuously.

    Parameters
    ----------
    a : (Ns,) source weights (None: uniform).
    b : (Nt,) target weights (None: uniform).
    C : (Ns, Nt) ground cost :math:`C^k`.
    prev : (Ns, Nt) the previous coupling :math:`\Gamma^{k-1}`; finite, non-negative.
    reg : entropic regulariser, > 0.
    lam : proximal weight :math:`\lambda \ge 0`.
    solver : "dual" (default): L-BFGS on the smooth dual, whose entrywise primal is
        a Wright-omega function (accurate to ``tol`` in the marginals);
        "gcg": ``ot.optim.gcg`` started at ``prev`` with a log-domain inner
        Sinkhorn. POT's line search ignores the entropy term, so for large
        :math:`\lambda` gcg can stall short of the optimum; the gap check below then flags it.
    max_iter, tol : iteration budget; L-BFGS's ``gtol`` (max marginal violation) for
        "dual", the relative change of the loss for "gcg".
    marginal_tol : largest max-abs marginal error accepted as converged.
    gap_tol : largest Frank-Wolfe gap (:func:`proximal_gap`, an upper bound on the
        objective's suboptimality), relative to :math:`|\langle G, C\rangle| + \epsilon|\Omega(G)|`,
        accepted as converged. Its value is in ``log["gap"]``.
    """
    C = check_cost(C)
    ns, nt = C.shape
    a, b = check_weights("a", a, ns), check_weights("b", b, nt)
    if isinstance(prev, OTPlan):
        prev = prev.plan
    try:
        prev = np.asarray(prev, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("prev must be an (ns, nt) array") from None
    if prev.shape != (ns, nt):
        raise ValueError(f"prev has shape {prev.shape}; expected {(ns, nt)} like C")
    if not np.isfinite(prev).all() or (prev < 0).any():
        raise ValueError("prev must have finite non-negative entries")
    check_nonnegative("lam", lam)
    check_choice("solver", solver, PROXIMAL_SOLVERS)
    check_positive("max_iter", max_iter, integer=True)
    check_positive("tol", tol)
    eps = _epsilon(reg, relative, C)
    if lam == 0:
        r = entropic_plan(a, b, C, reg=eps, relative=False, marginal_tol=marginal_tol)
        return OTPlan(plan=r.plan, cost=r.cost, reg=r.reg, method=r.method, converged=r.converged,
                      n_iter=r.n_iter, marginal_err=r.marginal_err, log={**r.log, "delegated": "lam == 0"})
    run = _proximal_dual if solver == "dual" else _proximal_gcg
    G, n_iter, log = run(a, b, C, prev, eps, float(lam), max_iter, tol)
    err = _marginal_error(G, a, b)
    gap = proximal_gap(a, b, C, prev, G, eps=eps, lam=float(lam)) if np.isfinite(err) else float("nan")
    scale = abs(float((G * C).sum())) + eps * abs(float(xlogy(G, G).sum())) if np.isfinite(err) else 1.0
    log.update(gap=gap, solver=solver, objective=_proximal_objective(G, C, prev, eps, lam) if np.isfinite(err) else float("nan"))
    converged = bool(np.isfinite(err) and err <= marginal_tol and gap <= gap_tol * max(scale, 1e-300))
    if not converged:
        _warn(f"proximal_plan ({solver}): not converged after {n_iter} iterations: marginal error {err:.2e} "
              f"(marginal_tol={marginal_tol:g}), optimality gap {gap:.2e} (gap_tol={gap_tol:g} x {scale:.3g})")
    return OTPlan(plan=G, cost=float((G * C).sum()) if np.isfinite(err) else float("nan"), reg=eps,
                  method="proximal", converged=converged, n_iter=n_iter, marginal_err=err, log=log)


# ----------------------------------------------------------------------------
# Block-diagonal couplings, Sec. 3.4
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockAssignment:
    """Source block ``k`` (indices ``source_blocks[k]``) is coupled only to target block ``k``.

    Attributes
    ----------
    source_blocks, target_blocks : lists of n_blocks integer index arrays; each
        side's arrays partition ``range(ns)`` (``range(nt)``).
    method : how the blocks were formed and matched ("centroid", "sorted", "random").
    """

    source_blocks: list
    target_blocks: list
    method: str

    @property
    def n_blocks(self) -> int:
        return len(self.source_blocks)

    @property
    def ns(self) -> int:
        return int(sum(len(i) for i in self.source_blocks))

    @property
    def nt(self) -> int:
        return int(sum(len(j) for j in self.target_blocks))

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        r"""The marginals of every block plan: :math:`a_i = 1/(K |I_k|)` for :math:`i \in I_k`, likewise :math:`b`.

        They are uniform when the block sizes are equal, and otherwise within a
        factor :math:`1 \pm 1/|I_k|` of uniform.
        """
        K = self.n_blocks
        a, b = np.empty(self.ns), np.empty(self.nt)
        for I, J in zip(self.source_blocks, self.target_blocks):
            a[I] = 1.0 / (K * len(I))
            b[J] = 1.0 / (K * len(J))
        return a, b


def _principal_axis(f: np.ndarray) -> np.ndarray:
    """The first principal direction of the rows of ``f`` (a unit (d,) vector)."""
    centred = f - f.mean(0)
    if len(f) < 2 or not np.any(centred):
        return np.eye(f.shape[1])[0]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[0]


def _sizes(n: int, k: int) -> list[int]:
    return [len(s) for s in np.array_split(np.arange(n), k)]


def _co_bisect(fs: np.ndarray, ft: np.ndarray, I: np.ndarray, J: np.ndarray,
               src_sizes: list[int], tgt_sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Recursive balanced bisection of both sides along shared principal axes.

    At each node both sides are centred on their own means, the principal axis
    of the pooled centred points is found, and each side is cut at its own
    quantile along it so that the halves have the sizes asked for; the two
    left halves form one sub-problem, the two right halves the other.
    """
    if len(src_sizes) == 1:
        return [(np.sort(I), np.sort(J))]
    half = len(src_sizes) // 2
    xs, xt = fs[I] - fs[I].mean(0), ft[J] - ft[J].mean(0)
    axis = _principal_axis(np.concatenate([xs, xt]))
    os_, ot_ = np.argsort(xs @ axis, kind="stable"), np.argsort(xt @ axis, kind="stable")
    ns_left, nt_left = sum(src_sizes[:half]), sum(tgt_sizes[:half])
    return (_co_bisect(fs, ft, I[os_[:ns_left]], J[ot_[:nt_left]], src_sizes[:half], tgt_sizes[:half])
            + _co_bisect(fs, ft, I[os_[ns_left:]], J[ot_[nt_left:]], src_sizes[half:], tgt_sizes[half:]))


def match_blocks(fs, ft, block_size: int, *, method: str = "centroid", seed: int = 0) -> BlockAssignment:
    r"""Split both sides into :math:`K = \lceil \max(N_s, N_t)/B \rceil` groups and pair them, Sec. 3.4.

    Block-diagonal couplings restrict :math:`\Gamma` to
    :math:`\bigcup_k I_k \times J_k`; this chooses the blocks. Each side is cut
    into :math:`K` groups whose sizes differ by at most one.

    Parameters
    ----------
    fs : (Ns, d) source features (further dimensions flattened).
    ft : (Nt, d) target features.
    block_size : :math:`B`, the largest group size on the larger side.
    method : "centroid": spatially coherent groups by recursive balanced
        bisection of both sides together: at each node each side is centred on
        its own mean, projected on the principal axis of the pooled centred
        points and cut at its own quantile (a kd-tree whose cells are aligned
        across the sides, insensitive to a shift between them); then source
        and target groups are paired by an exact OT (``ot.emd``, uniform
        weights, hence a permutation) between group centroids;
        "sorted": both sides are projected on the first principal component of
        the pooled features, sorted and cut into consecutive groups, paired in
        order (the optimal 1-D matching is monotone);
        "random": a random partition and pairing, the baseline that shows what
        matching buys.
    seed : seeds the random method.
    """
    fs, ft = _as_2d_float64("fs", fs), _as_2d_float64("ft", ft)
    if fs.shape[1] != ft.shape[1]:
        raise ValueError(f"fs and ft have features of different dimensions: {fs.shape[1]} and {ft.shape[1]}")
    check_positive("block_size", block_size, integer=True)
    check_choice("method", method, BLOCK_METHODS)
    ns, nt = len(fs), len(ft)
    K = math.ceil(max(ns, nt) / block_size)
    if K > min(ns, nt):
        raise ValueError(f"block_size={block_size} gives {K} blocks but the smaller side has only "
                         f"{min(ns, nt)} samples; use block_size >= {math.ceil(max(ns, nt) / min(ns, nt))}")
    if method == "random":
        rng = np.random.default_rng(seed)
        src = [np.sort(s) for s in np.array_split(rng.permutation(ns), K)]
        tgt = [np.sort(s) for s in np.array_split(rng.permutation(nt), K)]
        return BlockAssignment(src, tgt, method)
    if method == "sorted":
        pooled = np.concatenate([fs, ft])
        axis = _principal_axis(pooled)
        src = [np.sort(s) for s in np.array_split(np.argsort(fs @ axis, kind="stable"), K)]
        tgt = [np.sort(s) for s in np.array_split(np.argsort(ft @ axis, kind="stable"), K)]
        return BlockAssignment(src, tgt, method)
    groups = _co_bisect(fs, ft, np.arange(ns), np.arange(nt), _sizes(ns, K), _sizes(nt, K))
    src, tgt = [g[0] for g in groups], [g[1] for g in groups]
    cs = np.stack([fs[i].mean(0) for i in src])
    ct = np.stack([ft[j].mean(0) for j in tgt])
    P = ot.emd(uniform(K), uniform(K), ot.dist(cs, ct, metric="sqeuclidean"))
    perm = P.argmax(1)
    if len(np.unique(perm)) != K:  # a vertex of the Birkhoff polytope is a permutation; guard anyway
        from scipy.optimize import linear_sum_assignment
        perm = linear_sum_assignment(ot.dist(cs, ct, metric="sqeuclidean"))[1]
    return BlockAssignment(src, [tgt[p] for p in perm], method)


@dataclass(frozen=True)
class BlockPlan:
    r"""A block-diagonal coupling: block :math:`k` couples :math:`I_k` to :math:`J_k` with mass :math:`1/K`.

    Attributes
    ----------
    assignment : the blocks.
    plans : per block a (|I_k|, |J_k|) plan with marginals :math:`1/(K|I_k|)` and :math:`1/(K|J_k|)`.
    cost : :math:`\sum_k \langle \Gamma_k, C_{I_k J_k} \rangle`.
    converged : False when any block failed (a warning was emitted).
    marginal_err : max-abs error of the dense plan's marginals against ``assignment.weights()``.
    eps : (K,) the absolute :math:`\epsilon` of each block (zeros for exact blocks).
    solver : "torch", "pot" or "emd".
    n_iter : Sinkhorn iterations (the batched solver's, or the largest over blocks).
    """

    assignment: BlockAssignment
    plans: list
    cost: float
    converged: bool
    marginal_err: float
    eps: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False)
    solver: str = ""
    n_iter: int = 0

    def to_dense(self, ns: int | None = None, nt: int | None = None) -> np.ndarray:
        """The full (ns, nt) coupling, zero off the blocks."""
        ns = self.assignment.ns if ns is None else ns
        nt = self.assignment.nt if nt is None else nt
        if ns != self.assignment.ns or nt != self.assignment.nt:
            raise ValueError(f"ns, nt = {ns}, {nt} do not match the assignment's {self.assignment.ns}, {self.assignment.nt}")
        P = np.zeros((ns, nt))
        for I, J, p in zip(self.assignment.source_blocks, self.assignment.target_blocks, self.plans):
            P[np.ix_(I, J)] = p
        return P

    def sample_pairs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` pairs (i, j) from the coupling: a block by its mass, then a pair by the block's entries."""
        check_positive("n", n, integer=True)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        mass = np.array([p.sum() for p in self.plans])
        blocks = rng.choice(len(self.plans), size=n, p=mass / mass.sum())
        i, j = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        for k in np.unique(blocks):
            where = np.flatnonzero(blocks == k)
            p = self.plans[k].ravel()
            flat = rng.choice(p.size, size=where.size, p=p / p.sum())
            r, c = np.divmod(flat, self.plans[k].shape[1])
            i[where] = self.assignment.source_blocks[k][r]
            j[where] = self.assignment.target_blocks[k][c]
        return i, j


def _block_costs(costs, assignment: BlockAssignment) -> list[np.ndarray]:
    I_all, J_all = assignment.source_blocks, assignment.target_blocks
    if callable(costs):
        out = [check_cost(costs(I, J), len(I), len(J)) for I, J in zip(I_all, J_all)]
    elif isinstance(costs, (list, tuple)):
        if len(costs) != assignment.n_blocks:
            raise ValueError(f"C has {len(costs)} block costs; the assignment has {assignment.n_blocks} blocks")
        out = [check_cost(c, len(I), len(J)) for c, I, J in zip(costs, I_all, J_all)]
    else:
        C = check_cost(costs, assignment.ns, assignment.nt)
        out = [C[np.ix_(I, J)] for I, J in zip(I_all, J_all)]
    return out


def batched_sinkhorn(C: torch.Tensor, eps: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, *,
                     max_iter: int, tol: float, check_every: int = 10,
                     absorb_at: float = 30.0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    r"""Sinkhorn on a batch of padded problems at once, log-stabilised (Schmitzer 2019).

    Each problem :math:`k` solves Eq. (6) with cost :math:`C_k`, weights
    :math:`a_k, b_k` and :math:`\epsilon_k`. Its plan is kept as

    .. math::

        \Gamma_{ij} = u_i\, \exp\big(\alpha_i + \beta_j - C_{ij}/\epsilon\big)\, v_j,

    with log-potentials :math:`\alpha, \beta` and scalings :math:`u, v` updated
    by the Sinkhorn sweep :math:`v = b / (K^\top u)`, :math:`u = a / (K v)` as
    batched matrix products. Whenever a scaling leaves
    :math:`[e^{-30}, e^{30}]` it is absorbed into the potentials
    (:math:`\alpha \mathrel{+}= \log u`, :math:`u = 1`) and the kernel recomputed,
    so nothing under- or overflows however small :math:`\epsilon` is: the iterates are those
    of the log-domain Sinkhorn (``ot.sinkhorn(method="sinkhorn_log")``), at the
    price of matrix products instead of log-sum-exps. The potentials start
    from one log-domain sweep, so that every row of the kernel sums to :math:`a_i`.

    Padded rows (columns) have weight 0 and :math:`\log a = -\infty`: their
    potentials stay :math:`-\infty` and their plan entries exactly 0, never NaN
    (every problem has at least one real row and column, and padded costs are
    finite). Problems leave the batch as soon as they converge, so the work is
    the sum of the iterations each one needs, not K times the slowest.

    Parameters
    ----------
    C : (K, B, B') costs, finite everywhere (padding included).
    eps : (K,) one :math:`\epsilon` per problem.
    log_a : (K, B) log source weights (-inf on padding); log_b : (K, B') likewise.
    max_iter, tol : a problem is done when its max-abs column-marginal error
        (rows are exact after each sweep), checked every ``check_every`` sweeps, is below ``tol``.

    Returns
    -------
    plans (K, B, B'); (K,) sweeps each problem ran; (K,) final marginal errors (NaN if the plan is not finite).
    """
    K = C.shape[0]
    tiny = torch.finfo(C.dtype).tiny
    M = -C / eps[:, None, None]
    alpha = torch.where(torch.isfinite(log_a), torch.zeros_like(log_a), log_a)
    beta = log_b - torch.logsumexp(M + alpha[:, :, None], dim=1)
    alpha = log_a - torch.logsumexp(M + beta[:, None, :], dim=2)
    a, b = log_a.exp(), log_b.exp()
    real_a, real_b = a > 0, b > 0
    P = torch.zeros_like(C)
    n_iter = np.full(K, max_iter)
    errs = np.full(K, np.nan)
    idx = torch.arange(K, device=C.device)
    Kt = torch.exp(M + alpha[:, :, None] + beta[:, None, :])
    u, v = torch.ones_like(a), torch.ones_like(b)
    for it in range(1, max_iter + 1):
        v = b / torch.bmm(Kt.transpose(1, 2), u[:, :, None])[:, :, 0].clamp_min(tiny)
        u = a / torch.bmm(Kt, v[:, :, None])[:, :, 0].clamp_min(tiny)
        big = math.exp(absorb_at)
        if bool((u > big).any() or (v > big).any() or (torch.where(real_a, u, 1.0) < 1 / big).any()
                or (torch.where(real_b, v, 1.0) < 1 / big).any()):
            alpha, beta = alpha + torch.log(u), beta + torch.log(v)  # -inf stays -inf on padding
            u, v = torch.ones_like(u), torch.ones_like(v)
            Kt = torch.exp(M + alpha[:, :, None] + beta[:, None, :])
        if it % check_every and it < max_iter:
            continue
        col = v * torch.bmm(Kt.transpose(1, 2), u[:, :, None])[:, :, 0]
        err = (col - b).abs().amax(dim=1)
        done = (err < tol) if it < max_iter else torch.ones_like(err, dtype=torch.bool)
        if bool(done.any()):
            k = idx[done]
            P[k] = u[done][:, :, None] * Kt[done] * v[done][:, None, :]
            n_iter[k.cpu().numpy()] = it
            errs[k.cpu().numpy()] = err[done].cpu().numpy()
            keep = ~done
            idx, M, Kt, u, v, a, b, alpha, beta = (t[keep] for t in (idx, M, Kt, u, v, a, b, alpha, beta))
            real_a, real_b = real_a[keep], real_b[keep]
            if idx.numel() == 0:
                break
    errs = np.where(np.isfinite(P.reshape(K, -1).cpu().numpy()).all(1), errs, np.nan)
    return P, n_iter, errs


def _batched_log_sinkhorn(C, eps, log_a, log_b, *, max_iter, tol, check_every=10):
    """Plain log-domain Sinkhorn (two log-sum-exps per sweep), the fallback for :func:`batched_sinkhorn`."""
    M = -C / eps[:, None, None]
    b = log_b.exp()
    u = torch.where(torch.isfinite(log_a), torch.zeros_like(log_a), log_a)
    for it in range(1, max_iter + 1):
        v = log_b - torch.logsumexp(M + u[:, :, None], dim=1)
        u = log_a - torch.logsumexp(M + v[:, None, :], dim=2)
        if it % check_every == 0 or it == max_iter:
            err = (torch.logsumexp(M + u[:, :, None], dim=1) + v).exp().sub(b).abs().amax(1)
            if bool((err < tol).all()):
                break
    P = torch.exp(M + u[:, :, None] + v[:, None, :])
    errs = err.cpu().numpy()
    return P, np.full(C.shape[0], it), np.where(np.isfinite(P.reshape(C.shape[0], -1).cpu().numpy()).all(1), errs, np.nan)


def block_plan(costs, assignment: BlockAssignment, *, reg: float | None = None, relative: bool = True,
               solver: str = "torch", exact: bool = False, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float64, max_iter: int = 2000, tol: float = 1e-9,
               marginal_tol: float = 1e-6) -> BlockPlan:
    r"""Couplings of every block, Sec. 3.4 of [Gao & Chaudhari 2021]: Eq. (6) restricted to :math:`I_k \times J_k`.

    .. math::

        \Gamma_k = \mathop{\mathrm{argmin}}_{\Gamma \in \Pi(a_k, b_k)}
        \langle \Gamma, C_{I_k J_k} \rangle - \epsilon_k H(\Gamma),
        \qquad a_k = \tfrac{1}{K|I_k|} 1_{|I_k|},\ b_k = \tfrac{1}{K|J_k|} 1_{|J_k|},

    where :math:`\epsilon_k` is ``reg`` times the median of :math:`C_{I_k J_k}`
    when ``relative`` (per block, identically in both solvers), else ``reg``.

    Parameters
    ----------
    costs : the full (Ns, Nt) cost, a callable ``(I_k, J_k) -> (|I_k|, |J_k|)`` cost, or a
        list of the K block costs.
    assignment : from :func:`match_blocks`.
    reg, relative : the entropic regulariser (required unless ``exact``).
    solver : "torch": a batched log-stabilised Sinkhorn (:func:`batched_sinkhorn`) over
        all blocks at once, padded to (K, Bmax, Bmax'); "pot": a loop of
        :func:`entropic_plan` per block (the reference path).
    exact : solve each block exactly with ``ot.emd`` instead (``reg`` ignored).
    device, dtype : for the torch solver (float32 is only sensible on a GPU).
    max_iter, tol : Sinkhorn's budget and stopping threshold, per block for "pot".
    marginal_tol : largest per-block max-abs marginal error (in units of the block's own
        unit mass) accepted as converged; beyond it a ``RuntimeWarning``.
    """
    if not isinstance(assignment, BlockAssignment):
        raise ValueError(f"assignment must be a BlockAssignment; got {type(assignment).__name__}")
    check_choice("solver", solver, ("torch", "pot"))
    check_positive("max_iter", max_iter, integer=True)
    check_positive("tol", tol)
    if not exact:
        if reg is None:
            raise ValueError("reg is required for entropic block couplings (or pass exact=True)")
        check_positive("reg", reg)
    Cs = _block_costs(costs, assignment)
    K = assignment.n_blocks
    if exact:
        res = [exact_plan(None, None, c) for c in Cs]
        solver, eps, n_iter = "emd", np.zeros(K), 0
    elif solver == "pot":
        with warnings.catch_warnings():  # one summary warning below instead of one per block
            warnings.simplefilter("ignore", RuntimeWarning)
            res = [entropic_plan(None, None, c, reg=reg, relative=relative, max_iter=max_iter, tol=tol,
                                 marginal_tol=marginal_tol) for c in Cs]
        eps, n_iter = np.array([r.reg for r in res]), max(r.n_iter for r in res)
        bad = [r.marginal_err for r in res if not r.converged]
        if bad:
            _warn(f"block_plan: entropic_plan did not converge in {max_iter} iterations for {len(bad)} of {K} "
                  f"blocks: worst marginal error {np.nanmax(bad) if np.isfinite(bad).any() else float('nan'):.2e} "
                  f"> marginal_tol={marginal_tol:g}")
    if exact or solver == "pot":
        plans = [r.plan / K for r in res]
        errs, ok = np.array([r.marginal_err for r in res]), all(r.converged for r in res)
        cost = float(sum(r.cost for r in res)) / K
    else:
        eps = _block_eps(Cs, reg, relative)
        plans, n_iter, errs, cost = _torch_blocks(Cs, eps, device, dtype, max_iter, tol, marginal_tol)
        plans = [p / K for p in plans]
        ok = bool((errs <= marginal_tol).all())
    err = float(errs.max() / K) if np.isfinite(errs).all() else float("nan")
    return BlockPlan(assignment=assignment, plans=plans, cost=cost, converged=bool(ok and np.isfinite(err)),
                     marginal_err=err, eps=eps, solver=solver, n_iter=int(n_iter))


def _block_eps(Cs: list[np.ndarray], reg: float, relative: bool) -> np.ndarray:
    """:func:`_epsilon` of every block, the medians taken in one call per block shape."""
    if not relative:
        return np.full(len(Cs), float(reg))
    med = np.empty(len(Cs))
    shapes: dict[tuple, list[int]] = {}
    for k, c in enumerate(Cs):
        shapes.setdefault(c.shape, []).append(k)
    for ks in shapes.values():
        med[ks] = np.median(np.stack([Cs[k] for k in ks]).reshape(len(ks), -1), axis=1)
    if not (med > 0).all():
        raise ValueError(f"reg is relative to each block's median cost, and {int((med <= 0).sum())} blocks "
                         "have median <= 0; pass relative=False with an absolute reg")
    return float(reg) * med


def _torch_blocks(Cs, eps, device, dtype, max_iter, tol, marginal_tol):
    K = len(Cs)
    rows, cols = np.array([c.shape[0] for c in Cs]), np.array([c.shape[1] for c in Cs])
    B, Bt = rows.max(), cols.max()
    C = np.zeros((K, B, Bt))
    log_a, log_b = np.full((K, B), -np.inf), np.full((K, Bt), -np.inf)
    for k, c in enumerate(Cs):
        C[k, : c.shape[0], : c.shape[1]] = c
        log_a[k, : c.shape[0]] = -np.log(c.shape[0])
        log_b[k, : c.shape[1]] = -np.log(c.shape[1])
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    Ct, et, lat, lbt = t(C), t(eps), t(log_a), t(log_b)
    P, n_iter, errs = batched_sinkhorn(Ct, et, lat, lbt, max_iter=max_iter, tol=tol)
    bad = np.flatnonzero(~np.isfinite(errs))
    if bad.size:  # never seen; the plain log-domain iteration cannot overflow
        k = torch.as_tensor(bad, device=Ct.device)
        P[k], n_iter[bad], errs[bad] = _batched_log_sinkhorn(Ct[k], et[k], lat[k], lbt[k], max_iter=max_iter, tol=tol)
    P = P.cpu().double().numpy()
    a, b = np.exp(log_a), np.exp(log_b)
    with np.errstate(invalid="ignore"):
        errs = np.maximum(np.abs(P.sum(2) - a).max(1), np.abs(P.sum(1) - b).max(1))
    errs[~np.isfinite(P).reshape(K, -1).all(1)] = np.nan
    plans = [P[k, : rows[k], : cols[k]].copy() for k in range(K)]
    bad = ~(errs <= marginal_tol)
    if bad.any():
        worst = np.nanmax(errs) if np.isfinite(errs).any() else float("nan")
        _warn(f"block_plan: the batched Sinkhorn did not converge in {int(n_iter.max())} iterations for {bad.sum()} "
              f"of {K} blocks: worst marginal error {worst:.2e}{' (NaN in some plans)' if np.isnan(errs).any() else ''}"
              f" > marginal_tol={marginal_tol:g}")
    return plans, int(n_iter.max()), errs, float((P * C).sum()) / K


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
