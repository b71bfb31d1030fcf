r"""Chapter 8's check: can the paper's reported Mantel statistics be reproduced from its printed matrices?

Seed 000 (Gao & Chaudhari 2021), Sec. 5.3 (the Mantel test), Secs. 5.4-5.5 and the captions of
Figs. 2, 3, 5 and 7. :func:`run_check`

1. re-runs every reported comparison (:data:`~ctd_lib.task_distance.paper_numbers.REPORTED_MANTEL`)
   on the transcribed matrices under the 32 conventions of
   :data:`~ctd_lib.task_distance.paper_numbers.MANTEL_CONVENTIONS`
   (:func:`~ctd_lib.task_distance.paper_numbers.reanalyse`), and checks each reported p against
   what a permutation test on :math:`n` tasks can give (:math:`p \ge 1/n!`; an exact p is a
   rounding of some :math:`c/n!`; the chance that a test with :math:`K` random relabellings prints it);
2. runs every convention on a synthetic matrix against itself (``synthetic_n`` tasks), which must
   give :math:`r = 1` and :math:`p = 1/n!` (no relabelling but the identity leaves a generic
   matrix unchanged), and against its transpose, the non-trivial reading of "with itself";
3. runs every convention on one synthetic pair (``B = A + noise``), to show how far the conventions
   alone move :math:`r` and :math:`p` for the figures' :math:`n` (synthetic numbers, not the paper's);
4. reads the only pair of directions the text prints with numbers (Sec. 5.4, MNIST and CIFAR-10).

:func:`metrics` and :func:`claims` turn the :class:`PaperNumbersCheck` into the numbers and the six
verdicts of the results file of ``notebooks/08_paper_numbers.py``; :func:`markdown_table` renders
the tables of the page (it lives in :mod:`ctd_lib.display`).
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .._util.checks import check_choice, check_count, check_positive
from ..display import markdown_table  # the tables of the page (kept here for the old import path)
from ..results import SCALES, Claim
from ..task_distance.paper_numbers import (
    MANTEL_CONVENTIONS,
    PAPER_MATRICES,
    REPORTED_MANTEL,
    ConventionOutcome,
    PrintedMatrix,
    Reanalysis,
    ReportedMantel,
    compare_under_conventions,
    min_attainable_p,
    reanalyse,
)
from ..task_distance.stats import MAX_EXACT_LIMIT

__all__ = ["NOTEBOOK_PARAMETERS", "PaperNumbersCheck", "PaperNumbersConfig", "SEC54_PAIR", "SelfComparison", "claims",
           "finding", "markdown_table", "metrics", "run_check", "synthetic_distance_matrix"]

# the parameters cell of notebooks/08_paper_numbers.py (all but results_dir), in its order
NOTEBOOK_PARAMETERS = ("permutations", "mc_permutations", "alpha", "p_factor", "synthetic_n", "synthetic_noise",
                       "seed", "scale")

#: The two Sec. 5.4 matrices whose directions are compared (coupled, fine-tuning).
SEC54_PAIR = ("sec54-coupled", "sec54-finetune")


@dataclass(frozen=True, kw_only=True)
class PaperNumbersConfig:
    """Parameters of chapter 8 (the notebook's ``parameters`` cell, validated; a bad value raises a
    one-line ``ValueError`` naming the field). Lists are stored as tuples."""

    permutations: int = 999  # random relabellings of every sampled p (the default of scikit-bio, ape and vegan)
    mc_permutations: tuple = (99, 999, 9999)  # K of the Monte-Carlo consistency of each reported p
    alpha: float = 0.05  # decision level of the p criterion ("same decision at 0.05")
    p_factor: float = 10.0  # "same order of magnitude": our p within this factor of the reported one
    synthetic_n: tuple = (4, 5)  # sizes of the synthetic self-comparison (the figures' numbers of tasks)
    synthetic_noise: float = 0.3  # B = A + noise * U(0, 1) for the synthetic pair of the convention table
    max_exact: int = 8  # largest n whose n! relabellings are enumerated
    seed: int = 0  # seeds the synthetic matrices and every sampled test
    scale: str = "cpu"  # the results' scale: "cpu", "paper" or "smoke" (recorded, not used by the run)

    def __post_init__(self):
        check_positive("permutations", self.permutations, integer=True)
        for name in ("mc_permutations", "synthetic_n"):
            v = getattr(self, name)
            if isinstance(v, list):  # the notebook's parameters cell writes lists
                v = tuple(v)
                object.__setattr__(self, name, v)
            if not isinstance(v, tuple) or not v:
                raise ValueError(f"{name}={v!r} is not valid; it must be a non-empty list of positive integers")
            for k in v:
                check_positive(name, k, integer=True)
        for n in self.synthetic_n:
            if not 3 <= n <= self.max_exact:
                raise ValueError(f"synthetic_n={self.synthetic_n!r} is not valid; every size must be in "
                                 f"[3, max_exact={self.max_exact}]")
        for name in ("alpha", "p_factor", "synthetic_noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{name}={v!r} is not valid; it must be a number")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha!r} is not valid; it must be a number in (0, 1)")
        if not self.p_factor > 1:
            raise ValueError(f"p_factor={self.p_factor!r} is not valid; it must be a number > 1")
        check_positive("synthetic_noise", self.synthetic_noise)
        if isinstance(self.max_exact, bool) or not isinstance(self.max_exact, int) \
                or not 3 <= self.max_exact <= MAX_EXACT_LIMIT:
            raise ValueError(f"max_exact={self.max_exact!r} is not valid; it must be an integer in "
                             f"[3, {MAX_EXACT_LIMIT}]")
        check_count("seed", self.seed)
        check_choice("scale", self.scale, SCALES)

    def parameters(self) -> dict:
        """The notebook's parameters as run (:data:`NOTEBOOK_PARAMETERS`), plain values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in NOTEBOOK_PARAMETERS)}

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_distance_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """An (n, n) asymmetric matrix with entries uniform in (0.1, 1.1) off the diagonal and zeros on it.

    Synthetic, for checking the tests (never the paper's numbers); with probability 1 no
    relabelling but the identity leaves it unchanged.
    """
    D = 0.1 + rng.random((n, n))
    np.fill_diagonal(D, 0.0)
    return D


