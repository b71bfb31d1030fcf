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
# **Reading of Eq. (30).** Sec. 4.3 derives row 1 from $\dot R = -\lambda\dot D + \partial R/\partial t$,
# where $R$ is a function of $(D, C, t)$ on the equilibrium surface: its $\partial R/\partial t$ holds $D$ and
# $C$ fixed. Our finite differences hold the multipliers fixed and give $R_t, D_t, C_t$; with
# $\partial R/\partial D = -\lambda$ and $\partial R/\partial C = -\gamma$ (Eq. 29) the chain rule gives
# $\partial R/\partial t|_{D,C} = R_t + \lambda D_t + \gamma C_t$, which this chapter uses
# (`eq30_reading="derived"`; `"fixed_multipliers"` puts $R_t$ in row 1, as the chapter did before).
# **The slope** $k$: the straight line from the source equilibrium to a target equilibrium at
# $(\lambda_0, \gamma_0)$ can fall past $k = -1/\lambda$, where row 1 divides by zero (the line is then
# tangent to the iso-$C$ rate-distortion curve, $dD/dR = -1/\lambda$ by Eq. 29); `slope_rule="endpoints_clamped"`
# raises $k$ to at least $(m-1)/\lambda_0$ with $m$ = `slope_margin`, so that $1 + k\lambda_0 \ge m$, and the
# endpoint $k$ is recorded beside it. **Soft labels**: with Remark 11's labels the cross-entropy is at
# least the label entropy $H(y)$ ($\ln 2$ at $t = 1/2$), a floor no model can pass; for the OT data $C$ is the
# excess $\mathrm{CE} - H(y)$ (a KL divergence, 0 for a perfect prediction; `c_measure`), the raw CE beside it.
# $H(y)$ does not depend on the weights, so training is unchanged. **The authors' controller**
# (`repeat_equilibration`): the README of their code says they "transfer 0-4 to 5-9 in 25 mixing steps
# with a heuristic that raises gamma when the loss rises". We make that precise: $\lambda = \lambda_0$;
# after each equilibration on $p(x, t_{k+1})$, while held-out $C > C_0(1 + \tau)$ and fewer than
# `controller_max_repeats` repeats were taken, $\gamma \leftarrow$ `controller_gamma_factor` $\cdot\gamma$ and
# the equilibration is repeated; its updates are counted. Held-out $C$ is its judge, so its held-out $C$
# is not an independent test (the training $C$ is). **Equilibrium first**: the source model is trained
# with a cosine schedule annealed to 0, and a fixed-multiplier control (the transfer's equilibrations at
# $(\lambda_0, \gamma_0)$ on the source alone) measures how much $C$ moves with nothing changing: every
# change of $C$ in a transfer is to be read against it. $C$ is judged on held-out data.
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
# Equilibration peaks at `peak_lr` = 1.5e-3, the value of Sec. 5.1, after every step. At this scale it
# is a trade-off, measured while preparing this chapter (25 steps of 100 updates): at 3e-3 the
# fixed-multiplier control moved the held-out $C$ by 21.4% (the source model is re-heated off its
# annealed minimum); at 5e-4 by only 7.3%, but 100 updates a step could no longer follow the data (the
# held-out $C$ of the mixture transfer rose by 411%, the final target accuracy was 92.5% against 95.6%
# from scratch); 1.5e-3 sits between (the numbers below). For the mixture {eq}`isotransfer-eq-23` the
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
source_steps = 6000  # training on the source from scratch, cosine annealed to 0
train_lr = 1e-3
batch_size = 64
transfer_steps = 25  # steps in t, at least 2 (the code of the authors uses 25 mixing steps)
interpolations = ["mixture", "ot"]  # Eq. (23) and Eq. (37)
methods = ["repeat_equilibration"]  # beside Eq. (30): heuristic (Eq. 38), repeat_equilibration (authors)
eq30_reading = "derived"  # row 1 of Eq. (30): derived (R_t + lam D_t + gamma C_t) or fixed_multipliers (R_t)
slope = None  # k of Eq. (30); None: the straight line from the source to the target equilibrium point
slope_rule = "endpoints_clamped"  # or endpoints (as measured); clamped: 1 + k lam0 at least slope_margin
slope_margin = 0.5
min_denominator = 0.05  # a step with |1 + k lambda| below this falls back to Eq. (38)
c_measure = "excess"  # soft labels of OT: C is the excess CE - H, H the label entropy (Remark 11); or raw CE
controller_gamma_factor = 1.5  # controller of the authors: gamma times this per repeated equilibration
controller_max_repeats = 3  # ... at most this many repeats per step ...
controller_tolerance = 0.0  # ... until held-out C is at most C_0 times 1 + this
eval_size = 400  # fixed evaluation examples (pairs) per task for the functionals
n_z_measure = 4  # encoder samples per input when measuring
probe_check_factor = 3  # the probe-length check: step 1's partials with probes this many times longer
lambda_rate = 0.0  # the constant lambda-dot of the heuristic (Eq. 38)
fd_rel_lambda = 0.1
fd_rel_gamma = 0.1
fd_steps = 24  # short equilibration of each finite-difference probe
equil_steps = 100  # equilibration after each step
peak_lr = 1.5e-3  # peak of eta(t), the value of Sec. 5.1
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
    interpolations=interpolations, methods=methods, eq30_reading=eq30_reading, slope_rule=slope_rule,
    slope_margin=slope_margin, min_denominator=min_denominator, c_measure=c_measure,
    controller_gamma_factor=controller_gamma_factor, controller_max_repeats=controller_max_repeats,
    controller_tolerance=controller_tolerance, eval_size=eval_size, n_z_measure=n_z_measure,
    probe_check_factor=probe_check_factor, slope=slope, lambda_rate=lambda_rate, fd_rel_lambda=fd_rel_lambda,
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
# Trained from scratch on the source at $(\lambda_0, \gamma_0)$ for `source_steps` updates, cosine-annealed
# to zero, as the starting point on the source's equilibrium surface.

