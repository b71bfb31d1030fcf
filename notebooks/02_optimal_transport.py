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
# (chapter-transport)=
# # 2. Transporting a task with optimal transport
#
# *Seed 000, {cite:t}`gao2021information`, Sec. 2.2 (Eqs. 6-9), Sec. 3.3 (Eq. 12a) and Sec. 3.4;
# seed 004, {cite:t}`gao2020free`, Appendix F (Eq. 37, Remark 11).*
#
# Download: {download}`the Jupytext source <02_optimal_transport.py>` of this page (what
# {doc}`../book/reproduce` runs with papermill), or the executed notebook from the download button at
# the top of the page.
#
# The coupled transfer distance moves the data of the source task to the target task along an
# optimal-transport path {cite}`villani2009optimal`, {cite}`peyre2019computational`. For empirical
# distributions $\hat p_s = \frac1{N_s}\sum_i \delta_{x_s^i}$ and $\hat p_t$ the coupling solves the
# paper's Eq. (6),
#
# ```{math}
# :label: transport-eq-6
# \Gamma^* = \operatorname*{argmin}_{\Gamma \in \Pi(\hat p_s, \hat p_t)} \langle \Gamma, C\rangle - \epsilon H(\Gamma),
# \qquad C_{ij} = \|x_s^i - x_t^j\|_2^2,
# ```
#
# with $\epsilon = 0$ for exact OT (`ot.emd` of POT {cite}`flamary2021pot`) and $\epsilon > 0$ for
# Sinkhorn's entropic regularisation {cite}`cuturi2013sinkhorn` (the paper writes $\epsilon = 1$; we
# make it a parameter, relative to the median cost). McCann's displacement interpolation
# {cite}`mccann1997convexity` moves each unit of mass along a straight line, and the labels are
# interpolated linearly (the paper's Eqs. (7)-(8); Remark 11 of seed 004):
#
# ```{math}
# :label: transport-eq-7-8
# \hat p_\tau(x, y) = \sum_{i,j} \Gamma^*_{ij}\, \delta_{(1-\tau)x_s^i + \tau x_t^j}(x)\,
#   \delta_{(1-\tau)y_s^i + \tau y_t^j}(y).
# ```
#
# Uncoupled transfer uses the mixture $\hat p_\tau = (1-\tau)\hat p_s + \tau \hat p_t$ instead (Eq. 9).
# For images, Sec. 3.4 replaces the fixed coefficient $\tau$ by a draw
# $t \sim \mathrm{Beta}(\tau, 1-\tau)$ per sample ("mixup" {cite}`zhang2018mixup`), uses block-diagonal
# couplings of at most $B \approx 30$ samples per block, and initialises the coupling from a
# feature-space cost. The coupled algorithm then updates $\Gamma$ with a proximal term (the paper's
# Eq. (12a)),
#
# ```{math}
# :label: transport-eq-12a
# \Gamma^k = \operatorname*{argmin}_{\Gamma\in\Pi} \langle \Gamma, C^k\rangle - \epsilon H(\Gamma)
#   + \lambda \|\Gamma - \Gamma^{k-1}\|_F^2 .
# ```
#
# This chapter shows each piece with figures and checks the properties that the later chapters
# rely on.

# %% tags=["parameters"]
n_points = 80  # points per 2-D cloud
taus = [0.0, 0.25, 0.5, 0.75, 1.0]  # instants shown and measured
speed_regs = [0.05, 0.5, 2.0]  # entropic epsilons (x median cost) for the constant-speed figure
bures_n = 1500  # samples per Gaussian for the W2-against-Bures check
source_task = "mnist10k-0-4"
target_task = "mnist10k-5-9"
n_per_class = 60  # images per class, per task
feature_steps = 300  # SGD steps of the source network whose features define the feature cost
ot_reg = 0.05  # entropic epsilon of the MNIST couplings (x median cost)
grid_pairs = 3  # coupled pairs shown per interpolation method
nn_samples = 200  # interpolated samples per tau for the distance-to-data measure
prox_n = 150  # samples per side for the proximal study
prox_lams = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]  # dimensionless lambda (see the text)
block_sizes = [10, 20, 30, 60, 150]
block_size = 30  # the paper's B, at which block_vs_full_cost_ratio is reported
timing_n = 2000  # samples per side for the batched-solver timing (benchmarks/ runs 10,000)
timing_repeats = 3
block_cost_tol = 0.25  # claim: block plan cost within this fraction of the full plan's
seed = 0
scale = "cpu"
results_dir = "../results"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from ctd_lib import pin_threads
from ctd_lib.display import show_claims, show_table, solver_warnings
from ctd_lib.experiments.optimal_transport import OptimalTransportConfig, claims, displacement_support, metrics, run
from ctd_lib.results import write_results