@dataclass(frozen=True)
class SelfComparison:
    """Every convention on a synthetic matrix against itself and against its transpose.

    ``itself`` must give :math:`r = 1` and :math:`p = 1/n!` under every convention; ``transpose``
    shows that the other reading of "with itself" can give any :math:`r`.
    """

    n: int
    itself: tuple[ConventionOutcome, ...]
    transpose: tuple[ConventionOutcome, ...]

    @property
    def r_range(self) -> tuple[float, float]:
        r = [o.r for o in self.itself]
        return float(min(r)), float(max(r))

    @property
    def p_exact_range(self) -> tuple[float, float]:
        p = [o.p_exact for o in self.itself]
        return float(min(p)), float(max(p))

    @property
    def transpose_r_range(self) -> tuple[float, float]:
        r"""Range of :math:`r(D, D^\top)` over the conventions that keep the direction of transfer (the
        symmetrised ones give 1: :math:`\tfrac12(D + D^\top)` is the same for both)."""
        r = [o.r for o in self.transpose if o.computable and o.convention.entries != "symmetrised"]
        return float(min(r)), float(max(r))


@dataclass(frozen=True)
class PaperNumbersCheck:
    """Everything chapter 8 computes.

    Attributes
    ----------
    config : the :class:`PaperNumbersConfig`.
    matrices : the transcribed matrices (key -> :class:`~ctd_lib.task_distance.paper_numbers.PrintedMatrix`).
    reanalysis : the re-analysis of every reported comparison.
    self_comparisons : one :class:`SelfComparison` per ``synthetic_n``.
    synthetic_pair : every convention on the synthetic pair (``max(synthetic_n)`` tasks).
    wall_time : seconds.
    """

    config: PaperNumbersConfig
    matrices: Mapping[str, PrintedMatrix]
    reanalysis: Reanalysis
    self_comparisons: tuple[SelfComparison, ...]
    synthetic_pair: tuple[ConventionOutcome, ...]
    wall_time: float

    @property
    def referenced(self) -> tuple[str, ...]:
        """Keys of the matrices that the reported comparisons name (as ``A`` or as a reference)."""
        keys: list[str] = []
        for c in self.reanalysis.checks:
            for k in (c.reported.matrix, *(r.removesuffix(".T") for r in c.reported.references)):
                if k not in keys:
                    keys.append(k)
        return tuple(keys)

    @property
    def cells_known(self) -> int:
        return sum(self.matrices[k].off_diagonal_known for k in self.referenced)

    @property
    def cells_total(self) -> int:
        return sum(self.matrices[k].off_diagonal_total for k in self.referenced)

    @property
    def synthetic_r_range(self) -> tuple[float, float]:
        r = [o.r for o in self.synthetic_pair if o.computable]
        return float(min(r)), float(max(r))

    def self_comparison(self, n: int) -> SelfComparison:
        for s in self.self_comparisons:
            if s.n == n:
                return s
        raise ValueError(f"no synthetic self-comparison with n={n}; sizes: {[s.n for s in self.self_comparisons]}")


