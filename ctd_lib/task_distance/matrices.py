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

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._util.io import atomic_write_text, jsonable
from .._util.progress import progress

__all__ = ["DistanceMatrix", "distance_matrix", "plot_distance_matrix"]


@dataclass(frozen=True)
class DistanceMatrix:
    """Distances between ordered task pairs: rows are sources, columns targets."""

    method: str
    names: list
    values: np.ndarray  # (n, n); the diagonal is 0 unless computed (include_diagonal)
    extras: dict = field(default_factory=dict)  # (source, target) -> extra numbers returned by the pair function
    from_cache: int = 0  # how many pairs were read from the cache

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


def distance_matrix(
    names: Sequence[str],
    pair_fn: Callable[[str, str], float | tuple],
    *,
    method: str,
    params: Mapping,
    cache_dir: str | os.PathLike | None = None,
    include_diagonal: bool = False,
    show_progress: bool | None = None,
) -> DistanceMatrix:
    """Evaluate ``pair_fn(source, target)`` for every ordered pair of ``names``.

    Parameters
    ----------
    names : task names (rows and columns, in this order).
    pair_fn : returns the distance, or ``(distance, extras_dict)``.
    method : the method's name (part of the cache key).
    params : every parameter that determines the value (part of the cache key).
    cache_dir : folder of the per-pair cache (None: no cache).
    include_diagonal : also compute ``D[i, i]`` (e.g. the coupled length of a
        task to itself, the baseline a distance should be read against).
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError(f"names must hold at least 2 tasks; got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct; got {names}")
    n = len(names)
    values = np.zeros((n, n))
    extras: dict = {}
    hits = 0
    pairs = [(i, j) for i in range(n) for j in range(n) if include_diagonal or i != j]
    for i, j in progress(pairs, desc=f"{method} matrix"):
        s, t = names[i], names[j]
        key = _key(method, s, t, params)
        path = Path(cache_dir) / method / f"{key}.json" if cache_dir is not None else None
        entry = _load(path, key) if path is not None else None
        if entry is None:
            out = pair_fn(s, t)
            value, extra = (out if isinstance(out, tuple) else (out, {}))
            entry = {"key": key, "method": method, "source": s, "target": t, "value": float(value),
                     "extras": jsonable(extra)}
            if path is not None:
                _store(path, entry)
        else:
            hits += 1
        values[i, j] = entry["value"]
        extras[(s, t)] = entry["extras"]
    return DistanceMatrix(method=method, names=names, values=values, extras=extras, from_cache=hits)


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
