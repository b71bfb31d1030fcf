r"""Chapter 4's experiment: is Theorem 5 informative along a real transfer trajectory?

Seed 000 (Gao & Chaudhari 2021), Sec. 4, Eqs. (13)-(14), Theorem 5 and the
Fig. 4a analogue. For each of ``draws`` independent draws of :math:`N` training
images per binary task (source digits 3 vs 8, target 5 vs 6, labels 0/1 on a
shared 2-way head), :func:`run_draw`

1. trains a source model and runs the coupled (Eq. 12) and uncoupled (Eq. 10)
   transfer with ``K + 1`` cost checkpoints :math:`w_0, \dots, w_K` at instants
   :math:`\tau_0 = 0 < \tau_1 < \dots < \tau_K = 1`;
2. builds at every instant the *training samples*: :math:`N` pairs drawn from the
   training coupling (displacement interpolation, Eq. 8) for the coupled
   trajectory, or :math:`N` samples of the mixture (Eq. 9) for the uncoupled
   one, with one fixed generator, so the same pairs move along :math:`\tau`; and
   *population samples*: ``n_population`` draws of the same kind from the
   held-out tasks (the whole ``test`` split of both tasks, coupled by the
   feature-based block coupling :func:`~ctd_lib.task_distance.coupled.initial_coupling`);
3. measures the gap, the speed term :math:`S` and the loss change
   :math:`\sum_k\delta_k` with :func:`~ctd_lib.task_distance.rademacher.trajectory_gap`;
4. at the instants ``rademacher_taus`` fits a linear head on fixed features
   (penultimate features of the draw's source model, plus a constant 1 for a
   bias) in the ball :math:`\|w\|\le r` and compares its measured gap with the
   classical Rademacher bound of Sec. 4.

:func:`run_check` aggregates the draws: the tail :math:`P(\text{avg gap} > \epsilon)`
against Theorem 5's bound on a grid of :math:`\epsilon`, with the trajectory term
taken as the mean speed term over draws.

Choices where the paper is silent:

* The trajectory trains on the displacement interpolation (``interpolation =
  "displacement"``), so its training distribution is the one whose samples are
  evaluated; the Beta-mixup of Sec. 3.4 is available through the field.
* The linear head needs labels in {-1, +1}; an interpolated sample's label is
  the argmax of its label distribution, with exact ties (:math:`\tau = 0.5`,
  pairs of different labels) broken by a seeded fair coin. At :math:`\tau \in
  \{0, 1\}` the labels are the tasks' own. The features come from a source model
  trained on the draw's source images, so at :math:`\tau = 0` the class is not
  independent of the sample (the bound is then only indicative).
* :math:`R_N` of Eq. (13) is an expectation over samples; it is estimated by the
  mean over draws of the per-draw Monte-Carlo estimate, and the classical bound
  uses that mean.

:func:`metrics` and :func:`claims` turn a :class:`RademacherCheck` into the numbers
and the four verdicts the chapter records (the results file of
``notebooks/04_rademacher_bound.py``).
"""
from __future__ import annotations

import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .._util.checks import check_choice, check_count, check_in_range, check_positive
from .._util.progress import progress
from .._util.threads import limited_threads
from ..data import Task, TaskSpec, make_task
from ..geometry.sgd import accuracy
from ..models import MODEL_NAMES, make_model
from ..results import SCALES, Claim
from ..task_distance.coupled import (
    CoupledConfig,
    coupled_transfer_distance,
    initial_coupling,
    penultimate_features,
    train_source_model,
    uncoupled_transfer_distance,
)
from ..task_distance.rademacher import (
    RademacherEstimate,
    TrajectoryGap,
    classical_bound,
    clipped_logistic_loss,
    contraction_upper,
    fit_linear_ball,
    n_for_nonvacuous,
    rademacher_linear,
    rademacher_loss_class_lower,
    theorem5_bound,
    trajectory_gap,
)
from ..transport.interpolation import INTERPOLATIONS, make_sampler

__all__ = ["DrawResult", "IN_SHAPE", "LinearHeadDraw", "LinearHeadSummary", "NOTEBOOK_PARAMETERS", "RademacherCheck",
           "RademacherCheckConfig", "claims", "held_out_tasks", "limited_threads", "metrics", "run_check", "run_draw"]

IN_SHAPE = (1, 28, 28)

