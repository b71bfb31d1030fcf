"""scripts/run_notebooks.py refuses a parameter file key that the notebook does not define."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

NOTEBOOK = '''# %% tags=["parameters"]
steps = 10
lr: float = 0.1
scale = "cpu"
results_dir = "../results"

# %%
raise AssertionError("a refused parameter file must stop before the notebook runs")
'''


def test_parameter_names_reads_the_parameters_cell():
    nb = jupytext.reads(NOTEBOOK, fmt="py:percent")
    assert run_notebooks.parameter_names(nb) == {"steps", "lr", "scale", "results_dir"}


def test_every_chapter_has_one_parameters_cell():
    for py in sorted((ROOT / "notebooks").glob("*.py")):
        names = run_notebooks.parameter_names(jupytext.read(py))
        assert "results_dir" in names, py.name


def test_unknown_key_in_a_parameter_file_is_refused_with_its_name_and_file(tmp_path):
    src, params = tmp_path / "nb", tmp_path / "params" / "paper"
    src.mkdir()
    params.mkdir(parents=True)
    (src / "toy.py").write_text(NOTEBOOK)
    (params / "toy.yml").write_text("steps: 20\nlearning_rate: 0.5\n")
    with pytest.raises(SystemExit, match=r"toy\.yml.*'learning_rate'"):
        run_notebooks.main(["--scale", "paper", "--src", str(src), "--params", str(tmp_path / "params"),
                            "--results-dir", str(tmp_path / "results")])


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "params").iterdir() if p.is_dir()))
def test_committed_parameter_files_define_only_known_parameters(folder):
    import yaml

    for yml in sorted((ROOT / "params" / folder).glob("*.yml")):
        defined = run_notebooks.parameter_names(jupytext.read(ROOT / "notebooks" / f"{yml.stem}.py"))
        run_notebooks.check_parameters(yaml.safe_load(yml.read_text()) or {}, defined, str(yml))


TINY = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
steps = 10
scale = "cpu"
results_dir = "../results"

# %%
print(f"steps={steps}")
'''


def _run_tiny(tmp_path, scale: str):
    import nbformat

    src, params = tmp_path / "nb", tmp_path / "params" / "smoke"
    src.mkdir(exist_ok=True)
    params.mkdir(parents=True, exist_ok=True)
    (src / "toy.py").write_text(TINY)
    (params / "toy.yml").write_text("steps: 3\n")
    assert run_notebooks.main(["--scale", scale, "--src", str(src), "--params", str(tmp_path / "params"),
                               "--results-dir", str(tmp_path / "results")]) == 0
    return nbformat.read(src / "toy.ipynb", as_version=4)


def test_executed_page_hides_the_injected_cell_and_says_what_replaced_the_defaults(tmp_path):
    """papermill's injected cell (the builder's absolute results_dir) is tagged remove-cell; the parameters
    cell stays as it is; a note after it lists the values the run used in place of the defaults."""
    nb = _run_tiny(tmp_path, "smoke")
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    params = [i for i, t in enumerate(tags) if "parameters" in t]
    injected = [i for i, t in enumerate(tags) if "injected-parameters" in t]
    assert len(params) == 1 and injected == [params[0] + 1]
    assert tags[params[0]] == ["parameters"], "the parameters cell must stay visible"
    assert "remove-cell" in tags[injected[0]]
    assert str(tmp_path) in nb.cells[injected[0]].source  # what is hidden: the builder's path
    note = nb.cells[injected[0] + 1]
    assert note.cell_type == "markdown" and note.source.startswith("```{note}")
    assert '`scale = "smoke"`' in note.source and "`steps = 3`" in note.source and "params/smoke/toy.yml" in note.source
    assert "results_dir" not in note.source
    shown = [c for c in nb.cells if "remove-cell" not in c.metadata.get("tags", [])]
    for c in shown:
        assert str(tmp_path) not in c.source + str(c.get("outputs", "")), "the builder's path is shown"
    assert "steps=3" in str(nb.cells[-1].outputs)  # the injected value was used


def test_a_run_with_the_defaults_adds_no_note(tmp_path):
    nb = _run_tiny(tmp_path, "cpu")
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert [t for t in tags if "injected-parameters" in t] == [["injected-parameters", "remove-cell"]]
    assert not any("parameters-note" in t for t in tags)
    assert "steps=10" in str(nb.cells[-1].outputs)


def test_overrides_note_lists_only_changed_values():
    defaults = {"steps": 10, "lrs": [0.1, 0.2], "scale": "cpu", "results_dir": "../results"}
    assert run_notebooks.overrides_note({"steps": 10, "scale": "cpu", "results_dir": "/abs"}, defaults,
                                        command="x", parameter_file=None) is None
    note = run_notebooks.overrides_note({"lrs": [0.1, 0.3], "steps": 10, "scale": "paper", "results_dir": "/abs"},
                                        defaults, command="x", parameter_file="params/paper/a.yml")
    assert note.index("`scale = \"paper\"`") < note.index("`lrs = [0.1, 0.3]`") and "steps" not in note
    assert "/abs" not in note and "params/paper/a.yml" in note


def test_every_parameters_cell_holds_literals():
    """The note compares injected values with the defaults: every default must be a literal to compare."""
    for py in sorted((ROOT / "notebooks").glob("*.py")):
        nb = jupytext.read(py)
        assert run_notebooks.parameter_names(nb) == set(run_notebooks.parameter_defaults(nb)), py.name
