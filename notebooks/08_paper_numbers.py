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
# (chapter-paper-numbers)=
# # 8. The paper's own numbers
#
# *Seed 000, {cite:t}`gao2021information`, Sec. 5.3 (the Mantel test), Secs. 5.4-5.5, Figs. 2, 3,
# 5 and 7.*
#
# Download: {download}`the Jupytext source <08_paper_numbers.py>` of this page (what
# {doc}`../book/reproduce` runs with papermill), or the executed notebook from the download button at
# the top of the page.
#
# The other chapters recompute the paper's experiments. This one asks a narrower question: taking the
# paper's **printed** distance matrices at face value, do its reported Mantel statistics $(r, p)$ follow
# from them? The paper compares each task distance with the fine-tuning distance (Sec. 5.3) by the
# normalised Mantel statistic {cite}`mantel1967detection`, a correlation over the entries of two
# $n \times n$ matrices, and a permutation p-value. For a matrix $A$, a reference $B$ and a convention
# $C$ (which entries, with or without the diagonal, symmetrised or not, Pearson or Spearman), we compute
#
# ```{math}
# :label: paper-numbers-r
# r_C(A, B) = \operatorname{corr}\big(T_C(A)_{E_C},\ T_C(B)_{E_C}\big),
# ```
#
# where $T_C$ is the identity or the symmetrisation $\tfrac12(D + D^\top)$ and $E_C$ the compared
# entries: every ordered pair $i \ne j$ (our `mantel_asymmetric`), the upper triangle of the symmetrised
# matrices (scikit-bio's test {cite}`scikitbio`), or one triangle of the raw matrices (what R's `ape`
# and `vegan` read from a matrix that is not symmetric), each with or without the diagonal. The exact
# one-sided p-value relabels the tasks of $B$, $B^\pi_{ij} = B_{\pi(i)\pi(j)}$:
#
# ```{math}
# :label: paper-numbers-p
# p_C = \frac{\#\{\pi \in S_n : r_C(A, B^\pi) \ge r_C(A, B)\}}{n!} \in \Big\{\frac{1}{n!}, \frac{2}{n!}, \dots, 1\Big\},
# ```
#
# so it is never below $1/n!$ (the identity always counts). A test with $K$ random relabellings prints
# instead $\hat p = (1 + X)/(1 + K)$ with $X \sim \mathrm{Binomial}(K, p_C)$
# {cite}`phipson2010permutation`.
#
# **Reproduced** means: some convention gives $|r_C - r| \le \tfrac12 10^{-d}$ for an $r$ printed with
# $d$ decimals (0.428 means $[0.4275, 0.4285]$), and, under the same convention, a p-value with the
# same decision at $\alpha$ and within a factor `p_factor` of the printed one.

# %% tags=["parameters"]
permutations = 999  # random relabellings of every sampled p (the default of scikit-bio, ape and vegan)
mc_permutations = [99, 999, 9999]  # K of the Monte-Carlo consistency check of each reported p
alpha = 0.05  # decision level of the p criterion
p_factor = 10.0  # "same order of magnitude": our p within this factor of the reported one
synthetic_n = [4, 5]  # sizes of the synthetic self-comparison (the figures' numbers of tasks)
synthetic_noise = 0.3  # noise of the synthetic pair of the convention table (B is A plus noise times uniform draws)
seed = 0
scale = "cpu"
results_dir = "../results"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from myst_nb import glue

from ctd_lib import pin_threads
from ctd_lib.display import show_claims
from ctd_lib.experiments.paper_numbers import (
    PaperNumbersConfig,
    claims,
    finding,
    markdown_table,
    metrics,
    run_check,
)
from ctd_lib.results import write_results
from ctd_lib.task_distance.paper_numbers import REPORTED_MANTEL, UNATTRIBUTED_FRAGMENTS

# every parameter, validated here before any work (a bad value raises a ValueError naming it)
config = PaperNumbersConfig(permutations=permutations, mc_permutations=mc_permutations, alpha=alpha,
                            p_factor=p_factor, synthetic_n=synthetic_n, synthetic_noise=synthetic_noise, seed=seed,
                            scale=scale)
pin_threads(1)  # one torch and one BLAS thread: the same numbers everywhere, no slowdown on a loaded machine
t_start = time.perf_counter()
check = run_check(config)
m = metrics(check)
ra = check.reanalysis
print(f"{len(ra.checks)} reported comparisons, {len(ra.conventions)} conventions each, in {check.wall_time:.1f} s")

# %% [markdown]
# ## What the text prints
#
# The extracted text keeps the captions, the task names and some sentences about the cells. It does
# not keep the numbers inside the heatmaps. {numref}`fig-paper-numbers-matrices` shows every matrix
# the text describes, with a number where the text gives one and "?" where it does not.

