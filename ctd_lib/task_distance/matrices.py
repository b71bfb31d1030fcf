"""Distance matrices over ordered task pairs, cached per pair on disk, and their heatmaps.

A task distance is asymmetric: entry ``D[i, j]`` is the distance from source
task ``names[i]`` (row) to target task ``names[j]`` (column), as in Figs. 2-3
of [Gao & Chaudhari 2021]. Each pair's value is computed by a caller-given
function and cached as a small JSON file under a key of everything that
determines it (method, the two task names and the parameters); an interrupted
run resumes from the cache. Cache entries are written atomically and carry a
checksum: an entry that does not load or verify is recomputed, never trusted.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pickle
import platform
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._util.checks import check_positive
from .._util.io import atomic_write_text, jsonable
from .._util.progress import progress

__all__ = ["DistanceMatrix", "PairFailed", "distance_matrix", "plot_distance_matrix", "run_batch", "run_pair", "runtime"]


@dataclass(frozen=True)
class DistanceMatrix:
    """Distances between ordered task pairs: rows are sources, columns targets."""

    method: str
    names: list
    values: np.ndarray  # (n, n); the diagonal is 0 unless computed (include_diagonal)
    extras: dict = field(default_factory=dict)  # (source, target) -> extra numbers returned by the pair function
    from_cache: int = 0  # how many pairs were read from the cache
    cached: bool = False  # whether the pairs were written to a cache folder

    def off_diagonal(self) -> np.ndarray:
        n = len(self.names)
        return self.values[~np.eye(n, dtype=bool)]


def _key(method: str, source: str, target: str, params: Mapping) -> str:
    text = json.dumps({"method": method, "source": source, "target": target, "params": jsonable(dict(params))},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _load(path: Path, key: str) -> dict | None:
    """A verified cache entry, or None (with a warning) if it is missing, unreadable or corrupt."""
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
        stored = payload.pop("sha256")
        if stored != _digest(payload) or payload.get("key") != key:
            raise ValueError("checksum or key mismatch")
        return payload
    except Exception as exc:  # noqa: BLE001 - any failure means the entry is not trusted
        warnings.warn(f"cache entry {path} could not be verified ({exc}); recomputing it", RuntimeWarning, stacklevel=3)
        return None


def _store(path: Path, payload: dict) -> None:
    payload = dict(payload)
    payload["sha256"] = _digest(payload)
    atomic_write_text(path, json.dumps(payload, sort_keys=True))


class PairFailed(RuntimeError):
    """Some pairs of a matrix failed; the others were computed (and cached).

    ``failures`` maps ``(source, target)`` to the exception's text; ``partial`` is the matrix with
    NaN where a pair failed.
    """

    def __init__(self, method: str, failures: dict, partial: DistanceMatrix):
        listed = "; ".join(f"{s} -> {t}: {msg}" for (s, t), msg in failures.items())
        super().__init__(f"{method}: {len(failures)} pair(s) failed ({listed}); the other pairs are done"
                         + (" and cached" if partial.cached else ""))
        self.failures = failures
        self.partial = partial


def runtime() -> dict:
    """What a pair's number depends on besides its parameters: the torch version, the default dtype
    and the intra-op thread count of the process that computed it."""
    return {"torch": torch.__version__, "dtype": str(torch.get_default_dtype()), "threads": torch.get_num_threads()}


def run_pair(pair_fn: Callable, source: str, target: str, threads: int) -> tuple[float, dict, dict]:
    """Compute one pair in whatever process runs it (a worker of an executor, or this one).

    Torch is pinned to ``threads`` intra-op threads for the call and restored afterwards, so a pair
    gives the same number on a worker as in the client. Returns ``(value, extras, provenance)``;
    the provenance names the host, process and :func:`runtime`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = pair_fn(source, target)
        value, extra = out if isinstance(out, tuple) else (out, {})
        prov = {**runtime(), "host": platform.node(), "pid": os.getpid()}
        return float(value), jsonable(extra), prov
    finally:
        torch.set_num_threads(before)


