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
# (your-own-data)=
# # Your own data, one command
#
# *Seed 000, {cite:t}`gao2021information`, Definition 2 and Eq. (11), on tasks of your own.*
#
# Download: {download}`the Jupytext source <07_your_own_data.py>` of this page (what
# {doc}`../book/reproduce` runs with papermill), or the executed notebook from the download button at
# the top of the page.
#
# The chapters measure distances between tasks of the embedded digits. This page does it for two
# folders of images such as you might have on disk, with the command that the library installs:
#
# ```bash
# ctd-distance SOURCE TARGET [--method coupled|uncoupled|fine-tuning|task2vec|w2-pixel] \
#     [--model mlp] [--steps 300] [--seeds 3] [--resize H W] [--json out.json]
# ```
#
# SOURCE and TARGET are each a folder with one sub-folder of images per class (torchvision's
# `ImageFolder` layout: `folder/<class>/<image>.png`), an `.npz` file holding arrays `x` (images)
# and `y` (integer labels), or the name of a registered task such as `mnist10k-0-4`. The default
# method is the coupled transfer distance of {ref}`chapter-coupled`, the Fisher-Rao length of the
# weight trajectory $w(\tau)$ that carries a network trained on the source ($\tau = 0$) to the
# target ($\tau = 1$) while the data move along an optimal-transport interpolation (the paper's
# Eq. (11)):
#
# ```{math}
# :label: own-data-eq-11
# d(\hat p_s, \hat p_t) = \min_{\Gamma,\, w(\cdot)} \int_0^1
#   \sqrt{\mathbb{E}_{x\sim\hat p_\tau(x)}\, 2\,\mathrm{KL}\big[p_{w(\tau)}(\cdot\mid x),
#   p_{w(\tau+d\tau)}(\cdot\mid x)\big]}\ d\tau .
# ```
#
# A distance alone says little: SGD noise makes even the transfer of a task to itself travel. The
# command therefore prints beside it the **self-distance** $d(S, S)$, the same method from SOURCE to
# SOURCE, which is the floor the distance is read against (Task2Vec {cite}`achille2019task2vec` and the
# pixel W2 have none: a task is at distance 0 from itself by construction), and the **spread**, mean and
# standard deviation over `--seeds` seeds of the source model and the transfer.
#
# **One head for two tasks.** Two folders share the sorted union of their class names: a class of
# the same name is the same output of the network, a class only one folder has gets an output of
# its own. Folders of digits 0-4 and 5-9 thus give a 10-way head, as chapter 3's tasks have. With
# an `.npz` or a registered task, the labels are class ids and the head is as wide as the wider
# task. Each task is split 80/20 within each class into images to train on and held-out images.
#
# Bad input stops the command before any training, with a one-line message naming the argument and
# exit status 2: a folder that does not exist or holds no images, one class only, images of
# several sizes without `--resize`, an `.npz` without `x` or `y`, labels that are not integers, a
# misspelt method, two tasks of different image shapes.

# %% tags=["parameters"]
source_task = "mnist10k-0-4"  # the source folder is written from this registered task
target_task = "mnist10k-5-9"  # and the target folder from this one
n_per_class = 20  # images per class in each folder (at most 100, what the command reads by default)
method = "coupled"  # ctd-distance --method: one with a self-distance (coupled, uncoupled, fine-tuning)
model = "mlp"  # --model
steps = 300  # --steps: SGD steps of the transfer trajectory
source_steps = 300  # --source-steps: SGD steps training the source model
seeds = 3  # --seeds: the spread over seeds 0 .. seeds - 1
scale = "cpu"
results_dir = "../results"

# %%
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

import ctd_lib
from ctd_lib.cli import NO_SELF_DISTANCE, PairConfig, pair_distance, read_record, self_distance_claim
from ctd_lib.data import Task, fetch_mnist10k, make_task
from ctd_lib.display import show_claims
from ctd_lib.results import write_results
from ctd_lib.user_data import folder_classes

