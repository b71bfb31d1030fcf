r"""The free-energy principle for representation learning (seed 004).

==============================  ====================================================
:mod:`.model`                   the encoder-decoder-classifier (Appendix A)
:mod:`.functionals`             rate, distortion, classification (Eqs. 1, 4), the Hamiltonian (Eq. 11)
:mod:`.equilibrate`             equilibration with the schedule of Sec. 5.1; the free energy of Eq. (8)
:mod:`.surface`                 the equilibrium surface and Lemma 3
:mod:`.finite_differences`      partials of the functionals in :math:`(\lambda, \gamma)`
:mod:`.iso_classification`      the iso-classification process (Remark 7, Eq. 31), Remark 10, the first law (Eq. 7)
:mod:`.iso_transfer`            iso-classification transfer (Eqs. 30, 38; data by Eq. 23 or 37)
:mod:`.transfer_baselines`      fine-tuning and from-scratch baselines of Fig. 5
==============================  ====================================================

The processes :func:`~ctd_lib.free_energy.iso_classification.iso_classification` and
:func:`~ctd_lib.free_energy.iso_transfer.iso_transfer` stay in their modules: re-exported here under
their modules' names they would hide the modules.
"""
from __future__ import annotations

from .equilibrate import (
    SCHEDULES,
    EquilibrationConfig,
    EquilibrationLog,
    Sampler,
    array_sampler,
    equilibrate,
    eta,
    train_equilibrium,
)
from .finite_differences import Partials, central_differences, finite_difference_partials
from .functionals import FreeEnergyTerms, classification, distortion, hamiltonian_loss, measure, rate
from .iso_classification import (
    FixedMultiplierPath,
    IsoClassificationConfig,
    IsoClassificationResult,
    first_law_check,
    fixed_multiplier_control,
    fixed_multiplier_path,
    iso_c_max_rel_change,
    remark10_check,
)
from .iso_transfer import (
    INTERPOLATIONS,
    METHODS,
    OT_SOLVERS,
    T_DERIVATIVES,
    TERMS,
    IsoTransferConfig,
    IsoTransferResult,
    StepSolution,
    TaskPath,
    c_max_rel_change,
    solve_step,
    transfer_budget,
    transfer_partials,
)
from .model import (
    DECODERS,
    ENCODERS,
    MARGINALS,
    PRESETS,
    FreeEnergyModel,
    FreeEnergyModelConfig,
    make_free_energy_model,
)
from .surface import SPLITS, TERM_NAMES, Lemma3Check, SurfaceGrid, equilibrium_surface, lemma3_check
from .transfer_baselines import BASELINE_CONFIG, BaselineCurve, finetune_baseline, scratch_baseline

__all__ = [
    "DECODERS", "ENCODERS", "FreeEnergyModel", "FreeEnergyModelConfig", "MARGINALS", "PRESETS",
    "make_free_energy_model", "FreeEnergyTerms", "classification", "distortion", "hamiltonian_loss", "measure",
    "rate", "EquilibrationConfig", "EquilibrationLog", "SCHEDULES", "Sampler", "array_sampler", "equilibrate",
    "eta", "train_equilibrium", "Lemma3Check", "SPLITS", "SurfaceGrid", "TERM_NAMES", "equilibrium_surface",
    "lemma3_check", "Partials", "central_differences", "finite_difference_partials", "IsoClassificationConfig",
    "IsoClassificationResult", "FixedMultiplierPath", "first_law_check", "fixed_multiplier_control",
    "fixed_multiplier_path", "iso_c_max_rel_change",
    "remark10_check", "INTERPOLATIONS", "IsoTransferConfig", "IsoTransferResult", "METHODS", "OT_SOLVERS",
    "TERMS", "T_DERIVATIVES", "TaskPath", "StepSolution", "c_max_rel_change", "solve_step", "transfer_budget",
    "transfer_partials", "BASELINE_CONFIG", "BaselineCurve", "finetune_baseline", "scratch_baseline"
]