def run_check(
    config: PaperNumbersConfig | None = None,
    *,
    matrices: Mapping[str, PrintedMatrix] = PAPER_MATRICES,
    reported: Sequence[ReportedMantel] = REPORTED_MANTEL,
) -> PaperNumbersCheck:
    """Run chapter 8 on the paper's transcription (or on ``matrices`` and ``reported`` given instead)."""
    config = config or PaperNumbersConfig()
    start = time.perf_counter()
    K, seed, max_exact = config.permutations, config.seed, config.max_exact
    analysis = reanalyse(reported, matrices, permutations=K, mc_permutations=config.mc_permutations,
                         alpha=config.alpha, p_factor=config.p_factor, seed=seed, max_exact=max_exact)

    def compare(A, B, name):
        return compare_under_conventions(A, B, reference=name, permutations=K, seed=seed, max_exact=max_exact)

    rng = np.random.default_rng(config.seed)
    selves = []
    for n in config.synthetic_n:
        D = synthetic_distance_matrix(n, rng)
        selves.append(SelfComparison(
            n=n, itself=compare(D, D, "itself"), transpose=compare(D, D.T, "transpose")))
    n = max(config.synthetic_n)
    A = synthetic_distance_matrix(n, rng)
    B = A + config.synthetic_noise * rng.random((n, n))
    np.fill_diagonal(B, 0.0)
    pair = compare(A, B, "synthetic B")
    return PaperNumbersCheck(config=config, matrices=dict(matrices), reanalysis=analysis,
                             self_comparisons=tuple(selves), synthetic_pair=pair,
                             wall_time=time.perf_counter() - start)


# ----------------------------------------------------------------------------
# what the chapter records
# ----------------------------------------------------------------------------


def _sec54_directions(matrices: Mapping[str, PrintedMatrix]) -> tuple[float, float] | None:
    """(d(A->B) - d(B->A)) of the coupled and the fine-tuning matrix of Sec. 5.4, or None if absent or unknown."""
    if not all(k in matrices for k in SEC54_PAIR):
        return None
    diffs = tuple(float(matrices[k].values[0, 1] - matrices[k].values[1, 0]) for k in SEC54_PAIR)
    return diffs if all(np.isfinite(diffs)) else None  # type: ignore[return-value]


def metrics(result: PaperNumbersCheck) -> dict:
    r"""The named numbers of chapter 8's results file.

    Transcription: off-diagonal cells known and in all, over the matrices the reported comparisons
    name. Re-analysis: comparisons reported, computable, and reproduced (r, p, both under one
    convention); reported p-values off the exact lattice :math:`c/n!`; :math:`1/4!` and
    :math:`1/5!`; per comparison, the largest chance that a test with 999 random relabellings prints
    the reported p (when 999 is among ``mc_permutations``). Synthetic checks: the range of
    :math:`r` and exact p of a matrix against itself over all conventions, and of :math:`r` on the
    synthetic pair.
    """
    ra = result.reanalysis
    checks = ra.checks
    out: dict = {
        "cells_known": result.cells_known, "cells_total": result.cells_total,
        "comparisons_reported": len(checks), "comparisons_computable": ra.n_computable,
        "r_reproduced": sum(bool(c.r_reproduced) for c in checks),
        "p_reproduced": sum(bool(c.p_reproduced) for c in checks),
        "both_reproduced": sum(bool(c.both_reproduced) for c in checks),
        "p_off_exact_lattice": sum(not c.p_on_exact_lattice for c in checks),
        "p_below_minimum": sum(c.p_below_minimum for c in checks),
        "min_p_n4": min_attainable_p(4), "min_p_n5": min_attainable_p(5),
        "conventions": len(MANTEL_CONVENTIONS),
    }
    for c in checks:
        for K, _, prob in c.monte_carlo:
            if K == 999:
                out[f"mc999_prob_{c.reported.key}"] = prob
    for s in result.self_comparisons:
        out[f"self_r_min_n{s.n}"], out[f"self_r_max_n{s.n}"] = s.r_range
        out[f"self_p_exact_max_n{s.n}"] = s.p_exact_range[1]
        out[f"transpose_r_min_n{s.n}"], out[f"transpose_r_max_n{s.n}"] = s.transpose_r_range
    out["synthetic_r_min"], out["synthetic_r_max"] = result.synthetic_r_range
    diffs = _sec54_directions(result.matrices)
    if diffs is not None:
        out["sec54_coupled_asymmetry"], out["sec54_finetune_asymmetry"] = diffs
    return out