ctd_lib.pin_threads(1)
# every parameter, validated here before any work (a bad value raises a ValueError naming it)
config = PairConfig(method=method, model=model, steps=steps, source_steps=source_steps, seeds=seeds)
if method in NO_SELF_DISTANCE:
    raise ValueError(f"method={method!r} is not valid here; this page reads the distance against the self-distance: "
                     "choose one of 'coupled', 'uncoupled', 'fine-tuning'")
if not isinstance(n_per_class, int) or not 2 <= n_per_class <= 100:
    raise ValueError(f"n_per_class={n_per_class!r} is not valid; it must be an integer in [2, 100] (the command reads "
                     "at most 100 images per class unless --n-per-class says otherwise)")
fetch_mnist10k()
tasks = {"source": make_task(source_task, n_per_class=n_per_class, seed=0),
         "target": make_task(target_task, n_per_class=n_per_class, seed=0)}
t_start = time.perf_counter()

# %% [markdown]
# ## Two folders of images
#
# We write the two tasks as image folders into a temporary directory, one PNG per image and one
# sub-folder per digit (`Task.to_folder`), just as a folder of your own would look.

# %%
workdir = Path(tempfile.mkdtemp(prefix="ctd-own-data-"))
folders = {}
for side, name in (("source", source_task), ("target", target_task)):
    folders[side] = tasks[side].to_folder(workdir / name.replace("mnist10k-", "digits-"))
for side, folder in folders.items():
    counts = {c: len(list((folder / c).glob("*.png"))) for c in folder_classes(folder)}
    print(f"{side}: {folder.name}/ with class folders {counts}")

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for row, folder in zip(axes, folders.values()):
    shown = Task.from_folder(folder, n_per_class=2, seed=1)
    for ax, img, label in zip(row, shown.x, shown.y):
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{folder.name}/{shown.class_names[int(label)]}", fontsize=7)
        ax.axis("off")
fig.tight_layout()
glue("fig-own-data-folders", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-own-data-folders
# :name: fig-own-data-folders
#
# Images of the two folders as `Task.from_folder` reads them (float32 in [0, 1], one grey channel),
# titled by folder and class sub-folder.
# ```
#
# ## The command
#
# This is what a reader types in a terminal, in the folder holding the two image folders (the
# page runs the installed script, `ctd-distance`, in a subprocess):

# %%
script = Path(sys.executable).parent / "ctd-distance"
argv = [folders["source"].name, folders["target"].name, "--method", method, "--model", model, "--steps", str(steps),
        "--source-steps", str(source_steps), "--seeds", str(seeds), "--json", "distance.json"]
print("$ " + shlex.join(["ctd-distance", *argv]))
t_cli = time.perf_counter()
run = subprocess.run([str(script), *argv], cwd=workdir, capture_output=True, text=True, timeout=600)
cli_seconds = time.perf_counter() - t_cli
if run.returncode != 0:
    raise RuntimeError(f"ctd-distance exited with status {run.returncode}:\n{run.stderr[-3000:]}")
print(run.stdout)
record = read_record(workdir / "distance.json")
glue("d_mean", record.mean, display=False)
glue("d_sd", record.sd, display=False)
glue("self_mean", record.self_mean, display=False)
glue("self_sd", record.self_sd, display=False)
glue("cli_seconds", cli_seconds, display=False)
glue("n_seeds", len(record.seeds), display=False)

# %% [markdown]
# The distance from the first folder to the second is {glue:text}`d_mean:.3f` $\pm$
# {glue:text}`d_sd:.3f` (mean $\pm$ standard deviation over {glue:text}`n_seeds` seeds), against a
# self-distance of {glue:text}`self_mean:.3f` $\pm$ {glue:text}`self_sd:.3f`; the command took
# {glue:text}`cli_seconds:.0f` s, Python's start-up included. `--json` wrote the numbers, every
# seed's value, the resolved settings and the provenance (commit, library versions, device,
# threads, wall time) to `distance.json`, atomically; `ctd_lib.cli.read_record` reads it back.
#
# ## The same from Python
#
# The command is a thin layer over the library. `Task.from_folder` reads a folder (here with the
# shared label space made explicit: the sorted union of both folders' class names), and
# `pair_distance` runs the method for each seed: it trains the source model
# (`train_source_model`) and calls `coupled_transfer_distance` (or the method's own function)
# from source to target and from source to source.

# %%
names = sorted(set(folder_classes(folders["source"])) | set(folder_classes(folders["target"])))
source = Task.from_folder(folders["source"], class_names=names)
target = Task.from_folder(folders["target"], class_names=names)
print(f"label space: {names}; source classes {source.classes}, target classes {target.classes}")
api = pair_distance(source, target, PairConfig(method=method, model=model, steps=steps, source_steps=source_steps,
                                               seeds=1))
api_diff = abs(api.distances[0] - record.distances[0])
print(f"seed 0 from Python: d(S, T) = {api.distances[0]:.6f}, d(S, S) = {api.self_distances[0]:.6f} "
      f"({api.wall_time:.1f} s); from the command: {record.distances[0]:.6f}, difference {api_diff:.1e}")

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6, 3.6))
for i, (label, values) in enumerate((("d(S, T)", record.distances), ("d(S, S)", record.self_distances))):
    ax.bar(i, values.mean(), yerr=values.std(ddof=1) if len(values) > 1 else 0, color=f"C{i}", alpha=0.5,
           capsize=6, width=0.6)
    ax.scatter(np.full(len(values), i), values, color=f"C{i}", zorder=3, label=f"{label}, one point per seed")
