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
front_page_figure = "../book/_generated/scorecard.png"  # drawn for book/intro.md ("": not drawn)

# %% tags=["hide-input"]
from pathlib import Path

import matplotlib.pyplot as plt

from ctd_lib.display import provenance_markdown, scorecard_figure, show_markdown
from ctd_lib.results import scorecard_markdown

fig = scorecard_figure(results_dir, scales)  # one square per claim: green holds, red fails, grey not run
if front_page_figure:  # book/intro.md shows it; written next to the book's sources, never tracked
    Path(front_page_figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(front_page_figure, dpi=150, bbox_inches="tight")
plt.show()

# %%
show_markdown(scorecard_markdown(results_dir, scales))

# %% [markdown]
# ## Provenance of each results file

# %% tags=["hide-input"]
show_markdown(provenance_markdown(results_dir, scales))
