r"""The paper's own numbers: the distance matrices that the extracted text of [Gao & Chaudhari 2021]
prints (Figs. 2, 3, 5 and 7, and the MNIST/CIFAR-10 pair of Sec. 5.4), the Mantel statistics
:math:`(r, p)` it reports for them, and a re-analysis of those statistics under every reasonable
convention of the Mantel test.

What the text holds
    The extracted text (``000_5443756e3a1d1e0f.txt`` of the seeds) keeps the captions of Figs. 2,
    3, 5 and 7 with their :math:`(r, p)`, the task names, and sentences that describe some cells
    qualitatively ("herbivores-carnivores being the farthest apart"). It does **not** keep the
    numbers printed inside the heatmaps' cells: no cell of Figs. 2, 3, 5 or 7 can be transcribed.
    Those matrices are therefore all NaN here (:data:`PAPER_MATRICES`), each with a note saying
    what is lost, where its task names come from and what the prose says about its cells. The only
    numeric matrices in the text are the three 2 x 2 matrices of Sec. 5.4 (MNIST and CIFAR-10),
    without their diagonals, for which the paper reports no Mantel test (with two tasks there are
    2! = 2 relabellings, so no p-value below 1/2 exists). A block of numbers and names between
    Sec. 5.4 and the caption of Fig. 4 (:data:`UNATTRIBUTED_FRAGMENTS`) cannot be assigned to any
    cell and is most likely Fig. 4's axis labels; it is recorded, not used.

The conventions
    For a comparison of a matrix :math:`A` with a reference :math:`B` (the fine-tuning distance;
    Sec. 5.3: "We will always compute correla-" ... "tions with the fine-tuning distance matrix",
    split by the extraction), a convention :math:`C` fixes a transform :math:`T_C` (identity, or the
    symmetrisation :math:`\tfrac12(D + D^\top)`), a set :math:`E_C` of compared entries, a
    correlation (Pearson or Spearman) and a tail. The statistic and the exact p-value are

    .. math::

        r_C(A, B) = \operatorname{corr}\big(\{T_C(A)_{ij}\}_{(i,j) \in E_C},
                                          \{T_C(B)_{ij}\}_{(i,j) \in E_C}\big), \qquad
        p_C = \frac{\#\{\pi \in S_n : r_C(A, B^\pi) \ge r_C(A, B)\}}{n!},

    where :math:`B^\pi_{ij} = B_{\pi(i)\pi(j)}` relabels the tasks of :math:`B` (rows and columns
    jointly), :math:`S_n` is the set of all :math:`n!` relabellings and the two-sided p compares
    :math:`|r|`. :math:`E_C` is one of: every ordered pair :math:`i \ne j` (the raw asymmetric test
    of :func:`~ctd_lib.task_distance.stats.mantel_asymmetric`), the upper triangle of the
    symmetrised matrices (scikit-bio's test, :func:`~ctd_lib.task_distance.stats.mantel_symmetric`),
    or the lower or upper triangle of the raw matrices (what R's ``ape::mantel.test`` and
    ``vegan::mantel`` read from a matrix that is not symmetric); each with or without the diagonal.
    :data:`MANTEL_CONVENTIONS` holds all 32 combinations.

The attainable p-values
    An exact p is a multiple of :math:`1/n!` and at least :math:`1/n!` (the identity relabelling
    always counts; a matrix with :math:`|\mathrm{Aut}|` relabellings that leave it unchanged gives
    at least :math:`|\mathrm{Aut}|/n!`). With :math:`n = 4` tasks (Fig. 2) the exact p-values are
    :math:`c/24`, so a p printed to two decimals must be a rounding of one of them; with
    :math:`n = 5` (Figs. 3, 5, 7) the lattice :math:`c/120` is finer than the printed precision and
    every printed value from 0.01 up is attainable. A Monte-Carlo test with :math:`K` random
    relabellings reports :math:`\hat p = (1 + X)/(1 + K)`, :math:`X \sim \mathrm{Binomial}(K, p)`;
    :func:`monte_carlo_rounding_probability` is the chance that it prints a given value.

Reproduced, to the printed precision
    A convention reproduces a reported :math:`r` printed with :math:`d` decimals when
    :math:`|r_C - r| \le \tfrac12 10^{-d}` (so 0.428 means [0.4275, 0.4285], 0.1 means
    [0.05, 0.15]); it reproduces a reported :math:`p` when :math:`p_C` gives the same decision at
    :math:`\alpha` (:math:`p \le \alpha` on both sides) and is within a factor ``p_factor`` of it
    (the same order of magnitude). :func:`reanalyse` records both for every convention.
"""
from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from .._util.checks import check_choice, check_count, check_positive
from .stats import MAX_EXACT_LIMIT, METHODS, TIE_TOL, MantelResult, mantel_asymmetric, mantel_symmetric, symmetrize

__all__ = [
    "MANTEL_CONVENTIONS", "ENTRY_SETS", "FIG2_TASKS", "FIG3_TASKS", "PAPER_MATRICES", "REPORTED_MANTEL", "SEC54_TASKS",
    "SEED_FILE", "TAILS", "UNATTRIBUTED_FRAGMENTS", "ComparisonCheck", "ConventionOutcome", "MantelConvention",
    "PrintedMatrix", "Reanalysis", "ReportedMantel", "compare_under_conventions", "exact_p_counts",
    "mantel_convention", "min_attainable_p", "monte_carlo_rounding_probability", "normalise_quote", "reanalyse",
]

#: The extracted text of seed 000 that every ``source`` and ``quote`` below refers to (line numbers of that file).
SEED_FILE = "000_5443756e3a1d1e0f.txt"

ENTRY_SETS = ("ordered-pairs", "symmetrised", "lower-triangle", "upper-triangle")
TAILS = ("greater", "two-sided")  # "one-sided" is "greater": Sec. 5.3 asks for positive correlation

# Sec. 5.4, "(i) all vehicles (airplane, automobile, ship, truck) in CIFAR-10, (ii) the remainder, namely six
# animals in CIFAR-10, (iii) the entire CIFAR-10 dataset and (iv) the entire CIFAR-100 dataset": in that order.
FIG2_TASKS = ("CIFAR-10 vehicles", "CIFAR-10 animals", "CIFAR-10", "CIFAR-100")
# Sec. 5.4, "five tasks (herbivores, carnivores, vehicles-1, vehicles-2 and flowers)": in that order.
FIG3_TASKS = ("herbivores", "carnivores", "vehicles-1", "vehicles-2", "flowers")
SEC54_TASKS = ("MNIST", "CIFAR-10")


def normalise_quote(text: str) -> str:
    """``text`` with every run of whitespace (line breaks of the extraction included) made one space.

    >>> normalise_quote("(r = 0.428 p\\n= 0.13)")
    '(r = 0.428 p = 0.13)'
    """
    return re.sub(r"\s+", " ", text).strip()


