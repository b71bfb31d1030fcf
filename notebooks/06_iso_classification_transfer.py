# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chapter-iso-transfer)=
# # 6. Iso-classification transfer
#
# *Seed 004 (Gao & Chaudhari 2020), Sec. 4 (Lemma 9, Eqs. 23-30), Sec. 5.2 and Fig. 5, Appendix F
# (Eq. 37, Remark 11) and Appendix G (Eq. 38, Fig. 6).*
#
# Chapter 5 moved along the equilibrium surface by changing the multipliers $(\lambda, \gamma)$.
# Here the **data** change too: the task moves from a source to a target over $t \in [0, 1]$,
# either as the mixture
#
# $$
# p(x, t) = (1-t)\,p^s(x) + t\,p^t(x) \qquad\text{(labels kept)}, \tag{23}
# $$
#
# or along the optimal-transport interpolation of chapter 2,
# $p(x, t) = \sum_{ij}\Gamma^*_{ij}\,\delta_{x - (1-t)x^s_i - t x^t_j}$ (Eq. 37), whose labels are
# interpolated, $y = (1-t)\delta_{y^s_i} + t\delta_{y^t_j}$ (Remark 11). The multipliers are adapted
# so that the classification loss stays at its starting value while the model is re-equilibrated
# at every step. The **geodesic transfer** of Sec. 4.3 asks the rate and distortion to move on a
# straight line, $\dot D = k\dot R$, which with $\dot C = 0$ gives the linear system
#
# $$
# \frac{\partial D}{\partial t} + \frac{\partial D}{\partial\lambda}\dot\lambda + \frac{\partial D}{\partial\gamma}\dot\gamma
#   = \frac{k\,\partial R/\partial t}{1 + k\lambda},\qquad
# \frac{\partial C}{\partial\lambda}\dot\lambda + \frac{\partial C}{\partial\gamma}\dot\gamma + \frac{\partial C}{\partial t} = 0, \tag{30}
# $$
#
# solved at every step for $(\dot\lambda, \dot\gamma)$. The **heuristic** of Appendix G fixes
# $\dot\lambda$ and takes $\dot\gamma$ from the second row alone (Eq. 38).
#
# **Choices** (each a field of `ctd_lib.iso_transfer.IsoTransferConfig`, or a parameter below):
# every partial derivative is a finite difference: in $\lambda$ and $\gamma$ central, each probe a
# short equilibration from the current weights with the same seed; in $t$ a forward difference over
# one data step, the probe equilibrated on $p(x, t + \Delta t)$ at fixed $(\lambda, \gamma)$
# (`t_derivative="equilibrate"`; `"frozen"` measures the current weights on the next data instead).
# The slope $k = dD/dR$ is not given in the paper: by default it is the slope of the straight line
# from the source model's $(R, D)$ to that of a model equilibrated on the target at the same
# $(\lambda_0, \gamma_0)$. When the 2x2 matrix of Eq. (30) is singular or badly conditioned, the
# step falls back to the heuristic with $\dot\lambda = 0$, and if $\partial C/\partial\gamma$ is zero
# too, the multipliers are left unchanged; every fallback is counted and shown. A trust region
# (`max_rel_change`) keeps each multiplier within a factor $1 + $ `max_rel_change` of its previous value
# per step (without it, one step of Eq. 30 sent $\gamma$ to its floor); every clip is counted.
# Equilibration peaks at `peak_lr` = 3e-3, twice the 1.5e-3 of Sec. 5.1, because the CPU scale
# equilibrates for only a few hundred updates per step. For the mixture the
# functionals at $t$ are the exact mixtures $(1-t)\,\cdot_s + t\,\cdot_t$ of those measured on fixed
# source and target sets.
#
# The baselines of Fig. 5 use the same model and objective: **fine-tuning** the source model on the
# target, and **training from scratch** on the target, both with as many mini-batch updates as the
# transfer used (probes included).
#
# At the CPU scale this runs on a few thousand real MNIST digits with the 784-256-16 model of
# chapter 5; `params/paper/06_iso_classification_transfer.yml` uses the larger 784-400-64 model of
# Appendix A, more steps and longer equilibration. The CIFAR-10 vehicles-to-animals experiment of
# Appendix G is `params/cifar10/06_iso_classification_transfer.yml`, for readers with CIFAR-10 on
# disk (`data_root`); here its code path is tested on a small file in CIFAR-10's format only.

