"""What the book's pages show: Markdown tables, the claims of a chapter, solver warnings in one short
admonition, and the scorecard at a glance.

The notebooks are thin (orchestration and plots); the few lines that turn results into something a
reader can scan live here, where they are tested:

* :func:`markdown_table` and :func:`show_table`: a table in the page instead of fixed-width ``print``;
* :func:`claims_markdown` and :func:`show_claims`: a chapter's verdicts, with the results file they
  were filed in (relative to the results folder, never the builder's absolute path);
* :func:`solver_warnings`: a context manager that records the warnings of a computation and shows
  each kind once, with its count and its first message, instead of one stderr block per solve
  (every solver also records its convergence in its result);
* :func:`scorecard_figure`: one square per claim, per chapter and scale, green where it holds.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .results import Claim, collect_results

__all__ = ["ScorecardRow", "WarningGroup", "claims_markdown", "markdown_table", "provenance_markdown",
           "scorecard_figure", "scorecard_rows", "show_claims", "show_markdown", "show_table", "solver_warnings",
           "summarise_warnings", "warnings_markdown"]


# ----------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Escape what would break a Markdown table cell or turn into emphasis or code."""
    for ch in ("\\", "|", "*", "_", "`"):
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "cannot check"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
        lo, hi = value
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return "n/a"
        return f"{lo:.{digits}f}" if abs(hi - lo) < 0.5 * 10 ** -digits else f"{lo:.{digits}f} to {hi:.{digits}f}"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "n/a" if not np.isfinite(value) else f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 \
            else f"{value:.{digits}f}"
    return _escape(str(value))