def claims(result: PaperNumbersCheck) -> list[Claim]:
    r"""The six verdicts of chapter 8.

    * ``printed_cells_in_text``: every off-diagonal cell of every matrix named by a reported
      comparison can be read from the extracted text.
    * ``reported_mantel_reproduced``: every reported :math:`(r, p)` is reproduced, both under one
      convention, from the transcribed matrices (fails when a comparison cannot be computed).
    * ``self_comparison_r``: the reported :math:`r` of each comparison "with itself" is the value
      that every convention gives for a matrix against itself, 1 (confirmed on the synthetic
      matrices: their smallest :math:`r` must be within :math:`10^{-9}` of 1).
    * ``p_not_below_minimum``: no reported p is below :math:`1/n!` beyond its printed precision.
    * ``p_on_exact_lattice``: every reported p is a rounding of an exact p-value :math:`c/n!`.
    * ``sec54_direction_agrees``: the coupled and the fine-tuning distance of Sec. 5.4 call the
      same direction between MNIST and CIFAR-10 the longer one.
    """
    ra = result.reanalysis
    checks = ra.checks
    n_conv = len(ra.conventions)
    refs = result.referenced
    incomplete = [k for k in refs if not result.matrices[k].complete]
    computable = [c for c in checks if c.computable]
    both = [c for c in checks if c.both_reproduced]
    selves = [c for c in checks if c.reported.self_comparison]
    self_r = min(s.r_range[0] for s in result.self_comparisons)
    self_ok = [c for c in selves if abs(c.reported.r - 1.0) <= c.reported.r_tolerance + 1e-9]
    below = [c for c in checks if c.p_below_minimum]
    off = [c for c in checks if not c.p_on_exact_lattice]

    def mc_note(c) -> str:
        return ", ".join(f"K = {K}: {prob:.1%}" for K, _, prob in c.monte_carlo)

    diffs = _sec54_directions(result.matrices)
    if diffs is None:
        sec54_holds, sec54_ev = False, "the Sec. 5.4 pair is not in the transcription"
    else:
        dc, df = diffs
        sec54_holds = bool(dc * df > 0)
        mc_, mf = (result.matrices[k].values for k in SEC54_PAIR)
        sec54_ev = (f"coupled {mc_[0, 1]:g} ({result.matrices[SEC54_PAIR[0]].tasks[0]} to "
                    f"{result.matrices[SEC54_PAIR[0]].tasks[1]}) against {mc_[1, 0]:g} back; fine-tuning "
                    f"{mf[0, 1]:g} against {mf[1, 0]:g} back; with 2 tasks no Mantel test is possible")
    return [
        Claim(id="printed_cells_in_text",
              statement="The distance matrices behind the reported Mantel tests can be read from the extracted text",
              source="Seed 000, Figs. 2, 3, 5, 7", holds=not incomplete,
              evidence=f"{result.cells_known} of {result.cells_total} off-diagonal cells of the {len(refs)} matrices "
                       "named by the reported comparisons are in the text"
                       + ("; none is complete" if len(incomplete) == len(refs) else
                          f"; incomplete: {', '.join(incomplete)}" if incomplete else "")),
        Claim(id="reported_mantel_reproduced",
              statement="Each reported Mantel (r, p) follows from the printed matrices under some convention",
              source="Seed 000, Sec. 5.3 and the captions of Figs. 2, 3, 5, 7",
              holds=bool(checks) and len(both) == len(checks),
              evidence=f"computable for {len(computable)} of {len(checks)} comparisons ({n_conv} conventions each); "
                       f"r and p reproduced together for {len(both)}"
                       + ("" if computable else ": no cell of the matrices they name is in the text")),
        Claim(id="self_comparison_r",
              statement="A distance compared with itself gives the reported r",
              source="Seed 000, captions of Figs. 2c, 3c, 5b", holds=len(self_ok) == len(selves) and self_r > 1 - 1e-9,
              evidence="; ".join(f"{c.reported.key}: reported r = {c.reported.r:g}" for c in selves)
                       + f"; every one of the {n_conv} conventions gives r = 1 for a matrix against itself (smallest "
                       f"r on the synthetic matrices: {self_r:.12f}); the transpose reading needs the cells"),
        Claim(id="p_not_below_minimum",
              statement="No reported p is below the smallest p-value of a permutation test on the figure's tasks",
              source="Seed 000, captions of Figs. 2, 3, 5, 7", holds=not below,
              evidence=f"1/4! = {min_attainable_p(4):.4f} (Fig. 2), 1/5! = {min_attainable_p(5):.4f} (Figs. 3, 5, 7); "
                       f"smallest reported p: " + ", ".join(
                           f"{c.reported.key} {c.reported.p:g} (n = {c.n})"
                           for c in sorted(checks, key=lambda c: c.reported.p)[:2])
                       + (f"; below: {', '.join(c.reported.key for c in below)}" if below else "")),
        Claim(id="p_on_exact_lattice",
              statement="Every reported p is an exact permutation p-value c/n! to the printed precision",
              source="Seed 000, captions of Figs. 2, 3, 5, 7", holds=not off,
              evidence=(("off the lattice: " + "; ".join(
                  f"{c.reported.key} p = {c.reported.p:g} (n = {c.n}, lattice step 1/{math.factorial(c.n)}; chance "
                  f"that a Monte-Carlo test prints it: {mc_note(c)})" for c in off)) if off
                  else f"each of the {len(checks)} reported p is a rounding of some c/n!")),
        Claim(id="sec54_direction_agrees",
              statement="Coupled transfer and fine-tuning agree on the harder direction between MNIST and CIFAR-10",
              source="Seed 000, Sec. 5.4", holds=sec54_holds, evidence=sec54_ev),
    ]


