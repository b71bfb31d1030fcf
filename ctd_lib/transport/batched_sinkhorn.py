r"""Log-stabilised Sinkhorn (Eq. 6 of [Gao & Chaudhari 2021]) on a batch of padded problems at once,
in torch: the solver behind :func:`~ctd_lib.transport.blocks.block_plan`."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["batched_sinkhorn"]


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
