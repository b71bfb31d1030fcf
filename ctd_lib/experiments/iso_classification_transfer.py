r"""Chapter 6's experiment: iso-classification transfer from a source task to a target task.

Seed 004 (Gao & Chaudhari 2020), Sec. 4 (Lemma 9, Eqs. 23-30), Sec. 5.2 and
Fig. 5, Appendix F (Eq. 37, Remark 11) and Appendix G (Eq. 38, Fig. 6).
:func:`run`

1. builds the source and target tasks on one head (``head="disjoint"``: source
   classes then target classes; ``"shared"``: both relabelled :math:`0..n-1`);
2. trains a model from scratch on the source at :math:`(\lambda_0, \gamma_0)`
   (:func:`~ctd_lib.free_energy.train_equilibrium`, cosine annealing from ``train_lr``);
3. moves it to the target with :func:`~ctd_lib.free_energy.iso_transfer.iso_transfer`
   while the data move along the mixture

   .. math::

       p(x, t) = (1-t)\, p^s(x) + t\, p^t(x) \qquad \text{(Eq. 23, labels kept)}

   or the optimal-transport interpolation
   :math:`p(x, t) = \sum_{ij}\Gamma^*_{ij}\,\delta_{x - (1-t)x^s_i - t x^t_j}` (Eq. 37, labels
   interpolated, Remark 11): the geodesic transfer for every entry of ``interpolations``,
   which solves at every step

   .. math::

       \partial_t D + \partial_\lambda D\,\dot\lambda + \partial_\gamma D\,\dot\gamma
           = \frac{k\,\partial_t R}{1 + k\lambda}, \qquad
       \partial_\lambda C\,\dot\lambda + \partial_\gamma C\,\dot\gamma + \partial_t C = 0
       \qquad \text{(Eq. 30)}

   for :math:`(\dot\lambda, \dot\gamma)`, and the heuristic of Appendix G on the first
   interpolation, which fixes :math:`\dot\lambda` = ``lambda_rate`` and keeps only the
   second row (Eq. 38);
4. runs the baselines of Fig. 5 with the geodesic transfer's budget of mini-batch
   updates (:func:`~ctd_lib.free_energy.transfer_budget`): fine-tuning the source model
   on the target, and training a fresh model on the target.

:func:`metrics` and :func:`claims` give the numbers and verdicts the chapter records:
:math:`C` stays constant (largest relative change below ``c_tolerance``), the transfer's
final target accuracy is within ``scratch_margin`` of training from scratch, and
fine-tuning starts far below it (Fig. 5b).
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._util.checks import check_choice, check_count, check_positive
from ..data import DATASETS, TASKS, Task, fetch_mnist10k, make_task
from ..free_energy.equilibrate import EquilibrationConfig, array_sampler, train_equilibrium
from ..free_energy.functionals import FreeEnergyTerms, measure
from ..free_energy.iso_transfer import (
    C_MEASURES,
    EQ30_READINGS,
    INTERPOLATIONS,
    SLOPE_RULES,
    T_DERIVATIVES,
    FixedMultiplierControl,
    IsoTransferConfig,
    IsoTransferResult,
    ProbeLengthCheck,
    fixed_multiplier_control,
    iso_transfer,
    probe_length_check,
)
from ..free_energy.model import PRESETS, make_free_energy_model
from ..free_energy.transfer_baselines import BaselineCurve, finetune_baseline, scratch_baseline
from ..results import SCALES, Claim

__all__ = ["ENCODERS", "HEADS", "IsoClassificationTransferConfig", "IsoClassificationTransferResult", "TransferTasks",
           "claims", "make_tasks", "metrics", "run"]

HEADS = ("disjoint", "shared")
EXTRA_METHODS = ("heuristic", "repeat_equilibration")  # run on the first interpolation beside Eq. (30)
ENCODERS = ("mlp", "conv")


def _check_finite(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number")


@dataclass(frozen=True, kw_only=True)
class IsoClassificationTransferConfig:
    """Parameters of chapter 6 (the notebook's ``parameters`` cell, validated); defaults are the CPU scale."""

    source_task: str = "mnist10k-0-4"  # Sec. 5.2: digits 0-4 ...
    target_task: str = "mnist10k-5-9"  # ... to digits 5-9
    head: str = "disjoint"  # "disjoint": source classes then target classes; "shared": both on labels 0..n-1
    data_root: str = ""  # torchvision data root, for tasks of datasets that need one (CIFAR-10); "": none
    n_per_class: int = 300
    n_val_per_class: int = 100
    model: str = "mnist"  # a preset of ctd_lib.free_energy.PRESETS
    encoder: str = "mlp"  # "mlp" or "conv"
    lam0: float = 0.25  # starting multipliers
    gamma0: float = 8.0
    source_steps: int = 6000  # training on the source from scratch (cosine annealed to 0)
    train_lr: float = 1e-3
    batch_size: int = 64
    transfer_steps: int = 25  # steps in t (>= 2; the authors' code uses 25)
    interpolations: tuple = ("mixture", "ot")  # Eq. (23) and Eq. (37); the first is the main one
    methods: tuple = ("repeat_equilibration",)  # beside Eq. (30), on the first interpolation: "heuristic" (Eq. 38),
    #   "repeat_equilibration" (the authors' controller)
    eq30_reading: str = "derived"  # row 1 of Eq. (30): "derived" (R_t + lam D_t + gamma C_t) or "fixed_multipliers"
    slope: float | None = None  # k of Eq. (30); None: the straight line from the source to the target equilibrium
    slope_rule: str = "endpoints_clamped"  # slope=None: "endpoints" as measured, or clamped so 1 + k lam0 >= margin
    slope_margin: float = 0.5  # the clamp's margin, in (0, 1]
    min_denominator: float = 0.05  # a step with |1 + k lambda| below this falls back to Eq. (38)
    c_measure: str = "excess"  # soft labels (OT): "excess": C = CE - H(y); "raw": CE
    controller_gamma_factor: float = 1.5  # the authors' controller: gamma *= this per repeated equilibration
    controller_max_repeats: int = 3  # ... at most this many repeats per step
    controller_tolerance: float = 0.0  # ... until held-out C <= C_0 (1 + this)
    eval_size: int = 400  # fixed evaluation examples (pairs) per task for the functionals
    n_z_measure: int = 4  # encoder samples per input when measuring
    probe_check_factor: int = 3  # the probe-length check: partials of step 1 with this many times longer probes
    lambda_rate: float = 0.0  # the constant lambda-dot of the heuristic (Eq. 38)
    fd_rel_lambda: float = 0.1  # central finite-difference half-widths, relative, in (0, 1)
    fd_rel_gamma: float = 0.1
    fd_steps: int = 24  # short equilibration of each finite-difference probe
    equil_steps: int = 100  # equilibration after each step
    peak_lr: float = 1.5e-3  # peak of eta(t), the value of Sec. 5.1
    t_derivative: str = "equilibrate"  # "equilibrate" or "frozen" (ctd_lib.free_energy.iso_transfer)
    max_condition: float = 1e6  # above this condition number of Eq. (30)'s matrix, fall back
    max_rel_change: float = 1.0  # trust region: a step changes lambda and gamma by at most a factor 1 + this
    c_tolerance: float = 0.1  # "C stays constant": relative change below this
    scratch_margin: float = 0.02  # "as good as training from scratch": final accuracy within this margin
    seed: int = 0
    threads: int = 1  # torch threads: fixed, so the same seed gives the same numbers on any CPU
    scale: str = "cpu"  # "cpu", "paper" or "smoke": recorded with the results

    def __post_init__(self):
        check_choice("source_task", self.source_task, sorted(TASKS))
        check_choice("target_task", self.target_task, sorted(TASKS))
        check_choice("model", self.model, sorted(PRESETS))
        check_choice("encoder", self.encoder, ENCODERS)
        check_choice("head", self.head, HEADS)
        check_choice("t_derivative", self.t_derivative, T_DERIVATIVES)
        check_choice("eq30_reading", self.eq30_reading, EQ30_READINGS)
        check_choice("slope_rule", self.slope_rule, SLOPE_RULES)
        check_choice("c_measure", self.c_measure, C_MEASURES)
        if isinstance(self.transfer_steps, int) and not isinstance(self.transfer_steps, bool) \
                and 0 < self.transfer_steps < 2:
            raise ValueError(f"transfer_steps={self.transfer_steps!r} is not valid; it must be an integer >= 2")
        methods = self.methods
        if isinstance(methods, str) or not isinstance(methods, (list, tuple)):
            raise ValueError(f"methods={methods!r} is not valid; it must list some of " + ", ".join(EXTRA_METHODS))
        for m in methods:
            check_choice("methods", m, EXTRA_METHODS)
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods={methods!r} is not valid; each method may be listed once")
        object.__setattr__(self, "methods", tuple(methods))
        interps = self.interpolations
        if isinstance(interps, str) or not isinstance(interps, (list, tuple)) or not interps:
            raise ValueError(f"interpolations={interps!r} is not valid; it must list at least one of "
                             + ", ".join(INTERPOLATIONS))
        for i in interps:
            check_choice("interpolations", i, INTERPOLATIONS)
        if len(set(interps)) != len(interps):
            raise ValueError(f"interpolations={interps!r} is not valid; each of {', '.join(INTERPOLATIONS)} "
                             "may be listed once")
        object.__setattr__(self, "interpolations", tuple(interps))
        for name in ("n_per_class", "n_val_per_class", "source_steps", "batch_size", "transfer_steps", "fd_steps",
                     "equil_steps", "threads", "eval_size", "n_z_measure", "probe_check_factor"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("lam0", "gamma0", "train_lr", "peak_lr", "fd_rel_lambda", "fd_rel_gamma", "max_condition",
                     "c_tolerance", "scratch_margin", "max_rel_change"):
            check_positive(name, getattr(self, name))
        for name in ("fd_rel_lambda", "fd_rel_gamma"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; it must be in (0, 1) so that the "
                                 "lower probe keeps a positive multiplier")
        if self.slope is not None:
            _check_finite("slope", self.slope)
            if abs(1 + self.slope * self.lam0) <= 1e-12:
                raise ValueError(f"slope={self.slope!r} is not valid with lam0={self.lam0!r}: 1 + slope * lam0 "
                                 "is ~0 in Eq. (30)")
        _check_finite("lambda_rate", self.lambda_rate)
        check_count("seed", self.seed)
        check_choice("scale", self.scale, SCALES)
        if not isinstance(self.data_root, (str, os.PathLike)):
            raise ValueError(f"data_root={self.data_root!r} is not valid; it must be a folder (a path) or \"\"")
        if str(self.data_root) and not os.path.isdir(self.data_root):
            raise ValueError(f"data_root={str(self.data_root)!r} is not valid; it is not an existing folder "
                             "(give the folder that holds the dataset, or \"\" for none)")
        src, tgt = TASKS[self.source_task].dataset, TASKS[self.target_task].dataset
        if DATASETS[src].needs_root and not str(self.data_root):
            raise ValueError(f"data_root is required for {self.source_task!r} (dataset {src!r}, read through "
                             "torchvision); pass the folder that holds it")
        if src != tgt:
            raise ValueError(f"source_task={self.source_task!r} and target_task={self.target_task!r} come from "
                             "different datasets and have no shared input shape")
        for method, interp in self.transfer_keys():  # the library's own checks, before any work
            self.transfer_config(method, interp)

    def parameters(self) -> dict:
        """The plain dict recorded in the results' provenance (``interpolations`` as a list, as in the notebook)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["interpolations"] = list(self.interpolations)
        out["methods"] = list(self.methods)
        out["data_root"] = str(self.data_root)
        return out

    # -- the library configurations built from the parameters ---------------------------------

    def fd_config(self) -> EquilibrationConfig:
        """Each finite-difference probe: ``fd_steps`` updates of :math:`\\eta(t)` (Sec. 5.1) peaking at ``peak_lr``."""
        return EquilibrationConfig(steps=self.fd_steps, peak_lr=self.peak_lr, batch_size=self.batch_size,
                                   schedule="paper", seed=self.seed)

    def equil_config(self) -> EquilibrationConfig:
        """The equilibration after each step: ``equil_steps`` updates of :math:`\\eta(t)` peaking at ``peak_lr``."""
        return EquilibrationConfig(steps=self.equil_steps, peak_lr=self.peak_lr, batch_size=self.batch_size,
                                   schedule="paper", seed=self.seed)

    def train_config(self) -> EquilibrationConfig:
        """Training the source model from scratch: cosine annealing from ``train_lr`` over ``source_steps``."""
        return EquilibrationConfig(steps=self.source_steps, peak_lr=self.train_lr, batch_size=self.batch_size,
                                   schedule="cosine", seed=self.seed)

    def transfer_config(self, method: str, interpolation: str) -> IsoTransferConfig:
        """The :class:`~ctd_lib.free_energy.iso_transfer.IsoTransferConfig` of one transfer."""
        return IsoTransferConfig(steps=self.transfer_steps, method=method, interpolation=interpolation,
                                 slope=self.slope, lambda_rate=self.lambda_rate, fd_rel_lambda=self.fd_rel_lambda,
                                 fd_rel_gamma=self.fd_rel_gamma, t_derivative=self.t_derivative,
                                 fd_equilibration=self.fd_config(), equilibration=self.equil_config(),
                                 max_condition=self.max_condition, max_rel_change=self.max_rel_change,
                                 eq30_reading=self.eq30_reading, slope_rule=self.slope_rule,
                                 slope_margin=self.slope_margin, min_denominator=self.min_denominator,
                                 c_measure=self.c_measure, controller_gamma_factor=self.controller_gamma_factor,
                                 controller_max_repeats=self.controller_max_repeats,
                                 controller_tolerance=self.controller_tolerance, eval_size=self.eval_size,
                                 n_z_measure=self.n_z_measure, seed=self.seed)

    def transfer_keys(self) -> list[tuple[str, str]]:
        """(method, interpolation) of every transfer, in order: the geodesic for each interpolation (the first
        is the main one), then each of ``methods`` on the first interpolation."""
        keys = [("geodesic", i) for i in self.interpolations]
        return keys + [(m, self.interpolations[0]) for m in self.methods]

    def baseline_config(self, budget: int) -> EquilibrationConfig:
        """The baselines' optimiser: cosine annealing from ``train_lr`` over ``budget`` updates."""
        return EquilibrationConfig(steps=budget, peak_lr=self.train_lr, batch_size=self.batch_size,
                                   schedule="cosine", seed=self.seed)


# ----------------------------------------------------------------------------
# result types
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferTasks:
    """The four tasks of the chapter, on one head of ``num_classes`` outputs."""

    source: Task
    target: Task
    source_val: Task
    target_val: Task
    num_classes: int


@dataclass(frozen=True)
class IsoClassificationTransferResult:
    r"""What :func:`run` returns.

    Attributes
    ----------
    source_terms : :math:`R, D, C` and accuracy of the source model on the source's held-out set.
    transfers : the transfer results keyed by (method, interpolation), in
        :meth:`IsoClassificationTransferConfig.transfer_keys` order; ``main_key`` is the
        geodesic transfer on the first interpolation.
    budget : mini-batch updates of the main transfer (probes included), given to each baseline.
    finetune, scratch : the baselines' target held-out accuracy over their updates.
    c_tolerance, scratch_margin : the claims' thresholds.
    n_source, n_target : training examples of the source and target.
    num_classes : outputs of the one head.
    source_model : the source model at :math:`(\lambda_0, \gamma_0)`.
    control : the fixed-multiplier control (:func:`~ctd_lib.free_energy.iso_transfer.fixed_multiplier_control`).
    probe_check : the main transfer's first-step partials with longer probes
        (:func:`~ctd_lib.free_energy.iso_transfer.probe_length_check`).
    source_train_terms : the source model on the source's training set.
    """

    source_terms: FreeEnergyTerms
    transfers: dict[tuple[str, str], IsoTransferResult]
    main_key: tuple[str, str]
    budget: int
    finetune: BaselineCurve
    scratch: BaselineCurve
    c_tolerance: float
    scratch_margin: float
    n_source: int = 0
    n_target: int = 0
    num_classes: int = 0
    source_model: nn.Module | None = field(default=None, repr=False)
    control: FixedMultiplierControl | None = None
    probe_check: ProbeLengthCheck | None = None
    source_train_terms: FreeEnergyTerms | None = None

    @property
    def main(self) -> IsoTransferResult:
        """The geodesic transfer on the first interpolation (Fig. 5's iso-classification curve)."""
        return self.transfers[self.main_key]

    @property
    def eq30_keys(self) -> list:
        """The transfers that solve for the multipliers (Eq. 30 or 38): all but the authors' controller."""
        return [k for k in self.transfers if k[0] != "repeat_equilibration"]

    @property
    def c_change(self) -> float:
        r""":math:`\max` over the Eq. (30)/(38) transfers of :math:`\max_k |C_k - C_0| / C_0` (held-out)."""
        return max(self.transfers[k].max_rel_change("classification", "val") for k in self.eq30_keys)

    @property
    def c_change_train(self) -> float:
        r"""The same on the training functionals."""
        return max(self.transfers[k].c_max_rel_change for k in self.eq30_keys)


# ----------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------


def make_tasks(config: IsoClassificationTransferConfig) -> TransferTasks:
    """The source and target tasks (training and held-out) on one head.

    ``head="disjoint"``: source classes then target classes on one head (0-4 and 5-9 for
    MNIST, Sec. 5.2); ``"shared"``: both relabelled :math:`0..n-1` on one head of
    :math:`n = \\max(n_s, n_t)` outputs (Appendix G's four outputs).
    """
    root = str(config.data_root) or None
    if TASKS[config.source_task].dataset == "mnist10k":
        fetch_mnist10k()
    n_src, n_tgt = len(TASKS[config.source_task].classes), len(TASKS[config.target_task].classes)
    offsets = (0, n_src) if config.head == "disjoint" else (0, 0)
    num_classes = n_src + n_tgt if config.head == "disjoint" else max(n_src, n_tgt)

    def task(name, split, n, offset):
        t = make_task(name, split, root=root, n_per_class=n, seed=config.seed, label_offset=offset)
        return dataclasses.replace(t, num_classes=num_classes)

    source = task(config.source_task, "train", config.n_per_class, offsets[0])
    target = task(config.target_task, "train", config.n_per_class, offsets[1])
    source_val = task(config.source_task, "test", config.n_val_per_class, offsets[0])
    target_val = task(config.target_task, "test", config.n_val_per_class, offsets[1])
    return TransferTasks(source=source, target=target, source_val=source_val, target_val=target_val,
                         num_classes=num_classes)


def run(config: IsoClassificationTransferConfig) -> IsoClassificationTransferResult:
    r"""Chapter 6 in one call: source model, transfers (Eqs. 30 and 38) and the baselines of Fig. 5.

    Sets ``torch.set_num_threads(config.threads)`` and seeds the global torch generator
    with ``config.seed`` (as the notebook always did, so that the same seed gives the same
    numbers); every fallback of a transfer is shown (``RuntimeWarning``, ``"always"``).
    """
    if not isinstance(config, IsoClassificationTransferConfig):
        raise ValueError(f"config must be an IsoClassificationTransferConfig; got {type(config).__name__}")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)  # every fallback of the transfer is shown
        tasks = make_tasks(config)
        model_config = dict(input_shape=tuple(tasks.source.input_shape), num_classes=tasks.num_classes,
                            encoder=config.encoder, seed=config.seed)
        src_model = make_free_energy_model(config.model, **model_config)
        train_equilibrium(src_model, array_sampler(tasks.source.x, tasks.source.y), config.lam0, config.gamma0,
                          config.train_config())
        src_terms = measure(src_model, tasks.source_val.x, tasks.source_val.y, seed=config.seed)
        src_train_terms = measure(src_model, tasks.source.x, tasks.source.y, seed=config.seed)
        main_key = ("geodesic", config.interpolations[0])
        main_cfg = config.transfer_config(*main_key)
        control = fixed_multiplier_control(src_model, tasks.source, tasks.source_val, config.lam0, config.gamma0,
                                           main_cfg)
        probe_check = probe_length_check(src_model, tasks.source, tasks.target, config.lam0, config.gamma0, main_cfg,
                                         factor=config.probe_check_factor)

        transfers = {}
        for method, interp in config.transfer_keys():
            transfers[(method, interp)] = iso_transfer(src_model, tasks.source, tasks.target, tasks.source_val,
                                                       tasks.target_val, config.lam0, config.gamma0,
                                                       config.transfer_config(method, interp))
        budget = int(transfers[main_key].n_updates)  # the main transfer's updates, the slope's included

        base_config = config.baseline_config(budget)
        eval_every = max(1, budget // 20)
        finetune = finetune_baseline(src_model, tasks.target, tasks.target_val, config.lam0, config.gamma0,
                                     steps=budget, config=base_config, eval_every=eval_every)
        scratch = scratch_baseline(src_model.config, tasks.target, tasks.target_val, config.lam0, config.gamma0,
                                   steps=budget, config=base_config, eval_every=eval_every)
    return IsoClassificationTransferResult(
        source_terms=src_terms, transfers=transfers, main_key=main_key, budget=int(budget), finetune=finetune,
        scratch=scratch, c_tolerance=config.c_tolerance, scratch_margin=config.scratch_margin,
        n_source=len(tasks.source.y), n_target=len(tasks.target.y), num_classes=tasks.num_classes,
        source_model=src_model, control=control, probe_check=probe_check, source_train_terms=src_train_terms,
    )


# ----------------------------------------------------------------------------
# metrics and claims
# ----------------------------------------------------------------------------


def metrics(result: IsoClassificationTransferResult) -> dict:
    """The chapter's recorded metrics: accuracies, the largest change of C, budget, fallbacks and every path."""
    results, main, scratch, finetune = result.transfers, result.main, result.scratch, result.finetune
    out = {
        "transfer_c_max_rel_change": float(result.c_change),
        "transfer_c_max_rel_change_train": float(result.c_change_train),
        "final_acc_isoc": float(main.target_accuracy[-1]),
        "final_acc_scratch": float(scratch.final_accuracy),
        "final_acc_finetune": float(finetune.final_accuracy),
        "finetune_initial_acc": float(finetune.initial_accuracy),
        "budget_updates": int(result.budget),
        **{f"c_max_rel_change[{m}/{i}]": float(r.c_max_rel_change) for (m, i), r in results.items()},
        **{f"final_acc[{m}/{i}]": float(r.target_accuracy[-1]) for (m, i), r in results.items()},
        **{f"fallbacks[{m}/{i}]": int(r.n_fallbacks) for (m, i), r in results.items()},
        **{f"c_max_rel_change_val[{m}/{i}]": float(r.max_rel_change("classification", "val"))
           for (m, i), r in results.items()},
        **{f"updates[{m}/{i}]": int(r.n_updates) for (m, i), r in results.items()},
        "paths": {f"{m}/{i}": dict(t=r.t.tolist(), lam=r.lam.tolist(), gamma=r.gamma.tolist(),
                                   rate=r.array("rate").tolist(), distortion=r.array("distortion").tolist(),
                                   classification=r.array("classification").tolist(),
                                   target_accuracy=r.target_accuracy.tolist(),
                                   classification_val=r.array("classification", "val").tolist(),
                                   raw_ce_train=r.raw_classification("train").tolist(),
                                   raw_ce_val=r.raw_classification("val").tolist(),
                                   label_entropy_val=[float(h) for h in (r.label_entropy_val
                                                                         if r.label_entropy_val is not None else [])])
                  for (m, i), r in results.items()},
    }
    for (m, i), r in results.items():
        key = f"{m}/{i}"
        if m == "repeat_equilibration":
            out[f"controller[{key}]"] = dict(
                repeats=[s.repeats for s in r.controller], held=[s.held for s in r.controller],
                n_steps_not_held=int(sum(not s.held for s in r.controller)),
                n_repeats=int(sum(s.repeats for s in r.controller)), updates=int(r.n_updates),
                gamma_final=float(r.gamma[-1]), c_target=float(r.controller[0].c_target) if r.controller else None)
            continue
        rates = r.unclipped_rates
        out[f"eq30[{key}]"] = dict(
            reading=r.config.get("eq30_reading"), slope_rule=r.config.get("slope_rule"),
            slope_from=r.config.get("slope_from"), slope=r.slope, slope_endpoint=r.slope_endpoint,
            one_plus_k_lambda0=(1 + r.slope * r.lam[0]) if r.slope is not None else None,
            one_plus_k_lambda0_endpoint=(1 + r.slope_endpoint * r.lam[0]) if r.slope_endpoint is not None else None,
            min_abs_one_plus_k_lambda=(float(np.min(np.abs(1 + r.slope * r.lam[:-1]))) if r.slope is not None
                                       else None),
            lam_dot_unclipped=rates[:, 0].tolist(), gamma_dot_unclipped=rates[:, 1].tolist(),
            lam_dot_applied=[float(s.applied[0]) for s in r.systems if s.applied is not None],
            gamma_dot_applied=[float(s.applied[1]) for s in r.systems if s.applied is not None],
            rate_partial=[float(s.rate_partial) for s in r.systems],
            dR_dt_fixed_multipliers=[float(s.partials.dR_dt) for s in r.systems
                                     if s.partials is not None and s.partials.dR_dt is not None],
            n_clipped_updates=int(r.n_clipped_updates), n_multiplier_updates=2 * len(r.systems),
            method_used=[s.method_used for s in r.systems])
    if result.control is not None:
        c = result.control
        out["control_c_max_rel_change_val"] = float(c.val_max_rel_change)
        out["control_c_max_rel_change_train"] = float(c.train_max_rel_change)
        out["control"] = dict(train_c=c.train_c.tolist(), val_c=c.val_c.tolist(), updates=int(c.n_updates))
    if result.probe_check is not None:
        pc = result.probe_check
        out["probe_check"] = dict(factor=pc.factor, rel_diff=pc.rel_diff,
                                  short=dict(dR_dt=pc.short.dR_dt, dD_dt=pc.short.dD_dt, dC_dt=pc.short.dC_dt),
                                  long=dict(dR_dt=pc.long.dR_dt, dD_dt=pc.long.dD_dt, dC_dt=pc.long.dC_dt))
    if result.source_train_terms is not None:
        out["source_c_train"] = float(result.source_train_terms.classification)
    out["source_c_val"] = float(result.source_terms.classification)
    return out


def claims(result: IsoClassificationTransferResult) -> list[Claim]:
    r"""The chapter's claims (Sec. 4.2-4.3 and Sec. 5.2, Fig. 5b of seed 004; the authors' code).

    * ``transfer_c_constant``: :math:`\max_k |C_k - C_0|/C_0` on held-out data, over every transfer that
      solves for the multipliers (Eq. 30 or 38), is below ``c_tolerance`` (training C and the
      fixed-multiplier control in the evidence);
    * ``isoc_matches_scratch``: the main transfer's final target accuracy is at least the scratch
      baseline's minus ``scratch_margin``;
    * ``finetune_starts_low``: fine-tuning starts more than 50 points below that final accuracy;
    * ``source_at_equilibrium`` (when a control was run): the fixed-multiplier control moves held-out
      :math:`C` by less than ``c_tolerance``, so that changes of :math:`C` during the transfers can be
      told from the equilibrations' own drift;
    * ``controller_holds_c`` (when the authors' controller ran): it ends every step with held-out
      :math:`C \le C_0(1 + \tau)` within its maximum of repeats.
    """
    results, main, scratch, finetune = result.transfers, result.main, result.scratch, result.finetune
    c_change = result.c_change
    acc_isoc = float(main.target_accuracy[-1])
    c_tolerance, scratch_margin = result.c_tolerance, result.scratch_margin
    first = result.main_key[1]
    control = result.control
    control_txt = (f"; fixed-multiplier control: held-out {control.val_max_rel_change:.1%}, training "
                   f"{control.train_max_rel_change:.1%}" if control is not None else "")
    found = [
        Claim(id="transfer_c_constant",
              statement="C stays at its starting value during iso-classification transfer",
              source="Seed 004, Sec. 4.2-4.3, Sec. 5.2", holds=bool(c_change < c_tolerance),
              evidence="; ".join(f"{m}/{i}: max relative change held-out "
                                 f"{results[(m, i)].max_rel_change('classification', 'val'):.1%}, training "
                                 f"{results[(m, i)].c_max_rel_change:.1%}" for (m, i) in result.eq30_keys)
                       + control_txt + f" (tolerance {c_tolerance:.0%})"),
        Claim(id="isoc_matches_scratch",
              statement="Final target accuracy of iso-classification transfer matches training from scratch",
              source="Seed 004, Sec. 5.2 (Fig. 5b)", holds=bool(acc_isoc >= scratch.final_accuracy - scratch_margin),
              evidence=f"geodesic/{first} {acc_isoc:.1%} against scratch {scratch.final_accuracy:.1%} "
                       f"(margin {scratch_margin:.0%}); fine-tuning ends at {finetune.final_accuracy:.1%}"),
        Claim(id="finetune_starts_low",
              statement="Fine-tuning the source model starts with a very low target accuracy",
              source="Seed 004, Sec. 5.2 (Fig. 5b)", holds=bool(finetune.initial_accuracy < acc_isoc - 0.5),
              evidence=f"fine-tuning starts at {finetune.initial_accuracy:.1%}; iso-classification transfer keeps "
                       f"{min(float(main.val_accuracy.min()), 1.0):.1%} or more on the interpolated task"),
    ]
    if control is not None:
        found.append(Claim(
            id="source_at_equilibrium",
            statement="The source model is at equilibrium: the transfer's equilibrations at fixed multipliers "
                      "on the source keep held-out C",
            source="Seed 004, Sec. 4.2 (quasi-static transfer starts on the equilibrium surface)",
            holds=bool(control.val_max_rel_change < c_tolerance),
            evidence=f"held-out C moves by at most {control.val_max_rel_change:.1%} (training "
                     f"{control.train_max_rel_change:.1%}) over {control.n_updates} updates "
                     f"(tolerance {c_tolerance:.0%})"))
    for (m, i), r in results.items():
        if m != "repeat_equilibration":
            continue
        not_held = sum(not s.held for s in r.controller)
        diverged = [k for k, s in enumerate(r.controller) if not s.finite]
        diverged_txt = (f"; the model diverged (non-finite held-out C) at step {diverged[0] + 1}, gamma "
                        f"{r.controller[diverged[0]].gamma_end:.3g}" if diverged else "")
        found.append(Claim(
            id="controller_holds_c",
            statement="The authors' controller (repeat equilibration, raising gamma) keeps held-out C <= C_0",
            source="Seed 004, the code of the authors (README: 25 mixing steps, gamma raised when the loss rises)",
            holds=bool(not_held == 0),
            evidence=f"{m}/{i}: {len(r.controller) - not_held} of {len(r.controller)} steps end at or below "
                     f"C_0 (1 + tol) = {r.controller[0].c_target:.3f} after "
                     f"{sum(s.repeats for s in r.controller)} repeats ({r.n_updates} updates); gamma "
                     f"{r.gamma[0]:.3g} -> {r.gamma[-1]:.3g}; held-out C max relative change "
                     f"{r.max_rel_change('classification', 'val'):.1%}, final target accuracy "
                     f"{r.target_accuracy[-1]:.1%}{diverged_txt}" if r.controller else f"{m}/{i}: no steps"))
        break
    return found