# ----------------------------------------------------------------------------
# Transcription
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrintedMatrix:
    """A distance matrix printed by the paper, as far as the extracted text allows.

    Attributes
    ----------
    key : short name, e.g. ``"fig2a"``.
    where : the figure and panel (or section), e.g. ``"Fig. 2a"``.
    quantity : what the cells measure.
    tasks : (n,) task names; rows are sources and columns targets (Sec. 5.4: "the source task (row)
        and the target task (column)").
    values : (n, n) float64, read-only; NaN where the text has no number (the diagonal included).
    source : where in the text the matrix is described (caption, section, lines of :data:`SEED_FILE`).
    damage : what is missing or ambiguous, in plain words.
    tasks_from : where the task names and their order come from, and whether the order is the figure's.
    prose : verbatim sentences of the text that describe the cells qualitatively.
    """

    key: str
    where: str
    quantity: str
    tasks: tuple[str, ...]
    values: np.ndarray
    source: str
    damage: str
    tasks_from: str
    prose: tuple[str, ...] = ()

    def __post_init__(self):
        values = np.array(self.values, dtype=np.float64)
        n = len(self.tasks)
        if len(set(self.tasks)) != n or n < 2:
            raise ValueError(f"{self.key}: tasks must be at least 2 distinct names; got {self.tasks!r}")
        if values.shape != (n, n):
            raise ValueError(f"{self.key}: values must be {n}x{n} for {n} tasks; got shape {values.shape}")
        known = values[np.isfinite(values)]
        if np.isinf(values).any() or (known < 0).any():
            raise ValueError(f"{self.key}: a distance must be a finite number >= 0 or NaN (not transcribed)")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def off_diagonal_total(self) -> int:
        return self.n * (self.n - 1)

    @property
    def off_diagonal_known(self) -> int:
        """Number of off-diagonal cells with a number from the text."""
        return int(np.isfinite(self.values[~np.eye(self.n, dtype=bool)]).sum())

    @property
    def diagonal_known(self) -> int:
        return int(np.isfinite(np.diag(self.values)).sum())

    @property
    def complete(self) -> bool:
        """Every off-diagonal cell is known (what a Mantel test without the diagonal needs)."""
        return self.off_diagonal_known == self.off_diagonal_total


def _unknown(n: int) -> np.ndarray:
    return np.full((n, n), np.nan)


_HEATMAP_LOST = (
    "The numbers printed in this heatmap's cells are not in the extracted text: 0 of the {m} off-diagonal "
    "cells can be read, and nothing says what the diagonal holds (zero by definition, a computed self-distance, "
    "or a blank). All cells are NaN."
)
_FIG2_ORDER = (
    "Task names from Sec. 5.4 (lines 702-707), in the order the text enumerates them. The figure's own row and "
    "column order is not recoverable: the extraction scattered five axis labels through the body text, "
    "'vehicles' (line 709), 'CIFAR100' (719), 'CIFAR10' (726), 'animals' (735), 'vehicles' (750), which suggests "
    "one axis reading vehicles, CIFAR-100, CIFAR-10, animals, but interleaved with unrelated paragraphs this is "
    "not evidence of an order."
)
_FIG3_ORDER = (
    "Task names from Sec. 5.4 (lines 778 and 847, 'We construct five tasks (herbivores, carnivores, vehicles-1, "
    "vehicles-2 and flowers)'), in that order; the figure's row and column order is not in the text. (Their "
    "CIFAR-100 classes are known only from the authors' code, see the seeds' guide, not from the paper.)"
)
_FIG5_ORDER = (
    "Not named in the text. Sec. 5.5 says 'compute distances on subsets of CIFAR-100 in Fig. 5' (line 868) and "
    "the caption 'Numbers in Fig. 5a can be directly compared to those in Fig. 3a' (line 883), and Fig. 5b is "
    "compared with Fig. 3c by a Mantel test, which needs the same tasks: taken to be the five tasks of Fig. 3, "
    "in the order of Sec. 5.4 (an inference)."
)
_FIG7_ORDER = (
    "Not named in the text. The four panels are compared with 'the fine-tuning distance in Fig. 3c' (lines "
    "912-913, 926), which needs the same tasks: taken to be the five tasks of Fig. 3, in the order of Sec. 5.4 "
    "(an inference)."
)

_FIG2_PROSE_ASYM = (
    "Task distance is asymmetric in Fig. 2a, Fig. 2c. Distance from CIFAR-10-animals is smaller than "
    "animals-CIFAR-10; this is expected because animals is a subset of CIFAR-10."
)
_FIG3_PROSE_A = (
    "Coupled transfer estimates that all these subsets of CIFAR100 are roughly equally far away from each other "
    "with herbivores-carnivores being the farthest apart while vehicles1-vehicles-2 being closest."
)


def _fig(key: str, where: str, quantity: str, tasks: tuple[str, ...], source: str, tasks_from: str,
         prose: tuple[str, ...] = (), extra: str = "") -> PrintedMatrix:
    n = len(tasks)
    damage = _HEATMAP_LOST.format(m=n * (n - 1)) + (" " + extra if extra else "")
    return PrintedMatrix(key=key, where=where, quantity=quantity, tasks=tasks, values=_unknown(n), source=source,
                         damage=damage, tasks_from=tasks_from, prose=prose)


_FIG2_CAPTION = "caption of Fig. 2 (lines 758-765)"
_FIG3_CAPTION = "caption of Fig. 3 (lines 779-784)"
_FIG5_CAPTION = "caption of Fig. 5 (lines 880-885)"
_FIG7_CAPTION = "caption of Fig. 7 (lines 918-927) and Sec. 5.5 (lines 903-917)"
_MODEL_UNSTATED = "The text does not say which of its two models (the 8-layer CNN or WRN-16-4) Figs. 2 and 3 use."