# %% tags=["hide-input"]
layout = [["fig2a", "fig2b", "fig2c", "fig2d"], ["fig3a", "fig3b", "fig3c", "fig3d"],
          ["fig5a", "fig5b", "sec54-coupled", "sec54-finetune", "sec54-task2vec"], ["fig7a", "fig7b", "fig7c", "fig7d"]]
fig, axes = plt.subplots(4, 5, figsize=(17, 14))
for row, keys in zip(axes, layout):
    for ax in row[len(keys):]:
        ax.axis("off")
    for ax, key in zip(row, keys):
        M = check.matrices[key]
        v = M.values
        finite = np.isfinite(v)
        ax.imshow(np.where(finite, v, np.nan), cmap="viridis", vmin=0, vmax=np.nanmax(v) if finite.any() else 1)
        ax.imshow(np.where(finite, np.nan, 0.0), cmap="Greys", vmin=-1, vmax=1, alpha=0.5)
        for i in range(M.n):
            for j in range(M.n):
                ax.text(j, i, f"{v[i, j]:g}" if finite[i, j] else "?", ha="center", va="center", fontsize=9,
                        color="white" if finite[i, j] else "black")
        short = [t.replace("CIFAR-10 ", "C10 ").replace("CIFAR-", "C") for t in M.tasks]
        ax.set_xticks(range(M.n), short, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(M.n), short, fontsize=8)
        ax.set_title(f"{M.where}: {M.quantity}\n{M.off_diagonal_known} of {M.off_diagonal_total} cells in the text",
                     fontsize=9)
fig.supxlabel("target task (column)")
fig.supylabel("source task (row)")
fig.tight_layout()
glue("fig-paper-numbers-matrices", fig, display=False)
plt.close(fig)
glue("cells_known", m["cells_known"], display=False)
glue("cells_total", m["cells_total"], display=False)
glue("n_matrices", len(check.referenced), display=False)

display(Markdown(markdown_table(
    [{"matrix": M.key, "where": M.where, "quantity": M.quantity, "tasks": M.n,
      "off-diagonal cells in the text": f"{M.off_diagonal_known} of {M.off_diagonal_total}",
      "diagonal in the text": f"{M.diagonal_known} of {M.n}", "what is missing or ambiguous": M.damage}
     for M in check.matrices.values()])))

# %% [markdown]
# ```{glue:figure} fig-paper-numbers-matrices
# :name: fig-paper-numbers-matrices
#
# Every distance matrix the extracted text describes, rows are sources and columns targets (Sec. 5.4
# says so for Fig. 2). Grey "?" cells are not in the text; the only numbers are those of the MNIST and
# CIFAR-10 pair of Sec. 5.4 (third row, right). The task order of Figs. 2-7 is the order in which the
# text lists the tasks; the figures' own order is not recoverable.
# ```
#
# Of the {glue:text}`cells_total` off-diagonal cells of the {glue:text}`n_matrices` matrices that the
# reported Mantel tests name, {glue:text}`cells_known` are in the extracted text. Where the task
# names of each figure come from, and what the prose says about the cells:

# %% tags=["hide-input"]
for M in check.matrices.values():
    if M.key.startswith("sec54") and M.key != "sec54-coupled":
        continue
    lines = [f"**{M.where}** ({M.quantity}). *Tasks:* {M.tasks_from}"]
    lines += [f"> {q}" for q in M.prose]
    display(Markdown("\n\n".join(lines)))
display(Markdown(
    "**Unattributed fragments** (lines 812-844 of the extracted text, between Sec. 5.4 and the caption of Fig. 4): "
    + ", ".join(f"`{f}`" for _, f in UNATTRIBUTED_FRAGMENTS)
    + ". They sit with Fig. 4a's legend and axis label, and the pair names fit Fig. 4b's legend (the convergence "
      "of the distance over the iterations k, near 0.07): most likely Fig. 4's tick labels, not matrix cells. "
      "Even if some were cells, their row and column could not be assigned, so they are not used."))

# %% [markdown]
# ## What the text reports, against what we can recompute
#
# The paper states {glue:text}`n_comparisons` Mantel statistics. Each is re-run on the transcribed matrices under all
# 32 conventions and under every reading of its reference (the fine-tuning matrix of the same figure;
# for "with itself", the matrix itself and its transpose). A convention whose entries are not in the
# text is *not computable*, and a comparison with no computable convention *cannot be checked*.

# %% tags=["hide-input"]
display(Markdown(markdown_table(
    [{"comparison": r.key, "sentence": r.quote, "reference (reading)": r.reading} for r in REPORTED_MANTEL])))