ax.scatter([0], api.distances[:1], marker="x", color="k", zorder=4, label="seed 0 from the Python API")
ax.set_xticks([0, 1], [f"{folders['source'].name} to {folders['target'].name}",
                       f"{folders['source'].name} to itself"])
ax.set(ylabel=f"{method} distance", title=f"ctd-distance, {len(record.seeds)} seeds")
ax.legend(fontsize=8)
fig.tight_layout()
glue("fig-own-data-distance", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig-own-data-distance
# :name: fig-own-data-distance
#
# The distance from the source folder to the target folder and from the source folder to itself
# (bars: mean and standard deviation over the seeds; dots: one per seed), and the seed-0 distance
# computed again through the Python API (cross), which is the command's number.
# ```
#
# ## Claims and results
#
# One claim is checked: that the distance stands out of the noise, the difference between the
# distance and the self-distance exceeding twice the larger of their seed-to-seed standard deviations.

# %%
claim = self_distance_claim(
    record, id="own_folders_distance_exceeds_self_distance",
    statement=f"ctd-distance on two image folders: the {method} distance from {folders['source'].name} to "
              f"{folders['target'].name} exceeds the self-distance beyond the seed-to-seed noise",
    source="Seed 000, Definition 2 (read against d(S, S))")
metrics = {"distance_mean": record.mean, "distance_sd": record.sd, "self_distance_mean": record.self_mean,
           "self_distance_sd": record.self_sd, "distance_per_seed": record.distances.tolist(),
           "cli_wall_time_s": cli_seconds, "api_seed0_distance": float(api.distances[0]),
           "api_vs_cli_seed0_abs_diff": float(api_diff), "images_per_folder": int(tasks["source"].x.shape[0])}
parameters = {"source_task": source_task, "target_task": target_task, "n_per_class": n_per_class, "method": method,
              "model": model, "steps": steps, "source_steps": source_steps, "seeds": seeds, "scale": scale,
              "command": ["ctd-distance", *argv]}
path = write_results(results_dir, "07_your_own_data", scale=scale, parameters=parameters, metrics=metrics,
                     claims=[claim], wall_time=time.perf_counter() - t_start, device="cpu")
shutil.rmtree(workdir)
show_claims([claim], path, results_dir)