def markdown_table(rows: Sequence[Mapping | Sequence], columns: Sequence[str] | None = None, *,
                   digits: int = 3) -> str:
    """A Markdown table of ``rows``: dicts keyed by column, or sequences in the order of ``columns``.

    Floats to ``digits`` decimals (``digits`` significant figures below 1e-3), NaN as "n/a", ``None`` as
    "cannot check", booleans as yes/no, (lo, hi) ranges of floats as "lo to hi"; strings as given, with
    ``|`` and the emphasis and code characters escaped (format a number yourself for another precision).

    >>> print(markdown_table([{"a": 0.5, "b": None, "c": True}]))
    | a | b | c |
    | --- | --- | --- |
    | 0.500 | cannot check | yes |
    >>> print(markdown_table([("mlp", 3e-4)], ["model", "lr_max"]))
    | model | lr\\_max |
    | --- | --- |
    | mlp | 0.0003 |
    """
    if not rows:
        return "(no rows)"
    if columns is None:
        if not isinstance(rows[0], Mapping):
            raise ValueError("markdown_table: rows given as sequences need their columns")
        columns = list(rows[0].keys())
    columns = list(columns)
    lines = ["| " + " | ".join(_cell(c, digits) for c in columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        if isinstance(row, Mapping):
            values = [row.get(c) for c in columns]
        else:
            values = list(row)
            if len(values) != len(columns):
                raise ValueError(f"markdown_table: a row has {len(values)} cells for {len(columns)} columns: {row!r}")
        lines.append("| " + " | ".join(_cell(v, digits) for v in values) + " |")
    return "\n".join(lines)


def show_markdown(text: str) -> None:
    """Show ``text`` as Markdown in a notebook (MyST in the book); print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the book's dependencies
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text, file=sys.stdout)


def show_table(rows: Sequence[Mapping | Sequence], columns: Sequence[str] | None = None, *, digits: int = 3,
               title: str | None = None) -> None:
    """Show :func:`markdown_table` of ``rows`` in the page, under a bold ``title`` when given."""
    table = markdown_table(rows, columns, digits=digits)
    show_markdown(f"**{_escape(title)}**\n\n{table}" if title else table)


# ----------------------------------------------------------------------------
# claims
# ----------------------------------------------------------------------------


def _relative(path: str | os.PathLike, results_dir: str | os.PathLike | None) -> str:
    """``results/<scale>/<notebook>.json``: the file's path below the results folder's parent."""
    path = Path(path)
    if results_dir is not None:
        base = Path(results_dir).resolve()
        with contextlib.suppress(ValueError):
            return (Path(base.name) / path.resolve().relative_to(base)).as_posix()
    return path.name


def claims_markdown(claims: Sequence[Claim], path: str | os.PathLike | None = None,
                    results_dir: str | os.PathLike | None = None) -> str:
    """A chapter's verdicts as a table (verdict, claim, where the paper makes it, evidence), and the results
    file they were filed in, relative to ``results_dir``'s parent (``results/cpu/01_....json``).

    >>> c = Claim(id="x", statement="a_b holds", source="Eq. (2)", holds=False, evidence="ratio 2 > 1")
    >>> print(claims_markdown([c], "/any/where/results/cpu/01.json", "/any/where/results"))
    | verdict | claim | source | evidence |
    | --- | --- | --- | --- |
    | **fails** | a\\_b holds | Eq. (2) | ratio 2 > 1 |
    <BLANKLINE>
    1 claim checked, 0 hold; filed in `results/cpu/01.json`.
    """
    rows = [("**holds**" if c.holds else "**fails**", _escape(c.statement), _escape(c.source), _escape(c.evidence))
            for c in claims]
    lines = ["| verdict | claim | source | evidence |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    held = sum(c.holds for c in claims)
    text = ("\n".join(lines) + f"\n\n{len(claims)} claim{'s' if len(claims) != 1 else ''} checked, "
            f"{held} hold{'s' if held == 1 else ''}")
    if path is not None:
        text += f"; filed in `{_relative(path, results_dir)}`"
    return text + "."


def show_claims(claims: Sequence[Claim], path: str | os.PathLike | None = None,
                results_dir: str | os.PathLike | None = None) -> None:
    """Show :func:`claims_markdown` in the page."""
    show_markdown(claims_markdown(claims, path, results_dir))


# ----------------------------------------------------------------------------
# warnings
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WarningGroup:
    """The warnings raised at one place of the code: how many, and the first message."""

    category: str  # e.g. "RuntimeWarning" (what the library's solvers raise)
    where: str  # the line the warning names (stacklevel: often the solver's caller), "ctd_lib/..." when ours
    count: int  # occurrences in the block
    first: str  # the first message (later ones differ only in their numbers, as a rule)
    ours: bool  # the line is in ctd_lib (else a notebook cell or a third-party library: not shown)


def _where(filename: str, lineno: int) -> tuple[str, bool]:
    parts = Path(filename).parts
    if "ctd_lib" in parts:
        k = len(parts) - 1 - parts[::-1].index("ctd_lib")
        return "/".join(parts[k:]) + f":{lineno}", True
    return f"{Path(filename).name}:{lineno}", False


def _module(where: str) -> str:
    """``ctd_lib/transport/blocks.py:329`` as ``ctd_lib.transport.blocks``."""
    return where.rsplit(":", 1)[0].removesuffix(".py").replace("/", ".")


def summarise_warnings(records: Sequence[warnings.WarningMessage]) -> tuple[WarningGroup, ...]:
    """Group recorded warnings by category and raising line, in order of first occurrence."""
    groups: dict[tuple[str, str], dict] = {}
    for r in records:
        where, ours = _where(r.filename, r.lineno)
        key = (r.category.__name__, where)
        if key not in groups:
            groups[key] = {"category": key[0], "where": where, "count": 0, "first": str(r.message), "ours": ours}
        groups[key]["count"] += 1
    return tuple(WarningGroup(**g) for g in groups.values())


def warnings_markdown(groups: Sequence[WarningGroup]) -> str:
    """One MyST warning admonition for ``groups`` ("" when there are none).

    >>> g = WarningGroup(category="RuntimeWarning", where="ctd_lib/transport/blocks.py:329", count=3,
    ...                  first="block_plan: did not converge", ours=True)
    >>> print(warnings_markdown([g]))
    ```{admonition} 3 solver warnings
    :class: warning
    <BLANKLINE>
    - **3 times**, from `ctd_lib.transport.blocks`: block\\_plan: did not converge (the first occurrence)
    <BLANKLINE>
    Each kind is shown once; every solve records its convergence in its result.
    ```
    """
    if not groups:
        return ""
    n = sum(g.count for g in groups)
    kind = "solver warning" if all(g.category == "RuntimeWarning" for g in groups) else "warning"
    lines = [f"```{{admonition}} {n} {kind}{'s' if n != 1 else ''}", ":class: warning", ""]
    for g in groups:
        label = "" if g.category == "RuntimeWarning" else f"{g.category}: "
        times = "once" if g.count == 1 else f"{g.count} times"
        where = f", from `{_module(g.where)}`" if g.ours else ""
        first = " (the first occurrence)" if g.count > 1 else ""
        lines.append(f"- **{times}**{where}: {label}{_escape(g.first)}{first}")
    lines += ["", "Each kind is shown once; every solve records its convergence in its result.", "```"]
    return "\n".join(lines)


@contextlib.contextmanager
def solver_warnings(category: type[Warning] = RuntimeWarning, *, show: bool = True) -> Iterator[list]:
    """Record the warnings of ``category`` raised in the block and show them once, summarised.

    Every occurrence is counted (the filter is "always" inside the block); on leaving, the groups of
    :func:`summarise_warnings` are shown as one admonition (:func:`warnings_markdown`) when ``show``.
    Warnings of other categories pass through as they would without the block. Yields the list of
    recorded :class:`warnings.WarningMessage`, filled as the block runs.

    >>> with solver_warnings(show=False) as caught:
    ...     for k in range(3):
    ...         warnings.warn(f"step {k} did not converge", RuntimeWarning)
    >>> [(g.count, g.first) for g in summarise_warnings(caught)]
    [(3, 'step 0 did not converge')]
    """
    mine: list = []
    others: list = []
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always", category)
            try:
                yield mine
            finally:
                for r in records:
                    (mine if issubclass(r.category, category) else others).append(r)
    finally:  # shown even when the block raises: the warnings may explain why
        for r in others:  # re-emitted outside the block, under the filters in force there
            warnings.warn_explicit(r.message, r.category, r.filename, r.lineno, source=r.source)
        if show and mine:
            show_markdown(warnings_markdown(summarise_warnings(mine)))


# ----------------------------------------------------------------------------
# the scorecard at a glance
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScorecardRow:
    """One chapter's verdicts per scale: ``verdicts[scale][k]`` is True, False or None (not run there) for
    the chapter's k-th claim (claims in the order the first scale that checks them lists them)."""

    notebook: str
    claim_ids: tuple[str, ...]
    verdicts: Mapping[str, tuple[bool | None, ...]]

    def held(self, scale: str) -> tuple[int, int] | None:
        """(claims that hold, claims checked) at ``scale``, or None where the chapter has not run."""
        v = [x for x in self.verdicts[scale] if x is not None]
        return (sum(v), len(v)) if v else None


def scorecard_rows(results_dir: str | os.PathLike, scales: Sequence[str] = ("cpu", "paper")) -> list[ScorecardRow]:
    """The verdicts of every verified results file under ``results_dir``, one row per notebook (sorted)."""
    found = collect_results(results_dir, scales)
    found.pop("_errors", None)
    rows = []
    for notebook in sorted(found):
        per_scale = found[notebook]
        ids: list[str] = []
        for s in scales:
            ids += [c["id"] for c in per_scale.get(s, {}).get("claims", []) if c["id"] not in ids]
        verdicts = {}
        for s in scales:
            by_id = {c["id"]: bool(c["holds"]) for c in per_scale.get(s, {}).get("claims", [])}
            verdicts[s] = tuple(by_id.get(i) for i in ids)
        rows.append(ScorecardRow(notebook=notebook, claim_ids=tuple(ids), verdicts=verdicts))
    return rows


HOLDS, FAILS, NOT_RUN = "#2e7d32", "#c62828", "#d9d9d9"  # the squares' colours


def scorecard_figure(results_dir: str | os.PathLike, scales: Sequence[str] = ("cpu", "paper")):
    """A matplotlib figure of :func:`scorecard_rows`: a row per chapter, a block of squares per scale, one
    square per claim, green where it holds, red where it fails, grey where the chapter has not run at that
    scale; "held of checked" beside each block."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    rows = scorecard_rows(results_dir, scales)
    width = max([len(r.claim_ids) for r in rows], default=1)
    block = width + 3.6  # squares, then the count, then a gap
    fig, ax = plt.subplots(figsize=(min(2.6 + 0.3 * block * len(scales), 14), 1.1 + 0.36 * max(len(rows), 1)))
    for i, row in enumerate(rows):
        for j, s in enumerate(scales):
            x0 = j * block
            for k, v in enumerate(row.verdicts[s]):
                color = NOT_RUN if v is None else HOLDS if v else FAILS
                ax.add_patch(Rectangle((x0 + k + 0.08, i + 0.12), 0.84, 0.76, facecolor=color, edgecolor="white"))
            held = row.held(s)
            ax.text(x0 + len(row.claim_ids) + 0.3, i + 0.5,
                    "not run" if held is None else f"{held[0]} of {held[1]} hold", va="center", fontsize=10,
                    color="0.35" if held is None else "black")
    for j, s in enumerate(scales):
        ax.text(j * block, -0.35, f"{s} scale", fontsize=12, fontweight="bold", va="bottom")
    if not rows:
        ax.text(0, 0.5, "No results files yet: run the notebooks (make book).", va="center")
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [r.notebook.replace("_", " ") for r in rows])
    ax.set(xlim=(-0.2, block * len(scales)), ylim=(max(len(rows), 1), -0.9), xticks=[])
    ax.tick_params(axis="y", length=0, labelsize=11)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.legend(handles=[Patch(color=HOLDS, label="holds"), Patch(color=FAILS, label="fails"),
                       Patch(color=NOT_RUN, label="not run at this scale")],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=10)
    fig.tight_layout()
    return fig


def provenance_markdown(results_dir: str | os.PathLike, scales: Sequence[str] = ("cpu", "paper")) -> str:
    """A Markdown table of where and when each verified results file was computed."""
    found = collect_results(results_dir, scales)
    found.pop("_errors", None)
    rows = []
    for nb, per_scale in sorted(found.items()):
        for scale, payload in sorted(per_scale.items()):
            p = payload["provenance"]
            rows.append((nb, scale, p["git_commit"][:10], p["git_dirty"], p["device"], p.get("threads", ""),
                         f"{p['wall_time_s']:.1f}", p["created"]))
    if not rows:
        return "No results files yet."
    return markdown_table(rows, ["notebook", "scale", "commit", "uncommitted changes", "device", "threads",
                                 "wall time (s)", "written"])
