"""A coupled distance matrix in one process against the same matrix on a local Dask cluster.

A 4 x 4 coupled matrix (12 ordered pairs) at chapter 3's CPU scale, computed once in this process
with one torch thread and once on a ``distributed.LocalCluster`` of ``--workers`` processes with one
thread each (started before the clock starts, as a cluster would be). Both runs use no cache, so
every pair is computed. The two matrices must be equal to the bit; the script says so or fails.

It prints the ratio of the two wall times (goal on the 2-core machine with 2 workers: at least 1.7)
and the fan-out's overhead per pair: the wall time of the same 12 jobs, carrying the same data and
weights, whose pair function only returns, divided by the number of pairs. To tell the fan-out
from the machine, it also times one pair alone in a worker process against two pairs at once in two
processes (no Dask): the best speed-up any fan-out can reach on this machine.

    python benchmarks/cluster_matrix.py
    python benchmarks/cluster_matrix.py --workers 4 --steps 100
"""
from __future__ import annotations

import argparse
import concurrent.futures
import platform
import time

import numpy as np
import torch

from ctd_lib.experiments.coupled_distance import StudyConfig, TaskBank, pair_job
from ctd_lib.task_distance import CoupledConfig
from ctd_lib.task_distance.cluster import open_executor
from ctd_lib.task_distance.matrices import distance_matrix, run_pair

TASKS = ["mnist10k-01", "mnist10k-23", "mnist10k-45", "mnist10k-67"]


class ShippedButIdle:
    """The pair job's data and weights, shipped to a worker, with a pair function that only returns."""

    def __init__(self, job):
        self.job = job

    def __call__(self, s: str, t: str) -> float:
        return float(len(self.job.tasks))


class IdleJob:
    """What the fan-out ships for one pair (``for_pair``), without the work."""

    def __init__(self, job):
        self.job = job

    def for_pair(self, s: str, t: str) -> ShippedButIdle:
        return ShippedButIdle(self.job.for_pair(s, t))

    def __call__(self, s: str, t: str) -> float:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200, help="SGD steps of one trajectory (chapter 3: 200)")
    ap.add_argument("--outer-iters", type=int, default=3, help="K (chapter 3: 3)")
    ap.add_argument("--n-per-class", type=int, default=40, help="images per class (chapter 3: 40)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    study = StudyConfig(n_per_class=args.n_per_class)
    coupled = CoupledConfig(steps=args.steps, lr=0.05, batch_size=32, outer_iters=args.outer_iters, tol=0.01,
                            block_size=20, length_checkpoints=10, seed=0)
    bank = TaskBank(study)
    job = pair_job(bank, TASKS, "coupled", "mlp", coupled)  # trains the four source models (not timed)
    n_pairs = len(TASKS) * (len(TASKS) - 1)
    print(f"{platform.node()}: {torch.get_num_threads()} torch thread here, {args.workers} workers x 1 thread; "
          f"{n_pairs} coupled pairs, {args.steps} steps x K={args.outer_iters}, {args.n_per_class} images/class")

    t0 = time.perf_counter()
    here = distance_matrix(TASKS, job, method="coupled-mlp", params={}, show_progress=False)
    t_here = time.perf_counter() - t0
    with open_executor(f"local:{args.workers}") as executor:
        distance_matrix(TASKS, IdleJob(job), method="warm-up", params={}, executor=executor, show_progress=False)
        t0 = time.perf_counter()
        idle = distance_matrix(TASKS, IdleJob(job), method="idle", params={}, executor=executor, show_progress=False)
        t_idle = time.perf_counter() - t0
        t0 = time.perf_counter()
        there = distance_matrix(TASKS, job, method="coupled-mlp", params={}, executor=executor,
                                show_progress=False)
        t_there = time.perf_counter() - t0
    with concurrent.futures.ProcessPoolExecutor(2) as pool:  # the machine's own parallel speed-up
        one = job.for_pair(TASKS[0], TASKS[1])
        pool.submit(run_pair, one, TASKS[0], TASKS[1], 1).result()  # warm-up: imports in the worker
        pool.submit(run_pair, one, TASKS[0], TASKS[1], 1).result()
        t0 = time.perf_counter()
        pool.submit(run_pair, one, TASKS[0], TASKS[1], 1).result()
        t_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        both = [pool.submit(run_pair, one, TASKS[0], TASKS[1], 1) for _ in range(2)]
        for f in both:
            f.result()
        t_two = time.perf_counter() - t0
    assert np.all(idle.off_diagonal() == 2.0), "the idle jobs must have carried both tasks of their pair"
    if not np.array_equal(here.values, there.values):
        raise SystemExit("the cluster's matrix differs from the one-process matrix: the fan-out changed the numbers")
    print(f"one process:   {t_here:7.1f} s   ({t_here / n_pairs:.2f} s per pair)")
    print(f"local cluster: {t_there:7.1f} s   ({t_there / n_pairs:.2f} s per pair)")
    print(f"speed-up (one process / cluster, measured side by side): {t_here / t_there:.2f}x")
    print(f"fan-out overhead (scheduling, shipping tasks and weights): {1e3 * t_idle / n_pairs:.0f} ms per pair")
    print(f"the machine alone: one pair {t_one:.2f} s, two pairs at once in two processes {t_two:.2f} s: "
          f"at most {2 * t_one / t_two:.2f}x from two processes")
    print("matrices equal bitwise: yes")


if __name__ == "__main__":
    main()
