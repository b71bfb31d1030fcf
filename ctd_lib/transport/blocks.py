r"""Block-diagonal couplings, Sec. 3.4 of [Gao & Chaudhari 2021]: the samples are matched into
blocks :math:`I_k \times J_k` once (:func:`match_blocks`), and Eq. (6) is solved inside every
block (:func:`block_plan`), all blocks at once by :func:`~ctd_lib.transport.batched_sinkhorn.batched_sinkhorn`
or block by block with POT as the reference."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import ot
import torch

from .._util.checks import check_choice, check_positive
from .batched_sinkhorn import _batched_log_sinkhorn, batched_sinkhorn
from .costs import _as_2d_float64, _warn, check_cost, uniform
from .dense import entropic_plan, exact_plan

__all__ = ["BLOCK_METHODS", "BlockAssignment", "BlockPlan", "block_plan", "match_blocks"]

BLOCK_METHODS = ("centroid", "sorted", "random")


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

    def _cdfs(self) -> list:
        """Per block, the cumulative distribution of its flattened plan, as ``Generator.choice`` computes it."""
        cached = self.__dict__.get("_cdf_cache")
        if cached is None:
            cached = []
            for plan in self.plans:
                p = plan.ravel() / plan.sum()
                cdf = p.cumsum()
                cdf /= cdf[-1]
                cached.append(cdf)
            object.__setattr__(self, "_cdf_cache", cached)
        return cached

    def _block_probabilities(self) -> np.ndarray:
        """The law of the block of a pair: each block's mass over the total (computed once)."""
        cached = self.__dict__.get("_block_p_cache")
        if cached is None:
            mass = np.array([p.sum() for p in self.plans])
            cached = mass / mass.sum()
            object.__setattr__(self, "_block_p_cache", cached)
        return cached

    def _block_cdf(self) -> np.ndarray:
        """The cumulative law of the block of a pair, as ``Generator.choice`` computes it from
        :meth:`_block_probabilities` (computed once)."""
        cached = self.__dict__.get("_block_cdf_cache")
        if cached is None:
            cached = self._block_probabilities().cumsum()
            cached /= cached[-1]
            object.__setattr__(self, "_block_cdf_cache", cached)
        return cached

    def sample_pairs(self, n: int, rng: np.random.Generator, *, block_sampling: str = "per_sample"
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` pairs (i, j) from the coupling: a block by its mass, then a pair by the block's entries.

        ``block_sampling="per_sample"`` draws a block for every pair; ``"per_batch"`` draws one block and
        all ``n`` pairs inside it (Sec. 3.4 of [Gao & Chaudhari 2021]: the mini-batch at one instant comes
        from one block). Both have the coupling as the law of a single pair.
        """
        check_positive("n", n, integer=True)
        check_choice("block_sampling", block_sampling, ("per_sample", "per_batch"))
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        cdfs = self._cdfs()
        size = 1 if block_sampling == "per_batch" else n
        # rng.choice(n_blocks, size, p=block_p) exactly (the same draws), with its cdf computed once
        blocks = self._block_cdf().searchsorted(rng.random(size), side="right")
        if block_sampling == "per_batch":  # one block: its pairs straight from its cdf
            k = int(blocks[0])
            flat = cdfs[k].searchsorted(rng.random(n), side="right")
            r, c = np.divmod(flat, self.plans[k].shape[1])
            return self.assignment.source_blocks[k][r].astype(np.int64), \
                self.assignment.target_blocks[k][c].astype(np.int64)
        # Per block in increasing order, rng.choice(p.size, size, p=p / p.sum()) for the pairs drawn in it: the
        # same draws as one rng.random(n) handed out block by block, so a pair's uniform is u[rank of the pair].
        order = np.argsort(blocks, kind="stable")
        u = np.empty(n)
        u[order] = rng.random(n)
        table, rows, cols, widths = self._sampling_table()
        if n * table.shape[1] <= _TABLE_ENTRIES:  # searchsorted(side="right") = how many cdf entries are <= u
            flat = (table[blocks] <= u[:, None]).sum(axis=1)
        else:
            flat = np.empty(n, dtype=np.int64)
            for k in np.unique(blocks):
                where = np.flatnonzero(blocks == k)
                flat[where] = cdfs[k].searchsorted(u[where], side="right")
        r, c = np.divmod(flat, widths[blocks])
        return rows[blocks, r], cols[blocks, c]

    def _sampling_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The blocks' cdfs as rows of one array padded with +inf, their source and target indices as rows
        padded with -1, and their plans' widths (computed once): every pair of a per-sample draw is then
        found at once."""
        cached = self.__dict__.get("_table_cache")
        if cached is None:
            cdfs, A = self._cdfs(), self.assignment
            table = np.full((len(cdfs), max(c.size for c in cdfs)), np.inf)
            rows = np.full((len(cdfs), max(len(b) for b in A.source_blocks)), -1, dtype=np.int64)
            cols = np.full((len(cdfs), max(len(b) for b in A.target_blocks)), -1, dtype=np.int64)
            for k, (cdf, I, J) in enumerate(zip(cdfs, A.source_blocks, A.target_blocks)):
                table[k, : cdf.size], rows[k, : len(I)], cols[k, : len(J)] = cdf, I, J
            cached = (table, rows, cols, np.array([p.shape[1] for p in self.plans], dtype=np.int64))
            object.__setattr__(self, "_table_cache", cached)
        return cached


#: the largest (pairs x block entries) comparison table of a per-sample draw; larger draws loop over blocks
_TABLE_ENTRIES = 1 << 22


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
    reg_value = float(reg) if reg is not None else 0.0  # reg is required (checked above) unless exact
    if exact:
        res = [exact_plan(None, None, c) for c in Cs]
        solver, eps, n_iter = "emd", np.zeros(K), 0
    elif solver == "pot":
        with warnings.catch_warnings():  # one summary warning below instead of one per block
            warnings.simplefilter("ignore", RuntimeWarning)
            res = [entropic_plan(None, None, c, reg=reg_value, relative=relative, max_iter=max_iter, tol=tol,
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
        eps = _block_eps(Cs, reg_value, relative)
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
