r"""The Fisher-Rao geometry of a classifier (seed 000, Sec. 2): KL and the line element
:math:`ds^2 = 2\,\mathrm{KL}[p_w, p_{w+dw}]` (Eq. 2), trajectory lengths (Eqs. 4-5), the exact
Fisher information matrix (Eq. 3), and SGD that measures its own length as it goes (Eq. 1).

=========================  ==================================================
:mod:`.length`             KL, the line element, :class:`LengthMeter`, :func:`path_length`
:mod:`.fim`                the exact FIM and the check of Eq. (2)
:mod:`.sgd`                :func:`train_sgd` with a length meter, samplers, accuracy
=========================  ==================================================
"""
from __future__ import annotations

from .fim import FimKlCheck, fim_kl_check, fisher_matrix
from .length import (
    CONVENTIONS,
    LengthIncrement,
    LengthMeter,
    TrajectoryLength,
    flat_parameters,
    kl_categorical,
    length_increment,
    path_length,
    set_flat_parameters,
)
from .sgd import (
    Batch,
    OverheadMeasurement,
    Sampler,
    SGDConfig,
    TrainResult,
    accuracy,
    batchnorm_modules,
    cross_entropy,
    frozen_batchnorm_stats,
    full_batch_sampler,
    measure_length_overhead,
    minibatch_sampler,
    train_sgd,
)

__all__ = [
    "CONVENTIONS", "LengthIncrement", "LengthMeter", "TrajectoryLength", "flat_parameters", "kl_categorical",
    "length_increment", "path_length", "set_flat_parameters", "FimKlCheck", "fim_kl_check", "fisher_matrix",
    "Batch", "OverheadMeasurement", "SGDConfig", "Sampler", "TrainResult", "accuracy", "batchnorm_modules",
    "cross_entropy", "frozen_batchnorm_stats", "full_batch_sampler", "measure_length_overhead",
    "minibatch_sampler", "train_sgd"
]