_MATRICES: tuple[PrintedMatrix, ...] = (
    _fig("fig2a", "Fig. 2a", "coupled transfer distance", FIG2_TASKS, _FIG2_CAPTION, _FIG2_ORDER,
         prose=("Coupled transfer shows similar trends as fine-tuning, e.g., the tasks animals-CIFAR-10 or "
                "vehicles-CIFAR-10 are close to each other while CIFAR-100 is far away from all tasks (it is closer "
                "to CIFAR-10 than others).", _FIG2_PROSE_ASYM,
                "Coupled transfer distances satisfy certain sanity checks, e.g., transferring to a subset task is "
                "easier than transferring from a subset task (CIFAR-10vehicles/animals), which Task2Vec does not."),
         extra=_MODEL_UNSTATED),
    _fig("fig2b", "Fig. 2b", "Task2Vec distance", FIG2_TASKS, _FIG2_CAPTION, _FIG2_ORDER,
         prose=("Task2Vec distance estimates in Fig. 2b are qualitatively quite different from these two; the "
                "distance matrix is symmetric.",
                "Also, while finetuning from animals-vehicles is relatively easy, Task2Vec estimates the distance "
                "between them to be the largest.")),
    _fig("fig2c", "Fig. 2c", "fine-tuning distance", FIG2_TASKS, _FIG2_CAPTION, _FIG2_ORDER,
         prose=(_FIG2_PROSE_ASYM,)),
    _fig("fig2d", "Fig. 2d", "uncoupled transfer distance", FIG2_TASKS, _FIG2_CAPTION, _FIG2_ORDER),
    _fig("fig3a", "Fig. 3a", "coupled transfer distance", FIG3_TASKS, _FIG3_CAPTION, _FIG3_ORDER,
         prose=(_FIG3_PROSE_A,
                "Coupled transfer broadly agrees with fine-tuning except for carnivoresflowers and "
                "herbivores-vehicles-1."),
         extra=_MODEL_UNSTATED),
    _fig("fig3b", "Fig. 3b", "Task2Vec distance", FIG3_TASKS, _FIG3_CAPTION, _FIG3_ORDER,
         prose=("This ordering is mildly inconsistent with the distances reported by Task2Vec in Fig. 3b the "
                "distance for vehicles-1-vehicles-2 is the highest here.",
                "Broadly, Task2Vec also results in a distance matrix that suggests that all tasks are equally far "
                "away from each other.")),
    _fig("fig3c", "Fig. 3c", "fine-tuning distance", FIG3_TASKS, _FIG3_CAPTION, _FIG3_ORDER,
         prose=("This ordering is consistent with the fine-tuning distance although fine-tuning results in an "
                "extremely large value for carnivores-flowers and vehicles1-herbivores.",)),
    _fig("fig3d", "Fig. 3d", "uncoupled transfer distance", FIG3_TASKS, _FIG3_CAPTION, _FIG3_ORDER,
         prose=("For all tasks, uncoupled transfer overestimates the distances compared to Fig. 3a.",
                "Further, distance estimates of uncoupled transfer do not bear much resemblance with those of "
                "fine-tuning; see for example the distances for vehicles-2-carnivores, flowers-carnivores, and "
                "vehicles-1-vehicles-2.")),
    _fig("fig5a", "Fig. 5a", "coupled transfer distance, WRN-16-4", FIG3_TASKS, _FIG5_CAPTION, _FIG5_ORDER,
         prose=("First note that task distances for coupled transfer in Fig. 5a are consistent with those for "
                "fine-tuning in Fig. 5b.",
                "WRN-16-4 model has a shorter trajectory for all task pairs compared to the CNN in Fig. 3a with "
                "fewer parameters.")),
    _fig("fig5b", "Fig. 5b", "fine-tuning distance, WRN-16-4", FIG3_TASKS, _FIG5_CAPTION, _FIG5_ORDER),
    _fig("fig7a", "Fig. 7a", "VAE trajectory length, mixture interpolation", FIG3_TASKS, _FIG7_CAPTION, _FIG7_ORDER,
         prose=("We find that although the four distance matrices in Fig. 7 agree with each other very well "
                "(r ≈ 0.15, p < 0.08 for all pairs, except the VAE with uncoupled transfer), they are very "
                "different from the fine-tuning distance in Fig. 3c.",)),
    _fig("fig7b", "Fig. 7b", "VAE trajectory length, fine-tuning", FIG3_TASKS, _FIG7_CAPTION, _FIG7_ORDER),
    _fig("fig7c", "Fig. 7c", "W2 distance, pixel space", FIG3_TASKS, _FIG7_CAPTION, _FIG7_ORDER),
    _fig("fig7d", "Fig. 7d", "W2 distance, embedding space", FIG3_TASKS, _FIG7_CAPTION, _FIG7_ORDER),
)

_SEC54_SOURCE = "Sec. 5.4 (lines 805-808)"
_SEC54_DAMAGE = (
    "Both off-diagonal cells are in the text; the diagonal is not (NaN). The text does not say which model was "
    "used. It reports no Mantel test for this pair, and none is possible: with 2 tasks there are 2 relabellings."
)
_SEC54_FROM = "Sec. 5.4: 'For transferring from MNIST to CIFAR-10' (row MNIST, column CIFAR-10) and 'the other direction'."
_SEC54_QUOTE = (
    "For transferring from MNIST to CIFAR-10, the coupled transfer distance is 0.18 (0.06 in the other direction), "
    "fine-tuning distance is 554.2 (20.6 in the other direction) and Task2Vec distance is 0.149 (same in the other "
    "direction)."
)
_MATRICES += (
    PrintedMatrix(key="sec54-coupled", where="Sec. 5.4", quantity="coupled transfer distance", tasks=SEC54_TASKS,
                  values=np.array([[np.nan, 0.18], [0.06, np.nan]]), source=_SEC54_SOURCE, damage=_SEC54_DAMAGE,
                  tasks_from=_SEC54_FROM, prose=(_SEC54_QUOTE,)),
    PrintedMatrix(key="sec54-finetune", where="Sec. 5.4", quantity="fine-tuning distance", tasks=SEC54_TASKS,
                  values=np.array([[np.nan, 554.2], [20.6, np.nan]]), source=_SEC54_SOURCE, damage=_SEC54_DAMAGE,
                  tasks_from=_SEC54_FROM, prose=(_SEC54_QUOTE,)),
    PrintedMatrix(key="sec54-task2vec", where="Sec. 5.4", quantity="Task2Vec distance", tasks=SEC54_TASKS,
                  values=np.array([[np.nan, 0.149], [0.149, np.nan]]), source=_SEC54_SOURCE, damage=_SEC54_DAMAGE,
                  tasks_from=_SEC54_FROM, prose=(_SEC54_QUOTE,)),
)

#: Every matrix the extracted text describes, by key (Figs. 2a-d, 3a-d, 5a-b, 7a-d, and Sec. 5.4's pair).
PAPER_MATRICES: Mapping[str, PrintedMatrix] = {m.key: m for m in _MATRICES}

#: Lines 812-844 of :data:`SEED_FILE`, between Sec. 5.4 and the caption of Fig. 4, one fragment per line as
#: extracted. They sit with Fig. 4a's legend ("train loss", "validation loss") and axis label ("cross entropy
#: loss"); the pair names fit the legend of Fig. 4b ("the convergence of the task distance with the number of
#: iterations k ... for a few instances"), whose axis would carry distances near 0.07. Most likely Fig. 4's tick
#: labels and legend, not cells of Fig. 3 or 5; if some were cells, their row and column could not be assigned.
#: Not used.
UNATTRIBUTED_FRAGMENTS: tuple[tuple[int, str], ...] = (
    (812, "0.28"), (814, "1.2"), (815, "train loss"), (816, "validation loss"), (824, "cross entropy loss"),
    (826, "0.18"), (828, "0.07"), (830, "0.066"), (832, "vehicles 1 carnivores herbivores"), (834, "0"),
    (836, "0.069"), (838, "0"), (840, "vehicles 2"), (842, "0.21"), (844, "0.066"),
)