cols = ["comparison", "A", "B (candidates)", "reported r", "reported p", "conventions computable", "our r (range)",
        "our exact p (range)", "r reproduced", "p reproduced", "both"]
display(Markdown(markdown_table(ra.summary_rows(), cols)))
glue("n_comparisons", len(ra.checks), display=False)
glue("n_computable", ra.n_computable, display=False)
glue("n_both", m["both_reproduced"], display=False)

# %% [markdown]
# Of the {glue:text}`n_comparisons` reported comparisons, {glue:text}`n_computable` can be recomputed
# from the extracted text, and {glue:text}`n_both` are reproduced. This is not evidence that the
# reported statistics are wrong: the matrices they come from are not in the text we have.
#
# What the conventions alone do, on a **synthetic** pair of $n = 5$ matrices ($B = A + $ noise, not the
# paper's numbers), shows how much a reader needs to know which convention the paper used:

# %% tags=["hide-input"]
rows = [{"convention": o.convention.label, "r": o.r, "exact p": o.p_exact, f"sampled p (K={o.permutations})": o.p_sampled,
         "computed by": o.engine} for o in check.synthetic_pair]
display(Markdown(markdown_table(rows)))
lo, hi = check.synthetic_r_range
glue("syn_r_lo", lo, display=False)
glue("syn_r_hi", hi, display=False)

