"""ctd_lib: the library behind ctd-book.

Fisher-Rao lengths of weight trajectories, optimal-transport interpolation of
tasks, the coupled transfer distance, its baselines and its Rademacher view
(Gao & Chaudhari 2021); the rate, distortion and classification functionals,
the equilibrium surface, the iso-classification process and iso-classification
transfer (Gao & Chaudhari 2020); the data sets and models of the book, and the
results contract that every chapter uses. Each submodule holds one idea; the names users call are
re-exported here.
"""
from .baselines import FineTuneConfig, Task2VecConfig, fine_tuning_distance, task2vec_distance, task2vec_embedding
from .coupled import CoupledConfig, TransferResult, coupled_transfer_distance, uncoupled_transfer_distance
from .data import TASKS, Task, TaskSpec, fetch_mnist10k, load_dataset, make_task
from .free_energy import (
    EquilibrationConfig,
    FreeEnergyModelConfig,
    FreeEnergyTerms,
    array_sampler,
    equilibrate,
    make_free_energy_model,
    measure,
    train_equilibrium,
)
from .geometry import (
    CONVENTIONS,
    LengthMeter,
    TrajectoryLength,
    fim_kl_check,
    fisher_matrix,
    kl_categorical,
    length_increment,
    path_length,
)
from .interpolation import make_sampler
# the processes themselves stay in their modules (ctd_lib.iso_classification.iso_classification,
# ctd_lib.iso_transfer.iso_transfer): a function re-exported under its module's name would hide the module
from .iso_classification import IsoClassificationConfig, equilibrium_surface, lemma3_check
from .iso_transfer import IsoTransferConfig, IsoTransferResult, finetune_baseline, scratch_baseline
from .matrices import DistanceMatrix, distance_matrix
from .models import MODEL_NAMES, make_model
from .rademacher import classical_bound, rademacher_linear, theorem5_bound, trajectory_gap
from .results import Claim, read_results, write_results
from .stats import compare_distance_matrices, mantel_asymmetric, mantel_symmetric
from .training import SGDConfig, TrainResult, measure_length_overhead, train_sgd
from .transport import (
    BlockPlan,
    OTPlan,
    block_plan,
    entropic_plan,
    exact_plan,
    match_blocks,
    proximal_plan,
    wasserstein2,
)

__all__ = [
    "EquilibrationConfig", "FreeEnergyModelConfig", "FreeEnergyTerms", "IsoClassificationConfig", "IsoTransferConfig",
    "IsoTransferResult", "array_sampler", "classical_bound", "equilibrate", "equilibrium_surface", "finetune_baseline",
    "lemma3_check", "make_free_energy_model", "measure", "rademacher_linear",
    "scratch_baseline", "theorem5_bound", "train_equilibrium", "trajectory_gap",
    "BlockPlan", "CONVENTIONS", "Claim", "CoupledConfig", "DistanceMatrix", "FineTuneConfig", "LengthMeter",
    "MODEL_NAMES", "OTPlan", "SGDConfig", "TASKS", "Task", "Task2VecConfig", "TaskSpec", "TrainResult",
    "TrajectoryLength", "TransferResult", "block_plan", "compare_distance_matrices", "coupled_transfer_distance",
    "distance_matrix", "entropic_plan", "exact_plan", "fetch_mnist10k", "fim_kl_check", "fine_tuning_distance",
    "fisher_matrix", "kl_categorical", "length_increment", "load_dataset", "make_model", "make_sampler",
    "make_task", "mantel_asymmetric", "mantel_symmetric", "match_blocks", "measure_length_overhead", "path_length",
    "proximal_plan", "read_results", "task2vec_distance", "task2vec_embedding", "train_sgd",
    "uncoupled_transfer_distance", "wasserstein2", "write_results",
]
__version__ = "0.1.0"
