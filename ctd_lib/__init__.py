"""ctd_lib: the library behind ctd-book, in two halves, one per paper.

* :mod:`ctd_lib.geometry`, :mod:`ctd_lib.transport` and :mod:`ctd_lib.task_distance`: seed 000
  (Gao & Chaudhari 2021), Fisher-Rao lengths of weight trajectories, optimal-transport
  interpolation of tasks, the coupled transfer distance, its baselines and its Rademacher view;
* :mod:`ctd_lib.free_energy`: seed 004 (Gao & Chaudhari 2020), the rate, distortion and
  classification functionals, the equilibrium surface, the iso-classification process and
  iso-classification transfer;
* :mod:`ctd_lib.data`, :mod:`ctd_lib.models`, :mod:`ctd_lib.results`: the data sets, networks and
  results contract both halves use; :mod:`ctd_lib.experiments`: one module per chapter of the book.

The names a user calls are re-exported here. Names that this module used to export are still
found (with a ``DeprecationWarning`` that names their new home).
"""
from __future__ import annotations

import importlib as _importlib
import warnings as _warnings

from ._util.threads import pin_threads
from .data import Task, make_task
from .free_energy import (
    EquilibrationConfig,
    FreeEnergyTerms,
    IsoClassificationConfig,
    IsoTransferConfig,
    IsoTransferResult,
    make_free_energy_model,
    measure,
    train_equilibrium,
)
from .geometry import path_length, train_sgd
from .models import make_model
from .results import Claim, read_results, write_results
from .task_distance import (
    CoupledConfig,
    DistanceMatrix,
    FineTuneConfig,
    Task2VecConfig,
    TransferResult,
    coupled_transfer_distance,
    distance_matrix,
    fine_tuning_distance,
    mantel_asymmetric,
    task2vec_distance,
    uncoupled_transfer_distance,
)
from .transport import wasserstein2

__all__ = [
    # data and models
    "Task", "make_task", "make_model",
    # seed 000: the distances, their configs and results
    "CoupledConfig", "TransferResult", "coupled_transfer_distance", "uncoupled_transfer_distance",
    "FineTuneConfig", "fine_tuning_distance", "Task2VecConfig", "task2vec_distance", "wasserstein2",
    "DistanceMatrix", "distance_matrix", "mantel_asymmetric", "path_length", "train_sgd",
    # seed 004: equilibrium and the processes' configs and results
    "EquilibrationConfig", "FreeEnergyTerms", "make_free_energy_model", "measure", "train_equilibrium",
    "IsoClassificationConfig", "IsoTransferConfig", "IsoTransferResult",
    # the results contract, and the chapters' thread pinning
    "Claim", "read_results", "write_results", "pin_threads",
]
__version__ = "0.1.0"

# Names this module exported before the library was split in two halves: where they live now.
_MOVED = {
    "task2vec_embedding": "task_distance.task2vec",
    **dict.fromkeys(("TASKS", "TaskSpec", "fetch_mnist10k", "load_dataset"), "data"),
    "FreeEnergyModelConfig": "free_energy.model",
    **dict.fromkeys(("array_sampler", "equilibrate"), "free_energy.equilibrate"),
    **dict.fromkeys(("CONVENTIONS", "LengthMeter", "TrajectoryLength", "kl_categorical", "length_increment"),
                    "geometry.length"),
    **dict.fromkeys(("fim_kl_check", "fisher_matrix"), "geometry.fim"),
    **dict.fromkeys(("SGDConfig", "TrainResult", "measure_length_overhead"), "geometry.sgd"),
    "make_sampler": "transport.interpolation",
    **dict.fromkeys(("equilibrium_surface", "lemma3_check"), "free_energy.surface"),
    **dict.fromkeys(("finetune_baseline", "scratch_baseline"), "free_energy.transfer_baselines"),
    "MODEL_NAMES": "models",
    **dict.fromkeys(("classical_bound", "rademacher_linear", "theorem5_bound", "trajectory_gap"),
                    "task_distance.rademacher"),
    **dict.fromkeys(("compare_distance_matrices", "mantel_symmetric"), "task_distance.stats"),
    **dict.fromkeys(("BlockPlan", "block_plan", "match_blocks"), "transport.blocks"),
    **dict.fromkeys(("OTPlan", "entropic_plan", "exact_plan"), "transport.dense"),
    "proximal_plan": "transport.proximal",
}


def __getattr__(name: str):
    """Old top-level names, resolved lazily with a warning that says where they moved."""
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'ctd_lib' has no attribute {name!r}")
    _warnings.warn(f"ctd_lib.{name} moved to ctd_lib.{home}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(_importlib.import_module(f".{home}", __name__), name)
