r"""Dense couplings: the exact optimal coupling (network simplex; Eq. 36 of [Gao & Chaudhari 2020])
and the entropic coupling of Eq. (6) of [Gao & Chaudhari 2021] (Sinkhorn, with an automatic
switch to the log-domain solver for small :math:`\epsilon`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import ot

from .._util.checks import check_choice, check_positive
from .costs import _epsilon, _marginal_error, _warn, check_cost, check_weights

__all__ = ["LOG_DOMAIN_BELOW", "OTPlan", "SINKHORN_METHODS", "entropic_plan", "exact_plan"]

SINKHORN_METHODS = ("auto", "sinkhorn", "sinkhorn_log")


LOG_DOMAIN_BELOW = 1e-2  # "auto" uses the log-domain Sinkhorn when eps < this x median(C)


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
