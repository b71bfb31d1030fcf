r"""Optimal transport between tasks (seed 000, Sec. 2.2-3.4; seed 004, Sec. 4.4).

==============================  ====================================================
:mod:`.costs`                   ground costs, weight and cost checks
:mod:`.dense`                   exact (Eq. 36 of seed 004) and entropic (Eq. 6) couplings
:mod:`.proximal`                the proximal coupling update, Eq. (12a)
:mod:`.blocks`                  block-diagonal couplings, Sec. 3.4
:mod:`.batched_sinkhorn`        log-domain Sinkhorn over a batch of blocks, in torch
:mod:`.gaussian`                exact :math:`W_2` and the Bures closed form
:mod:`.interpolation`           the interpolated task: displacement (Eqs. 7-8), Beta-mixup, mixture (Eq. 9)
==============================  ====================================================
"""
from __future__ import annotations

from .batched_sinkhorn import batched_sinkhorn
from .blocks import BLOCK_METHODS, BlockAssignment, BlockPlan, block_plan, match_blocks
from .costs import check_cost, check_weights, feature_cost, pixel_cost, uniform
from .dense import LOG_DOMAIN_BELOW, SINKHORN_METHODS, OTPlan, entropic_plan, exact_plan
from .gaussian import bures_w2, wasserstein2
from .interpolation import (
    INTERPOLATIONS,
    InterpolatedBatch,
    Interpolation,
    beta_mixup_sample,
    displacement_sample,
    make_sampler,
    mixture_sample,
)
from .proximal import PROXIMAL_SOLVERS, proximal_gap, proximal_plan

__all__ = [
    "check_cost", "check_weights", "feature_cost", "pixel_cost", "uniform", "LOG_DOMAIN_BELOW", "OTPlan",
    "SINKHORN_METHODS", "entropic_plan", "exact_plan", "PROXIMAL_SOLVERS", "proximal_gap", "proximal_plan",
    "batched_sinkhorn", "BLOCK_METHODS", "BlockAssignment", "BlockPlan", "block_plan", "match_blocks", "bures_w2",
    "wasserstein2", "INTERPOLATIONS", "InterpolatedBatch", "Interpolation", "beta_mixup_sample",
    "displacement_sample", "make_sampler", "mixture_sample"
]
