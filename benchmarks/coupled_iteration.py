"""Wall time of one coupled outer iteration against plain SGD for the same steps on the same model.

One outer iteration of Eq. (12) is: the SGD trajectory on the interpolated task with the length
bookkeeping (12c), the ground cost of every pair in every block (12b), and the proximal coupling
update (12a). Plain SGD runs the same number of steps, batch size and model on the source task.
Runs alternate; each printed ratio is measured side by side in this one run. The goal for the
whole iteration is at most 1.6 on the CPU. Measured on the 2-core machine, two runs of 7 repeats:
3.1 and 2.9 (the trajectory alone 2.35 and 2.2: its per-step line element, the chords and the loss
curves on 256 interpolated samples each; the ground cost 0.6, its affine first layer applied once
per image and each block's pairs formed by broadcasting). The code before the last pass over the
trajectory, the sampler, the ground cost and the proximal update gave 3.7 and 4.1 in the same session.

    python benchmarks/coupled_iteration.py
    python benchmarks/coupled_iteration.py --model small-cnn --steps 100
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctd_lib.data import make_task
from ctd_lib.geometry.sgd import SGDConfig, minibatch_sampler, train_sgd
from ctd_lib.models import make_model
from ctd_lib.task_distance.coupled import (
    CoupledConfig,
    initial_coupling,
    pair_kl_cost,
    proximal_update,
    run_trajectory,
    train_source_model,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--n-per-class", type=int, default=40)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=20)
    ap.add_argument("--length-checkpoints", type=int, default=10, help="chords of the length and the ground cost")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    src = make_task("mnist10k-0-4", n_per_class=args.n_per_class, seed=0)
    tgt = make_task("mnist10k-5-9", n_per_class=args.n_per_class, seed=0)
    build = lambda: make_model(args.model, in_shape=(1, 28, 28), num_classes=10, seed=0)  # noqa: E731
    source = train_source_model(src, build, steps=100, lr=0.05, batch_size=args.batch_size)
    cfg = CoupledConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                        length_checkpoints=args.length_checkpoints)
    plan = initial_coupling(source, src, tgt, cfg)
    rows = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        train_sgd(build(), minibatch_sampler(src.x, src.y, args.batch_size), SGDConfig(steps=args.steps, lr=cfg.lr),
                  track_length=False, show_progress=False)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        model, log = run_trajectory(source, src, tgt, cfg, kind=cfg.interpolation, plan=plan, seed=r)
        traj = time.perf_counter() - t0
        costs = pair_kl_cost(model, log.checkpoints, log.checkpoint_tau, src.x, tgt.x, plan,
                             buffers=log.checkpoint_buffers)
        cost = time.perf_counter() - t0 - traj
        proximal_update(plan, costs, cfg.prox_lam, cfg.reg)
        total = time.perf_counter() - t0
        rows.append((plain, traj, cost, total - traj - cost, total))
    a = np.asarray(rows)
    n_pairs = sum(len(i) * len(j) for i, j in zip(plan.assignment.source_blocks, plan.assignment.target_blocks))
    print(f"# {args.model}, {len(src.y)} + {len(tgt.y)} images, {args.steps} steps, batch {args.batch_size}, "
          f"{plan.assignment.n_blocks} blocks ({n_pairs} pairs), {args.length_checkpoints} chords, "
          f"{torch.get_num_threads()} threads")
    print(f"{'':22s} {'plain SGD':>10s} {'trajectory':>11s} {'ground cost':>12s} {'proximal':>9s} {'iteration':>10s}")
    print(f"{'median seconds':22s} " + " ".join(f"{v:10.3f}" for v in np.median(a, axis=0)))
    ratios = a[:, 4] / a[:, 0]
    print(f"iteration / plain SGD: median {np.median(ratios):.2f} (per repeat {np.round(ratios, 2).tolist()}); "
          f"trajectory alone / plain: {np.median(a[:, 1] / a[:, 0]):.2f}")


if __name__ == "__main__":
    main()
