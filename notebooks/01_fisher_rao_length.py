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
# (chapter-fisher-rao)=
# # 1. The Fisher-Rao length of a weight trajectory
#
# *Seed 000, {cite:t}`gao2021information`, Sec. 2.1, Eqs. (2)-(5).*
#
# Download: {download}`the Jupytext source <01_fisher_rao_length.py>` of this page (what
# {doc}`../book/reproduce` runs with papermill), or the executed notebook from the download button at
# the top of the page.
#
# A classifier $p_w(y \mid x)$ is a point on a statistical manifold {cite}`rao1945information`,
# {cite}`amari2016information`. When SGD moves its weights by $dw$, the distance travelled on that
# manifold is measured by the Kullback-Leibler divergence between the conditional distributions before
# and after (the paper's Eq. (2))
#
# ```{math}
# :label: fisher-rao-eq-2
# ds^2 = 2\,\mathrm{KL}\big[p_w, p_{w+dw}\big] = \sum_{i,j=1}^p g_{ij}(w)\, dw_i\, dw_j ,
# ```
#
# where (the paper's Eq. (3))
#
# ```{math}
# :label: fisher-rao-eq-3
# g(w) = \mathbb{E}_{x}\,\mathbb{E}_{y \sim p_w(\cdot \mid x)}\big[\nabla_w \log p_w(y\mid x)\,
#        \nabla_w \log p_w(y\mid x)^\top\big]
# ```
#
# is the Fisher information matrix (FIM). The length of a weight trajectory is the integral of
# $|ds|$ along it (the paper's Eq. (5), for one given trajectory; Eq. (5) also minimises over
# trajectories),
#
# ```{math}
# :label: fisher-rao-eq-5
# L = \int_0^1 \sqrt{2\,\mathrm{KL}\big[p_{w(\tau)}(\cdot\mid x),\, p_{w(\tau + d\tau)}(\cdot\mid x)\big]},
# ```
#
# which
# `ctd_lib` accumulates step by step during SGD with one extra forward pass
# and never forms $g$. Where the expectation over $x$ sits is not fixed by the paper:
# Eq. (2), {eq}`fisher-rao-eq-2`, is the line element of the joint model, $\sqrt{\mathbb{E}_x 2\mathrm{KL}}$ (we call it
# the **manifold** convention), while Eq. (11) and the ground cost of Eq. (12b) put the
# expectation outside the root, $\mathbb{E}_x\sqrt{2\mathrm{KL}}$ (the **per-sample**
# convention). Both are computed at every step; by Jensen's inequality the per-sample
# length is never larger.
#
# This chapter checks four things with numbers: that {eq}`fisher-rao-eq-2` holds for small steps, that
# the length is invariant under reparametrisations that leave $p_w(y\mid x)$ unchanged (while
# the Euclidean length $\sum |dw|$ is not), that refining the time step converges, and what the
# lengths of one transfer look like for two architectures. Change any value in the next cell
# and re-run with papermill (see the README).

# %% tags=["parameters"]
source_task = "mnist10k-0-4"  # the models are first trained on this task
target_task = "mnist10k-5-9"  # and then transferred to this one
n_per_class = 100  # training images per class, per task
n_eval = 500  # held-out inputs on which path lengths are evaluated
model_a = "mlp"  # ReLU MLP 784-256-10 (needed for the exact rescaling check)
model_b = "small-cnn"  # six-conv network of the authors' architecture, narrower
batch_size = 64
lr = 0.05
source_steps = 300
transfer_steps = 300
fim_trials = 5
fim_hidden = 16
fim_n_inputs = 256
fim_ref_step = 0.001
reparam_factors = [0.1, 0.5, 2.0, 10.0]
checkpoint_every = 10
refine_total_time = 4.0
refine_lrs = [0.4, 0.2, 0.1, 0.05, 0.025]
refine_n = 500
overhead_steps = 60
overhead_repeats = 3
seed = 0
device = "cpu"  # "cuda" for the paper scale on a GPU
scale = "cpu"  # "cpu", "paper" or "smoke": where results are filed
results_dir = "../results"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from ctd_lib import pin_threads
from ctd_lib.display import show_claims, show_markdown, show_table, solver_warnings
from ctd_lib.experiments.fisher_rao_length import FisherRaoConfig, claims, metrics, run
from ctd_lib.results import write_results