config = OptimalTransportConfig(
    n_points=n_points, taus=taus, speed_regs=speed_regs, bures_n=bures_n, source_task=source_task,
    target_task=target_task, n_per_class=n_per_class, feature_steps=feature_steps, ot_reg=ot_reg,
    grid_pairs=grid_pairs, nn_samples=nn_samples, prox_n=prox_n, prox_lams=prox_lams, block_sizes=block_sizes,
    block_size=block_size, timing_n=timing_n, timing_repeats=timing_repeats, block_cost_tol=block_cost_tol,
    seed=seed, scale=scale,
)
pin_threads(1)  # one torch and one BLAS thread: the same numbers everywhere, no slowdown on a loaded machine
t_start = time.perf_counter()
with solver_warnings():  # each kind of solver warning shown once, with its count
    result = run(config)

# %% [markdown]
# ## Displacement against mixture, in two dimensions
#
# A source cloud (an elongated blob) and a target cloud (a crescent), coupled by exact OT
# ({eq}`transport-eq-6` with $\epsilon = 0$). Along the displacement interpolation
# ({eq}`transport-eq-7-8`) every point travels on a straight line to its partner, and the cloud at
# $\tau = 0.5$ is a new shape half way between the two ({numref}`fig-transport-clouds`). The mixture
# keeps every point where it was and only changes which cloud a sample is drawn from.

# %% tags=["hide-input"]
xs, xt, P_exact = result.clouds.xs, result.clouds.xt, result.clouds.plan
rng = np.random.default_rng(seed)
fig, axes = plt.subplots(2, len(taus), figsize=(3 * len(taus), 5.6), sharex=True, sharey=True)
for k, tau in enumerate(taus):
    atoms, w = displacement_support(xs, xt, P_exact, tau)
    axes[0, k].scatter(atoms[:, 0], atoms[:, 1], s=8, c="C0")
    from_t = rng.random(n_points) < tau
    mix = np.where(from_t[:, None], xt, xs)
    axes[1, k].scatter(mix[~from_t, 0], mix[~from_t, 1], s=8, c="C0")
    axes[1, k].scatter(mix[from_t, 0], mix[from_t, 1], s=8, c="C3")
    axes[0, k].set_title(rf"$\tau$ = {tau:g}")
