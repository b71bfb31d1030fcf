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
# (scorecard)=
# # Reproduction scorecard
#
# Every chapter checks some of the papers' claims with numbers and files the verdicts in
# `results/<scale>/<notebook>.json`, together with its provenance. This page is generated from
# those files when the book is built: the **cpu** column is the default scale that the book's
# build command has just run on this machine, the **paper** column the paper-scale runs
# committed to the repository (they need a GPU to regenerate). A claim that fails is shown as
# failing, with the numbers behind it. Files whose checksum does not match are listed below the
# table and ignored.

# %% tags=["parameters"]
results_dir = "../results"  # folder holding cpu/ and paper/ sub-folders
scales = ["cpu", "paper"]

# %%
from IPython.display import Markdown, display

from ctd_lib.results import collect_results, scorecard_markdown

display(Markdown(scorecard_markdown(results_dir, scales)))

# %% [markdown]
# ## Provenance of each results file

# %%
found = collect_results(results_dir, scales)
found.pop("_errors", None)
rows = ["| notebook | scale | commit | uncommitted changes | device | threads | wall time (s) | written |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for nb, per_scale in sorted(found.items()):
    for scale, payload in sorted(per_scale.items()):
        p = payload["provenance"]
        rows.append(f"| {nb} | {scale} | `{p['git_commit'][:10]}` | {p['git_dirty']} | {p['device']} | "
                    f"{p.get('threads', '')} | {p['wall_time_s']:.1f} | {p['created']} |")
display(Markdown("\n".join(rows) if len(rows) > 2 else "No results files yet."))