config = FisherRaoConfig(  # validates every parameter before any work
    source_task=source_task, target_task=target_task, n_per_class=n_per_class, n_eval=n_eval, model_a=model_a,
    model_b=model_b, batch_size=batch_size, lr=lr, source_steps=source_steps, transfer_steps=transfer_steps,
    fim_trials=fim_trials, fim_hidden=fim_hidden, fim_n_inputs=fim_n_inputs, fim_ref_step=fim_ref_step,
    reparam_factors=reparam_factors, checkpoint_every=checkpoint_every, refine_total_time=refine_total_time,
    refine_lrs=refine_lrs, refine_n=refine_n, overhead_steps=overhead_steps, overhead_repeats=overhead_repeats,
    seed=seed, device=device, scale=scale,
)
pin_threads(1)  # one torch and one BLAS thread: the same numbers everywhere, no slowdown on a loaded machine
t_start = time.perf_counter()
with solver_warnings():  # each kind of solver warning shown once, with its count
    result = run(config)
show_markdown(f"Source `{config.source_task}`: {result.n_source} images; target `{config.target_task}`: "
              f"{result.n_target}; held-out inputs: {result.n_eval}.")

# %% [markdown]
# ## Two KL against the Fisher quadratic form
#
# For a small network the FIM can be computed exactly: per-sample gradients of
# $\log p_w(c\mid x)$ for every class $c$ (with `torch.func`), weighted by $p_w(c\mid x)$, as in
# {eq}`fisher-rao-eq-3`. The network here sees the digits average-pooled to 7x7 and has one hidden layer
# of `fim_hidden` units, so $g$ is a dense matrix of about a thousand rows. For each trial the
# network is trained briefly on the source task, and $dw$ is the direction of an SGD step
# scaled to lengths from $10^{-6}$ to 1. We plot
# $2\,\mathbb{E}_x\mathrm{KL}[p_w, p_{w+dw}] \,/\, dw^\top g\, dw$.
#
# With a smooth activation (tanh) the ratio tends to 1 linearly in $|dw|$, the third-order
# remainder of the Taylor expansion, until round-off appears at $|dw| \approx 10^{-6}$. With
# ReLU the function of $w$ has kinks: as soon as a step moves some pre-activations across zero
# the quadratic form, which only sees the current linear piece, is off, so the agreement
# degrades at smaller steps.

# %% tags=["hide-input"]
fim = result.fim
glue("fim_ratio_tanh", result.fim_ratio_tanh, display=False)
glue("fim_ratio_relu", result.fim_ratio_relu, display=False)
glue("fim_n_params", fim.n_params, display=False)

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for act, color in (("tanh", "C0"), ("relu", "C3")):
    r = fim.ratios[act]
    for t in range(r.shape[0]):
        axes[0].semilogx(fim.step_sizes, r[t], "o-", color=color, alpha=0.5, label=act if t == 0 else None)
        axes[1].loglog(fim.step_sizes, np.abs(r[t] - 1), "o-", color=color, alpha=0.5, label=act if t == 0 else None)
axes[1].loglog(fim.step_sizes, fim.step_sizes, "k--", lw=1, label=r"slope 1 ($\propto |dw|$)")
axes[0].axhline(1, color="k", lw=1)
axes[0].set(xlabel=r"$|dw|$", ylabel=r"$2\,\mathrm{KL} \,/\, dw^\top g\, dw$", title="ratio (1 = Eq. 2 exact)")
axes[1].set(xlabel=r"$|dw|$", ylabel=r"$|\mathrm{ratio} - 1|$", title="departure from Eq. 2")
for ax in axes:
    ax.legend()
