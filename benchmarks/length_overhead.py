"""Wall time of SGD with the Fisher-Rao length bookkeeping over plain SGD.

Same model, same mini-batches, same number of steps; plain and tracked runs
alternate so that drift of the machine's speed falls on both, and each printed
ratio is measured side by side in this one run. The bookkeeping costs one extra
forward pass per step, so the ratio's floor is about 4/3 where forward and
backward passes dominate; the goal is at most 1.4.

    python benchmarks/length_overhead.py                 # MLP and CNN, CPU
    python benchmarks/length_overhead.py --device cuda --batch-size 256
"""
from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from ctd_lib.data import make_task
from ctd_lib.geometry.sgd import SGDConfig, measure_length_overhead, minibatch_sampler
from ctd_lib.models import make_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "small-cnn"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="steps per timed run, one per model")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    steps = args.steps or [400 if m.startswith("mlp") else 60 for m in args.models]
    task = make_task("mnist10k-0-4", split="train", n_per_class=400, seed=0)
    x, y = task.x.to(args.device), task.y.to(args.device)
    sampler = minibatch_sampler(x, y, args.batch_size)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, batch {args.batch_size}")
    print(f"{'model':12s} {'steps':>6s} {'plain ms/step':>14s} {'FR ratio':>9s} {'FR+|dw| ratio':>14s}   per-repeat FR ratios")
    for name, n in zip(args.models, steps):
        def build(name=name):
            return make_model(name, in_shape=tuple(x.shape[1:]), num_classes=task.num_classes, seed=0).to(args.device)

        cfg = SGDConfig(steps=n, lr=0.05)
        fr = measure_length_overhead(build, sampler, cfg, repeats=args.repeats)
        eu = measure_length_overhead(build, sampler, cfg, repeats=args.repeats, track_euclidean=True)
        plain_ms = 1000 * np.median(fr.plain_seconds) / n
        print(f"{name:12s} {n:6d} {plain_ms:14.2f} {fr.median_ratio:9.3f} {eu.median_ratio:14.3f}   {np.round(fr.ratios, 3)}")


if __name__ == "__main__":
    main()
