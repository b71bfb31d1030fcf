r"""Chapter 3's experiments: coupled transfer distances between task families, their baselines
and Mantel tests (Seed 000, Sec. 3, Sec. 5.2-5.5, Figs. 2-7).

:class:`TaskBank` loads each task once (training and held-out splits) and
trains one source model per (task, architecture, seed); :func:`family_matrices`
computes every method's distance matrix over a task family, each ordered pair
cached on disk under a key of the method, the tasks, the parameters and a
fingerprint of the library's code.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .._util.checks import check_choice, check_positive
from ..data import TASKS, Task, make_task
from ..geometry.sgd import accuracy, cross_entropy
from ..models import MODEL_NAMES, make_model
from ..task_distance.coupled import (
    CoupledConfig,
    coupled_transfer_distance,
    penultimate_features,
    train_source_model,
    uncoupled_transfer_distance,
)
from ..task_distance.finetune import FineTuneConfig, fine_tuning_distance
from ..task_distance.matrices import distance_matrix
from ..task_distance.task2vec import Task2VecConfig, task2vec_distance, task2vec_embedding
from ..transport.gaussian import wasserstein2

__all__ = ["METHODS", "StudyConfig", "TaskBank", "Variant", "code_fingerprint", "family_matrices", "ingredient_study", "seed_spread"]

METHODS = ("coupled", "uncoupled", "fine-tuning", "task2vec", "w2-pixel", "w2-feature")


def code_fingerprint() -> str:
    """sha256 of the library's source files: part of every cache key, so a code change invalidates the cache."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Sizes and training settings of chapter 3 (one object for every family)."""

    n_per_class: int = 40  # training images per class, per task
    n_val_per_class: int = 20  # held-out images per class, per task
    source_steps: int = 300  # SGD steps training each source model
    source_lr: float = 0.05  # their learning rate
    batch_size: int = 32  # mini-batch of every SGD run
    finetune_steps: int = 200  # SGD steps of the fine-tuning distance (and of the Fig. 6 comparison)
    finetune_lr: float = 0.05  # its learning rate
    probe_task: str = "mnist10k-all"  # reference task on which the Task2Vec probe is trained
    task2vec_samples: int = 200  # inputs per task for the diagonal Fisher of Task2Vec
    w2_samples: int = 200  # images per task in the W2 baselines
    seed: int = 0  # seeds data subsets, models and samplers

    def __post_init__(self):
        for name in ("n_per_class", "n_val_per_class", "source_steps", "batch_size", "finetune_steps",
                     "task2vec_samples", "w2_samples"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("source_lr", "finetune_lr"):
            check_positive(name, getattr(self, name))
        check_choice("probe_task", self.probe_task, sorted(TASKS))


class TaskBank:
    """Tasks (train and held-out) and source models, each made once."""

    def __init__(self, cfg: StudyConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        self._tasks: dict = {}
        self._models: dict = {}

    def task(self, name: str, split: str = "train") -> Task:
        key = (name, split)
        if key not in self._tasks:
            n = self.cfg.n_per_class if split == "train" else self.cfg.n_val_per_class
            t = make_task(name, split=split, n_per_class=n, seed=self.cfg.seed)
            self._tasks[key] = replace(t, x=t.x.to(self.device), y=t.y.to(self.device))
        return self._tasks[key]

    def source_model(self, name: str, model: str) -> torch.nn.Module:
        key = (name, model)
        if key not in self._models:
            task = self.task(name)
            self._models[key] = train_source_model(
                task, lambda: make_model(model, in_shape=tuple(task.x.shape[1:]), num_classes=task.num_classes,
                                         seed=self.cfg.seed),
                steps=self.cfg.source_steps, lr=self.cfg.source_lr, batch_size=self.cfg.batch_size,
                seed=self.cfg.seed, device=self.device)
        return self._models[key]


def _coupled_pair(bank: TaskBank, model: str, ccfg: CoupledConfig):
    def run(s: str, t: str):
        src, tgt = bank.task(s), bank.task(t)
        res = coupled_transfer_distance(src, tgt, bank.source_model(s, model), ccfg,
                                        source_val=bank.task(s, "test"), target_val=bank.task(t, "test"))
        tv = bank.task(t, "test")
        with torch.no_grad():
            res.target_model.eval()
            loss = float(cross_entropy(res.target_model(tv.x), tv.y))
        return res.distance, {
            "per_iteration": res.per_iteration, "per_iteration_other": res.per_iteration_other,
            "target_val_acc": accuracy(res.target_model, tv.x, tv.y), "target_val_loss": loss,
            "eval_tau": res.log.eval_tau, "eval_train_loss": res.log.eval_train_loss,
            "eval_val_loss": res.log.eval_val_loss, "coupling_converged": bool(res.coupling.converged),
        }

    return run


def _uncoupled_pair(bank: TaskBank, model: str, ccfg: CoupledConfig):
    def run(s: str, t: str):
        res = uncoupled_transfer_distance(bank.task(s), bank.task(t), bank.source_model(s, model), ccfg,
                                          source_val=bank.task(s, "test"), target_val=bank.task(t, "test"))
        return res.distance, {"per_sample": res.per_iteration_other[0], "eval_tau": res.log.eval_tau,
                              "eval_train_loss": res.log.eval_train_loss, "eval_val_loss": res.log.eval_val_loss}

    return run


def _finetune_pair(bank: TaskBank, model: str):
    cfg = bank.cfg
    ftc = FineTuneConfig(lr=cfg.finetune_lr, batch_size=cfg.batch_size, max_steps=cfg.finetune_steps, seed=cfg.seed)

    def run(s: str, t: str):
        tv = bank.task(t, "test")
        res = fine_tuning_distance(bank.source_model(s, model), bank.task(t), tv, ftc)
        m = res.final_model.eval()  # after the whole fine-tuning run, for the Fig. 6 comparison
        with torch.no_grad():
            loss = float(cross_entropy(m(tv.x), tv.y))
        return res.distance, {"steps_to_threshold": res.steps_to_threshold, "fisher_rao_length": res.fisher_rao_length,
                              "initial_val_acc": res.initial_val_acc, "final_val_acc": res.final_val_acc,
                              "target_val_acc": accuracy(m, tv.x, tv.y), "target_val_loss": loss}

    return run


def _probe(bank: TaskBank, model: str) -> torch.nn.Module:
    return bank.source_model(bank.cfg.probe_task, model)


def family_matrices(
    bank: TaskBank, names: Sequence[str], *, model: str, coupled: CoupledConfig, methods: Sequence[str] = METHODS,
    cache_dir: str | None = None,
) -> dict:
    """Every requested method's :class:`~ctd_lib.matrices.DistanceMatrix` over the ordered pairs of ``names``."""
    for m in methods:
        check_choice("methods", m, METHODS)
    check_choice("model", model, MODEL_NAMES)
    base = {"study": asdict(bank.cfg), "model": model, "code": code_fingerprint()}
    out = {}
    if "coupled" in methods:
        out["coupled"] = distance_matrix(names, _coupled_pair(bank, model, coupled), method=f"coupled-{model}",
                                         params={**base, "coupled": coupled.to_dict()}, cache_dir=cache_dir)
    if "uncoupled" in methods:
        out["uncoupled"] = distance_matrix(names, _uncoupled_pair(bank, model, coupled), method=f"uncoupled-{model}",
                                           params={**base, "coupled": coupled.to_dict()}, cache_dir=cache_dir)
    if "fine-tuning" in methods:
        out["fine-tuning"] = distance_matrix(names, _finetune_pair(bank, model), method=f"fine-tuning-{model}",
                                             params=base, cache_dir=cache_dir)
    if "task2vec" in methods or "w2-feature" in methods:
        probe = _probe(bank, model)
    if "task2vec" in methods:
        t2v = Task2VecConfig(n_samples=bank.cfg.task2vec_samples, seed=bank.cfg.seed)
        emb = {n: task2vec_embedding(probe, bank.task(n), t2v) for n in names}
        out["task2vec"] = distance_matrix(names, lambda s, t: task2vec_distance(emb[s], emb[t]), method="task2vec",
                                          params=base)
    if "w2-pixel" in methods or "w2-feature" in methods:
        k = bank.cfg.w2_samples

        def sub(n):
            x = bank.task(n).x
            g = torch.Generator().manual_seed(bank.cfg.seed)
            return x[torch.randperm(x.shape[0], generator=g)[:k]]

        if "w2-pixel" in methods:
            px = {n: sub(n).reshape(min(k, bank.task(n).x.shape[0]), -1).cpu().double().numpy() for n in names}
            out["w2-pixel"] = distance_matrix(names, lambda s, t: wasserstein2(px[s], px[t]), method="w2-pixel",
                                              params=base)
        if "w2-feature" in methods:
            fx = {n: penultimate_features(probe, sub(n)) for n in names}
            out["w2-feature"] = distance_matrix(names, lambda s, t: wasserstein2(fx[s], fx[t]), method="w2-feature",
                                                params=base)
    return out


@dataclass(frozen=True)
class Variant:
    name: str  # what changes
    coupled: float
    coupled_per_sample: float
    uncoupled: float
    per_iteration: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.coupled / self.uncoupled


def ingredient_study(bank: TaskBank, source: str, target: str, *, model: str, base: CoupledConfig,
                     variants: dict) -> list:
    """Coupled against uncoupled distance for one pair, changing one ingredient at a time.

    ``variants`` maps a label to a dict of :class:`~ctd_lib.coupled.CoupledConfig`
    fields to change (the empty dict is the base configuration).
    """
    out = []
    src, tgt = bank.task(source), bank.task(target)
    sm = bank.source_model(source, model)
    unc_cache: dict = {}
    for label, changes in variants.items():
        cfg = replace(base, **changes)
        c = coupled_transfer_distance(src, tgt, sm, cfg)
        key = (cfg.steps, cfg.lr, cfg.batch_size, cfg.schedule, cfg.convention, cfg.seed)
        if key not in unc_cache:
            unc_cache[key] = uncoupled_transfer_distance(src, tgt, sm, cfg).distance
        other = c.per_iteration_other[-1]
        out.append(Variant(label, c.distance, other, unc_cache[key], list(c.per_iteration)))
    return out


def seed_spread(bank_fn, source: str, target: str, *, model: str, base: CoupledConfig, seeds: Sequence[int]) -> dict:
    """Coupled and uncoupled distance of one pair over several seeds (data subsets, models and sampling)."""
    rows = {"coupled": [], "uncoupled": []}
    for s in seeds:
        bank = bank_fn(s)
        cfg = replace(base, seed=s)
        sm = bank.source_model(source, model)
        rows["coupled"].append(coupled_transfer_distance(bank.task(source), bank.task(target), sm, cfg).distance)
        rows["uncoupled"].append(uncoupled_transfer_distance(bank.task(source), bank.task(target), sm, cfg).distance)
    return {k: np.asarray(v) for k, v in rows.items()}