fig.tight_layout()
glue("fig-fisher-rao-fim", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-fisher-rao-fim
# :name: fig-fisher-rao-fim
#
# The ratio $2\,\mathbb{E}_x\mathrm{KL}[p_w, p_{w+dw}] / dw^\top g\, dw$ against the step length $|dw|$
# (left) and its departure from 1 (right), one line per trial network, tanh in blue and ReLU in red.
# For tanh the departure falls in proportion to $|dw|$ (the dashed slope) until round-off near
# $10^{-6}$; for ReLU it stops improving sooner, where steps start to cross the kinks.
# ```
#
# {numref}`fig-fisher-rao-fim` shows the ratio. At $|dw| = $ `fim_ref_step` the median ratio over trials is {glue:text}`fim_ratio_tanh:.5f` for
# tanh and {glue:text}`fim_ratio_relu:.5f` for ReLU ({glue:text}`fim_n_params` weights).
#
# ## Invariance under reparametrisation
#
# Multiplying the first layer of a ReLU network (weights and biases) by $c > 0$ and the next
# layer's weights by $1/c$ changes every weight but not the function: $\mathrm{relu}(cz) = c\,\mathrm{relu}(z)$.
# The Fisher-Rao length of a trajectory depends only on the conditional distributions along it,
# so it must not change; the Euclidean length $\sum_k |w_{k+1} - w_k|$ does. We train the MLP on
# the source task, fine-tune it on the target task while keeping a checkpoint every
# `checkpoint_every` steps, map every checkpoint through the rescaling, and measure both
# lengths of both polylines on the held-out inputs, in float64.

# %% tags=["hide-input"]
reparam = result.reparam
glue("reparam_fr_err", reparam.fisher_rao_rel_err, display=False)
glue("reparam_eu_change", reparam.euclidean_rel_change, display=False)

fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogx(reparam.factors, reparam.fisher_rao / reparam.base_fisher_rao, "o-", label="Fisher-Rao (manifold)")
ax.semilogx(reparam.factors, reparam.per_sample / reparam.base_per_sample, "s--", label="Fisher-Rao (per-sample)")
ax.semilogx(reparam.factors, reparam.euclidean / reparam.base_euclidean, "^-", label=r"Euclidean $\sum|dw|$")
ax.set(xlabel="rescaling factor $c$", ylabel="length / length before rescaling",
       title="the same trajectory in two coordinate systems")
ax.legend()
glue("fig-fisher-rao-reparam", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-fisher-rao-reparam
# :name: fig-fisher-rao-reparam
#
# Lengths of the MLP's transfer trajectory after the rescaling by $c$, relative to the lengths before
# it: both Fisher-Rao lengths stay at 1 for every $c$, while the Euclidean length $\sum|dw|$ moves
# with the coordinates.
# ```
#
# In {numref}`fig-fisher-rao-reparam`, the largest relative change of the Fisher-Rao length over the factors is
# {glue:text}`reparam_fr_err:.2e` (round-off), against {glue:text}`reparam_eu_change:.2f` for the
# Euclidean length.
#
# ## Refining the time step
#
# Eq. (5), {eq}`fisher-rao-eq-5`, is an integral; SGD gives a sum over steps of size $d\tau$ (the learning rate). We run
# the transfer (from the source-trained MLP, on target images) for a fixed total time
# $T = \text{steps} \times d\tau$ with smaller and smaller $d\tau$. With the full batch at every
# step (gradient descent) the iterates follow one gradient-flow curve and the sum converges to
# its length. With mini-batches each step is $d\tau\,(\nabla \ell + \xi)$, where the noise $\xi$
# of the mini-batch gradient does not shrink with $d\tau$: the sum settles too, but at a larger
# value, because the noise adds length that the gradient flow does not travel. At a fixed
# learning rate, more steps mean more total time and more noise, so the length keeps growing
# even where the loss has stopped changing: a length measured along SGD must be read with its
# learning rate, batch size and number of steps fixed.

# %% tags=["hide-input"]
refine = result.refine
glue("refine_gd_change", refine.gd_rel_change, display=False)
glue("refine_sgd_change", refine.sgd_rel_change, display=False)
glue("refine_sgd_to_gd", refine.sgd_to_gd_ratio, display=False)

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.semilogx(refine.lrs, refine.gd_length, "o-", label="gradient descent, manifold")
ax.semilogx(refine.lrs, refine.gd_per_sample, "o--", label="gradient descent, per-sample")
ax.semilogx(refine.lrs, refine.sgd_length, "s-", label=f"SGD (batch {config.refine_batch_size}), manifold")
ax.semilogx(refine.lrs, refine.sgd_per_sample, "s--", label=f"SGD (batch {config.refine_batch_size}), per-sample")
ax.invert_xaxis()
ax.set(xlabel=r"time step $d\tau$ (learning rate), refined to the right",
       ylabel="Fisher-Rao length", title=f"same total time T = {config.refine_total_time}")
ax.legend()
glue("fig-fisher-rao-refine", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-fisher-rao-refine
# :name: fig-fisher-rao-refine
#
# Fisher-Rao length of the transfer at the same total time $T$ as the time step $d\tau$ is refined
# (to the right), for full-batch gradient descent (circles) and mini-batch SGD (squares), under both
# conventions. The gradient-descent curve levels off; the SGD curve settles higher, the length that
# mini-batch noise adds.
# ```
#
# In {numref}`fig-fisher-rao-refine`, between the two finest time steps the gradient-descent length changes by
# {glue:text}`refine_gd_change:.2%` and the SGD length by {glue:text}`refine_sgd_change:.2%`; at
# the finest step the SGD trajectory is {glue:text}`refine_sgd_to_gd:.2f` times as long as the
# gradient-descent one. The coarsest steps overshoot: there the curve is not yet close to the
# flow and its length is not meaningful.
#
# ## One transfer, two architectures
#
# Remark 4 of the paper says the Fisher-Rao length does not depend on how a model is
# parametrised, only on the conditional distributions it can represent, so lengths of different
# architectures can be put on one axis. We fine-tune the MLP and a small convolutional network
# (the authors' six-convolution architecture, narrower), both first trained on the source task
# with the same budget, on the target task with the same SGD settings, and plot the cumulative
# length against $\tau = $ step / steps.

# %% tags=["hide-input"]
run_a, run_b = result.run_a, result.run_b
glue("arch_fr_ratio", result.arch_fisher_rao_ratio, display=False)
glue("arch_eu_ratio", result.arch_euclidean_ratio, display=False)
glue("arch_verdict", "within" if result.arch_comparable else "outside", display=False)
glue("arch_ratio_max", config.arch_ratio_max, display=False)

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for tr, color in ((run_a, "C0"), (run_b, "C1")):
    tau = np.arange(1, tr.result.length.steps + 1) / tr.result.length.steps
    label = f"{tr.name} ({tr.n_params:,} weights)"
    axes[0].plot(tau, tr.result.length.cumulative["manifold"], color=color, label=label + ", manifold")
    axes[0].plot(tau, tr.result.length.cumulative["per_sample"], "--", color=color, label=label + ", per-sample")
    axes[1].plot(tau, tr.result.length.cumulative["euclidean"], color=color, label=label)
axes[0].set(xlabel=r"$\tau$", ylabel="cumulative Fisher-Rao length", title="information length")
axes[1].set(xlabel=r"$\tau$", ylabel=r"cumulative $\sum |dw|$", title="Euclidean length", yscale="log")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
glue("fig-fisher-rao-lengths", fig, display=False)
plt.close(fig)

show_table([(tr.name, f"{tr.n_params:,d}", tr.source_acc, tr.target_acc, tr.result.length.manifold,
             tr.result.length.per_sample, tr.result.length.euclidean) for tr in (run_a, run_b)],
           ["model", "weights", "source accuracy", "target accuracy", "Fisher-Rao (manifold)",
            "Fisher-Rao (per-sample)", "Euclidean"])

# %% [markdown]
# ```{glue:figure} fig-fisher-rao-lengths
# :name: fig-fisher-rao-lengths
#
# Cumulative length of one transfer against $\tau$ = step / steps for `model_a` (blue) and `model_b`
# (orange), named in the legend: Fisher-Rao length under both conventions (left) and Euclidean length $\sum|dw|$ (right,
# log scale). The two architectures share the left axis; the right one mixes the transfer with
# their coordinate systems.
# ```
#
# In {numref}`fig-fisher-rao-lengths`, the CNN's Fisher-Rao length is {glue:text}`arch_fr_ratio:.2f`
# times the MLP's; its Euclidean length is {glue:text}`arch_eu_ratio:.2f` times, a number that mixes the transfer with the two
# coordinate systems. The Fisher-Rao ratio is {glue:text}`arch_verdict` the factor
# {glue:text}`arch_ratio_max` that the scorecard uses to call the lengths comparable. These are
# lengths of one fine-tuning run each, not the minimum over trajectories of Eq. (4): the
# ratio says how differently two architectures fit the same transfer, which is what Remark 4
# lets us compare, not that they must be equal.
#
# ## Cost of measuring the length
#
# The bookkeeping costs one extra forward pass per step, so its wall time over plain SGD should
# be near 4/3 when the forward and backward passes dominate; for a small MLP on a CPU, the fixed
# cost of each extra tensor operation shows too. The Euclidean length $|dw|$ adds one norm of
# the gradient (or momentum buffer) per step. Measured here with the two architectures, the
# same steps and batches, plain and tracked runs alternating; `benchmarks/` holds the longer
# measurement. `length_overhead_ratio` in the results is the larger of the two Fisher-Rao-only
# ratios.

# %% tags=["hide-input"]
overhead = result.overhead
show_table([(name, what, f"{meas.median_ratio:.2f}", ", ".join(f"{r:.2f}" for r in meas.ratios))
            for name, *measured in zip(overhead.models, overhead.fisher_rao, overhead.with_euclidean)
            for what, meas in zip(("Fisher-Rao", "Fisher-Rao + |dw|"), measured)],
           ["model", "tracked", "tracked / plain wall time (median)", "per repeat"])

# %% [markdown]
# ## Claims and results
#
# Negative KL values from round-off are clamped to zero and counted, never hidden; the count
# is among the metrics below.

# %%
found = claims(result)
path = write_results(results_dir, "01_fisher_rao_length", scale=scale, parameters=config.parameters(),
                     metrics=metrics(result), claims=found, wall_time=time.perf_counter() - t_start,
                     device=config.device)
show_claims(found, path, results_dir)
show_markdown(f"Negative KL values clamped: {result.negative_kl_clamped} of {result.kl_evaluations} evaluations.")