axes[0, 0].set_ylabel("displacement (Eq. 7)")
axes[1, 0].set_ylabel("mixture (Eq. 9)")
fig.tight_layout()
glue("fig-transport-clouds", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-transport-clouds
# :name: fig-transport-clouds
#
# Top: the displacement interpolation of the exact plan at each $\tau$; every atom moves on a straight
# line, and the intermediate clouds are new shapes between the blob and the crescent. Bottom: the
# mixture of Eq. (9) at the same $\tau$ (blue: drawn from the source, red: from the target); no
# point moves, only the proportion of red points grows.
# ```
#
# ## Constant speed
#
# With the optimal coupling, displacement interpolation is a constant-speed geodesic of the Wasserstein
# space {cite}`villani2009optimal`, {cite}`santambrogio2015optimal`:
# $W_2(\hat p_s, \hat p_\tau) = \tau\, W_2(\hat p_s, \hat p_t)$ (Sec. 2.2). We compute
# $W_2(\hat p_s, \hat p_\tau)$ exactly (network simplex on the support of $\hat p_\tau$) for the exact
# plan and for entropic plans, which spread each point's mass over several partners
# ({numref}`fig-transport-speed`).

# %% tags=["hide-input"]
speed = result.speed
dev_exact = speed.max_dev("exact")
glue("speed_dev_exact", dev_exact, display=False)
worst_entropic = max(speed.ratios, key=lambda k: speed.max_dev(k))
glue("speed_dev_entropic", speed.max_dev(worst_entropic), display=False)
glue("speed_worst_label", worst_entropic, display=False)
fig, ax = plt.subplots(figsize=(5.5, 4.5))
ax.plot([0, 1], [0, 1], "k--", lw=1, label=r"$\tau$")
for label, r in speed.ratios.items():
    ax.plot(speed.taus, r, "o-", ms=3, label=label)
ax.set(xlabel=r"$\tau$", ylabel=r"$W_2(\hat p_s, \hat p_\tau)\ /\ W_2(\hat p_s, \hat p_t)$",
       title="speed of the displacement interpolation")
ax.legend(fontsize=8)
glue("fig-transport-speed", fig, display=False)
plt.close(fig)
glue("bures_emp", result.bures.empirical, display=False)
glue("bures_closed", result.bures.closed_form, display=False)
glue("bures_err", result.bures.rel_err, display=False)

# %% [markdown]
# ```{glue:figure} fig-transport-speed
# :name: fig-transport-speed
#
# $W_2(\hat p_s, \hat p_\tau) / W_2(\hat p_s, \hat p_t)$ against $\tau$ for the exact plan and for
# entropic plans of three strengths. The exact plan lies on the diagonal (constant speed); the
# entropic plans can leave it.
# ```
#
# The largest departure from the diagonal for the exact plan is {glue:text}`speed_dev_exact:.1e`.
# Entropic plans spread each point's mass over several partners, so their $\hat p_\tau$ is a blurred
# cloud and the curve can leave the diagonal; here the largest departure is
# {glue:text}`speed_dev_entropic:.1e` ({glue:text}`speed_worst_label`), small because the two clouds are
# far apart compared with the blur. As a check of the $W_2$ computation against a closed form: between
# {glue:text}`bures_emp:.4f` (exact OT between samples of two Gaussians) and
# {glue:text}`bures_closed:.4f` (the Bures formula {cite}`dowson1982frechet` for the Gaussians
# themselves) the relative difference is {glue:text}`bures_err:.2%`, of the size expected from sampling.
#
# ## Interpolating MNIST tasks
#
# Source: MNIST {cite}`lecun1998gradient` digits 0-4; target: digits 5-9. Three ways to draw from
# $\hat p_\tau$: displacement interpolation with a coupling computed on **pixels**, the same with a
# coupling on **features** (the penultimate layer of an MLP trained on the source task; the paper uses
# an ImageNet ResNet-50 {cite}`he2016deep`, which cannot be downloaded here), and **Beta-mixup** on the
# feature coupling, where each sample's coefficient is $t \sim \mathrm{Beta}(\tau, 1-\tau)$ (printed
# above each image). Each row of {numref}`fig-transport-mnist-grid` follows one pair $(i, j)$ drawn from
# the coupling.

# %% tags=["hide-input"]
src, tgt, plans = result.couplings.source, result.couplings.target, result.couplings.plans
show_table([(name, p.converged, f"{p.marginal_err:.1e}", f"{p.reg:.3g}") for name, p in plans.items()],
           ["coupling", "converged", "marginal error", "epsilon"])

grid_rng = np.random.default_rng(seed + 2)
fig, axes = plt.subplots(3 * grid_pairs, len(taus), figsize=(1.6 * len(taus), 1.75 * 3 * grid_pairs))
for m, (name, plan) in enumerate((("pixel OT", plans["pixel OT"]), ("feature OT", plans["feature OT"]),
                                  ("Beta-mixup", plans["feature OT"]))):
    for r in range(grid_pairs):
        row = m * grid_pairs + r
        i, j = np.divmod(grid_rng.choice(plan.plan.size, p=plan.plan.ravel() / plan.plan.sum()), plan.plan.shape[1])
        for k, tau in enumerate(taus):  # one coupled pair per row, as in Eq. (7); Beta-mixup draws t per cell
            t = grid_rng.beta(tau, 1 - tau) if name == "Beta-mixup" and 0 < tau < 1 else tau
            ax = axes[row, k]
            ax.imshow(((1 - t) * src.x[i, 0] + t * tgt.x[j, 0]).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "Beta-mixup":
                ax.set_title(rf"$\tau$={tau:g}, t={t:.2f}", fontsize=7)
            elif r == 0:
                ax.set_title(rf"$\tau$={tau:g}", fontsize=8)
        axes[row, 0].set_ylabel(f"{name}\n{int(src.y[i])} to {int(tgt.y[j])}", fontsize=8)
fig.tight_layout()
glue("fig-transport-mnist-grid", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-transport-mnist-grid
# :name: fig-transport-mnist-grid
#
# Coupled pairs of a source digit (0-4) and a target digit (5-9) along $\tau$: displacement
# interpolation with a pixel coupling, with a feature coupling, and Beta-mixup on the feature
# coupling (each cell's coefficient $t$ above it). Half way, displacement gives two superimposed
# digits; Beta-mixup mostly gives one digit or the other.
# ```
#
# Half way along a displacement interpolation, the input is the average of a source digit and a
# target digit: two superimposed strokes that belong to neither task, the artefact that Sec. 3.4
# describes (pixel couplings pair digits that overlap in pixel space, feature couplings pair digits
# that look alike to the network, but both produce ghosts at $\tau = 0.5$). With Beta-mixup most
# coefficients are close to 0 or 1, so most samples look like a source or a target digit, and the
# fraction of target-like samples grows with $\tau$. To put a number on "looks like data", we
# measure the distance from each interpolated sample to its nearest real image (source or target),
# in {numref}`fig-transport-nearest`.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(5.5, 4))
for name, c in result.nearest.curves.items():
    ax.plot(taus, c, "o-", label=name)
ax.set(xlabel=r"$\tau$", ylabel="mean distance to the nearest real image", title="how far samples are from the data")
ax.legend()
glue("fig-transport-nearest", fig, display=False)
plt.close(fig)
glue("nn_ratio", result.nearest.ratio, display=False)

# %% [markdown]
# ```{glue:figure} fig-transport-nearest
# :name: fig-transport-nearest
#
# Mean distance from interpolated samples to the nearest real image (source or target), for each
# sampler and $\tau$: the lower the curve, the more the samples look like real digits.
# ```
#
# At $\tau = 0.5$ Beta-mixup samples are on average {glue:text}`nn_ratio:.2f` times as far from the
# nearest real image as the displacement samples of the same coupling.
#
# ## The proximal update of Eq. (12a)
#
# In the coupled algorithm the ground cost changes from one outer iteration to the next, and
# {eq}`transport-eq-12a` keeps the new plan near the previous one. We take the plan of one cost
# (features) as $\Gamma^{k-1}$, a new cost (pixels), and solve Eq. (12a) for a range of $\lambda$. The
# entries of a plan are of order $1/(N_s N_t)$, so $\lambda$ only matters on the scale
# $\lambda \approx \mathrm{median}(C)\cdot N_s$; the axis of {numref}`fig-transport-proximal` shows the
# dimensionless $\tilde\lambda = \lambda / (\mathrm{median}(C)\, N_s)$. $\lambda = 0$ is plain
# Sinkhorn on the new cost.

# %% tags=["hide-input"]
prox = result.proximal
glue("prox_lam0", prox.lam0_max_abs_diff, display=False)
fig, ax = plt.subplots(figsize=(6, 4))
lam_axis = np.where(prox.lams > 0, prox.lams, prox.lams[prox.lams > 0].min() / 3)
ax.semilogx(lam_axis, prox.dist_to_prev / prox.dist_to_prev[0], "o-", label=r"$\|\Gamma - \Gamma^{k-1}\|_F$")
ax.semilogx(lam_axis, prox.dist_to_new / max(prox.dist_to_prev[0], 1e-300), "s-",
            label=r"$\|\Gamma - \Gamma_{\mathrm{Sinkhorn}}(C^k)\|_F$")
ax.set(xlabel=r"$\tilde\lambda$ (leftmost point: $\lambda = 0$)", ylabel=r"relative to $\lambda = 0$",
       title="how far the plan moves from the previous one")
ax.legend()
glue("fig-transport-proximal", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-transport-proximal
# :name: fig-transport-proximal
#
# Distance of the proximal plan of Eq. (12a) from the previous plan $\Gamma^{k-1}$ and from plain
# Sinkhorn on the new cost, against $\tilde\lambda$ (both relative to the distance from
# $\Gamma^{k-1}$ at $\lambda = 0$). The larger $\tilde\lambda$, the closer the plan stays to
# $\Gamma^{k-1}$.
# ```
#
# At $\lambda = 0$ the proximal solver returns Sinkhorn's plan (largest entry difference
# {glue:text}`prox_lam0:.1e`); as $\tilde\lambda$ grows the plan stays closer to $\Gamma^{k-1}$.
#
# ## Block-diagonal couplings
#
# A full coupling between 10,000 and 10,000 samples has $10^8$ entries. Sec. 3.4 restricts it to
# blocks of at most $B$ samples. The blocks must be matched sensibly; `ctd_lib.transport.match_blocks`
# offers three ways: **centroid** (both sides cut together by recursive bisection along shared
# principal axes, the groups paired by exact OT between their centroids), **sorted** (both sides
# sorted along the first principal component and cut into consecutive groups, which is optimal in
# one dimension), and **random** (a baseline). {numref}`fig-transport-blocks` shows the transport cost
# of each block plan over the cost of the full entropic plan, on the feature cost of the MNIST tasks.

# %% tags=["hide-input"]
bs = result.blocks
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for m in bs.methods:
    axes[0].plot(bs.block_sizes, bs.cost_ratio[m], "o-", label=m)
    axes[1].plot(bs.block_sizes, bs.seconds[m], "o-", label=m)
axes[0].axhline(1, color="k", lw=1)
axes[1].axhline(bs.full_seconds, color="k", lw=1, label="full plan")
axes[0].set(xlabel="block size B", ylabel="block cost / full cost", title="transport cost")
axes[1].set(xlabel="block size B", ylabel="seconds", title="time (matching and solving)")
for ax in axes:
    ax.legend()
fig.tight_layout()
glue("fig-transport-blocks", fig, display=False)
plt.close(fig)
glue("block_ratio", result.block_ratio, display=False)
glue("block_ratio_random", float(bs.cost_ratio["random"][result.block_index]), display=False)

# %% [markdown]
# ```{glue:figure} fig-transport-blocks
# :name: fig-transport-blocks
#
# Left: transport cost of block-diagonal plans over that of the full entropic plan, against the
# block size $B$, for the three ways of matching blocks (random blocks are the baseline; 1 is the
# full plan). Right: seconds to match and solve the blocks (line: the full plan).
# ```
#
# At $B = $ `block_size` the centroid-matched block plan costs {glue:text}`block_ratio:.3f` times the
# full plan (random blocks: {glue:text}`block_ratio_random:.3f`).
#
# All blocks are solved at once by a batched, log-stabilised Sinkhorn in torch (padded to the
# largest block); the reference path is a loop of POT's `ot.sinkhorn` per block. Same blocks, same
# $\epsilon$ per block, alternating runs:

# %% tags=["hide-input"]
timing = result.timing
show_table([(f"{timing_n} x {timing_n}", block_size, f"{np.median(timing.torch_seconds):.3f}",
             f"{np.median(timing.pot_seconds):.3f}", f"{timing.speedup:.1f}x", f"{timing.max_abs_diff:.1e}")],
           ["samples", "block size", "torch, batched (s)", "POT, loop (s)", "speedup", "largest plan difference"])

# %% [markdown]
# ## Claims and results

# %%
path = write_results(results_dir, "02_optimal_transport", scale=scale, parameters=config.parameters(),
                     metrics=metrics(result), claims=claims(result), wall_time=time.perf_counter() - t_start,
                     device="cpu")
show_claims(claims(result), path, results_dir)
