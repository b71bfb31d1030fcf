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
# *Seed 004, {cite:t}`gao2020free`, Sec. 4 (Lemma 9, Eqs. 23-30), Sec. 5.2 and Fig. 5, Appendix F
# (Eq. 37, Remark 11) and Appendix G (Eq. 38, Fig. 6).*
#
# Download: {download}`the Jupytext source <06_iso_classification_transfer.py>` of this page (what
# {doc}`../book/reproduce` runs with papermill), or the executed notebook from the download button at
# the top of the page.
#
# Chapter 5 moved along the equilibrium surface by changing the multipliers $(\lambda, \gamma)$.
# Here the **data** change too: the task moves from a source to a target over $t \in [0, 1]$,
# either as the mixture (the paper's Eq. (23))
#
# ```{math}
# :label: isotransfer-eq-23
# p(x, t) = (1-t)\,p^s(x) + t\,p^t(x) \qquad\text{(labels kept)},
# ```
#
# or along the optimal-transport interpolation of chapter 2 {cite}`villani2009optimal` (the paper's
# Eq. (37))
#
# ```{math}
# :label: isotransfer-eq-37
# p(x, t) = \sum_{ij}\Gamma^*_{ij}\,\delta_{x - (1-t)x^s_i - t x^t_j},
# ```
#
# whose labels are interpolated, $y = (1-t)\delta_{y^s_i} + t\delta_{y^t_j}$ (Remark 11). The multipliers are adapted
# so that the classification loss stays at its starting value while the model is re-equilibrated
# at every step. The **geodesic transfer** of Sec. 4.3 asks the rate and distortion to move on a
# straight line, $\dot D = k\dot R$, which with $\dot C = 0$ gives the linear system of the
# paper's Eq. (30)
#
# ```{math}
# :label: isotransfer-eq-30
# \begin{aligned}
# \frac{\partial D}{\partial t} + \frac{\partial D}{\partial\lambda}\dot\lambda + \frac{\partial D}{\partial\gamma}\dot\gamma
#   &= \frac{k\,\partial R/\partial t}{1 + k\lambda},\\
# \frac{\partial C}{\partial\lambda}\dot\lambda + \frac{\partial C}{\partial\gamma}\dot\gamma + \frac{\partial C}{\partial t} &= 0,
# \end{aligned}
# ```
#
# solved at every step for $(\dot\lambda, \dot\gamma)$. The **heuristic** of Appendix G fixes
# $\dot\lambda$ and takes $\dot\gamma$ from the second row alone, the paper's Eq. (38):
#
# ```{math}
# :label: isotransfer-eq-38
# \frac{\partial C}{\partial\lambda}\dot\lambda + \frac{\partial C}{\partial\gamma}\dot\gamma + \frac{\partial C}{\partial t} = 0,
# \qquad \dot\lambda \text{ fixed}.
# ```
#
# **Choices** (each a field of `ctd_lib.free_energy.iso_transfer.IsoTransferConfig`, or a parameter
# below; `ctd_lib.experiments.iso_classification_transfer` runs the chapter):
# every partial derivative is a finite difference: in $\lambda$ and $\gamma$ central, each probe a
# short equilibration from the current weights with the same seed; in $t$ a forward difference over
# one data step, the probe equilibrated on $p(x, t + \Delta t)$ at fixed $(\lambda, \gamma)$
# (`t_derivative="equilibrate"`; `"frozen"` measures the current weights on the next data instead).
# The slope $k = dD/dR$ of {eq}`isotransfer-eq-30` is not given in the paper: by default it is the slope of the straight line
# from the source model's $(R, D)$ to that of a model equilibrated on the target at the same
# $(\lambda_0, \gamma_0)$. When the 2x2 matrix of {eq}`isotransfer-eq-30` is singular or badly conditioned, the
# step falls back to the heuristic with $\dot\lambda = 0$, and if $\partial C/\partial\gamma$ is zero
# too, the multipliers are left unchanged; every fallback is counted and shown. A trust region
# (`max_rel_change`) keeps each multiplier within a factor $1 + $ `max_rel_change` of its previous value
# per step (without it, one step of {eq}`isotransfer-eq-30` sent $\gamma$ to its floor); every clip is counted.
# Equilibration peaks at `peak_lr` = 3e-3, twice the 1.5e-3 of Sec. 5.1, because the CPU scale
# equilibrates for only a few hundred updates per step. For the mixture {eq}`isotransfer-eq-23` the
# functionals at $t$ are the exact mixtures $(1-t)\,\cdot_s + t\,\cdot_t$ of those measured on fixed
# source and target sets.
#
# The baselines of Fig. 5 use the same model and objective: **fine-tuning** the source model on the
# target, and **training from scratch** on the target, both with as many mini-batch updates as the
# transfer used (probes included).
#
# At the CPU scale this runs on a few thousand real MNIST digits with the 784-256-16 model of chapter 5;
# `params/paper/06_iso_classification_transfer.yml` uses the larger 784-400-64 model of Appendix A, more
# steps and longer equilibration. The CIFAR-10 {cite}`krizhevsky2009learning` vehicles-to-animals
# experiment of Appendix G is `params/cifar10/06_iso_classification_transfer.yml`, for readers with
# CIFAR-10 on disk (`data_root`); here its code path is tested on a small file in CIFAR-10's format
# only.

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
import time