# %% [markdown]
# On this pair $r$ ranges from {glue:text}`syn_r_lo:.3f` to {glue:text}`syn_r_hi:.3f` across the 32
# conventions, far more than the printed precision of 0.01: with the cells at hand, a reported $r$
# would identify the convention, or rule all of them out.
#
# ## What the reported p-values can be
#
# The p-values need no cells: {eq}`paper-numbers-p` says what a permutation test on $n$ tasks can
# print. With $n = 4$ (Fig. 2) an exact p is one of $c/24$; with $n = 5$ the lattice $c/120$ is finer
# than two decimals. {numref}`fig-paper-numbers-lattice` places each reported p on its lattice.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 1, figsize=(12, 4.8))
for ax, n in zip(axes, (4, 5)):
    total = int(np.prod(np.arange(1, n + 1)))
    for c in range(1, total + 1):
        ax.axvline(c / total, color="0.75", lw=0.6 if n == 5 else 1.0)
    ours = sorted((c for c in ra.checks if c.n == n), key=lambda c: c.reported.p)
    for k, c in enumerate(ours):
        p, h = c.reported.p, 0.5 * 10.0 ** -c.reported.p_decimals
        color = "tab:green" if c.p_on_exact_lattice else "tab:red"
        ax.axvspan(p - h, p + h, ymin=0.05, ymax=0.95, color=color, alpha=0.5)
        ax.text(p + 1.5 * h, 0.8 - 0.2 * (k % 4), c.reported.key, ha="left", va="center", fontsize=8, color=color,
                transform=ax.get_xaxis_transform(), bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.axvline(1 / total, color="k", ls="--", lw=1)
    ax.set(xlim=(0, 1.05), yticks=[], xlabel="p-value",
           title=f"n = {n}: exact p-values c/{total} (grey), reported p $\\pm$ half a printed unit "
                 "(green: on the lattice, red: off it), 1/n! dashed")
fig.tight_layout()
glue("fig-paper-numbers-lattice", fig, display=False)
plt.close(fig)
cols = ["comparison", "n", "reported p", "min p = 1/n!", "exact p prints as reported"] + [
    f"P(prints p | K={k})" for k in ra.mc_permutations]
display(Markdown(markdown_table(ra.summary_rows(), cols)))
off = [c for c in ra.checks if not c.p_on_exact_lattice]
glue("off_lattice", ", ".join(f"{c.reported.key} (p = {c.reported.p:g})" for c in off) or "none", display=False)
glue("n_off", len(off), display=False)
glue("min_p4", m["min_p_n4"], display=False)
glue("min_p5", m["min_p_n5"], display=False)
glue("n_below", m["p_below_minimum"], display=False)
fig2b = ra.check("fig2b")
mc2b = {K: prob for K, _, prob in fig2b.monte_carlo}
glue("mc2b_99", mc2b.get(99, float("nan")), display=False)
glue("mc2b_999", mc2b.get(999, float("nan")), display=False)
fig2c = ra.check("fig2c")
glue("mc2c_999", {K: prob for K, _, prob in fig2c.monte_carlo}.get(999, float("nan")), display=False)
best_c = {c.reported.key: {K: cc for K, cc, _ in c.monte_carlo}.get(999, 0) for c in (fig2b, fig2c)}
glue("c2b", best_c["fig2b"], display=False)
glue("c2c", best_c["fig2c"], display=False)
glue("p2b", f"{fig2b.reported.p:g}", display=False)
glue("p2c", f"{fig2c.reported.p:g}", display=False)

# %% [markdown]
# ```{glue:figure} fig-paper-numbers-lattice
# :name: fig-paper-numbers-lattice
#
# The p-values a Mantel test on $n$ tasks can give exactly (grey lines, $c/n!$) and the reported ones
# with their rounding interval (bands). A red band holds no exact p-value: that number can only come
# from a Monte-Carlo test (or from another null than relabelling the tasks).
# ```
#
# No reported p is below $1/n!$ ({glue:text}`min_p4:.4f` for $n = 4$, {glue:text}`min_p5:.4f` for
# $n = 5$; {glue:text}`n_below` below). But {glue:text}`n_off` of them, {glue:text}`off_lattice`,
# are not roundings of any $c/24$, so no exact permutation test on Fig. 2's four tasks prints them.
# Fig. 2c's p = {glue:text}`p2c` is what a Monte-Carlo test with 999 relabellings prints from an exact
# {glue:text}`c2c`/24 about {glue:text}`mc2c_999:.0%` of the time (the best exact value). Fig. 2b's
# p = {glue:text}`p2b` is harder: the best exact value is {glue:text}`c2b`/24, and a test with 999
# relabellings prints {glue:text}`p2b` with probability {glue:text}`mc2b_999:.1%` (with 99
# relabellings, {glue:text}`mc2b_99:.0%`). That suggests few permutations, or a null that permutes
# entries rather than tasks.
#
# ## "With itself"
#
# Three captions give the fine-tuning matrix a statistic "with itself" (Figs. 2c, 5b; Fig. 3c by
# analogy): {glue:text}`self_reported`. Under every convention a matrix against itself has $r = 1$; on
# the synthetic matrices, every one of the 32 conventions gives $r$ between
# {glue:text}`self_lo:.9f` and {glue:text}`self_hi:.9f`. The reading that is not trivial, the matrix
# against its transpose (how symmetric the distance is), can give anything: from
# {glue:text}`tr_lo:.2f` to {glue:text}`tr_hi:.2f` on a synthetic 5 x 5 matrix across the conventions
# that keep the direction of transfer; it needs the cells.

# %% tags=["hide-input"]
s5 = check.self_comparison(max(config.synthetic_n))
glue("self_reported", ", ".join(f"{c.reported.key} r = {c.reported.r:g}" for c in ra.checks
                                if c.reported.self_comparison), display=False)
glue("self_lo", min(s.r_range[0] for s in check.self_comparisons), display=False)
glue("self_hi", max(s.r_range[1] for s in check.self_comparisons), display=False)
glue("tr_lo", s5.transpose_r_range[0], display=False)
glue("tr_hi", s5.transpose_r_range[1], display=False)
display(Markdown(markdown_table([{"n": s.n, "r, matrix against itself (range)": s.r_range,
                                  "exact p (range)": s.p_exact_range, "1/n!": 1 / np.prod(np.arange(1, s.n + 1)),
                                  "r, against its transpose (range, direction kept)": s.transpose_r_range}
                                 for s in check.self_comparisons], digits=4)))

# %% [markdown]
# ## The only numbers: MNIST and CIFAR-10 (Sec. 5.4)
#
# The text prints one pair of tasks with numbers ({numref}`fig-paper-numbers-matrices`, third row):
#
# With two tasks there are $2! = 2$ relabellings, so no Mantel p-value below $1/2$ exists and the
# paper reports none; what can be checked is that both distances call the same direction the longer
# one.

# %% tags=["hide-input"]
sec54 = [check.matrices[k] for k in ("sec54-coupled", "sec54-finetune", "sec54-task2vec")]
display(Markdown(markdown_table(
    [{"distance": M.quantity, f"{M.tasks[0]} to {M.tasks[1]}": f"{M.values[0, 1]:g}",
      f"{M.tasks[1]} to {M.tasks[0]}": f"{M.values[1, 0]:g}"} for M in sec54])))

# %% [markdown]
# ## Claims and results

# %%
verdicts = claims(check)
path = write_results(results_dir, "08_paper_numbers", scale=config.scale, parameters=config.parameters(),
                     metrics=m, claims=verdicts, wall_time=time.perf_counter() - t_start, device="cpu")
show_claims(verdicts, path, results_dir)

# %% [markdown]
# ## Finding
#
# Which of the paper's reported Mantel statistics follow from its printed matrices, as computed above:

# %% tags=["hide-input"]
display(Markdown(finding(check)))
