"""scripts/gpu_run.sh, the prepared GPU run of chapter 3, on the CPU: the script's own logic (parameters,
the wheels fallback, the entry point it calls) at the smoke scale; and the GPU parameter file is valid."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ctd_lib.experiments.coupled_distance import COUPLED_FIELDS
from ctd_lib.experiments.task_distances import build_config
from ctd_lib.results import read_results
from ctd_lib.task_distance.coupled import AUTHORS_PRESET

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_run.sh"


def _env(tmp_path, **extra):
    env = {**os.environ, "CTD_DEVICE": "cpu", "SCALE": "smoke", "RESULTS_DIR": str(tmp_path / "results"),
           "CACHE_DIR": str(tmp_path / "cache"), "BENCH": "0", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHON"] = sys.executable
    return {**env, **extra}


def test_gpu_parameters_are_the_authors_settings_on_fewer_steps():
    cfg = build_config(ROOT / "params" / "gpu" / "03_coupled_distance.yml", "paper", {"device": "cpu"})
    coupled = cfg.coupled()
    for k, v in AUTHORS_PRESET.items():
        if k not in ("steps", "length_checkpoints") and k in COUPLED_FIELDS:
            assert getattr(coupled, k) == v, k
    assert coupled.steps * 100 == coupled.length_checkpoints * 10000  # a chord every 100 steps
    assert cfg.batch_pairs == 20 and cfg.model == "paper-cnn"


def test_gpu_run_on_the_cpu_writes_the_chapters_results(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), str(ROOT / "params" / "smoke" / "03_coupled_distance.yml")],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = read_results(tmp_path / "results" / "smoke" / "03_coupled_distance.json")
    assert payload["claims"] and payload["provenance"]["parameters"]["scale"] == "smoke"
    assert "gpu_run.sh: done in" in run.stdout


def test_gpu_run_refuses_a_missing_parameter_file_and_a_missing_device(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "none.yml")], env=_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "is not a file" in run.stderr
    run = subprocess.run(["bash", str(SCRIPT), str(ROOT / "params" / "smoke" / "03_coupled_distance.yml")],
                         env=_env(tmp_path, CTD_DEVICE="cuda:9"), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "CTD_DEVICE" in run.stderr
    assert not (tmp_path / "results").exists()
