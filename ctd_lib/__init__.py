"""ctd_lib: the library behind ctd-book.

Fisher-Rao lengths of weight trajectories (Gao & Chaudhari 2021, Sec. 2.1), the
data sets and models of the book, and the results contract that every chapter
uses. Each submodule holds one idea; the names users call are re-exported here.
"""
from .data import TASKS, Task, TaskSpec, fetch_mnist10k, load_dataset, make_task
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
from .models import MODEL_NAMES, make_model
from .results import Claim, read_results, write_results
from .training import SGDConfig, TrainResult, measure_length_overhead, train_sgd

__all__ = [
    "CONVENTIONS", "Claim", "LengthMeter", "MODEL_NAMES", "SGDConfig", "TASKS", "Task", "TaskSpec", "TrainResult",
    "TrajectoryLength", "fetch_mnist10k", "fim_kl_check", "fisher_matrix", "kl_categorical", "length_increment",
    "load_dataset", "make_model", "make_task", "measure_length_overhead", "path_length", "read_results",
    "train_sgd", "write_results",
]
__version__ = "0.1.0"
