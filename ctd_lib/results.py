"""The results contract shared by every chapter.

Each executed notebook writes ``<results_dir>/<scale>/<notebook>.json``::

    {
      "schema": 1,
      "notebook": "01_fisher_rao_length", "scale": "cpu",
      "provenance": {git commit, dirty flag, parameters, device, versions, wall time, time stamp},
      "metrics": {name: number, ...},
      "claims": [{"id", "statement", "source", "holds", "evidence"}, ...],
      "sha256": digest of everything above
    }

Files are written atomically (a temporary file in the same folder, then
``os.replace``) and verified when read: a file whose digest does not match, or
that does not parse, raises :class:`ResultsError` instead of being trusted.
The reproduction scorecard (:func:`scorecard_markdown`) is generated from these
files, with the CPU and paper scales side by side.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ._util.checks import check_choice
from ._util.io import atomic_write_text, jsonable

__all__ = ["SCALES", "SCHEMA", "Claim", "ResultsError", "collect_results", "provenance", "read_results",
           "scorecard_markdown", "write_results"]

SCHEMA = 1
SCALES = ("cpu", "paper", "smoke")


class ResultsError(RuntimeError):
    """A results file that is missing a field, does not parse, or fails its digest."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One claim of the papers checked with numbers.

    ``holds`` is what the numbers say, true or false; ``evidence`` says which
    numbers and which threshold, so a reader can judge the verdict.
    """

    id: str  # short identifier, unique within a notebook
    statement: str  # the claim in words
    source: str  # where the paper makes it, e.g. "Seed 000, Eq. (2)"
    holds: bool  # what the numbers say
    evidence: str  # the numbers and the threshold behind ``holds``

    def __post_init__(self):
        # the scorecard page matches sources verbatim; the book's typography turns ' and " into curly quotes
        if any(q in self.source for q in "'\""):
            raise ValueError(f"source={self.source!r} is not valid; it must not contain quotes (the book renders "
                             "them as typographic quotes, and the scorecard would no longer show the source as written)")


def _digest(payload: Mapping) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(parameters: Mapping, *, wall_time: float, device: str, cwd: str | os.PathLike = ".") -> dict:
    """Commit, parameters, device, library versions and wall time of a run."""
    import numpy
    import torch

    versions = {"python": sys.version.split()[0], "numpy": numpy.__version__, "torch": torch.__version__}
    for mod in ("torchvision", "ot", "skbio", "scipy", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an absent optional library is simply not listed
            pass
    cwd = Path(cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {
        "git_commit": _git(["rev-parse", "HEAD"], cwd) or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "parameters": jsonable(dict(parameters)),
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions,
        "wall_time_s": float(wall_time),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_results(
    results_dir: str | os.PathLike,
    notebook: str,
    *,
    scale: str,
    parameters: Mapping,
    metrics: Mapping,
    claims: Sequence[Claim],
    wall_time: float,
    device: str = "cpu",
) -> Path:
    """Write one notebook's results atomically and return the file's path.

    Parameters
    ----------
    results_dir : the folder holding one sub-folder per scale.
    notebook : the notebook's stem, e.g. ``"01_fisher_rao_length"``.
    scale : ``"cpu"``, ``"paper"`` or ``"smoke"`` (the test suite's smallest runs).
    parameters : the notebook's parameters as run.
    metrics : named numbers.
    claims : the paper's claims checked, each with ``holds`` and evidence.
    """
    check_choice("scale", scale, SCALES)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claims must have unique ids; got {ids}")
    payload = {
        "schema": SCHEMA,
        "notebook": notebook,
        "scale": scale,
        "provenance": provenance(parameters, wall_time=wall_time, device=device),
        "metrics": jsonable(dict(metrics)),
        "claims": [jsonable(asdict(c)) for c in claims],
    }
    payload["sha256"] = _digest(payload)
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(Path(results_dir) / scale / f"{notebook}.json", text)


def read_results(path: str | os.PathLike) -> dict:
    """Read and verify a results file; raise :class:`ResultsError` if it cannot be trusted."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise ResultsError(f"{path}: not a JSON object")
    missing = {"schema", "notebook", "scale", "provenance", "metrics", "claims", "sha256"} - payload.keys()
    if missing:
        raise ResultsError(f"{path}: missing fields {sorted(missing)}")
    stored = payload.pop("sha256")
    if _digest(payload) != stored:
        raise ResultsError(f"{path}: sha256 does not match its contents (edited or corrupted)")
    payload["sha256"] = stored
    return payload


def collect_results(results_dir: str | os.PathLike, scales: Sequence[str] = ("cpu", "paper")) -> dict:
    """All verified results under ``results_dir``: ``{notebook: {scale: payload}}``.

    Files that fail verification are reported under the key ``"_errors"``
    (a list of messages) rather than silently dropped or trusted.
    """
    out: dict = {}
    errors = []
    for scale in scales:
        for f in sorted((Path(results_dir) / scale).glob("*.json")):
            try:
                payload = read_results(f)
            except ResultsError as exc:
                errors.append(str(exc))
                continue
            out.setdefault(payload["notebook"], {})[scale] = payload
    if errors:
        out["_errors"] = errors
    return out


def _md_cell(text: str) -> str:
    """Escape what would break a markdown table cell or turn into emphasis."""
    for ch in ("\\", "|", "_", "*", "`"):
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


def _verdict(payload: dict | None, claim_id: str) -> str:
    if payload is None:
        return "not run"
    for c in payload["claims"]:
        if c["id"] == claim_id:
            return ("holds" if c["holds"] else "FAILS") + f": {c['evidence']}"
    return "not checked"


def scorecard_markdown(results_dir: str | os.PathLike, scales: Sequence[str] = ("cpu", "paper")) -> str:
    """Markdown tables of every claim, one per notebook, one column per scale, from the results files."""
    found = collect_results(results_dir, scales)
    errors = found.pop("_errors", [])
    header = "| claim | source | " + " | ".join(f"{s} scale" for s in scales) + " |"
    rule = "|" + " --- |" * (2 + len(scales))
    parts = []
    for notebook in sorted(found):
        per_scale = found[notebook]
        claims: dict[str, dict] = {}
        for s in scales:
            for c in per_scale.get(s, {}).get("claims", []):
                claims.setdefault(c["id"], c)
        held = {s: sum(c["holds"] for c in per_scale[s]["claims"]) for s in scales if s in per_scale}
        summary = ", ".join(f"{s}: {held[s]} of {len(per_scale[s]['claims'])} hold" for s in held)
        lines = [f"**{_md_cell(notebook)}** ({summary})", "", header, rule]
        for cid, c in claims.items():
            cells = [_md_cell(_verdict(per_scale.get(s), cid)) for s in scales]
            lines.append(f"| {_md_cell(c['statement'])} | {_md_cell(c['source'])} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) if parts else "No results files found."
    if errors:
        text += "\n\nResults files that failed verification and were ignored:\n\n" + "\n".join(f"- {e}" for e in errors)
    return text