# %% tags=["hide-input"]
src_terms = result.source_terms
show_table([(f"{src_terms.rate:.2f}", f"{src_terms.distortion:.2f}", f"{src_terms.classification:.3f}",
             f"{src_terms.accuracy:.1%}")], ["R", "D", "C", "accuracy"], title="The source model on held-out source data")

# %% [markdown]
# ## Transfer
#
# Geodesic transfer ({eq}`isotransfer-eq-30`) with each interpolation of the data, and each of
# `methods` beside it: at the CPU scale the authors' controller on the mixture; the heuristic of
# {eq}`isotransfer-eq-38` runs at the smoke and paper scales (it did not fit this page's time budget).

# %% tags=["hide-input"]
results = result.transfers
show_table([(f"{method}, {interp}", f"{r.array('classification')[0]:.3f} → {r.array('classification')[-1]:.3f}",
             f"{r.max_rel_change('classification', 'val'):.1%} / {r.c_max_rel_change:.1%}",
             f"{r.lam[0]:.3g} → {r.lam[-1]:.3g}", f"{r.gamma[0]:.3g} → {r.gamma[-1]:.3g}",
             f"{r.target_accuracy[-1]:.1%}", f"{r.n_fallbacks} / {r.n_clips}", f"{r.wall_time:.0f}")
            for (method, interp), r in results.items()],
           ["transfer", "C (training)", "max change of C, held-out / training", "λ", "γ", "target accuracy",
            "fallbacks / clips", "s"])
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
axes[2].set(xlabel="t", ylabel="$\\gamma$", title="$\\gamma$ over t (log scale)", yscale="log")
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
axes[2].set(xlabel="t", ylabel="classification loss C", title="C on the interpolated task (log scale)",
            yscale="log")
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
# **What still differs from the paper, and why.** Fig. 5 shows $C$ held through the transfer. Here it is
# not, by a wide margin, for every method, and the reason is the scale: the transfer has 25 steps of 100
# updates (about 2,500 in all, plus the probes), while the mixture brings in five classes the source model
# has never seen; the held-out $C$ of the interpolated task then rises with $t$ whatever the multipliers
# do, and the authors' controller, which can only raise $\gamma$, drives it to its cap
# (`controller_gamma_max`) without bringing $C$ back to $C_0$. The source model itself is at the edge of
# equilibrium for these equilibrations (the control below). The paper-scale file
# (`params/paper/06_iso_classification_transfer.yml`: 20,000 source updates, 1,500 updates per step, probes
# of 200) is what could test the claim; it has not been run (no GPU was available when this page was
# written). At the CPU scale this page takes about 5 minutes with one torch thread on a 2-core machine
# (281 s measured alone, 321 s in a full book build).
#
# ## Equilibrium, probes and the linear systems of Eq. (30)
#
# The fixed-multiplier control, the probe-length check (the first step's partials with probes
# `probe_check_factor` times longer), and for each transfer that solves Eq. (30) or (38): the reading,
# the slope, the unclipped solution $(\dot\lambda, \dot\gamma)$ at the first steps, how many multiplier
# updates the trust region (`max_rel_change`) clipped, and the authors' controller's repeats and
# updates.

