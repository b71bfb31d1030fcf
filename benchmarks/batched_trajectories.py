"""P transfer trajectories stepped together (ctd_lib.task_distance.batched) against the same P one at a time.

Each side runs the same jobs (a source model, a pair of tasks, a coupling, a seed) through the same
trajectory (SGD on the interpolated task, the per-step length on the mini-batch, the polyline's chords and
the loss curves): ``run_trajectory`` once per job, and ``run_trajectories`` on all of them. The two sides
alternate; each ratio is measured side by side in this one run. Time per model-step is wall time over
P x steps. One torch thread unless --threads says otherwise.

    python benchmarks/batched_trajectories.py                            # CPU: chapter 3's MLP and chapter 4's
    python benchmarks/batched_trajectories.py --models paper-cnn --device cuda --batch-size 20   # the paper's CNN

On the CPU the small networks' steps are compute-bound, so the goal there is "no slower" for chapter 3's
784-256-10 MLP and 1.5x for chapter 4's 784-64-10 MLP. On a GPU, where one small model leaves the device
idle, the goal for the six-conv CNN at batch 20 is 35x (under 0.13 ms per model-step).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ctd_lib._util.checks import check_device
from ctd_lib.data import make_task
from ctd_lib.models import make_model
from ctd_lib.task_distance.batched import TrajectoryJob, run_trajectories
from ctd_lib.task_distance.coupled import CoupledConfig, initial_coupling, run_trajectory

ARCHS = {"mlp": ("mlp", {}), "mlp-64": ("mlp", {"hidden": (64,)}), "paper-cnn": ("paper-cnn", {}),
         "small-cnn": ("small-cnn", {})}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "mlp-64"], choices=sorted(ARCHS))
    ap.add_argument("--P", nargs="+", type=int, default=[1, 5, 20, 60], help="trajectories per batch")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(check_device("--device", args.device))
    torch.set_num_threads(args.threads)
    src = make_task("mnist10k-0-4", n_per_class=20, seed=0)
    tgt = make_task("mnist10k-5-9", n_per_class=20, seed=0)
    cfg = CoupledConfig(steps=args.steps, batch_size=args.batch_size, block_size=20, length_checkpoints=5,
                        device=str(device))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {device} ({gpu}), torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.steps} steps "
          f"of batch {args.batch_size} per trajectory, {cfg.length_checkpoints} chords")
    print(f"{'model':10s} {'P':>4s} {'one at a time':>14s} {'batched':>9s} {'ms/model-step':>22s} {'speed-up':>9s}")
    for arch in args.models:
        name, kw = ARCHS[arch]
        base = make_model(name, in_shape=(1, 28, 28), num_classes=10, seed=0, **kw).to(device)
        plan = initial_coupling(base, src, tgt, cfg)
        for P in args.P:
            jobs = [TrajectoryJob(base, src, tgt, "beta-mixup", plan, None, seed) for seed in range(P)]
            run_trajectories(jobs[:1], cfg, show_progress=False)  # warm-up (kernels, allocator)
            one, many = [], []
            for _ in range(args.repeats):
                _sync(device)
                t0 = time.perf_counter()
                for job in jobs:
                    run_trajectory(job.source_model, job.source, job.target, cfg, kind=job.kind, plan=job.plan,
                                   seed=job.seed, show_progress=False)
                _sync(device)
                one.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run_trajectories(jobs, cfg, show_progress=False)
                _sync(device)
                many.append(time.perf_counter() - t0)
            a, b = float(np.median(one)), float(np.median(many))
            steps = P * args.steps
            print(f"{arch:10s} {P:4d} {a:13.2f}s {b:8.2f}s {1e3 * a / steps:10.2f} -> {1e3 * b / steps:7.2f}"
                  f" {a / b:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