# the parameters cell of notebooks/04_rademacher_bound.py (all but results_dir), in its order:
# what RademacherCheckConfig.parameters() records in the results' provenance
NOTEBOOK_PARAMETERS = ("source_digits", "target_digits", "n_train", "n_population", "draws", "K", "loss_bound",
                       "n_in_exponent", "gap_threshold", "hidden", "source_steps", "source_lr", "transfer_steps",
                       "transfer_lr", "batch_size", "outer_iters", "block_size", "interpolation", "radius", "delta",
                       "seed", "scale")


@dataclass(frozen=True, kw_only=True)
class RademacherCheckConfig:
    """Parameters of chapter 4 (the notebook's ``parameters`` cell, validated).

    Every field of :data:`NOTEBOOK_PARAMETERS` has the notebook's name; the others (``model``,
    ``rademacher_taus``, the Monte-Carlo sizes, ``eps_points``, ``threads``) are library settings
    the notebook leaves at their defaults. A bad value raises a one-line ``ValueError`` naming the
    field, before any work. ``source_digits`` and ``target_digits`` may be given as lists (as the
    notebook's parameters cell does); they are stored as tuples.
    """

    source_digits: tuple = (3, 8)  # binary source task, labels 0/1 (a shared 2-way head)
    target_digits: tuple = (5, 6)  # binary target task, labels 0/1
    n_train: int = 200  # N: training samples per task and per instant (per class N // 2)
    n_population: int = 1000  # held-out interpolated samples per instant (the population estimate)
    draws: int = 30  # independent draws of the training samples
    K: int = 10  # instants tau_1..tau_K (cost checkpoints of the trajectory = K + 1)
    loss_bound: float = 2.0  # M: cross-entropy clipped at M
    model: str = "mlp"  # architecture (ctd_lib.models.make_model)
    hidden: int = 64  # hidden units of the MLP (its penultimate features have this width)
    source_steps: int = 300  # SGD steps training the source model
    source_lr: float = 0.1  # their learning rate
    batch_size: int = 32  # mini-batch of every SGD run
    transfer_steps: int = 200  # SGD steps of one transfer trajectory (CoupledConfig.steps)
    transfer_lr: float = 0.05  # its learning rate, the d tau of Eq. (12c)
    outer_iters: int = 2  # alternations of Eq. (12) for the coupled transfer
    block_size: int = 30  # largest block of the block-diagonal coupling (Sec. 3.4)
    interpolation: str = "displacement"  # training samples of the coupled trajectory (see module doc)
    radius: float = 1.0  # r of A(r) = {||w|| <= r} for the linear head
    rademacher_taus: tuple = (0.0, 0.5, 1.0)  # instants of the linear-head (Rademacher) check
    rademacher_draws: int = 1000  # sigma draws for the exact-supremum estimate of the linear class
    loss_lower_draws: int = 50  # sigma draws for the lower estimate of the loss class
    loss_lower_steps: int = 200  # projected gradient-ascent steps per sigma draw
    fit_steps: int = 500  # projected gradient-descent steps of the linear head
    eps_points: int = 50  # eps grid: this many values from 0 to M
    delta: float = 0.05  # confidence parameter of the classical bound
    n_in_exponent: bool = True  # Hoeffding's N in the exponent of Eq. (14) (False: the printed form)
    gap_threshold: float = 0.1  # "the gap stays small": at most this fraction of M at every instant (a claim)
    seed: int = 0  # seeds every draw (data subsets, models, samplers)
    scale: str = "cpu"  # the results' scale: "cpu", "paper" or "smoke" (recorded, not used by the run)
    threads: int = 1  # torch and BLAS threads while running (restored after; 0 leaves them as they are)

    def __post_init__(self):
        for name in ("source_digits", "target_digits"):
            d = getattr(self, name)
            if isinstance(d, list):  # the notebook's parameters cell writes lists
                d = tuple(d)
                object.__setattr__(self, name, d)
            if not (isinstance(d, tuple) and len(d) == 2 and all(isinstance(c, int) and not isinstance(c, bool)
                                                               and 0 <= c <= 9 for c in d) and d[0] != d[1]):
                raise ValueError(f"{name}={d!r} is not valid; it must be a tuple of two different digits in 0..9")
        for name in ("n_train", "n_population", "draws", "K", "hidden", "source_steps", "batch_size",
                     "transfer_steps", "outer_iters", "block_size", "rademacher_draws", "loss_lower_draws",
                     "loss_lower_steps", "fit_steps", "eps_points"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("loss_bound", "source_lr", "transfer_lr", "radius", "gap_threshold", "delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{name}={v!r} is not valid; it must be a number")
        for name in ("loss_bound", "source_lr", "transfer_lr", "radius", "gap_threshold"):
            check_positive(name, getattr(self, name))
        if self.n_train < 2 or self.n_train % 2:
            raise ValueError(f"n_train={self.n_train!r} is not valid; it must be an even integer >= 2 "
                             "(N // 2 images of each class)")
        if self.transfer_steps < 2 * self.K:
            raise ValueError(f"transfer_steps={self.transfer_steps!r} is not valid; it must be >= 2 * K = "
                             f"{2 * self.K} so that the K + 1 checkpoints fall at distinct instants")
        if self.eps_points < 2:
            raise ValueError(f"eps_points={self.eps_points!r} is not valid; it must be an integer >= 2")
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("interpolation", self.interpolation, [k for k in INTERPOLATIONS if k != "mixture"])
        if not isinstance(self.n_in_exponent, bool):
            raise ValueError(f"n_in_exponent={self.n_in_exponent!r} is not valid; it must be True or False")
        check_in_range("delta", self.delta, 0.0, 1.0)
        if not 0 < self.delta < 1:
            raise ValueError(f"delta={self.delta!r} is not valid; it must be a number in (0, 1)")
        taus = self.rademacher_taus
        if not isinstance(taus, tuple) or not taus:
            raise ValueError(f"rademacher_taus={taus!r} is not valid; it must be a non-empty tuple of numbers "
                             "in [0, 1]")
        for t in taus:
            check_in_range("rademacher_taus", t, 0.0, 1.0)
        for name in ("seed", "threads"):
            check_count(name, getattr(self, name))
        check_choice("scale", self.scale, SCALES)

    def parameters(self) -> dict:
        """The notebook's parameters as run (:data:`NOTEBOOK_PARAMETERS`), plain values: the results' provenance."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in NOTEBOOK_PARAMETERS)}

    def coupled_config(self, seed: int) -> CoupledConfig:
        """The :class:`~ctd_lib.task_distance.coupled.CoupledConfig` of both transfers, with ``K + 1`` checkpoints.

        Theorem 5's speed term is the per-sample length of the trajectory as the step shrinks, so this
        chapter keeps the per-step line element on each mini-batch (``length_estimator="per_step"``).
        """
        return CoupledConfig(steps=self.transfer_steps, lr=self.transfer_lr, batch_size=self.batch_size,
                             outer_iters=self.outer_iters, block_size=self.block_size,
                             interpolation=self.interpolation, length_checkpoints=self.K,
                             length_estimator="per_step", length_inputs="batch", seed=seed)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------
# one draw
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearHeadDraw:
    """The linear-head check of one draw, one entry per instant of ``rademacher_taus``."""

    taus: np.ndarray  # (R,) instants
    rademacher: np.ndarray  # (R,) exact-supremum estimate of the linear class R_N(F_r)
    rademacher_stderr: np.ndarray  # (R,) its Monte-Carlo standard error
    loss_lower: np.ndarray  # (R,) lower estimate of R_N(loss class)
    loss_lower_stderr: np.ndarray  # (R,)
    train_loss: np.ndarray  # (R,) clipped logistic loss of the fitted head on the N training samples
    population_loss: np.ndarray  # (R,) the same on the held-out samples
    gap: np.ndarray  # (R,) population - train
    feature_rms: np.ndarray  # (R,) sqrt(mean ||phi||^2) of the training features


@dataclass(frozen=True)
class DrawResult:
    """One draw of the training samples: both trajectories' gaps and the linear-head check."""

    draw: int
    seed: int  # the draw's derived seed
    coupled: TrajectoryGap
    uncoupled: TrajectoryGap
    coupled_distance: float  # the coupled transfer distance (CoupledConfig.convention)
    uncoupled_distance: float
    coupled_per_sample_length: float  # per-sample Fisher-Rao length of the final coupled trajectory (all SGD steps)
    uncoupled_per_sample_length: float
    source_accuracy: float  # the source model's accuracy on the held-out source task
    linear: LinearHeadDraw


def _draw_seeds(seed: int, draw: int) -> list:
    return [int(s) for s in np.random.SeedSequence([seed, draw]).generate_state(8)]


def _task(digits: tuple, split: str, n_per_class: int | None, seed: int) -> Task:
    spec = TaskSpec(f"mnist10k-{digits[0]}{digits[1]}", "mnist10k", digits)
    return make_task(spec, split, n_per_class=n_per_class, seed=seed, label_offset=0)


def held_out_tasks(config: RademacherCheckConfig) -> tuple[Task, Task]:
    """The population pools: the whole ``test`` split of the source and target tasks (fixed across draws)."""
    return _task(config.source_digits, "test", None, 0), _task(config.target_digits, "test", None, 0)


def _hard_labels(y: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """{-1, +1} labels of binary label distributions: argmax, exact ties by a fair coin."""
    p1 = y[:, 1].double().cpu().numpy()
    p0 = y[:, 0].double().cpu().numpy()
    coin = rng.random(p1.shape[0]) < 0.5
    return np.where(p1 > p0, 1.0, np.where(p1 < p0, -1.0, np.where(coin, 1.0, -1.0)))


def _with_bias(features: np.ndarray) -> np.ndarray:
    return np.hstack([features, np.ones((features.shape[0], 1))])


def _linear_head(config: RademacherCheckConfig, model, train_sampler, pop_sampler, seeds: list) -> LinearHeadDraw:
    rows: dict[str, list] = {k: [] for k in ("rad", "rad_se", "low", "low_se", "train", "pop", "rms")}
    M = config.loss_bound
    for tau in config.rademacher_taus:
        xb, yb = train_sampler(float(tau), config.n_train, np.random.default_rng(seeds[4]))
        xp, yp = pop_sampler(float(tau), config.n_population, np.random.default_rng(seeds[5]))
        coin = np.random.default_rng(seeds[6])
        ytr, ypo = _hard_labels(yb, coin), _hard_labels(yp, coin)
        ftr, fpo = _with_bias(penultimate_features(model, xb)), _with_bias(penultimate_features(model, xp))
        rad = rademacher_linear(ftr, config.radius, n_draws=config.rademacher_draws, seed=seeds[7])
        low = rademacher_loss_class_lower(ftr, ytr, config.radius, loss_bound=M, n_draws=config.loss_lower_draws,
                                          steps=config.loss_lower_steps, seed=seeds[7])
        w = fit_linear_ball(ftr, ytr, config.radius, steps=config.fit_steps, seed=seeds[7])
        rows["rad"].append(rad.value)
        rows["rad_se"].append(rad.stderr)
        rows["low"].append(low.value)
        rows["low_se"].append(low.stderr)
        rows["train"].append(float(clipped_logistic_loss(w, ftr, ytr, M).mean()))
        rows["pop"].append(float(clipped_logistic_loss(w, fpo, ypo, M).mean()))
        rows["rms"].append(float(np.sqrt((ftr ** 2).sum(axis=1).mean())))
    a = {k: np.asarray(v) for k, v in rows.items()}
    return LinearHeadDraw(taus=np.asarray(config.rademacher_taus, dtype=float), rademacher=a["rad"],
                          rademacher_stderr=a["rad_se"], loss_lower=a["low"], loss_lower_stderr=a["low_se"],
                          train_loss=a["train"], population_loss=a["pop"], gap=a["pop"] - a["train"],
                          feature_rms=a["rms"])


def _gap(config, model, log, train_sampler, pop_sampler, seeds) -> TrajectoryGap:
    taus = list(log.checkpoint_tau)
    train = [tuple(train_sampler(t, config.n_train, np.random.default_rng(seeds[4]))) for t in taus]
    pop = [tuple(pop_sampler(t, config.n_population, np.random.default_rng(seeds[5]))) for t in taus]
    return trajectory_gap(model, log.checkpoints, taus, train, pop, loss_bound=config.loss_bound,
                          buffers=log.checkpoint_buffers)


def run_draw(config: RademacherCheckConfig, draw: int, *, held_out: tuple[Task, Task] | None = None) -> DrawResult:
    """One draw: training samples, source model, both transfers, their gaps and the linear-head check.

    Every seed is derived from ``(config.seed, draw)`` by ``numpy.random.SeedSequence``.
    ``held_out`` (from :func:`held_out_tasks`) saves reloading the population pools.
    """
    if not isinstance(config, RademacherCheckConfig):
        raise ValueError(f"config must be a RademacherCheckConfig; got {type(config).__name__}")
    check_count("draw", draw)
    with limited_threads(config.threads):
        return _run_draw(config, draw, held_out)


def _run_draw(config: RademacherCheckConfig, draw: int, held_out) -> DrawResult:
    seeds = _draw_seeds(config.seed, draw)
    half = config.n_train // 2
    src = _task(config.source_digits, "train", half, seeds[0])
    tgt = _task(config.target_digits, "train", half, seeds[1])
    src_te, tgt_te = held_out if held_out is not None else held_out_tasks(config)
    opts = {"hidden": (config.hidden,)} if config.model == "mlp" else {}
    model = train_source_model(
        src, lambda: make_model(config.model, in_shape=IN_SHAPE, num_classes=2, seed=seeds[2], **opts),
        steps=config.source_steps, lr=config.source_lr, batch_size=config.batch_size, seed=seeds[2])
    ccfg = config.coupled_config(seeds[3] % (2 ** 31))
    coupled = coupled_transfer_distance(src, tgt, model, ccfg, show_progress=False)
    uncoupled = uncoupled_transfer_distance(src, tgt, model, ccfg, show_progress=False)
    val_plan = initial_coupling(model, src_te, tgt_te, ccfg)
    samplers = {
        "coupled": (make_sampler("displacement", src.x, src.y, tgt.x, tgt.y, coupled.coupling, num_classes=2),
                    make_sampler("displacement", src_te.x, src_te.y, tgt_te.x, tgt_te.y, val_plan, num_classes=2)),
        "uncoupled": (make_sampler("mixture", src.x, src.y, tgt.x, tgt.y, num_classes=2),
                      make_sampler("mixture", src_te.x, src_te.y, tgt_te.x, tgt_te.y, num_classes=2)),
    }
    gap_c = _gap(config, model, coupled.log, *samplers["coupled"], seeds)
    gap_u = _gap(config, model, uncoupled.log, *samplers["uncoupled"], seeds)
    linear = _linear_head(config, model, *samplers["coupled"], seeds)
    return DrawResult(draw=draw, seed=seeds[0], coupled=gap_c, uncoupled=gap_u, coupled_distance=coupled.distance,
                      uncoupled_distance=uncoupled.distance,
                      coupled_per_sample_length=coupled.log.length.per_sample,
                      uncoupled_per_sample_length=uncoupled.log.length.per_sample,
                      source_accuracy=accuracy(model, src_te.x, src_te.y),
                      linear=linear)


# ----------------------------------------------------------------------------
# all draws
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearHeadSummary:
    """The linear-head check over draws: Rademacher estimates, the classical bound and measured gaps."""

    taus: np.ndarray  # (R,)
    rademacher: np.ndarray  # (draws, R) R_N(F_r), exact supremum averaged over sigma
    contraction_upper: np.ndarray  # (draws, R) upper estimate of R_N(loss class) (Ledoux-Talagrand)
    loss_lower: np.ndarray  # (draws, R) lower estimate of R_N(loss class)
    loss_lower_stderr: np.ndarray  # (draws, R)
    classical_bound: np.ndarray  # (R,) 2 R_N + M sqrt(2 log(1/delta) / N), R_N the mean contraction upper
    gap: np.ndarray  # (draws, R) measured gap of the fitted linear head
    fraction_exceeding: np.ndarray  # (R,) fraction of draws whose gap exceeds the classical bound
    delta: float


@dataclass(frozen=True)
class RademacherCheck:
    """What :func:`run_check` returns (see the module docstring)."""

    taus: np.ndarray  # (K+1,) instants of the checkpoints (the same for every draw)
    avg_gap_coupled: np.ndarray  # (draws,) the average gap of Theorem 5, coupled trajectory
    avg_gap_uncoupled: np.ndarray  # (draws,)
    train_curve_coupled: np.ndarray  # (K+1,) mean over draws of the training loss at each instant (Fig. 4a)
    population_curve_coupled: np.ndarray  # (K+1,) mean held-out loss
    train_curve_uncoupled: np.ndarray  # (K+1,)
    population_curve_uncoupled: np.ndarray  # (K+1,)
    speed_term_coupled: np.ndarray  # (draws,) S of each coupled trajectory
    speed_term_uncoupled: np.ndarray  # (draws,)
    loss_change_term_coupled: np.ndarray  # (draws,) sum_k delta_k
    loss_change_term_uncoupled: np.ndarray  # (draws,)
    a2_fraction_coupled: float  # fraction of (draw, k) at which A2 holds on the coupled trajectory
    max_gap_along_trajectory: float  # max over k of the mean-over-draws coupled gap
    eps: np.ndarray  # (E,) grid from 0 to M
    tail_coupled: np.ndarray  # (E,) fraction of draws with avg gap > eps
    tail_uncoupled: np.ndarray  # (E,)
    bound: np.ndarray  # (E,) Theorem 5 with T = mean coupled speed term (1 where not applicable)
    bound_applicable: np.ndarray  # (E,) bool, eps > threshold
    threshold: float  # 2 * mean coupled speed term
    bound_loss_change: np.ndarray  # (E,) Theorem 5 with T = mean coupled sum_k delta_k
    threshold_loss_change: float  # 2 * mean coupled sum_k delta_k
    bound_violations: int  # eps at which tail_coupled > bound
    coupled_vs_uncoupled_speed_term_ratio: float  # mean over draws of S_coupled / S_uncoupled
    coupled_distance: np.ndarray  # (draws,)
    uncoupled_distance: np.ndarray  # (draws,)
    coupled_per_sample_length: np.ndarray  # (draws,) the limit of S as the instants refine (SGD noise included)
    uncoupled_per_sample_length: np.ndarray  # (draws,)
    source_accuracy: np.ndarray  # (draws,) held-out accuracy of each source model
    linear: LinearHeadSummary
    n: int  # N
    K: int
    loss_bound: float  # M
    gap_threshold: float  # the "small gap" of the first claim, as a fraction of M
    wall_time: float  # seconds
    config: dict = field(default_factory=dict)
    draws: list = field(default_factory=list, repr=False)  # the DrawResult of every draw

    @property
    def n_needed(self) -> int | float:
        """The N at which Theorem 5 (speed term) would give probability 0.05 at eps = M; inf if never."""
        return n_for_nonvacuous(self.loss_bound, self.K, self.loss_bound, self.threshold / 2.0)

    @property
    def n_draws(self) -> int:
        """The number of independent draws of the training samples."""
        return len(self.avg_gap_coupled)


def _estimate(value: float, n: int, radius: float) -> RademacherEstimate:
    return RademacherEstimate(value=float(value), stderr=float("nan"), n_draws=1, n=n, radius=radius)


def _bounds(eps: np.ndarray, *, n: int, K: int, M: float, term: float, n_in_exponent: bool):
    res = [theorem5_bound(float(e), n=n, K=K, loss_bound=M, trajectory_term=term, n_in_exponent=n_in_exponent,
                          strict=False) for e in eps]
    return np.array([b.probability for b in res]), np.array([b.applicable for b in res])


def run_check(config: RademacherCheckConfig | None = None, *, show_progress: bool | None = None) -> RademacherCheck:
    r"""Every draw of :func:`run_draw`, aggregated into tails, bounds and curves (see :class:`RademacherCheck`).

    The tail is :math:`P(\frac1K\sum_k \mathrm{gap}_k > \epsilon)` over draws; ``bound`` is Theorem 5
    (:func:`~ctd_lib.task_distance.rademacher.theorem5_bound`, :math:`N` in the exponent unless ``n_in_exponent`` is
    False) with the trajectory term the
    mean coupled speed term :math:`S`, ``bound_loss_change`` the same with :math:`\sum_k\delta_k`.

    The run uses ``config.threads`` torch and BLAS threads (:func:`limited_threads`): every tensor
    here is small, and on a 2-core machine shared with other work the default thread pools made a
    draw about 15 times slower (spin-waiting threads, and numpy's small SVDs in the block matching).
    """
    cfg = config or RademacherCheckConfig()
    if not isinstance(cfg, RademacherCheckConfig):
        raise ValueError(f"config must be a RademacherCheckConfig; got {type(cfg).__name__}")
    start = time.perf_counter()
    held = held_out_tasks(cfg)
    with limited_threads(cfg.threads):
        draws = [_run_draw(cfg, d, held) for d in progress(range(cfg.draws), desc="draws", enabled=show_progress)]
    M, N, K = cfg.loss_bound, cfg.n_train, cfg.K
    stack = lambda f: np.array([f(d) for d in draws])  # noqa: E731
    avg_c, avg_u = stack(lambda d: d.coupled.avg_gap), stack(lambda d: d.uncoupled.avg_gap)
    s_c, s_u = stack(lambda d: d.coupled.speed_term), stack(lambda d: d.uncoupled.speed_term)
    lc_c, lc_u = stack(lambda d: d.coupled.loss_change_term), stack(lambda d: d.uncoupled.loss_change_term)
    gap_curve = stack(lambda d: d.coupled.gap).mean(axis=0)
    eps = np.linspace(0.0, M, cfg.eps_points)
    tail_c = (avg_c[None, :] > eps[:, None]).mean(axis=1)
    tail_u = (avg_u[None, :] > eps[:, None]).mean(axis=1)
    bound, applicable = _bounds(eps, n=N, K=K, M=M, term=float(s_c.mean()), n_in_exponent=cfg.n_in_exponent)
    bound_lc, _ = _bounds(eps, n=N, K=K, M=M, term=float(lc_c.mean()), n_in_exponent=cfg.n_in_exponent)

    lin = [d.linear for d in draws]
    rad = np.array([x.rademacher for x in lin])
    upper = np.array([[contraction_upper(_estimate(v, N, cfg.radius)) for v in row] for row in rad])  # L = 1
    cb = np.array([classical_bound(float(u), N, cfg.delta, M) for u in upper.mean(axis=0)])  # R_N: mean over draws
    lgap = np.array([x.gap for x in lin])
    linear = LinearHeadSummary(
        taus=np.asarray(cfg.rademacher_taus, dtype=float), rademacher=rad, contraction_upper=upper,
        loss_lower=np.array([x.loss_lower for x in lin]),
        loss_lower_stderr=np.array([x.loss_lower_stderr for x in lin]),
        classical_bound=cb, gap=lgap, fraction_exceeding=(lgap > cb[None, :]).mean(axis=0), delta=cfg.delta)
    return RademacherCheck(
        taus=draws[0].coupled.taus, avg_gap_coupled=avg_c, avg_gap_uncoupled=avg_u,
        train_curve_coupled=stack(lambda d: d.coupled.train_loss).mean(axis=0),
        population_curve_coupled=stack(lambda d: d.coupled.population_loss).mean(axis=0),
        train_curve_uncoupled=stack(lambda d: d.uncoupled.train_loss).mean(axis=0),
        population_curve_uncoupled=stack(lambda d: d.uncoupled.population_loss).mean(axis=0),
        speed_term_coupled=s_c, speed_term_uncoupled=s_u, loss_change_term_coupled=lc_c,
        loss_change_term_uncoupled=lc_u, a2_fraction_coupled=float(stack(lambda d: d.coupled.a2_holds).mean()),
        max_gap_along_trajectory=float(gap_curve.max()), eps=eps, tail_coupled=tail_c, tail_uncoupled=tail_u,
        bound=bound, bound_applicable=applicable, threshold=2.0 * float(s_c.mean()), bound_loss_change=bound_lc,
        threshold_loss_change=2.0 * float(lc_c.mean()), bound_violations=int((tail_c > bound).sum()),
        coupled_vs_uncoupled_speed_term_ratio=float(np.mean(s_c / s_u)),
        coupled_distance=stack(lambda d: d.coupled_distance), uncoupled_distance=stack(lambda d: d.uncoupled_distance),
        coupled_per_sample_length=stack(lambda d: d.coupled_per_sample_length),
        uncoupled_per_sample_length=stack(lambda d: d.uncoupled_per_sample_length),
        source_accuracy=stack(lambda d: d.source_accuracy), linear=linear, n=N, K=K, loss_bound=M,
        gap_threshold=cfg.gap_threshold,
        wall_time=time.perf_counter() - start, config=cfg.to_dict(), draws=draws,
    )


# ----------------------------------------------------------------------------
# what the chapter records
# ----------------------------------------------------------------------------


def metrics(result: RademacherCheck) -> dict:
    r"""The named numbers of chapter 4's results file.

    Scalars: the largest mean gap along the coupled trajectory, the violations of Theorem 5's
    bound, the speed terms :math:`S` and the loss-change term :math:`\sum_k\delta_k`,
    :math:`2S/M`, the smallest bound, the :math:`N` at which Eq. (14) would give 5% at
    :math:`\epsilon = M` (:func:`~ctd_lib.task_distance.rademacher.n_for_nonvacuous`, with
    :math:`S` the mean coupled speed term), the fraction of instants where A2 held and the mean
    averaged gaps. Arrays: the linear head's :math:`R_N(\mathcal F_r)` (Eq. 13, mean over draws),
    classical bound, mean gap and fraction of draws above the bound at each ``rademacher_taus``,
    and the tail, bound and :math:`\epsilon` grid of the Theorem 5 figure.
    """
    lin = result.linear
    s_mean = float(result.speed_term_coupled.mean())
    return {
        "max_gap_along_trajectory": float(result.max_gap_along_trajectory),
        "bound_violations": int(result.bound_violations),
        "coupled_vs_uncoupled_speed_term_ratio": float(result.coupled_vs_uncoupled_speed_term_ratio),
        "speed_term_coupled_mean": s_mean,
        "speed_term_uncoupled_mean": float(result.speed_term_uncoupled.mean()),
        "loss_change_term_coupled_mean": float(result.loss_change_term_coupled.mean()),
        "threshold_over_M": float(result.threshold / result.loss_bound),
        "bound_min_probability": float(result.bound.min()),
        "n_for_nonvacuous": float(n_for_nonvacuous(result.loss_bound, result.K, result.loss_bound, s_mean)),
        "a2_fraction_coupled": float(result.a2_fraction_coupled),
        "avg_gap_coupled_mean": float(result.avg_gap_coupled.mean()),
        "avg_gap_uncoupled_mean": float(result.avg_gap_uncoupled.mean()),
        "rademacher_linear": lin.rademacher.mean(axis=0), "classical_bound": lin.classical_bound,
        "linear_gap_mean": lin.gap.mean(axis=0), "linear_fraction_exceeding": lin.fraction_exceeding,
        "tail_coupled": result.tail_coupled, "bound": result.bound, "eps": result.eps,
    }


def claims(result: RademacherCheck) -> list[Claim]:
    r"""The four claims of Seed 000, Sec. 4 checked by chapter 4, each with its verdict and evidence.

    * ``gap_small_along_trajectory`` (Fig. 4a): the largest mean-over-draws gap along the coupled
      trajectory is at most ``gap_threshold`` :math:`\cdot M`.
    * ``theorem5_not_exceeded`` (Theorem 5, Eq. 14): the empirical tail
      :math:`P(\bar G > \epsilon)` exceeds the bound at no :math:`\epsilon` of the grid (the
      evidence says whether the bound is below 1 anywhere, i.e. whether it is informative).
    * ``coupled_speed_term_smaller``: the mean over draws of :math:`S_\text{coupled} /
      S_\text{uncoupled}` is below 1.
    * ``classical_bound_holds`` (Eq. 13): at every instant of the linear-head check the fraction of
      draws whose gap exceeds :math:`2R_N + M\sqrt{2\log(1/\delta)/N}` is at most :math:`\delta`.
    """
    M, lin = result.loss_bound, result.linear
    limit = result.gap_threshold * M
    below_one = int((result.bound < 1).sum())
    ratio = result.coupled_vs_uncoupled_speed_term_ratio
    n_smaller = int((result.speed_term_coupled < result.speed_term_uncoupled).sum())
    return [
        Claim(id="gap_small_along_trajectory",
              statement="The generalisation gap stays small along the coupled trajectory",
              source="Seed 000, Sec. 4 (Fig. 4a)", holds=bool(result.max_gap_along_trajectory <= limit),
              evidence=f"largest mean gap over {result.K + 1} instants: {result.max_gap_along_trajectory:.3f} against "
                       f"{result.gap_threshold:.0%} of M = {limit:.3f} (held-out loss up to "
                       f"{result.population_curve_coupled.max():.3f}; {result.n_draws} draws, N = {result.n})"),
        Claim(id="theorem5_not_exceeded",
              statement="The empirical tail of the averaged gap never exceeds Theorem 5's bound",
              source="Seed 000, Theorem 5, Eq. (14)", holds=bool(result.bound_violations == 0),
              evidence=f"{result.bound_violations} violations on {len(result.eps)} values of eps in [0, M]; the bound "
                       f"applies only for eps > 2S = {result.threshold:.2f} (M = {M:g}): "
                       + ("it is vacuous at these sizes" if below_one == 0 else f"below 1 at {below_one} values")),
        Claim(id="coupled_speed_term_smaller",
              statement="The coupled trajectory's speed term is smaller than the uncoupled one's",
              source="Seed 000, Sec. 4 (after Theorem 5)", holds=bool(ratio < 1),
              evidence=f"mean ratio coupled/uncoupled {ratio:.3f}; coupled smaller in {n_smaller} of "
                       f"{result.n_draws} draws"),
        Claim(id="classical_bound_holds",
              statement="The classical Rademacher bound holds for a linear head in A(r)",
              source="Seed 000, Sec. 4 (Eq. 13)", holds=bool((lin.fraction_exceeding <= lin.delta).all()),
              evidence="; ".join(f"tau {t:.1f}: gap above the bound in {f:.0%} of draws (bound {b:.3f})"
                                 for t, f, b in zip(lin.taus, lin.fraction_exceeding, lin.classical_bound))
                       + f" (allowed: delta = {lin.delta:g})"),
    ]