# %% tags=["hide-input"]
ctl, pc = result.control, result.probe_check
show_table([("training", f"{ctl.train_c[0]:.4f}", f"{ctl.train_max_rel_change:.1%}"),
            ("held-out", f"{ctl.val_c[0]:.4f}", f"{ctl.val_max_rel_change:.1%}")],
           ["source data", "C at the start", "largest relative change of C"],
           title=f"Fixed-multiplier control: {ctl.n_updates} updates at (λ0, γ0) on the source alone")
show_table([(name, f"{pc.values[name][0]:.4g}", f"{pc.values[name][1]:.4g}", f"{d:.1%}")
            for name, d in pc.rel_diff.items()],
           ["partial at t = 0", f"probes of {fd_steps}", f"probes of {pc.factor * fd_steps}", "relative difference"],
           title="Have the probes converged?")
m_all = metrics(result)
rows = []
for method, interp in results:
    if method == "repeat_equilibration":
        continue
    e = m_all[f"eq30[{method}/{interp}]"]
    first = ", ".join(f"({a:.3g}, {b:.3g})" for a, b in zip(e["lam_dot_unclipped"][:3], e["gamma_dot_unclipped"][:3]))
    k_txt = "" if e["slope"] is None else (f"{e['slope']:.3g} (endpoint {e['slope_endpoint']:.3g}, 1 + kλ0 = "
                                            f"{e['one_plus_k_lambda0_endpoint']:.3g})" if e["slope_endpoint"]
                                            is not None else f"{e['slope']:.3g}")
    rows.append((f"{method}, {interp}", e["reading"], k_txt, first,
                 f"{e['n_clipped_updates']} of {e['n_multiplier_updates']}"))
show_table(rows, ["transfer", "row 1 reading", "k used", "unclipped (λ̇, γ̇), first steps", "clipped updates"])
for (method, interp), r in results.items():
    if method == "repeat_equilibration":
        show_markdown(f"Authors' controller ({interp}): {sum(s.repeats for s in r.controller)} repeated "
                      f"equilibrations over {len(r.controller)} steps, {sum(not s.held for s in r.controller)} steps "
                      f"ending above C0; {r.n_updates} updates; γ {r.gamma[0]:.3g} → {r.gamma[-1]:.3g}; held-out C "
                      f"moved by at most {r.max_rel_change('classification', 'val'):.1%}, training "
                      f"{r.c_max_rel_change:.1%}.")
    if interp == "ot" and r.label_entropy_val is not None:
        raw = r.raw_classification("val")
        show_markdown(f"{method}, OT: held-out excess C {r.array('classification', 'val').min():.3f} to "
                      f"{r.array('classification', 'val').max():.3f}; raw CE {raw.min():.3f} to {raw.max():.3f} "
                      f"(label entropy up to {np.max(r.label_entropy_val):.3f}).")

# The condition number of the 2x2 matrix of {eq}`isotransfer-eq-30` at every step, and the steps that
# fell back.

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
show_markdown(f"This run took {time.perf_counter() - t_start:.0f} s. A longer run (the paper scale: longer source "
              "training, longer probes and equilibrations, more data) should shrink the fixed-multiplier control's "
              "drift and the probes' error, and so tell how much of any change of C the transfer itself causes.")