# %% tags=["parameters"]
source_task = "mnist10k-0-4"  # Sec. 5.2: digits 0-4 ...
target_task = "mnist10k-5-9"  # ... to digits 5-9
head = "disjoint"  # "disjoint": one head, source classes then target classes; "shared": both on labels 0..n-1
data_root = ""  # torchvision data root, for tasks of datasets that need one (CIFAR-10)
n_per_class = 300
n_val_per_class = 100
model = "mnist"  # a preset of ctd_lib.free_energy.PRESETS: "mnist" (784-256-16) or "mnist-transfer" (784-400-64)
encoder = "mlp"  # "mlp" or "conv"
lam0 = 0.25  # starting multipliers
gamma0 = 8.0
source_steps = 1500  # training on the source from scratch
train_lr = 1e-3
batch_size = 64
transfer_steps = 8  # steps in t
interpolations = ["mixture", "ot"]  # Eq. (23) and Eq. (37)
slope = None  # k of Eq. (30); None: the straight line from the source to the target equilibrium point
lambda_rate = 0.0  # the constant lambda-dot of the heuristic (Eq. 38)
fd_rel_lambda = 0.1
fd_rel_gamma = 0.1
fd_steps = 30  # short equilibration of each finite-difference probe
equil_steps = 400  # equilibration after each step
peak_lr = 3e-3  # peak of eta(t); Sec. 5.1 uses 1.5e-3 with longer equilibration
t_derivative = "equilibrate"
max_condition = 1e6  # above this condition number of Eq. (30)'s matrix, fall back (see the text)
max_rel_change = 1.0  # trust region: a step changes lambda and gamma by at most a factor 1 + this
c_tolerance = 0.1  # "C stays constant": relative change below this
scratch_margin = 0.02  # "as good as training from scratch": final accuracy within this margin
seed = 0
threads = 1  # torch threads: fixed, so the same seed gives the same numbers on any CPU
scale = "cpu"
results_dir = "../results"

# %%
import dataclasses
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue

from ctd_lib._util.checks import check_choice, check_positive
from ctd_lib.data import DATASETS, TASKS, fetch_mnist10k, make_task
from ctd_lib.free_energy import (
    INTERPOLATIONS,
    PRESETS,
    T_DERIVATIVES,
    EquilibrationConfig,
    IsoTransferConfig,
    array_sampler,
    finetune_baseline,
    make_free_energy_model,
    measure,
    scratch_baseline,
    train_equilibrium,
    transfer_budget,
)
from ctd_lib.free_energy.iso_transfer import iso_transfer
from ctd_lib.results import Claim, write_results

# validate every parameter before any work
check_choice("source_task", source_task, sorted(TASKS))
check_choice("target_task", target_task, sorted(TASKS))
check_choice("model", model, sorted(PRESETS))
check_choice("encoder", encoder, ("mlp", "conv"))
check_choice("head", head, ("disjoint", "shared"))
check_choice("t_derivative", t_derivative, T_DERIVATIVES)
if not interpolations:
    raise ValueError("interpolations must list at least one of " + ", ".join(INTERPOLATIONS))
for _i in interpolations:
    check_choice("interpolations", _i, INTERPOLATIONS)
for _name in ("n_per_class", "n_val_per_class", "source_steps", "batch_size", "transfer_steps", "fd_steps",
              "equil_steps", "threads"):
    check_positive(_name, globals()[_name], integer=True)
for _name in ("lam0", "gamma0", "train_lr", "peak_lr", "fd_rel_lambda", "fd_rel_gamma", "max_condition",
              "c_tolerance", "scratch_margin", "max_rel_change"):
    check_positive(_name, globals()[_name])
if slope is not None and not np.isfinite(slope):
    raise ValueError(f"slope={slope!r} is not valid; it must be a finite number or None")
if DATASETS[TASKS[source_task].dataset].needs_root and not data_root:
    raise ValueError(f"data_root is required for {source_task!r} (dataset {TASKS[source_task].dataset!r}, read through "
                     "torchvision); pass the folder that holds it")
if TASKS[source_task].dataset != TASKS[target_task].dataset:
    raise ValueError(f"source_task={source_task!r} and target_task={target_task!r} come from different datasets "
                     "and have no shared input shape")
fd_config = EquilibrationConfig(steps=fd_steps, peak_lr=peak_lr, batch_size=batch_size, schedule="paper", seed=seed)
eq_config = EquilibrationConfig(steps=equil_steps, peak_lr=peak_lr, batch_size=batch_size, schedule="paper", seed=seed)
train_config = EquilibrationConfig(steps=source_steps, peak_lr=train_lr, batch_size=batch_size, schedule="cosine",
                                   seed=seed)


