"""Chapter 3 without Jupyter: every distance matrix, test and claim, written to the chapter's results file.

    python -m ctd_lib.experiments.task_distances --scale paper --results-dir results        # params/paper/...
    python -m ctd_lib.experiments.task_distances --params params/gpu/03_coupled_distance.yml \\
        --scale paper --results-dir results --device cuda --batch-pairs 20

It runs :func:`~ctd_lib.experiments.coupled_distance.run_chapter` (the notebook's computations in the
notebook's order) and writes ``<results-dir>/<scale>/03_coupled_distance.json`` with
:func:`~ctd_lib.results.write_results`: the same results contract as the notebook (metrics, claims,
parameters, provenance), so the scorecard reads either. Every pair goes through the per-pair cache
(``--cache-dir``): an interrupted run resumes where it stopped. It needs torch, numpy, scipy, PyYAML, POT and
scikit-bio (the Mantel tests), and no Jupyter; ``scripts/gpu_run.sh`` runs it on one GPU with nothing
fetched from a network. Exit status 2 for a bad argument, before anything is computed.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from .._util.threads import pin_threads
from ..results import write_results
from .coupled_distance import CoupledDistanceConfig, claims, metrics, run_chapter

__all__ = ["NOTEBOOK", "build_config", "main"]

NOTEBOOK = "03_coupled_distance"
SCALES = ("cpu", "paper", "smoke")
ROOT = Path(__file__).resolve().parents[2]


def build_config(params: Path | None, scale: str, overrides: dict) -> CoupledDistanceConfig:
    """The chapter's configuration: the CPU defaults, then ``params`` (or ``params/<scale>/...yml`` when it
    exists and ``params`` is None), then ``overrides``. A ValueError names a bad or unknown parameter."""
    import yaml

    if params is None and scale != "cpu":
        default = ROOT / "params" / scale / f"{NOTEBOOK}.yml"
        params = default if default.is_file() else None
    values: dict = {}
    if params is not None:
        if not Path(params).is_file():
            raise ValueError(f"--params: {params} is not a file")
        values = yaml.safe_load(Path(params).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--params: {params} must hold a mapping of parameter names to values")
    known = set(CoupledDistanceConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"--params: {params} has unknown parameter(s) {unknown}; valid: {sorted(known)}")
    return CoupledDistanceConfig(**{**values, **overrides, "scale": scale})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctd_lib.experiments.task_distances", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="cpu", help="the scale the results are filed under")
    ap.add_argument("--params", type=Path, default=None,
                    help=f"a parameter file (default: params/<scale>/{NOTEBOOK}.yml where it exists)")
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--cache-dir", default=".cache/pairs", help="the per-pair cache (resumable)")
    ap.add_argument("--device", default=None, help="'cpu' or 'cuda' (default: the parameter file's)")
    ap.add_argument("--batch-pairs", type=int, default=None,
                    help="trajectories stepped together by the batched engine (default: the parameter file's)")
    ap.add_argument("--scheduler", default="", help="where the pairs run ('' here; see the cluster page)")
    args = ap.parse_args(argv)
    overrides: dict = {"cache_dir": args.cache_dir, "scheduler": args.scheduler}
    if args.device is not None:
        overrides["device"] = args.device
    if args.batch_pairs is not None:
        overrides["batch_pairs"] = args.batch_pairs
    try:
        config = build_config(args.params, args.scale, overrides)
    except ValueError as exc:
        ap.error(str(exc))
    from ..task_distance.cluster import open_executor

    pin_threads(1)
    warnings.filterwarnings("once", category=RuntimeWarning)
    start = time.perf_counter()
    with open_executor(config.scheduler) as executor:
        result = run_chapter(config, executor,
                             report=lambda step: print(f"[{time.perf_counter() - start:7.0f} s] {step}", flush=True))
    chapter_claims = claims(result)
    path = write_results(args.results_dir, NOTEBOOK, scale=args.scale, parameters=config.parameters(),
                         metrics=metrics(result), claims=chapter_claims, wall_time=time.perf_counter() - start,
                         device=config.device)
    for c in chapter_claims:
        print(f"[{'holds' if c.holds else 'FAILS'}] {c.statement}: {c.evidence}")
    print(f"results written to {path} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