import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from ctd_lib.display import show_claims, show_markdown, show_table, solver_warnings
from ctd_lib.experiments.iso_classification_transfer import IsoClassificationTransferConfig, claims, metrics, run
from ctd_lib.results import write_results

config = IsoClassificationTransferConfig(
    source_task=source_task, target_task=target_task, head=head, data_root=data_root, n_per_class=n_per_class,
    n_val_per_class=n_val_per_class, model=model, encoder=encoder, lam0=lam0, gamma0=gamma0,
    source_steps=source_steps, train_lr=train_lr, batch_size=batch_size, transfer_steps=transfer_steps,
    interpolations=interpolations, slope=slope, lambda_rate=lambda_rate, fd_rel_lambda=fd_rel_lambda,
    fd_rel_gamma=fd_rel_gamma, fd_steps=fd_steps, equil_steps=equil_steps, peak_lr=peak_lr,
    t_derivative=t_derivative, max_condition=max_condition, max_rel_change=max_rel_change,
    c_tolerance=c_tolerance, scratch_margin=scratch_margin, seed=seed, threads=threads, scale=scale,
)
t_start = time.perf_counter()
with solver_warnings():  # every fallback warns: each kind shown once, with its count
    result = run(config)  # source model, the transfers of Eqs. (30) and (38), the baselines
show_markdown(f"Source `{source_task}`: {result.n_source} images; target `{target_task}`: {result.n_target}; "
              f"one {result.num_classes}-way head.")

# %% [markdown]
# ## The source model
#
# Trained from scratch on the source at $(\lambda_0, \gamma_0)$, as the starting point on the source's
# equilibrium surface.

# %% tags=["hide-input"]
src_terms = result.source_terms
show_table([(f"{src_terms.rate:.2f}", f"{src_terms.distortion:.2f}", f"{src_terms.classification:.3f}",
             f"{src_terms.accuracy:.1%}")], ["R", "D", "C", "accuracy"], title="The source model on held-out source data")

# %% [markdown]
# ## Transfer
#
# Geodesic transfer ({eq}`isotransfer-eq-30`) with each interpolation of the data, and the
# heuristic of {eq}`isotransfer-eq-38`.

# %% tags=["hide-input"]
results = result.transfers
show_table([(f"{method}, {interp}", f"{r.array('classification')[0]:.3f} → {r.array('classification')[-1]:.3f}",
             f"{r.c_max_rel_change:.1%}", f"{r.lam[0]:.3g} → {r.lam[-1]:.3g}", f"{r.gamma[0]:.3g} → {r.gamma[-1]:.3g}",
             f"{r.target_accuracy[-1]:.1%}", f"{r.n_fallbacks} / {r.n_clips}", f"{r.wall_time:.0f}")
            for (method, interp), r in results.items()],
           ["transfer", "C", "max change of C", "λ", "γ", "target accuracy", "fallbacks / clips", "s"])
main = result.main
budget = result.budget

