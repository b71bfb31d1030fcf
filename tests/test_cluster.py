"""Distance matrices fanned out past one process: a real Dask LocalCluster (2 worker processes, one
thread each, bound to 127.0.0.1) and the standard library's ProcessPoolExecutor.

The cluster is started once for the module and always shut down (fixture teardown).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch

from ctd_lib.experiments.coupled_distance import StudyConfig, TaskBank, family_matrices
from ctd_lib.task_distance import CoupledConfig
from ctd_lib.task_distance.cluster import check_scheduler, open_executor
from ctd_lib.task_distance.matrices import PairFailed, _load, distance_matrix

# the workers unpickle this module's pair functions by value (it is not importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NAMES = ["mnist10k-01", "mnist10k-23", "mnist10k-45"]
STUDY = StudyConfig(n_per_class=12, n_val_per_class=6, source_steps=20, batch_size=16, finetune_steps=20,
                    task2vec_samples=20, w2_samples=20)
COUPLED = CoupledConfig(steps=16, lr=0.05, batch_size=16, outer_iters=2, block_size=8, length_checkpoints=3, seed=0)


def slow_pair(s: str, t: str) -> tuple[float, dict]:
    """A deterministic toy distance that takes a moment (so a worker can be killed mid-run)."""
    time.sleep(0.6)
    return len(s) * 10.0 + len(t) + 0.5, {"pid": os.getpid()}


def failing_pair(s: str, t: str) -> float:
    if (s, t) == ("bb", "a"):
        raise ArithmeticError("this pair is broken on purpose")
    return len(s) * 10.0 + len(t)


def _entries(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.rglob("*.json"))]


@pytest.fixture(scope="module")
def one_thread_client():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with open_executor("local:2", retries=1) as executor:
        yield executor
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bank():
    return TaskBank(STUDY)


def test_local_cluster_matrix_equals_the_one_process_matrix_bitwise(one_thread_client, bank, tmp_path):
    here = family_matrices(bank, NAMES, model="mlp", coupled=COUPLED, methods=("coupled", "fine-tuning"),
                           cache_dir=str(tmp_path / "here"))
    there = family_matrices(bank, NAMES, model="mlp", coupled=COUPLED, methods=("coupled", "fine-tuning"),
                            cache_dir=str(tmp_path / "there"), executor=one_thread_client)
    for m in ("coupled", "fine-tuning"):
        np.testing.assert_array_equal(here[m].values, there[m].values)  # bitwise, not approximately
        assert here[m].extras == there[m].extras
        assert np.all(there[m].off_diagonal() > 0)
    entries = _entries(tmp_path / "there")
    assert len(entries) == 2 * 9  # exactly the ordered pairs and self-pairs of the two methods, nothing else
    assert {(e["method"], e["source"], e["target"]) for e in entries} == {
        (f"{m}-mlp", s, t) for m in ("coupled", "fine-tuning") for s in NAMES for t in NAMES}
    assert {e["provenance"]["pid"] for e in entries}.isdisjoint({os.getpid()})  # computed on the workers
    assert {e["provenance"]["threads"] for e in entries} == {1}


def test_cached_pairs_are_not_submitted(one_thread_client, tmp_path):
    names = ["a", "bb", "ccc"]
    first = distance_matrix(names, slow_pair, method="toy", params={}, cache_dir=tmp_path, executor=one_thread_client)
    again = distance_matrix(names, slow_pair, method="toy", params={}, cache_dir=tmp_path, executor=one_thread_client)
    assert again.from_cache == 6 and first.from_cache == 0
    np.testing.assert_array_equal(first.values, again.values)


def test_a_killed_worker_loses_no_pair_and_corrupts_no_entry(one_thread_client, tmp_path):
    """Kill one worker process while pairs run: Dask re-runs its pair elsewhere; the client writes the cache."""
    names = ["a", "bb", "ccc", "dddd"]
    killed = []

    def kill_after_first_entry():  # kill the worker that wrote the first result: it is busy with its next pair
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.rglob("*.json")):
            time.sleep(0.05)
        first = json.loads(sorted(tmp_path.rglob("*.json"))[0].read_text())
        os.kill(first["provenance"]["pid"], signal.SIGKILL)
        killed.append(first["provenance"]["pid"])

    killer = threading.Thread(target=kill_after_first_entry, daemon=True)
    killer.start()
    D = distance_matrix(names, slow_pair, method="toy", params={}, cache_dir=tmp_path, executor=one_thread_client)
    killer.join(timeout=5)
    assert killed, "the worker was never killed: the test did not test anything"
    expected = np.array([[len(s) * 10.0 + len(t) + 0.5 if s != t else 0.0 for t in names] for s in names])
    np.testing.assert_array_equal(D.values, expected)
    paths = sorted(tmp_path.rglob("*.json"))
    assert len(paths) == 12 and not list(tmp_path.rglob("*.tmp"))
    for p in paths:
        assert _load(p, json.loads(p.read_text())["key"]) is not None  # every entry verifies


def test_a_failing_pair_is_reported_by_name_and_the_others_are_cached(one_thread_client, tmp_path):
    names = ["a", "bb", "ccc"]
    with pytest.raises(PairFailed, match=r"bb -> a: ArithmeticError: this pair is broken on purpose") as err:
        distance_matrix(names, failing_pair, method="toy", params={}, cache_dir=tmp_path, executor=one_thread_client)
    assert list(err.value.failures) == [("bb", "a")]
    assert np.isnan(err.value.partial.values[1, 0])
    assert err.value.partial.values[2, 1] == 32.0
    assert {(e["source"], e["target"]) for e in _entries(tmp_path)} == {
        (s, t) for s in names for t in names if s != t and (s, t) != ("bb", "a")}


def test_process_pool_executor_gives_the_same_matrix(tmp_path):
    names = ["a", "bb", "ccc"]
    ref = distance_matrix(names, slow_pair, method="toy", params={})
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        D = distance_matrix(names, slow_pair, method="toy", params={}, cache_dir=tmp_path, executor=pool)
    np.testing.assert_array_equal(ref.values, D.values)
    assert len(_entries(tmp_path)) == 6


def test_bad_executor_and_unpicklable_pair_fn_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="executor must be a concurrent.futures.Executor"):
        distance_matrix(["a", "b"], slow_pair, method="toy", params={}, cache_dir=tmp_path, executor="local:2")
    with concurrent.futures.ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="pair_fn must be picklable"):
        distance_matrix(["a", "b"], lambda s, t: 0.0, method="toy", params={}, cache_dir=tmp_path,
                        executor=pool)
    assert not list(tmp_path.rglob("*"))


@pytest.mark.parametrize("bad", ["local:0", "local:-1", "local:two", "localhost:8786", 3, None])
def test_bad_scheduler_names_the_parameter(bad):
    with pytest.raises(ValueError, match="scheduler"):
        check_scheduler("scheduler", bad)
    with pytest.raises(ValueError, match="scheduler"), open_executor(bad):
        pass


def test_a_scheduler_that_does_not_answer_fails_within_the_timeout():
    import socket

    with socket.socket() as sock:  # a free port on loopback that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"scheduler='{address}': no Dask scheduler answered"), \
            open_executor(address, timeout=2):
        pass
    assert time.monotonic() - start < 30


def test_default_scheduler_is_this_process():
    with open_executor("") as executor:
        assert executor is None


def test_command_line_fills_the_cache_the_chapter_then_reads(tmp_path, capsys):
    """``python -m ctd_lib.experiments.coupled_distance`` computes the matrices; the chapter's own calls
    with the same parameters and cache folder then find every trained pair in the cache."""
    from ctd_lib.experiments.coupled_distance import CoupledDistanceConfig, family_step, main, make_bank

    smoke = Path(__file__).resolve().parent.parent / "params" / "smoke" / "03_coupled_distance.yml"
    assert main(["--params", str(smoke), "--families", "cross", "--cache-dir", str(tmp_path)]) == 0
    assert "pairs cached under" in capsys.readouterr().out
    import yaml

    config = CoupledDistanceConfig(**{**yaml.safe_load(smoke.read_text()), "cache_dir": str(tmp_path)})
    again = family_step(config, make_bank(config), "cross")
    for method in ("coupled", "uncoupled", "fine-tuning"):
        assert again[method].from_cache == 4, method  # both ordered pairs and both self-pairs


@pytest.mark.parametrize("argv", [["--scheduler", "local:0"], ["--families", "everything"],
                                  ["--params", "/nonexistent.yml"]])
def test_command_line_bad_arguments_exit_2_before_any_work(argv, tmp_path):
    from ctd_lib.experiments.coupled_distance import main

    with pytest.raises(SystemExit) as err:
        main([*argv, "--cache-dir", str(tmp_path)])
    assert err.value.code == 2
    assert not list(tmp_path.rglob("*"))


class _OtherTorch(concurrent.futures.ThreadPoolExecutor):
    """An executor whose 'workers' report another torch version, as a node of a mixed cluster would."""

    def submit(self, fn, /, *args, **kwargs):
        def elsewhere():
            value, extra, prov = fn(*args, **kwargs)
            return value, extra, {**prov, "torch": "1.0.0", "host": "old-node"}

        return super().submit(elsewhere)


def test_results_of_a_mixed_cluster_are_refused(tmp_path):
    with _OtherTorch(2) as pool, pytest.raises(PairFailed, match=r"old-node.*torch.*not mixed") as err:
        distance_matrix(["a", "bb"], failing_pair, method="toy", params={}, cache_dir=tmp_path, executor=pool)
    assert len(err.value.failures) == 2
    assert not list(tmp_path.rglob("*.json"))  # nothing from the other torch reached the cache