@dataclass(frozen=True)
class ReportedMantel:
    """One Mantel statistic :math:`(r, p)` that the paper reports, with the sentence it comes from.

    Attributes
    ----------
    key : short name, e.g. ``"fig2a"`` or ``"fig5b-vs-fig3c"``.
    matrix : key of :math:`A` in :data:`PAPER_MATRICES`.
    references : keys of the candidate references :math:`B`, the reading first; ``"<key>.T"`` is the
        transpose of that matrix (the only "comparison with itself" that is not trivially :math:`r = 1`).
    r, p : the reported values.
    r_decimals, p_decimals : the printed precision (``0.428`` has 3).
    quote : the sentence, verbatim up to line breaks (:func:`normalise_quote`).
    where : where it is printed (caption, lines of :data:`SEED_FILE`).
    reading : which reference is meant and why, where the text leaves it open.
    """

    key: str
    matrix: str
    references: tuple[str, ...]
    r: float
    p: float
    r_decimals: int
    p_decimals: int
    quote: str
    where: str
    reading: str

    def __post_init__(self):
        if not self.references:
            raise ValueError(f"{self.key}: references must name at least one reference matrix")
        if not 0 < self.p <= 1:
            raise ValueError(f"{self.key}: p={self.p!r} is not a p-value in (0, 1]")
        if not -1 <= self.r <= 1:
            raise ValueError(f"{self.key}: r={self.r!r} is not a correlation in [-1, 1]")
        for name in ("r_decimals", "p_decimals"):
            check_positive(name, getattr(self, name), integer=True)

    @property
    def self_comparison(self) -> bool:
        """Whether the matrix is compared with itself (literally) under some reading."""
        return self.matrix in self.references

    @property
    def r_tolerance(self) -> float:
        """Half a unit of the last printed decimal of :math:`r`."""
        return 0.5 * 10.0 ** -self.r_decimals


_AGAINST_FT = "Against the fine-tuning distance of the same figure (Sec. 5.3: correlations are always computed " \
              "with the fine-tuning distance matrix)."
_SELF = ("'With itself': literally the matrix against itself, which gives r = 1 under every convention; the "
         "reading that is not trivial is the matrix against its transpose (how symmetric it is).")

REPORTED_MANTEL: tuple[ReportedMantel, ...] = (
    ReportedMantel(key="fig2a", matrix="fig2a", references=("fig2c",), r=0.428, p=0.13, r_decimals=3, p_decimals=2,
                   quote="Fig. 2a shows coupled transfer distance (r = 0.428 p = 0.13)", where=_FIG2_CAPTION,
                   reading=_AGAINST_FT),
    ReportedMantel(key="fig2b", matrix="fig2b", references=("fig2c",), r=0.03, p=0.98, r_decimals=2, p_decimals=2,
                   quote="Fig. 2b shows distances estimated using Task2Vec (r = 0.03, p = 0.98)", where=_FIG2_CAPTION,
                   reading=_AGAINST_FT),
    ReportedMantel(key="fig2c", matrix="fig2c", references=("fig2c", "fig2c.T"), r=0.61, p=0.09, r_decimals=2,
                   p_decimals=2, quote="Fig. 2c shows fine-tuning distance (r = 0.61, p = 0.09 with itself)",
                   where=_FIG2_CAPTION, reading=_SELF),
    ReportedMantel(key="fig2d", matrix="fig2d", references=("fig2c",), r=0.428, p=0.09, r_decimals=3, p_decimals=2,
                   quote="Fig. 2d shows uncoupled transfer distance (r = 0.428, p = 0.09)", where=_FIG2_CAPTION,
                   reading=_AGAINST_FT + " The same r as Fig. 2a to three decimals, with another p."),
    ReportedMantel(key="fig3a", matrix="fig3a", references=("fig3c",), r=0.14, p=0.05, r_decimals=2, p_decimals=2,
                   quote="Fig. 3a shows coupled transfer distance (r = 0.14, p = 0.05)", where=_FIG3_CAPTION,
                   reading=_AGAINST_FT),
    ReportedMantel(key="fig3b", matrix="fig3b", references=("fig3c",), r=0.07, p=0.17, r_decimals=2, p_decimals=2,
                   quote="Fig. 3b shows Task2Vec distance (r = 0.07, p = 0.17)", where=_FIG3_CAPTION,
                   reading=_AGAINST_FT),
    ReportedMantel(key="fig3c", matrix="fig3c", references=("fig3c", "fig3c.T"), r=0.36, p=0.03, r_decimals=2,
                   p_decimals=2, quote="Fig. 3c shows fine-tuning distance (r = 0.36, p = 0.03)", where=_FIG3_CAPTION,
                   reading="The reference is not stated; by analogy with Figs. 2c and 5b ('with itself'), the "
                           "fine-tuning matrix itself. " + _SELF),
    ReportedMantel(key="fig3d", matrix="fig3d", references=("fig3c",), r=0.12, p=0.47, r_decimals=2, p_decimals=2,
                   quote="Fig. 3d shows uncoupled transfer distance (r = 0.12, p = 0.47)", where=_FIG3_CAPTION,
                   reading=_AGAINST_FT),
    ReportedMantel(key="fig5a", matrix="fig5a", references=("fig5b", "fig3c"), r=0.15, p=0.01, r_decimals=2,
                   p_decimals=2, quote="Fig. 5a shows coupled transfer distance (r = 0.15, p = 0.01)",
                   where=_FIG5_CAPTION,
                   reading="The reference is not stated: the fine-tuning distance of the same model, Fig. 5b "
                           "('consistent with those for fine-tuning in Fig. 5b'), or that of Fig. 3c."),
    ReportedMantel(key="fig5b", matrix="fig5b", references=("fig5b", "fig5b.T"), r=0.39, p=0.01, r_decimals=2,
                   p_decimals=2,
                   quote="Fig. 5b shows fine-tuning distance (r = 0.39, p = 0.01 with itself and r = 0.21, p = 0.20 "
                         "with fine-tuning distance in Fig. 3c)", where=_FIG5_CAPTION, reading=_SELF),
    ReportedMantel(key="fig5b-vs-fig3c", matrix="fig5b", references=("fig3c",), r=0.21, p=0.20, r_decimals=2,
                   p_decimals=2,
                   quote="Fig. 5b shows fine-tuning distance (r = 0.39, p = 0.01 with itself and r = 0.21, p = 0.20 "
                         "with fine-tuning distance in Fig. 3c)", where=_FIG5_CAPTION,
                   reading="Against the fine-tuning distance of the CNN, Fig. 3c, as stated."),
    ReportedMantel(key="fig7a", matrix="fig7a", references=("fig3c",), r=0.1, p=0.76, r_decimals=1, p_decimals=2,
                   quote="Fig. 7a shows task distance computed using the Riemannian length of the weight trajectory "
                         "for the VAE using a mixture distribution to interpolate the tasks (see Sec. 5.1, r = 0.1, "
                         "p = 0.76)", where=_FIG7_CAPTION,
                   reading="Against Fig. 3c ('as compared to Fig. 3c'); r is printed with one decimal."),
    ReportedMantel(key="fig7b", matrix="fig7b", references=("fig3c",), r=0.09, p=0.88, r_decimals=2, p_decimals=2,
                   quote="Fig. 7b shows the same quantity for directly fine-tuning the VAE (r = 0.09, p = 0.88)",
                   where=_FIG7_CAPTION, reading="Against Fig. 3c ('as compared to Fig. 3c')."),
    ReportedMantel(key="fig7c", matrix="fig7c", references=("fig3c",), r=0.02, p=0.22, r_decimals=2, p_decimals=2,
                   quote="Fig. 7c shows task distance using the Wasserstein metric on the pixel-space (r = 0.02, "
                         "p = 0.22)", where=_FIG7_CAPTION, reading="Against Fig. 3c ('as compared to Fig. 3c')."),
    ReportedMantel(key="fig7d", matrix="fig7d", references=("fig3c",), r=0.06, p=0.40, r_decimals=2, p_decimals=2,
                   quote="Fig. 7d shows distances using Wasserstein metric on the embedding space (r = 0.06, "
                         "p = 0.40)", where=_FIG7_CAPTION, reading="Against Fig. 3c ('as compared to Fig. 3c')."),
)


