r"""The proximal coupling update of Eq. (12a) of [Gao & Chaudhari 2021]:

.. math::

    \Gamma^k = \operatorname*{argmin}_{\Gamma\in\Pi(a, b)} \langle\Gamma, C^k\rangle
    - \epsilon H(\Gamma) + \lambda_k\|\Gamma - \Gamma^{k-1}\|_F^2,

solved in the dual or by generalised conditional gradient (POT), with its optimality gap."""
from __future__ import annotations

import math
import warnings

import numpy as np
import ot
from scipy.optimize import minimize
from scipy.special import wrightomega, xlogy

from .._util.checks import check_choice, check_nonnegative, check_positive
from .costs import _epsilon, _marginal_error, _warn, check_cost, check_weights
from .dense import OTPlan, entropic_plan

__all__ = ["PROXIMAL_SOLVERS", "proximal_gap", "proximal_plan"]

PROXIMAL_SOLVERS = ("dual", "gcg")


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
    log_u, log_v = _log_sinkhorn_potentials(a, b, C / eps, max_iter=200, tol=1e-6)
    v0 = np.concatenate([eps * log_u + eps, eps * log_v])
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


def proximal_gap(a, b, C, prev, G, *, eps: float, lam: float, max_iter: int = 5_000, tol: float = 1e-12,
                 target: float = 0.0) -> float:
    r"""An upper bound on the suboptimality of ``G`` for Eq. (12a), certified by weak duality.

    With :math:`M = C + 2\lambda (G - \Gamma^{k-1})` and the linearised objective
    :math:`L(S) = \langle M, S\rangle + \epsilon\,\Omega(S)`, :math:`\Omega(S) = \sum S \log S`,
    convexity of the proximal term gives :math:`F(G) - F(S) \le L(G) - L(S)` for every
    :math:`S \in \Pi(a, b)` (:math:`F` the objective of Eq. 12a), and for any potentials
    :math:`u, v` the entropic dual bounds :math:`\min_{\Pi(a,b)} L` from below:

    .. math::

        F(G) - F^* \;\le\; L(G) - \epsilon\Big(\langle u, a\rangle + \langle v, b\rangle
        + \textstyle\sum_i a_i - \sum_{ij} e^{u_i + v_j - M_{ij}/\epsilon}\Big).

    The right side is a valid bound at every iterate of a log-domain Sinkhorn on :math:`M/\epsilon`
    (started from the potentials that best explain ``G``), and it tends to the Frank-Wolfe gap
    :math:`L(G) - \min_\Pi L` (0 exactly at the optimum) as the Sinkhorn converges. The sweeps stop
    once the bound is at most ``target``, once the marginal error is below ``tol`` (the bound is then as
    tight as it gets), or after ``max_iter``; the smallest bound seen is returned. Arrays: ``a`` (Ns,),
    ``b`` (Nt,), ``C``, ``prev``, ``G`` (Ns, Nt). Inf only if no bound was finite (``max_iter`` < 10, or overflow).

    An earlier version took :math:`S` = the Sinkhorn plan itself, a bound only once the Sinkhorn had
    converged to ``tol``; on ill-conditioned blocks it used every sweep and then gave NaN.
    """
    Mi = C + 2 * lam * (G - prev)
    Me = Mi / eps
    primal = float((Mi * G).sum() + eps * xlogy(G, G).sum())
    best = math.inf
    for S, u, v in _warm_log_sinkhorn(a, b, Me, G, max_iter=max_iter):
        with np.errstate(invalid="ignore"):  # u_i = -inf where a_i = 0 contributes 0
            dual = eps * (float(np.where(a > 0, a * u, 0.0).sum()) + float(np.where(b > 0, b * v, 0.0).sum())
                          + float(a.sum()) - float(S.sum()))
        bound = primal - dual
        if np.isfinite(bound):
            best = min(best, bound)
        if best <= target or np.abs(S.sum(0) - b).max() < tol:
            break
    return best


def _lse(X: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp along ``axis`` (scipy's, without its per-call overhead, which dominated the small blocks)."""
    m = X.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):  # a row of -inf is -inf, as scipy's
        return (np.log(np.exp(X - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def _log_sinkhorn_potentials(a, b, Me, *, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-scalings ``(u, v)`` of the entropic plan exp(u_i + v_j - Me_ij) in Pi(a, b), from u = v = 0.

    The iteration of POT's ``ot.sinkhorn(..., method="sinkhorn_log")`` (v, then u; every tenth sweep
    from the first, stop once ||column sums - b||_2 < ``tol``), with :func:`_lse` in place of scipy's
    logsumexp, whose per-call overhead made this warm start most of the proximal update's time on
    small blocks. The potentials agree with POT's to round-off (tested).
    """
    with np.errstate(divide="ignore"):
        la, lb = np.log(a), np.log(b)
    u, v = np.zeros(Me.shape[0]), np.zeros(Me.shape[1])
    for it in range(max_iter):
        v = lb - _lse(u[:, None] - Me, axis=0)
        u = la - _lse(v[None, :] - Me, axis=1)
        if it % 10 == 0 and np.linalg.norm(np.exp(u[:, None] + v[None, :] - Me).sum(0) - b) < tol:
            break
    return u, v


def _warm_log_sinkhorn(a, b, Me, G, *, max_iter: int):
    """Log-domain Sinkhorn for kernel exp(-Me), started from the potentials that best explain ``G``.

    Near the optimum of Eq. (12a) ``G`` is already (nearly) of the form exp(u_i + v_j - Me_ij), so the
    start is (nearly) the answer. Yields ``(S, u, v)``, S = exp(u_i + v_j - Me_ij) with exact row sums,
    every 10 sweeps, ``max_iter`` sweeps at most.
    """
    with np.errstate(divide="ignore"):
        la, lb = np.log(a), np.log(b)
    R = np.log(np.maximum(G, 1e-300)) + Me
    u = R.mean(1) - R.mean() / 2
    v = R.mean(0) - R.mean() / 2
    for it in range(1, max_iter + 1):
        v = lb - _lse(u[:, None] - Me, axis=0)
        u = la - _lse(v[None, :] - Me, axis=1)
        if it % 10 == 0:
            yield np.exp(u[:, None] + v[None, :] - Me), u, v


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
        accepted as converged. The bound, refined until it meets that tolerance or cannot be refined
        further, is in ``log["gap"]``.
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
    scale = abs(float((G * C).sum())) + eps * abs(float(xlogy(G, G).sum())) if np.isfinite(err) else 1.0
    gap = proximal_gap(a, b, C, prev, G, eps=eps, lam=float(lam), target=gap_tol * max(scale, 1e-300)) \
        if np.isfinite(err) else float("nan")
    log.update(gap=gap, solver=solver, objective=_proximal_objective(G, C, prev, eps, lam) if np.isfinite(err) else float("nan"))
    converged = bool(np.isfinite(err) and err <= marginal_tol and gap <= gap_tol * max(scale, 1e-300))
    if not converged:
        _warn(f"proximal_plan ({solver}): not converged after {n_iter} iterations: marginal error {err:.2e} "
              f"(marginal_tol={marginal_tol:g}), optimality gap {gap:.2e} (gap_tol={gap_tol:g} x {scale:.3g})")
    return OTPlan(plan=G, cost=float((G * C).sum()) if np.isfinite(err) else float("nan"), reg=eps,
                  method="proximal", converged=converged, n_iter=n_iter, marginal_err=err, log=log)