def finding(result: PaperNumbersCheck) -> str:
    """The chapter's finding in words, every number from ``result`` (the page shows this paragraph)."""
    ra = result.reanalysis
    checks = ra.checks
    parts = []
    computable = [c for c in checks if c.computable]
    if not computable:
        parts.append(f"None of the {len(checks)} reported Mantel statistics can be recomputed from the printed "
                     f"matrices as extracted: the text holds {result.cells_known} of the {result.cells_total} "
                     f"off-diagonal cells of the {len(result.referenced)} matrices they name. This says nothing "
                     "against the statistics themselves; it says they cannot be checked from this text.")
    else:
        both = [c for c in computable if c.both_reproduced]
        parts.append(f"{len(computable)} of the {len(checks)} reported Mantel statistics can be recomputed from the "
                     f"printed matrices; r and p are reproduced together for {len(both)}"
                     + (f" ({', '.join(f'{c.reported.key} under {c.reproducing[0]}' for c in both)})" if both else "")
                     + (f", not for {', '.join(c.reported.key for c in computable if not c.both_reproduced)}"
                        if len(both) < len(computable) else "") + ".")
    selves = [c for c in checks if c.reported.self_comparison]
    wrong = [c for c in selves if abs(c.reported.r - 1) > c.reported.r_tolerance + 1e-9]
    if wrong:
        parts.append(f"The {len(wrong)} statistics of a fine-tuning matrix 'with itself' ("
                     + ", ".join(f"{c.reported.key}: r = {c.reported.r:g}" for c in wrong)
                     + ") are not Mantel correlations of a matrix with itself, which are 1 under every one of the "
                     f"{len(ra.conventions)} conventions; they may compare the matrix with its transpose, which "
                     "needs the cells.")
    below = [c for c in checks if c.p_below_minimum]
    off = [c for c in checks if not c.p_on_exact_lattice]
    parts.append(("No reported p is below the smallest p-value 1/n! of a test on its n tasks"
                  if not below else "Below the smallest p-value 1/n! of a test on its n tasks: "
                  + ", ".join(f"{c.reported.key} (p = {c.reported.p:g}, 1/n! = {c.min_p:.4f})" for c in below))
                 + (f"; {len(off)} ({', '.join(f'{c.reported.key}, p = {c.reported.p:g}' for c in off)}) are not "
                    "roundings of an exact p-value c/n!, so no exact test that relabels the tasks prints them; the "
                    "chance that a Monte-Carlo test prints them is " + "; ".join(
                        f"{c.reported.key}: " + ", ".join(f"{prob:.1%} with K = {K}" for K, _, prob in c.monte_carlo)
                        for c in off) if off else "; every one is a rounding of an exact p-value c/n!") + ".")
    diffs = _sec54_directions(result.matrices)
    if diffs is not None:
        parts.append("On the one pair the text prints with numbers (Sec. 5.4, MNIST and CIFAR-10), the coupled and "
                     "the fine-tuning distance " + ("agree" if diffs[0] * diffs[1] > 0 else "disagree")
                     + " on the longer direction; with two tasks no Mantel test is possible.")
    return " ".join(parts)