# ----------------------------------------------------------------------------
# Attainable p-values
# ----------------------------------------------------------------------------


def min_attainable_p(n: int) -> float:
    r"""The smallest exact p-value of a Mantel test on :math:`n` tasks, :math:`1/n!`.

    The identity relabelling is always at least as extreme as itself, so
    :math:`p = \#\{\pi : r(A, B^\pi) \ge r(A, B)\}/n! \ge 1/n!`, with equality when no other
    relabelling reaches the observed statistic. A Monte-Carlo test estimates this p; its estimator
    :math:`(1 + X)/(1 + K)` can print less only by chance.

    >>> min_attainable_p(4), round(min_attainable_p(5), 6)
    (0.041666666666666664, 0.008333)
    """
    check_positive("n", n, integer=True)
    return 1.0 / math.factorial(n)


def exact_p_counts(p: float, n: int, decimals: int = 2) -> tuple[int, ...]:
    r"""The counts :math:`c \in \{1, \dots, n!\}` whose exact p-value :math:`c/n!` prints as ``p``.

    "Prints as" means :math:`|c/n! - p| \le \tfrac12 10^{-d}` (rounding to nearest, either way at a
    tie). An empty tuple means that no exact permutation test on :math:`n` tasks gives ``p``.

    >>> exact_p_counts(0.13, 4)  # 3/24 = 0.125
    (3,)
    >>> exact_p_counts(0.09, 4)  # 2/24 = 0.083 and 3/24 = 0.125 print as 0.08 and 0.13
    ()
    """
    check_positive("n", n, integer=True)
    total = math.factorial(n)
    h = 0.5 * 10.0 ** -decimals
    lo = max(1, math.ceil((p - h) * total - 1e-9))
    hi = min(total, math.floor((p + h) * total + 1e-9))
    return tuple(range(lo, hi + 1))


def monte_carlo_rounding_probability(p_reported: float, p_true, permutations: int, decimals: int = 2):
    r"""Chance that a Monte-Carlo Mantel test prints ``p_reported`` when the exact p-value is ``p_true``.

    .. math::

        P\Big(\big|\tfrac{1 + X}{1 + K} - p_\text{rep}\big| \le \tfrac12 10^{-d}\Big), \qquad
        X \sim \mathrm{Binomial}(K, p_\text{true}),

    where :math:`K` is ``permutations``: each random relabelling is at least as extreme as the
    observed one with probability :math:`p_\text{true}`, and the estimator counts the observed one
    once (as :func:`~ctd_lib.task_distance.stats.mantel_asymmetric`, scikit-bio and R's ``ape`` do).

    Parameters
    ----------
    p_reported : the printed p-value.
    p_true : an exact p-value, or an array of them (the result has its shape).
    permutations : :math:`K`.
    decimals : :math:`d`, the printed precision.

    >>> float(monte_carlo_rounding_probability(0.5, 0.25, 1, decimals=1))  # K = 1: 0.5 unless the draw counts
    0.75
    """
    check_positive("permutations", permutations, integer=True)
    K = permutations
    h = 0.5 * 10.0 ** -decimals
    lo = max(0, math.ceil((p_reported - h) * (K + 1) - 1 - 1e-9))
    hi = min(K, math.floor((p_reported + h) * (K + 1) - 1 + 1e-9))
    p_true = np.asarray(p_true, dtype=np.float64)
    if lo > hi:
        return np.zeros_like(p_true)
    below = sps.binom.cdf(lo - 1, K, p_true) if lo > 0 else np.zeros_like(p_true)
    return np.asarray(sps.binom.cdf(hi, K, p_true) - below, dtype=np.float64)


# ----------------------------------------------------------------------------
# Mantel tests under a convention
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MantelConvention:
    """One way to run a Mantel test on two task-distance matrices (see the module docstring).

    Attributes
    ----------
    entries : ``"ordered-pairs"`` (every :math:`i \\ne j` of the raw matrices), ``"symmetrised"``
        (the upper triangle of :math:`\\tfrac12 (D + D^\\top)`), ``"lower-triangle"`` or
        ``"upper-triangle"`` (of the raw matrices: :math:`i > j` or :math:`i < j`).
    diagonal : whether the diagonal entries are compared too.
    method : ``"pearson"`` or ``"spearman"``.
    alternative : ``"greater"`` (one-sided) or ``"two-sided"``.
    """

    entries: str
    diagonal: bool
    method: str
    alternative: str

    def __post_init__(self):
        check_choice("entries", self.entries, ENTRY_SETS)
        check_choice("method", self.method, METHODS)
        check_choice("alternative", self.alternative, TAILS)
        if not isinstance(self.diagonal, bool):
            raise ValueError(f"diagonal={self.diagonal!r} is not valid; it must be True or False")

    @property
    def label(self) -> str:
        tail = "one-sided" if self.alternative == "greater" else "two-sided"
        return f"{self.entries}, diagonal {'in' if self.diagonal else 'out'}, {self.method}, {tail}"


#: All 32 conventions: entry set x diagonal x correlation x tail.
MANTEL_CONVENTIONS: tuple[MantelConvention, ...] = tuple(
    MantelConvention(entries=e, diagonal=d, method=m, alternative=a)
    for e in ENTRY_SETS for d in (False, True) for m in METHODS for a in TAILS
)


def _transform(D: np.ndarray, entries: str) -> np.ndarray:
    # (D + D^T) / 2 keeps the diagonal D_ii, which the "diagonal in" conventions compare
    return (D + D.T) / 2.0 if entries == "symmetrised" else D


