"""Wall time of all block couplings (Sec. 3.4): the batched torch Sinkhorn against a POT loop over blocks.

N source and N target points (random features of dimension --dim, the target
shifted), cut into blocks of --block-size by ``match_blocks``; the block costs
are computed once and every solver gets the same blocks, the same costs and
the same epsilon per block (reg x the block's median cost). Solvers alternate
within each repeat so drift of the machine's speed falls on all of them, and
the printed ratios are measured side by side in this one run. Three timings:

* torch : ``block_plan(solver="torch")``, one batched log-stabilised Sinkhorn;
* pot   : ``block_plan(solver="pot")``, ``entropic_plan`` per block (the reference path);
* raw   : a bare loop of ``ot.sinkhorn`` calls with the same arguments, no checks
  (the floor of any per-block loop).

The goal is torch at least 5x faster than the POT loop on the CPU.

    python benchmarks/block_sinkhorn.py                      # N=10,000, B=30, reg=0.05, CPU
    python benchmarks/block_sinkhorn.py --reg 0.1 0.02 --repeats 3
    python benchmarks/block_sinkhorn.py --device cuda --dtype float32
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import ot
import torch

from ctd_lib.transport.blocks import block_plan, match_blocks
from ctd_lib.transport.costs import feature_cost


def raw_pot_loop(costs, eps, max_iter, tol):
    plans = []
    for c, e in zip(costs, eps):
        method = "sinkhorn_log" if e < 1e-2 * np.median(np.abs(c)) else "sinkhorn"  # as entropic_plan's "auto"
        plans.append(ot.sinkhorn(ot.unif(c.shape[0]), ot.unif(c.shape[1]), c, e, method=method,
                                 numItermax=max_iter, stopThr=tol, warn=False))
    return plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="samples per side")
    ap.add_argument("--dim", type=int, default=64, help="feature dimension")
    ap.add_argument("--block-size", type=int, default=30)
    ap.add_argument("--reg", type=float, nargs="+", default=[0.05], help="entropic reg, relative to each block's median cost")
    ap.add_argument("--match", default="centroid", choices=["centroid", "sorted", "random"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--max-iter", type=int, default=2000)
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is reported in the table instead
    dtype = getattr(torch, args.dtype)

    rng = np.random.default_rng(args.seed)
    fs = rng.normal(size=(args.n, args.dim))
    ft = rng.normal(size=(args.n, args.dim)) + 0.3
    t0 = time.perf_counter()
    asg = match_blocks(fs, ft, args.block_size, method=args.match)
    t_match = time.perf_counter() - t0
    costs = [feature_cost(fs[i], ft[j]) for i, j in zip(asg.source_blocks, asg.target_blocks)]
    sizes = sorted({c.shape for c in costs})
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, POT {ot.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, {args.dtype}")
    print(f"# N={args.n} per side, dim={args.dim}, B={args.block_size}: {asg.n_blocks} blocks of shapes {sizes}; "
          f"match_blocks({args.match!r}) {t_match:.2f} s (not timed below); tol={args.tol:g}, max_iter={args.max_iter}")
    print(f"{'reg':>6s} {'iters':>6s} {'torch s':>8s} {'pot s':>8s} {'raw s':>8s} {'pot/torch':>9s} "
          f"{'raw/torch':>9s} {'max|torch-pot|':>15s} {'converged':>10s}   per-repeat pot/torch")

    for reg in args.reg:
        def run_torch():
            return block_plan(costs, asg, reg=reg, solver="torch", device=args.device, dtype=dtype,
                              max_iter=args.max_iter, tol=args.tol)

        def run_pot():
            return block_plan(costs, asg, reg=reg, solver="pot", max_iter=args.max_iter, tol=args.tol)

        bt, bp = run_torch(), run_pot()  # warm-up, and the solutions compared below
        eps = bp.eps
        assert np.array_equal(eps, bt.eps), "the two paths must use the same epsilon per block"
        run_raw = lambda: raw_pot_loop(costs, eps, args.max_iter, args.tol)  # noqa: E731
        run_raw()
        times = {"torch": [], "pot": [], "raw": []}
        for _ in range(args.repeats):
            for name, fn in (("torch", run_torch), ("pot", run_pot), ("raw", run_raw)):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        diff = max(float(np.abs(p - q).max()) for p, q in zip(bt.plans, bp.plans)) * asg.n_blocks  # unit-mass blocks
        ratios = np.array(times["pot"]) / np.array(times["torch"])
        print(f"{reg:6g} {bt.n_iter:6d} {med['torch']:8.3f} {med['pot']:8.3f} {med['raw']:8.3f} "
              f"{med['pot'] / med['torch']:9.1f} {med['raw'] / med['torch']:9.1f} {diff:15.2e} "
              f"{str(bt.converged) + '/' + str(bp.converged):>10s}   {np.round(ratios, 1)}")
    print("# iters: the most Sinkhorn sweeps any block needed; max|torch-pot|: max abs difference of the "
          "block plans, each scaled to unit mass")


if __name__ == "__main__":
    main()