# %% [markdown]
# ## Baselines with the same budget
#
# Fine-tuning the source model on the target and training a fresh model on the target, each for as
# many mini-batch updates as the geodesic transfer used.

# %% tags=["hide-input"]
finetune, scratch = result.finetune, result.scratch
show_table([("fine-tuning", budget, f"{finetune.initial_accuracy:.1%}", f"{finetune.final_accuracy:.1%}"),
            ("from scratch", budget, "", f"{scratch.final_accuracy:.1%}")],
           ["baseline", "updates", "target accuracy at the start", "at the end"])

# %% [markdown]
# ## Rate, distortion and the multipliers along the transfer (Fig. 5a)
#
# {numref}`fig-isotransfer-rd` follows each transfer in the $(D, R)$ plane and its multipliers over $t$.

# %% tags=["hide-input"]
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
glue("fig-isotransfer-rd", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-isotransfer-rd
# :name: fig-isotransfer-rd
#
# Rate against distortion along each transfer (left; the dotted line is the straight line
# $\dot D = k\dot R$ that the geodesic transfer aims for), and $\lambda$ (middle) and $\gamma$
# (right) over $t$, one curve per method and interpolation: how far each transfer keeps to the line,
# and the steps in $\gamma$ that the trust region (`max_rel_change`) caps.
# ```
#
# ## Accuracy and classification loss over the transfer (Fig. 5b)
#
# Iso-classification transfer is measured on the interpolated held-out task at each $t$ and on the
# target's held-out set; fine-tuning on the target's held-out set over its updates (drawn on the same
# $[0, 1]$ axis as a fraction of the budget), in {numref}`fig-isotransfer-accuracy`.

# %% tags=["hide-input"]
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
glue("fig-isotransfer-accuracy", fig, display=False)
plt.close(fig)
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
# ```{glue:figure} fig-isotransfer-accuracy
# :name: fig-isotransfer-accuracy
#
# Held-out accuracy on the interpolated task over $t$ (left), accuracy on the target's held-out set
# (middle: the transfers over $t$, fine-tuning over the fraction of its budget, training from
# scratch as the star at the end) and the classification loss $C$ on the interpolated task (right,
# training and held-out): fine-tuning starts near zero on the target while the transfers keep the
# interpolated task's accuracy, and $C$ shows how well each transfer held it.
# ```
#
# Along the geodesic transfer the training classification loss starts at {glue:text}`c0:.3f` and
# reaches {glue:text}`c_peak:.3f` (a largest relative change of {glue:text}`c_change_main:.0%`); the
# accuracy on the interpolated held-out task never drops below {glue:text}`min_interp_acc:.1%`. At
# $t = 1$ the target accuracy is {glue:text}`acc_isoc:.1%`, against {glue:text}`acc_scratch:.1%` for a
# model trained from scratch and {glue:text}`acc_ft:.1%` for fine-tuning, which starts at
# {glue:text}`acc_ft0:.1%` (the source head never predicts the target's classes), all with
# {glue:text}`budget` mini-batch updates. When the loss is not held, the cause is visible in the
# multipliers: the solution of {eq}`isotransfer-eq-30` asks for large jumps of $\gamma$, which the trust region
# (`max_rel_change`) caps, and a short equilibration cannot fit the target's new classes as fast as
# the mixture brings them in; the process is quasi-static only in the limit of many small steps and
# long equilibration, which the paper scale approaches.
#
# ## The linear systems of Eq. (30)
#
# The condition number of the 2x2 matrix of {eq}`isotransfer-eq-30` at every step, and the steps
# that fell back.

# %% tags=["hide-input"]
show_table([(f"{method}, {interp}", ", ".join(f"{s.cond:.3g}" for s in r.systems),
             "; ".join(f"step {k}: {reason}" for k, reason in r.fallbacks) or "none")
            for (method, interp), r in results.items()],
           ["transfer", "condition number per step", "fallbacks"])

# %% [markdown]
# ## Claims and results

# %%
found = claims(result)
path = write_results(results_dir, "06_iso_classification_transfer", scale=scale, parameters=config.parameters(),
                     metrics=metrics(result), claims=found, wall_time=time.perf_counter() - t_start, device="cpu")
show_claims(found, path, results_dir)
