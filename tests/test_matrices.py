"""Distance matrices over ordered pairs: order, caching, resumption, corrupt entries."""
import json

import numpy as np
import pytest

from ctd_lib.task_distance.matrices import distance_matrix


def test_matrix_is_ordered_source_rows_target_columns(tmp_path):
    D = distance_matrix(["a", "bb", "ccc"], lambda s, t: len(s) * 10 + len(t), method="toy", params={})
    assert D.values[0, 1] == 12 and D.values[1, 0] == 21  # asymmetric, rows are sources
    assert np.all(np.diag(D.values) == 0)
    assert sorted(D.off_diagonal()) == [12, 13, 21, 23, 31, 32]


def test_cache_resumes_and_is_keyed_by_params(tmp_path):
    calls = []

    def f(s, t):
        calls.append((s, t))
        return float(len(calls)), {"n": len(calls)}

    a = distance_matrix(["x", "y", "z"], f, method="m", params={"p": 1}, cache_dir=tmp_path)
    assert len(calls) == 6 and a.from_cache == 0
    b = distance_matrix(["x", "y", "z"], f, method="m", params={"p": 1}, cache_dir=tmp_path)
    assert len(calls) == 6 and b.from_cache == 6
    np.testing.assert_array_equal(a.values, b.values)
    assert b.extras[("x", "y")] == a.extras[("x", "y")]
    distance_matrix(["x", "y", "z"], f, method="m", params={"p": 2}, cache_dir=tmp_path)
    assert len(calls) == 12  # other parameters, other keys


def test_interrupted_run_resumes(tmp_path):
    def failing(s, t):
        if (s, t) == ("z", "x"):
            raise KeyboardInterrupt
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        distance_matrix(["x", "y", "z"], failing, method="m", params={}, cache_dir=tmp_path)
    done = len(list((tmp_path / "m").glob("*.json")))
    assert done == 4  # x->y, x->z, y->x, y->z finished before the interruption
    calls = []
    D = distance_matrix(["x", "y", "z"], lambda s, t: calls.append(1) or 2.0, method="m", params={}, cache_dir=tmp_path)
    assert len(calls) == 2 and D.from_cache == 4
    assert not list((tmp_path / "m").glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_corrupt_cache_entry_is_recomputed(tmp_path, damage):
    distance_matrix(["x", "y"], lambda s, t: 5.0, method="m", params={}, cache_dir=tmp_path)
    path = sorted((tmp_path / "m").glob("*.json"))[0]
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":
        data = json.loads(text)
        data["value"] = 99.0
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(b"\x00\xff")
    calls = []
    with pytest.warns(RuntimeWarning, match="recomputing"):
        D = distance_matrix(["x", "y"], lambda s, t: calls.append(1) or 7.0, method="m", params={}, cache_dir=tmp_path)
    assert len(calls) == 1 and D.from_cache == 1
    assert 99.0 not in D.values


def test_bad_names():
    with pytest.raises(ValueError, match="names"):
        distance_matrix(["x"], lambda s, t: 0.0, method="m", params={})
    with pytest.raises(ValueError, match="names"):
        distance_matrix(["x", "x"], lambda s, t: 0.0, method="m", params={})