def transfer_config(method, interpolation):
    return IsoTransferConfig(steps=transfer_steps, method=method, interpolation=interpolation, slope=slope,
                             lambda_rate=lambda_rate, fd_rel_lambda=fd_rel_lambda, fd_rel_gamma=fd_rel_gamma,
                             t_derivative=t_derivative, fd_equilibration=fd_config, equilibration=eq_config,
                             max_condition=max_condition, max_rel_change=max_rel_change, seed=seed)


configs = {("geodesic", i): transfer_config("geodesic", i) for i in interpolations}
configs[("heuristic", interpolations[0])] = transfer_config("heuristic", interpolations[0])
t_start = time.perf_counter()
torch.set_num_threads(threads)
torch.manual_seed(seed)
warnings.filterwarnings("always", module="ctd_lib.iso_transfer")  # every fallback is shown
root = data_root or None
if TASKS[source_task].dataset == "mnist10k":
    fetch_mnist10k()
n_src, n_tgt = len(TASKS[source_task].classes), len(TASKS[target_task].classes)
# head "disjoint": source classes then target classes in one head (0-4 and 5-9 for MNIST, Sec. 5.2);
# head "shared": both tasks relabelled 0..n-1 on one head of n outputs (Appendix G's four outputs)
offsets = (0, n_src) if head == "disjoint" else (0, 0)
num_classes = n_src + n_tgt if head == "disjoint" else max(n_src, n_tgt)


def task(name, split, n, offset):
    t = make_task(name, split, root=root, n_per_class=n, seed=seed, label_offset=offset)
    return dataclasses.replace(t, num_classes=num_classes)


source, target = task(source_task, "train", n_per_class, offsets[0]), task(target_task, "train", n_per_class, offsets[1])
source_val = task(source_task, "test", n_val_per_class, offsets[0])
target_val = task(target_task, "test", n_val_per_class, offsets[1])
model_config = dict(input_shape=tuple(source.input_shape), num_classes=num_classes, encoder=encoder, seed=seed)
print(f"source {source_task}: {len(source.y)} images, target {target_task}: {len(target.y)}; "
      f"one {num_classes}-way head")

# %% [markdown]
# ## The source model
#
# Trained from scratch on the source at $(\lambda_0, \gamma_0)$, as the starting point on the source's
# equilibrium surface.

# %%
src_model = make_free_energy_model(model, **model_config)
train_equilibrium(src_model, array_sampler(source.x, source.y), lam0, gamma0, train_config)
src_terms = measure(src_model, source_val.x, source_val.y, seed=seed)
print(f"source model, held-out source: R {src_terms.rate:.2f}, D {src_terms.distortion:.2f}, "
      f"C {src_terms.classification:.3f}, accuracy {src_terms.accuracy:.1%}")

# %% [markdown]
# ## Transfer
#
# Geodesic transfer (Eq. 30) with each interpolation of the data, and the heuristic of Eq. (38).

# %%
results = {}
for (method, interp), cfg in configs.items():
    results[(method, interp)] = iso_transfer(src_model, source, target, source_val, target_val, lam0, gamma0, cfg)
    r = results[(method, interp)]
    print(f"{method:9s} {interp:8s}: C {r.array('classification')[0]:.3f} -> {r.array('classification')[-1]:.3f} "
          f"(max change {r.c_max_rel_change:.1%}), lambda {r.lam[0]:.3g} -> {r.lam[-1]:.3g}, "
          f"gamma {r.gamma[0]:.3g} -> {r.gamma[-1]:.3g}, target accuracy {r.target_accuracy[-1]:.1%}, "
          f"{r.n_fallbacks} fallbacks, {r.n_clips} clips, {r.wall_time:.0f} s")
main = results[("geodesic", interpolations[0])]
budget = transfer_budget(configs[("geodesic", interpolations[0])])

# %% [markdown]
# ## Baselines with the same budget
#
# Fine-tuning the source model on the target and training a fresh model on the target, each for as
# many mini-batch updates as the geodesic transfer used.

