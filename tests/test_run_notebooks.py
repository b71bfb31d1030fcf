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