def _index(n: int, convention: MantelConvention) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the compared entries, row-major."""
    I, J = np.indices((n, n))
    rel = {"ordered-pairs": I != J, "symmetrised": I < J, "upper-triangle": I < J, "lower-triangle": I > J}
    keep = rel[convention.entries] | ((I == J) if convention.diagonal else False)
    return I[keep], J[keep]


def _needed(n: int, convention: MantelConvention) -> np.ndarray:
    """(n, n) mask of the raw entries the statistic and its null distribution read.

    A relabelling can move any off-diagonal entry into a compared position, and the symmetrised
    matrices need both directions, so every convention needs every off-diagonal entry; the diagonal
    only when it is compared.
    """
    mask = ~np.eye(n, dtype=bool)
    if convention.diagonal:
        mask |= np.eye(n, dtype=bool)
    return mask


def _missing(A: np.ndarray, B: np.ndarray, convention: MantelConvention) -> int:
    mask = _needed(A.shape[0], convention)
    return int((~np.isfinite(A[mask])).sum() + (~np.isfinite(B[mask])).sum())


def _corr_rows(x: np.ndarray, Y: np.ndarray, method: str) -> np.ndarray:
    """Correlation of ``x`` (m,) with every row of ``Y`` (k, m); NaN for a constant row."""
    if method == "spearman":
        x = sps.rankdata(x)
        Y = sps.rankdata(Y, axis=1)
    xc = x - x.mean()
    Yc = Y - Y.mean(axis=1, keepdims=True)
    den = math.sqrt(float(xc @ xc)) * np.sqrt(np.einsum("km,km->k", Yc, Yc))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (Yc @ xc) / np.where(den > 0, den, 1.0), np.nan)


def _count_extreme(null: np.ndarray, observed: float, alternative: str) -> int:
    ok = np.isfinite(null)
    if alternative == "greater":
        return int(np.count_nonzero(ok & (null >= observed - TIE_TOL)))
    return int(np.count_nonzero(ok & (np.abs(null) >= abs(observed) - TIE_TOL)))


def _perm_blocks(n: int, permutations: int | None, rng: np.random.Generator | None, block: int = 4096):
    if permutations is None:  # all n! relabellings
        it = itertools.permutations(range(n))
        while chunk := list(itertools.islice(it, block)):
            yield np.array(chunk, dtype=np.intp)
        return
    assert rng is not None
    done = 0
    while done < permutations:
        k = min(block, permutations - done)
        yield rng.permuted(np.tile(np.arange(n), (k, 1)), axis=1)
        done += k


def _check_max_exact(max_exact) -> None:
    if isinstance(max_exact, bool) or not isinstance(max_exact, int) or not 0 <= max_exact <= MAX_EXACT_LIMIT:
        raise ValueError(f"max_exact={max_exact!r} is not valid; it must be an integer in [0, {MAX_EXACT_LIMIT}]")


def mantel_convention(
    A,
    B,
    convention: MantelConvention,
    *,
    permutations: int | None = None,
    seed: int | np.random.Generator | None = 0,
    max_exact: int = 8,
) -> MantelResult:
    r"""The Mantel test of ``A`` against ``B`` under one :class:`MantelConvention`.

    .. math::

        r_C(A, B) = \operatorname{corr}\big(T_C(A)_{E_C},\ T_C(B)_{E_C}\big), \qquad
        p = \frac{\#\{\pi : r_C(A, B^\pi) \ge r_C(A, B)\}}{n!}\ (\text{exact}), \quad
        \frac{1 + \#\{k : r_C(A, B^{\pi_k}) \ge r_C(A, B)\}}{1 + K}\ (\text{sampled}),

    where :math:`T_C` is the identity or the symmetrisation, :math:`E_C` the compared entries,
    :math:`B^\pi_{ij} = B_{\pi(i)\pi(j)}`, and ``"two-sided"`` compares :math:`|r|` (ties within
    :data:`~ctd_lib.task_distance.stats.TIE_TOL`). The permuted statistic is recomputed from the
    permuted entries (ranks included), so the triangle conventions, whose compared entries change
    under a relabelling of an asymmetric matrix, are exact too. With ``entries="ordered-pairs"``,
    no diagonal, this is :func:`~ctd_lib.task_distance.stats.mantel_asymmetric`; with
    ``"symmetrised"``, no diagonal, it is scikit-bio's test (:func:`~ctd_lib.task_distance.stats.mantel_symmetric`).

    Parameters
    ----------
    A, B : (n, n) arrays, n >= 3, finite wherever the convention reads them (every off-diagonal
        entry, and the diagonal when it is compared); rows are sources.
    convention : the :class:`MantelConvention`.
    permutations : ``None`` for all :math:`n!` relabellings (``n <= max_exact``), or a number of
        random ones.
    seed : seed or generator (sampling only).
    max_exact : largest ``n`` enumerated exactly.

    Returns
    -------
    :class:`~ctd_lib.task_distance.stats.MantelResult` (``normalized_r`` and ``spearman_rho`` over
    the compared entries).

    >>> A = np.array([[0, 1, 2], [4, 0, 3], [7, 5, 0]])
    >>> res = mantel_convention(A, A, MANTEL_CONVENTIONS[0])
    >>> (round(res.statistic, 12), res.p_value)  # only the identity of 3! = 6 relabellings reaches r = 1
    (1.0, 0.16666666666666666)
    """
    if not isinstance(convention, MantelConvention):
        raise ValueError(f"convention must be a MantelConvention; got {convention!r}")
    try:
        A = np.asarray(A, dtype=np.float64)
        B = np.asarray(B, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("A and B must be square 2-D arrays of numbers") from None
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape != B.shape:
        raise ValueError(f"A and B must be square arrays of one shape; got {A.shape} and {B.shape}")
    n = A.shape[0]
    if n < 3:
        raise ValueError(f"a Mantel test needs at least 3 tasks; got {n}")
    missing = _missing(A, B, convention)
    if missing:
        raise ValueError(f"{missing} entries that the convention '{convention.label}' reads are NaN or inf")
    _check_max_exact(max_exact)
    exact = permutations is None
    if exact and n > max_exact:
        raise ValueError(f"n={n} is above max_exact={max_exact}; give a number of permutations to sample")
    if not exact:
        check_positive("permutations", permutations, integer=True)

    I, J = _index(n, convention)
    TA, TB = _transform(A, convention.entries), _transform(B, convention.entries)
    a, b = TA[I, J], TB[I, J]
    for name, x in (("A", a), ("B", b)):
        if np.ptp(x) <= 1e-12 * max(1.0, float(np.max(np.abs(x)))):
            raise ValueError(f"{name} is constant over the entries of '{convention.label}'; the correlation is undefined")
    observed = float(_corr_rows(a, b[None, :], convention.method)[0])

    rng = None if exact else np.random.default_rng(seed)
    count, total = 0, 0
    for P in _perm_blocks(n, permutations, rng):
        null = _corr_rows(a, TB[P[:, I], P[:, J]], convention.method)
        count += _count_extreme(null, observed, convention.alternative)
        total += P.shape[0]
    p = count / total if exact else (1 + count) / (1 + total)
    return MantelResult(
        statistic=observed, p_value=float(p), method=convention.method, n=n, permutations=int(total), exact=exact,
        alternative=convention.alternative, normalized_r=float(_corr_rows(a, b[None, :], "pearson")[0]),
        spearman_rho=float(_corr_rows(a, b[None, :], "spearman")[0]),
    )


@dataclass(frozen=True)
class ConventionOutcome:
    """The Mantel test of one comparison under one convention and one reference.

    Attributes
    ----------
    convention : the :class:`MantelConvention`.
    reference : key of the reference matrix (``"<key>.T"``: its transpose).
    computable : whether every entry the convention reads is known.
    reason : why not, when not computable ("" otherwise).
    r : the statistic (Pearson or Spearman, per the convention); NaN when not computable.
    p_exact : over all :math:`n!` relabellings (NaN when not computable or ``n > max_exact``).
    p_sampled : over ``permutations`` random relabellings (NaN when not computable).
    permutations : the number of random relabellings behind ``p_sampled``.
    engine : which code computed it (the library's tests where they apply).
    """

    convention: MantelConvention
    reference: str
    computable: bool
    reason: str
    r: float
    p_exact: float
    p_sampled: float
    permutations: int
    engine: str


_ENGINE_ASYM = "stats.mantel_asymmetric"
_ENGINE_SKBIO = "exact: mantel_convention; sampled: stats.mantel_symmetric (scikit-bio)"
_ENGINE_OWN = "mantel_convention"


def compare_under_conventions(
    A,
    B,
    *,
    reference: str = "B",
    conventions: Sequence[MantelConvention] = MANTEL_CONVENTIONS,
    permutations: int = 999,
    seed: int = 0,
    max_exact: int = 8,
) -> tuple[ConventionOutcome, ...]:
    """``A`` against ``B`` under every convention, exact and sampled; NaN where an entry is unknown.

    The library's tests run where they apply: :func:`~ctd_lib.task_distance.stats.mantel_asymmetric`
    for every ordered pair without the diagonal (exact and sampled), scikit-bio through
    :func:`~ctd_lib.task_distance.stats.mantel_symmetric` for the sampled symmetrised test without
    the diagonal; :func:`mantel_convention` elsewhere.

    Parameters
    ----------
    A, B : (n, n) arrays, NaN where a cell is unknown; rows are sources.
    reference : the name of ``B`` recorded in each outcome.
    conventions : the conventions to run.
    permutations : random relabellings of the sampled p.
    seed : seed of the sampled tests.
    max_exact : largest ``n`` whose :math:`n!` relabellings are enumerated.
    """
    check_positive("permutations", permutations, integer=True)
    check_count("seed", seed)
    _check_max_exact(max_exact)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    out = []
    for conv in conventions:
        nan = dict(r=float("nan"), p_exact=float("nan"), p_sampled=float("nan"))
        reason = ""
        if n < 3:
            reason = f"{n} tasks: a Mantel test needs at least 3"
        elif (missing := _missing(A, B, conv)) > 0:
            reason = f"{missing} of the entries it reads are not in the text"
        if reason:
            out.append(ConventionOutcome(convention=conv, reference=reference, computable=False, reason=reason,
                                         permutations=permutations, engine="", **nan))
            continue
        try:
            if conv.entries == "ordered-pairs" and not conv.diagonal:
                engine = _ENGINE_ASYM
                ex = mantel_asymmetric(A, B, method=conv.method, alternative=conv.alternative,
                                       max_exact=max_exact) if n <= max_exact else None
                sa = mantel_asymmetric(A, B, method=conv.method, alternative=conv.alternative,
                                       permutations=permutations, seed=seed)
            elif conv.entries == "symmetrised" and not conv.diagonal:
                engine = _ENGINE_SKBIO
                ex = mantel_convention(A, B, conv, max_exact=max_exact) if n <= max_exact else None
                sa = mantel_symmetric(symmetrize(A), symmetrize(B), method=conv.method, alternative=conv.alternative,
                                      permutations=permutations, seed=seed)
            else:
                engine = _ENGINE_OWN
                ex = mantel_convention(A, B, conv, max_exact=max_exact) if n <= max_exact else None
                sa = mantel_convention(A, B, conv, permutations=permutations, seed=seed)
        except ValueError as err:  # a constant set of entries: no correlation to compare
            out.append(ConventionOutcome(convention=conv, reference=reference, computable=False, reason=str(err),
                                         permutations=permutations, engine="", **nan))
            continue
        out.append(ConventionOutcome(
            convention=conv, reference=reference, computable=True, reason="", r=float(sa.statistic),
            p_exact=float(ex.p_value) if ex is not None else float("nan"), p_sampled=float(sa.p_value),
            permutations=permutations, engine=engine,
        ))
    return tuple(out)


# ----------------------------------------------------------------------------
# The re-analysis of the reported statistics
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonCheck:
    """A reported :math:`(r, p)` against our tests on the printed matrices, under every convention.

    Attributes
    ----------
    reported : the :class:`ReportedMantel`.
    n : number of tasks.
    min_p : the smallest exact p-value on :math:`n` tasks, :math:`1/n!` (:func:`min_attainable_p`).
    p_counts : the counts :math:`c` with :math:`c/n!` printing as the reported p (:func:`exact_p_counts`);
        empty when no exact test gives it.
    monte_carlo : ``(K, c, probability)`` for each ``K`` of ``mc_permutations``: the largest chance,
        over exact p-values :math:`c/n!`, that a test with :math:`K` random relabellings prints the
        reported p (:func:`monte_carlo_rounding_probability`).
    outcomes : one :class:`ConventionOutcome` per (reference, convention).
    r_match, p_match : per outcome, whether it reproduces the reported r, p (module docstring).
    alpha, p_factor : the decision level and the order-of-magnitude factor of the p criterion.
    """

    reported: ReportedMantel
    n: int
    min_p: float
    p_counts: tuple[int, ...]
    monte_carlo: tuple[tuple[int, int, float], ...]
    outcomes: tuple[ConventionOutcome, ...]
    r_match: tuple[bool, ...]
    p_match: tuple[bool, ...]
    alpha: float
    p_factor: float

    @property
    def p_below_minimum(self) -> bool:
        """Whether the reported p is below :math:`1/n!` beyond its printed precision."""
        return self.reported.p + 0.5 * 10.0 ** -self.reported.p_decimals < self.min_p

    @property
    def p_on_exact_lattice(self) -> bool:
        return bool(self.p_counts)

    @property
    def n_computable(self) -> int:
        return sum(o.computable for o in self.outcomes)

    @property
    def computable(self) -> bool:
        return self.n_computable > 0

    def _any(self, flags) -> bool | None:
        return any(flags) if self.computable else None

    @property
    def r_reproduced(self) -> bool | None:
        """Whether some convention reproduces the reported r (``None``: none is computable)."""
        return self._any(self.r_match)

    @property
    def p_reproduced(self) -> bool | None:
        return self._any(self.p_match)

    @property
    def both_reproduced(self) -> bool | None:
        """Whether one convention reproduces r and p together."""
        return self._any(r and p for r, p in zip(self.r_match, self.p_match))

    @property
    def reproducing(self) -> tuple[str, ...]:
        """Labels (``reference: convention``) of the conventions that reproduce r and p."""
        return tuple(f"{o.reference}: {o.convention.label}" for o, r, p in zip(self.outcomes, self.r_match,
                                                                              self.p_match) if r and p)

    def _range(self, values) -> tuple[float, float]:
        v = np.array([x for o, x in zip(self.outcomes, values) if o.computable], dtype=float)
        v = v[np.isfinite(v)]
        return (float(v.min()), float(v.max())) if v.size else (float("nan"), float("nan"))

    @property
    def r_range(self) -> tuple[float, float]:
        return self._range(o.r for o in self.outcomes)

    @property
    def p_range(self) -> tuple[float, float]:
        return self._range(o.p_exact for o in self.outcomes)


def _r_matches(r: float, rep: ReportedMantel) -> bool:
    return bool(np.isfinite(r) and abs(r - rep.r) <= rep.r_tolerance + 1e-9)


def _p_matches(p: float, rep: ReportedMantel, alpha: float, factor: float) -> bool:
    if not (np.isfinite(p) and p > 0):
        return False
    return bool((p <= alpha) == (rep.p <= alpha) and 1.0 / factor < p / rep.p < factor)


def _reference_values(ref: str, matrices: Mapping[str, PrintedMatrix]) -> np.ndarray:
    key, transpose = (ref[:-2], True) if ref.endswith(".T") else (ref, False)
    if key not in matrices:
        raise ValueError(f"reference {ref!r} names no matrix; known: {sorted(matrices)}")
    return matrices[key].values.T if transpose else matrices[key].values


@dataclass(frozen=True)
class Reanalysis:
    """The table of :func:`reanalyse`: one :class:`ComparisonCheck` per reported comparison.

    Attributes
    ----------
    checks : the comparisons, in the order given.
    permutations : random relabellings of every sampled p.
    mc_permutations : the :math:`K` of the Monte-Carlo consistency of each reported p.
    alpha, p_factor : the p criterion (module docstring).
    conventions : the conventions run.
    """

    checks: tuple[ComparisonCheck, ...]
    permutations: int
    mc_permutations: tuple[int, ...]
    alpha: float
    p_factor: float
    conventions: tuple[MantelConvention, ...] = field(default=MANTEL_CONVENTIONS)

    def check(self, key: str) -> ComparisonCheck:
        for c in self.checks:
            if c.reported.key == key:
                return c
        raise ValueError(f"no reported comparison {key!r}; known: {[c.reported.key for c in self.checks]}")

    @property
    def n_computable(self) -> int:
        return sum(c.computable for c in self.checks)

    def summary_rows(self) -> list[dict]:
        """One row per reported comparison (plain values, for a table)."""
        rows = []
        for c in self.checks:
            rep = c.reported
            mc = {k: prob for k, _, prob in c.monte_carlo}
            rows.append({
                "comparison": rep.key, "A": rep.matrix, "B (candidates)": ", ".join(rep.references), "n": c.n,
                "reported r": rep.r, "reported p": rep.p, "min p = 1/n!": c.min_p,
                "exact p prints as reported": ", ".join(f"{k}/{math.factorial(c.n)}" for k in c.p_counts) or "none",
                **{f"P(prints p | K={k})": mc[k] for k in self.mc_permutations},
                "conventions computable": f"{c.n_computable} of {len(c.outcomes)}",
                "our r (range)": c.r_range, "our exact p (range)": c.p_range,
                "r reproduced": c.r_reproduced, "p reproduced": c.p_reproduced, "both": c.both_reproduced,
            })
        return rows

    def convention_rows(self, key: str) -> list[dict]:
        """One row per (reference, convention) of one comparison."""
        c = self.check(key)
        return [{"reference": o.reference, "convention": o.convention.label, "r": o.r, "exact p": o.p_exact,
                 f"sampled p (K={o.permutations})": o.p_sampled, "r matches": rm, "p matches": pm,
                 "engine": o.engine or o.reason}
                for o, rm, pm in zip(c.outcomes, c.r_match, c.p_match)]


def reanalyse(
    reported: Sequence[ReportedMantel] = REPORTED_MANTEL,
    matrices: Mapping[str, PrintedMatrix] = PAPER_MATRICES,
    *,
    conventions: Sequence[MantelConvention] = MANTEL_CONVENTIONS,
    permutations: int = 999,
    mc_permutations: Sequence[int] = (99, 999, 9999),
    alpha: float = 0.05,
    p_factor: float = 10.0,
    seed: int = 0,
    max_exact: int = 8,
) -> Reanalysis:
    r"""Re-run every reported Mantel test on the printed matrices under every convention.

    For each :class:`ReportedMantel`, for each candidate reference and each convention,
    :func:`compare_under_conventions` gives our :math:`r`, exact and sampled :math:`p` (NaN where a
    cell is not in the text), and the reported values are checked against them: :math:`r` to half a
    unit of its last printed decimal, :math:`p` by the decision at ``alpha`` and a factor
    ``p_factor``. Independently of the cells, each reported :math:`p` is checked against what a
    permutation test on :math:`n` tasks can give: at least :math:`1/n!`, a rounding of some
    :math:`c/n!` for an exact test, and the chance that a test with :math:`K` random relabellings
    prints it.

    Parameters
    ----------
    reported : the comparisons (default: every one the paper states, :data:`REPORTED_MANTEL`).
    matrices : the matrices they name (default: :data:`PAPER_MATRICES`).
    conventions : default all 32 of :data:`MANTEL_CONVENTIONS`.
    permutations : random relabellings of the sampled p-values.
    mc_permutations : the :math:`K` values of the Monte-Carlo consistency check.
    alpha : the decision level of the p criterion.
    p_factor : "the same order of magnitude": our p within this factor of the reported one.
    seed : seed of the sampled tests.
    max_exact : largest ``n`` enumerated exactly.

    Returns
    -------
    :class:`Reanalysis`.
    """
    check_positive("permutations", permutations, integer=True)
    mc_permutations = tuple(mc_permutations)
    if not mc_permutations:
        raise ValueError("mc_permutations must hold at least one number of permutations")
    for k in mc_permutations:
        check_positive("mc_permutations", k, integer=True)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} is not valid; it must be a number in (0, 1)")
    check_positive("p_factor", p_factor)
    if p_factor <= 1:
        raise ValueError(f"p_factor={p_factor!r} is not valid; it must be a number > 1")
    _check_max_exact(max_exact)
    conventions = tuple(conventions)
    checks = []
    for rep in reported:
        if rep.matrix not in matrices:
            raise ValueError(f"{rep.key}: matrix {rep.matrix!r} is not among the matrices {sorted(matrices)}")
        A = matrices[rep.matrix].values
        n = A.shape[0]
        outcomes: list[ConventionOutcome] = []
        for ref in rep.references:
            B = _reference_values(ref, matrices)
            if B.shape != A.shape:
                raise ValueError(f"{rep.key}: reference {ref!r} is {B.shape}, the matrix {A.shape}")
            outcomes += compare_under_conventions(A, B, reference=ref, conventions=conventions,
                                                  permutations=permutations, seed=seed, max_exact=max_exact)
        mc = []
        if n <= MAX_EXACT_LIMIT:  # every exact p-value c / n!, c = 1..n!
            lattice = np.arange(1, math.factorial(n) + 1) / math.factorial(n)
            for K in mc_permutations:
                probs = monte_carlo_rounding_probability(rep.p, lattice, K, rep.p_decimals)
                best = int(np.argmax(probs))
                mc.append((K, best + 1, float(probs[best])))
        checks.append(ComparisonCheck(
            reported=rep, n=n, min_p=min_attainable_p(n), p_counts=exact_p_counts(rep.p, n, rep.p_decimals),
            monte_carlo=tuple(mc), outcomes=tuple(outcomes),
            r_match=tuple(_r_matches(o.r, rep) for o in outcomes),
            p_match=tuple(_p_matches(o.p_exact, rep, alpha, p_factor) for o in outcomes),
            alpha=alpha, p_factor=p_factor,
        ))
    return Reanalysis(checks=tuple(checks), permutations=permutations, mc_permutations=mc_permutations, alpha=alpha,
                      p_factor=p_factor, conventions=conventions)