# %%
base_config = EquilibrationConfig(steps=budget, peak_lr=train_lr, batch_size=batch_size, schedule="cosine", seed=seed)
eval_every = max(1, budget // 20)
finetune = finetune_baseline(src_model, target, target_val, lam0, gamma0, steps=budget, config=base_config,
                             eval_every=eval_every)
scratch = scratch_baseline(src_model.config, target, target_val, lam0, gamma0, steps=budget,
                           config=base_config, eval_every=eval_every)
print(f"budget {budget} updates; fine-tuning: {finetune.initial_accuracy:.1%} -> {finetune.final_accuracy:.1%}; "
      f"from scratch: {scratch.final_accuracy:.1%}")

# %% [markdown]
# ## Rate, distortion and the multipliers along the transfer (Fig. 5a)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for (method, interp), r in results.items():
    lab = f"{method}, {interp}"
    axes[0].plot(r.array("distortion"), r.array("rate"), "o-", label=lab)
    axes[1].plot(r.t, r.lam, "o-", label=f"$\\lambda$, {lab}")
    axes[2].plot(r.t, r.gamma, "s--", label=f"$\\gamma$, {lab}")
if main.slope is not None:  # the line the geodesic transfer aims for, drawn only inside the data's range
    R0, D0 = main.array("rate")[0], main.array("distortion")[0]
    lims = axes[0].get_xlim(), axes[0].get_ylim()
    Rs = np.linspace(*lims[1], 200)
    Ds = D0 + main.slope * (Rs - R0)
    keep = (Ds >= lims[0][0]) & (Ds <= lims[0][1])
    axes[0].plot(Ds[keep], Rs[keep], "k:", lw=1, label=f"straight line dD/dR = {main.slope:.3g}")
    axes[0].set(xlim=lims[0], ylim=lims[1])
axes[0].set(xlabel="distortion D", ylabel="rate R", title="rate and distortion along the transfer")
axes[1].set(xlabel="t", ylabel="$\\lambda$", title="$\\lambda$ over t")
axes[2].set(xlabel="t", ylabel="$\\gamma$", title="$\\gamma$ over t")
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Accuracy and classification loss over the transfer (Fig. 5b)
#
# Iso-classification transfer is measured on the interpolated held-out task at each $t$ and on the
# target's held-out set; fine-tuning on the target's held-out set over its updates (drawn on the same
# $[0, 1]$ axis as a fraction of the budget).

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for (method, interp), r in results.items():
    lab = f"{method}, {interp}"
    axes[0].plot(r.t, r.val_accuracy * 100, "o-", label=f"{lab} (interpolated task)")
    axes[1].plot(r.t, r.target_accuracy * 100, "o-", label=lab)
    axes[2].plot(r.t, r.array("classification"), "o-", label=f"train, {lab}")
    axes[2].plot(r.t, r.array("classification", "val"), "x:", label=f"held-out, {lab}")
frac = finetune.steps / budget
axes[1].plot(frac, finetune.target_accuracy * 100, "-", color="C0", alpha=0.6, label="fine-tuning")
axes[1].plot([1.0], [scratch.final_accuracy * 100], "*", ms=14, color="C2", label="from scratch")
axes[0].set(xlabel="t", ylabel="held-out accuracy (%)", title="accuracy on the interpolated task")
axes[1].set(xlabel="t (fraction of the budget for fine-tuning)", ylabel="target held-out accuracy (%)",
            title="accuracy on the target (Fig. 5b)")
axes[2].set(xlabel="t", ylabel="classification loss C", title="C on the interpolated task")
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
c_path = main.array("classification")
glue("c0", float(c_path[0]), display=False)
glue("c_peak", float(c_path.max()), display=False)
glue("c_change_main", float(main.c_max_rel_change), display=False)
glue("acc_isoc", float(main.target_accuracy[-1]), display=False)
glue("acc_scratch", float(scratch.final_accuracy), display=False)
glue("acc_ft0", float(finetune.initial_accuracy), display=False)
glue("acc_ft", float(finetune.final_accuracy), display=False)
glue("min_interp_acc", float(main.val_accuracy.min()), display=False)
glue("budget", int(budget), display=False)

# %% [markdown]
# Along the geodesic transfer the training classification loss starts at {glue:text}`c0:.3f` and
# reaches {glue:text}`c_peak:.3f` (a largest relative change of {glue:text}`c_change_main:.0%`); the
# accuracy on the interpolated held-out task never drops below {glue:text}`min_interp_acc:.1%`. At
# $t = 1$ the target accuracy is {glue:text}`acc_isoc:.1%`, against {glue:text}`acc_scratch:.1%` for a
# model trained from scratch and {glue:text}`acc_ft:.1%` for fine-tuning, which starts at
# {glue:text}`acc_ft0:.1%` (the source head never predicts the target's classes), all with
# {glue:text}`budget` mini-batch updates. When the loss is not held, the cause is visible in the
# multipliers: the solution of Eq. (30) asks for large jumps of $\gamma$, which the trust region
# (`max_rel_change`) caps, and a short equilibration cannot fit the target's new classes as fast as
# the mixture brings them in; the process is quasi-static only in the limit of many small steps and
# long equilibration, which the paper scale approaches.
#
# ## The linear systems of Eq. (30)
#
# The condition number of the 2x2 matrix at every step, and the steps that fell back.

# %%
for (method, interp), r in results.items():
    conds = [s["cond"] for s in r.systems]
    print(f"{method:9s} {interp:8s}: condition numbers {', '.join(f'{c:.3g}' for c in conds)}; "
          f"fallbacks {r.fallbacks if r.fallbacks else 'none'}")

# %% [markdown]
# ## Claims and results

# %%
c_change = max(r.c_max_rel_change for r in results.values())
acc_isoc = float(main.target_accuracy[-1])
claims = [
    Claim(id="transfer_c_constant", statement="C stays at its starting value during iso-classification transfer",
          source="Seed 004, Sec. 4.2-4.3, Sec. 5.2", holds=bool(c_change < c_tolerance),
          evidence="; ".join(f"{m}/{i}: max relative change {r.c_max_rel_change:.1%}" for (m, i), r in results.items())
                   + f" (tolerance {c_tolerance:.0%})"),
    Claim(id="isoc_matches_scratch", statement="Final target accuracy of iso-classification transfer matches training from scratch",
          source="Seed 004, Sec. 5.2 (Fig. 5b)", holds=bool(acc_isoc >= scratch.final_accuracy - scratch_margin),
          evidence=f"geodesic/{interpolations[0]} {acc_isoc:.1%} against scratch {scratch.final_accuracy:.1%} "
                   f"(margin {scratch_margin:.0%}); fine-tuning ends at {finetune.final_accuracy:.1%}"),
    Claim(id="finetune_starts_low", statement="Fine-tuning the source model starts with a very low target accuracy",
          source="Seed 004, Sec. 5.2 (Fig. 5b)", holds=bool(finetune.initial_accuracy < acc_isoc - 0.5),
          evidence=f"fine-tuning starts at {finetune.initial_accuracy:.1%}; iso-classification transfer keeps "
                   f"{min(float(main.val_accuracy.min()), 1.0):.1%} or more on the interpolated task"),
]
metrics = {
    "transfer_c_max_rel_change": float(c_change),
    "final_acc_isoc": acc_isoc,
    "final_acc_scratch": float(scratch.final_accuracy),
    "final_acc_finetune": float(finetune.final_accuracy),
    "finetune_initial_acc": float(finetune.initial_accuracy),
    "budget_updates": int(budget),
    **{f"c_max_rel_change[{m}/{i}]": float(r.c_max_rel_change) for (m, i), r in results.items()},
    **{f"final_acc[{m}/{i}]": float(r.target_accuracy[-1]) for (m, i), r in results.items()},
    **{f"fallbacks[{m}/{i}]": int(r.n_fallbacks) for (m, i), r in results.items()},
    "paths": {f"{m}/{i}": dict(t=r.t.tolist(), lam=r.lam.tolist(), gamma=r.gamma.tolist(),
                               rate=r.array("rate").tolist(), distortion=r.array("distortion").tolist(),
                               classification=r.array("classification").tolist(),
                               target_accuracy=r.target_accuracy.tolist()) for (m, i), r in results.items()},
}
params = {k: globals()[k] for k in ("source_task", "target_task", "n_per_class", "n_val_per_class", "model", "encoder",
                                   "lam0", "gamma0", "source_steps", "train_lr", "batch_size", "transfer_steps",
                                   "interpolations", "slope", "lambda_rate", "fd_rel_lambda", "fd_rel_gamma",
                                   "fd_steps", "equil_steps", "peak_lr", "t_derivative", "max_condition",
                                   "max_rel_change", "c_tolerance", "scratch_margin", "seed", "threads", "scale")}
path = write_results(results_dir, "06_iso_classification_transfer", scale=scale, parameters=params, metrics=metrics,
                     claims=claims, wall_time=time.perf_counter() - t_start, device="cpu")
for c in claims:
    print(f"[{'holds' if c.holds else 'FAILS'}] {c.statement}: {c.evidence}")
print(f"results written to {path}")
