r"""Distances between tasks (seed 000): the coupled and uncoupled transfer distances
(Definition 2, Eqs. 9-12), the fine-tuning distance and Task2Vec baselines, matrices of
distances with a per-pair cache, Mantel tests, and the Rademacher view of Sec. 4 (Theorem 5).

==========================  ====================================================
:mod:`.coupled`             the coupled (Eqs. 11-12) and uncoupled (Sec. 3.1) distances
:mod:`.batched`             many trajectories stepped together (stacked weights under ``vmap``)
:mod:`.finetune`            the fine-tuning distance (Sec. 5.2)
:mod:`.task2vec`            Task2Vec embeddings and distances
:mod:`.matrices`            matrices of ordered pairs, cached per pair, fanned out over an executor
:mod:`.cluster`             the executor of a scheduler string: here, a local Dask cluster, a remote one
:mod:`.stats`               Mantel tests, symmetrisation, matrix comparisons
:mod:`.paper_numbers`       the paper's printed matrices and Mantel statistics, re-analysed under every convention
:mod:`.rademacher`          Theorem 5 (Eq. 14) and Rademacher complexities (Eq. 13)
==========================  ====================================================
"""
from __future__ import annotations

from .batched import (
    StackedModels,
    TrajectoryJob,
    batched_pair_kl_costs,
    coupled_transfer_distances,
    run_trajectories,
    uncoupled_transfer_distances,
)
from .cluster import SCHEDULER_HELP, check_scheduler, open_executor
from .coupled import (
    INITIAL_COSTS,
    INTERPOLATIONS,
    SCHEDULES,
    CoupledConfig,
    TrajectoryLog,
    TransferResult,
    authors_scale,
    coupled_transfer_distance,
    initial_coupling,
    pair_kl_cost,
    penultimate_features,
    proximal_update,
    run_trajectory,
    tau_at,
    train_source_model,
    uncoupled_transfer_distance,
)
from .finetune import FineTuneConfig, FineTuneResult, fine_tuning_distance
from .matrices import DistanceMatrix, PairFailed, distance_matrix, plot_distance_matrix, run_pair, runtime
from .paper_numbers import (
    MANTEL_CONVENTIONS,
    PAPER_MATRICES,
    REPORTED_MANTEL,
    ComparisonCheck,
    ConventionOutcome,
    MantelConvention,
    PrintedMatrix,
    Reanalysis,
    ReportedMantel,
    compare_under_conventions,
    exact_p_counts,
    mantel_convention,
    min_attainable_p,
    monte_carlo_rounding_probability,
    reanalyse,
)
from .rademacher import (
    RademacherEstimate,
    Theorem5Bound,
    TrajectoryGap,
    check_instants,
    classical_bound,
    clipped_cross_entropy,
    clipped_logistic_loss,
    contraction_upper,
    fit_linear_ball,
    n_for_nonvacuous,
    rademacher_linear,
    rademacher_loss_class_lower,
    theorem5_bound,
    theorem5_threshold,
    trajectory_gap,
)
from .stats import (
    ALTERNATIVES,
    MAX_EXACT_LIMIT,
    METHODS,
    SYMMETRIZE_HOW,
    TIE_TOL,
    DistanceComparison,
    MantelResult,
    compare_distance_matrices,
    mantel_asymmetric,
    mantel_symmetric,
    normalized_r,
    symmetrize,
)
from .task2vec import (
    FISHER_KINDS,
    PARAMETER_SETS,
    REDUCTIONS,
    Task2VecConfig,
    classifier_layer,
    embed_tasks,
    fisher_diagonal,
    task2vec_distance,
    task2vec_embedding,
    task2vec_matrix,
)

__all__ = [
    "PairFailed", "run_pair", "runtime", "SCHEDULER_HELP", "check_scheduler", "open_executor",
    "StackedModels", "TrajectoryJob", "batched_pair_kl_costs", "coupled_transfer_distances", "run_trajectories",
    "uncoupled_transfer_distances",
    "CoupledConfig", "INITIAL_COSTS", "INTERPOLATIONS", "SCHEDULES", "TrajectoryLog", "TransferResult",
    "authors_scale", "coupled_transfer_distance", "initial_coupling", "pair_kl_cost", "penultimate_features",
    "proximal_update", "run_trajectory", "tau_at", "train_source_model", "uncoupled_transfer_distance",
    "FineTuneConfig", "FineTuneResult", "fine_tuning_distance", "FISHER_KINDS", "PARAMETER_SETS", "REDUCTIONS",
    "Task2VecConfig", "classifier_layer", "embed_tasks", "fisher_diagonal", "task2vec_distance",
    "task2vec_embedding", "task2vec_matrix", "DistanceMatrix", "distance_matrix", "plot_distance_matrix",
    "ALTERNATIVES", "DistanceComparison", "MAX_EXACT_LIMIT", "METHODS", "MantelResult", "SYMMETRIZE_HOW",
    "TIE_TOL", "compare_distance_matrices", "mantel_asymmetric", "mantel_symmetric", "normalized_r", "symmetrize",
    "MANTEL_CONVENTIONS", "PAPER_MATRICES", "REPORTED_MANTEL", "ComparisonCheck", "ConventionOutcome", "MantelConvention",
    "PrintedMatrix", "Reanalysis", "ReportedMantel", "compare_under_conventions", "exact_p_counts", "mantel_convention",
    "min_attainable_p", "monte_carlo_rounding_probability", "reanalyse",
    "RademacherEstimate", "Theorem5Bound", "TrajectoryGap", "check_instants", "classical_bound",
    "clipped_cross_entropy", "clipped_logistic_loss", "contraction_upper", "fit_linear_ball", "n_for_nonvacuous",
    "rademacher_linear", "rademacher_loss_class_lower", "theorem5_bound", "theorem5_threshold", "trajectory_gap"
]