def run_batch(pair_fn, pairs: Sequence[tuple], threads: int) -> list:
    """Compute several pairs in one call of ``pair_fn.for_pairs(pairs)`` (e.g. trajectories stepped together by
    the batched engine), pinned to ``threads`` as :func:`run_pair`. Returns one ``(value, extras, provenance)``
    per pair, in order."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outs = pair_fn.for_pairs(list(pairs))
        if len(outs) != len(pairs):
            raise RuntimeError(f"for_pairs returned {len(outs)} results for {len(pairs)} pairs")
        prov = {**runtime(), "host": platform.node(), "pid": os.getpid(), "batched": len(pairs)}
        done = []
        for out in outs:
            value, extra = out if isinstance(out, tuple) else (out, {})
            done.append((float(value), jsonable(extra), prov))
        return done
    finally:
        torch.set_num_threads(before)


def _check_executor(executor, pair_fn) -> None:
    if not isinstance(executor, concurrent.futures.Executor):
        raise ValueError(f"executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor, or a Dask "
                         f"Client's get_executor()) or None; got {type(executor).__name__}")
    try:
        pickle.dumps(pair_fn)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the job cannot leave this process
        raise ValueError(f"pair_fn must be picklable to run on an executor (a module-level function or an object "
                         f"of a module-level class holding plain data, not a closure or lambda): {exc}") from exc


def distance_matrix(
    names: Sequence[str],
    pair_fn: Callable[[str, str], float | tuple],
    *,
    method: str,
    params: Mapping,
    cache_dir: str | os.PathLike | None = None,
    include_diagonal: bool = False,
    show_progress: bool | None = None,
    executor: concurrent.futures.Executor | None = None,
    threads: int | None = None,
    batch_size: int = 1,
) -> DistanceMatrix:
    """Evaluate ``pair_fn(source, target)`` for every ordered pair of ``names``.

    Parameters
    ----------
    names : task names (rows and columns, in this order).
    pair_fn : returns the distance, or ``(distance, extras_dict)``. With an executor it must be
        picklable; if it has a method ``for_pair(source, target)``, that smaller job (holding only
        what one pair needs, e.g. one source model's weights) is what is shipped.
    method : the method's name (part of the cache key).
    params : every parameter that determines the value (part of the cache key, with the torch
        version and default dtype of :func:`runtime`).
    cache_dir : folder of the per-pair cache (None: no cache). Only this process writes it, one
        atomic, checksummed entry per pair as its result arrives, so workers need no shared
        filesystem and an interrupted run resumes from what was finished.
    include_diagonal : also compute ``D[i, i]`` (e.g. the coupled length of a
        task to itself, the baseline a distance should be read against).
    executor : None computes the pairs here, one after the other. Any
        :class:`concurrent.futures.Executor` fans the missing pairs out (a
        ``ProcessPoolExecutor``, or a Dask ``Client.get_executor()``, which runs them on a local
        cluster or on SLURM/PBS/Kubernetes through ``dask-jobqueue``). Cached pairs are never
        submitted. A pair that fails (after the executor's own retries) is reported by name in
        :class:`PairFailed` once every other pair is done and cached.
    threads : torch intra-op threads for each pair (default: this process's current count), so a
        pair computed on a worker equals the same pair computed here.
    batch_size : pairs computed together by ``pair_fn.for_pairs(pairs)`` (e.g. the batched trajectory
        engine); 1 computes them one by one. A batch is one job: on an executor, it goes to one worker.
        Needs a ``for_pairs`` method when above 1.
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError(f"names must hold at least 2 tasks; got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct; got {names}")
    if executor is not None:
        _check_executor(executor, pair_fn)
    threads = torch.get_num_threads() if threads is None else threads
    check_positive("threads", threads, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    if batch_size > 1 and not hasattr(pair_fn, "for_pairs"):
        raise ValueError(f"batch_size={batch_size} needs a pair_fn with a for_pairs(pairs) method; "
                         f"{type(pair_fn).__name__} has none (use batch_size=1)")
    n = len(names)
    values = np.zeros((n, n))
    extras: dict = {}
    key_params = {**dict(params), "runtime": {k: v for k, v in runtime().items() if k != "threads"}, "threads": threads}
    pairs = [(i, j) for i in range(n) for j in range(n) if include_diagonal or i != j]

    def path_of(s: str, t: str) -> Path | None:
        return Path(cache_dir) / method / f"{_key(method, s, t, key_params)}.json" if cache_dir is not None else None

    def record(i: int, j: int, value: float, extra: dict, prov: dict | None) -> None:
        s, t = names[i], names[j]
        entry = {"key": _key(method, s, t, key_params), "method": method, "source": s, "target": t,
                 "value": float(value), "extras": extra}
        if prov is not None:
            entry["provenance"] = prov
        path = path_of(s, t)
        if path is not None:
            _store(path, entry)
        values[i, j] = float(value)
        extras[(s, t)] = extra

    hits, todo = 0, []
    for i, j in pairs:
        path = path_of(names[i], names[j])
        entry = _load(path, _key(method, names[i], names[j], key_params)) if path is not None else None
        if entry is None:
            todo.append((i, j))
        else:
            hits += 1
            values[i, j] = entry["value"]
            extras[(names[i], names[j])] = entry["extras"]
    failures: dict = {}
    groups = [todo[a:a + batch_size] for a in range(0, len(todo), batch_size)]
    if executor is None and batch_size == 1:
        for i, j in progress(todo, desc=f"{method} matrix", enabled=show_progress):
            value, extra, prov = run_pair(pair_fn, names[i], names[j], threads)
            record(i, j, value, extra, prov)
    elif executor is None:
        for group in progress(groups, desc=f"{method} matrix ({batch_size} pairs a batch)", enabled=show_progress):
            for (i, j), (value, extra, prov) in zip(group, run_batch(pair_fn, [(names[i], names[j])
                                                                                for i, j in group], threads)):
                record(i, j, value, extra, prov)
    else:
        failures = _fan_out(executor, pair_fn, names, groups, threads, record, method, show_progress)
    result = DistanceMatrix(method=method, names=names, values=values, extras=extras, from_cache=hits,
                            cached=cache_dir is not None)
    if failures:
        for s, t in failures:
            values[names.index(s), names.index(t)] = np.nan
        raise PairFailed(method, failures, result)
    return result


def _fan_out(executor, pair_fn, names, groups, threads, record, method, show_progress) -> dict:
    """Submit the missing pairs (one job per group of pairs), record each result as it arrives; return the
    failed pairs."""
    here = runtime()
    futures = {}
    for group in groups:
        st = [(names[i], names[j]) for i, j in group]
        if len(group) == 1:
            s, t = st[0]
            job = pair_fn.for_pair(s, t) if hasattr(pair_fn, "for_pair") else pair_fn
            futures[executor.submit(run_pair, job, s, t, threads)] = group
        else:
            futures[executor.submit(run_batch, pair_fn, st, threads)] = group
    failures: dict = {}
    bar = tqdm(total=sum(len(g) for g in groups), desc=f"{method} matrix",
               disable=None if show_progress is None else not show_progress, leave=False)
    try:
        for fut in concurrent.futures.as_completed(futures):
            group = futures[fut]
            try:
                out = fut.result()
                done = [out] if len(group) == 1 else out
                for (i, j), (value, extra, prov) in zip(group, done):
                    mixed = {k: (here[k], prov[k]) for k in ("torch", "dtype") if prov.get(k) != here[k]}
                    if mixed:
                        raise RuntimeError(f"computed on {prov.get('host')} with {mixed} (worker, not client): "
                                           "results of a mixed cluster are not mixed into one matrix")
                    record(i, j, value, extra, prov)
            except Exception as exc:  # noqa: BLE001 - reported by pair, the others go on
                for i, j in group:
                    if (names[i], names[j]) not in failures:
                        failures[(names[i], names[j])] = f"{type(exc).__name__}: {exc}"
            bar.update(len(group))
            bar.set_postfix(done=bar.n - len(failures), running=sum(f.running() for f in futures if not f.done()),
                            failed=len(failures))
    except BaseException:
        for fut in futures:  # an interrupted client: nothing more is started; what was recorded stays cached
            fut.cancel()
        raise
    finally:
        bar.close()
    return failures


def plot_distance_matrix(ax, D: DistanceMatrix, *, title: str | None = None, fmt: str = "{:.2f}", cmap: str = "viridis"):
    """Heatmap in the style of Figs. 2-3: source rows, target columns, values in the cells."""
    im = ax.imshow(D.values, cmap=cmap)
    n = len(D.names)
    ax.set_xticks(range(n), D.names, rotation=45, ha="right")
    ax.set_yticks(range(n), D.names)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    vmax = np.nanmax(D.values) if np.isfinite(D.values).any() else 1.0
    for i in range(n):
        for j in range(n):
            v = D.values[i, j]
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * vmax else "black")
    ax.set_title(title or D.method)
    return im
