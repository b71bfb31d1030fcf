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


class _Batched:
    """A pair function that can also compute several pairs in one call, and records the calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, s, t):
        self.calls.append(1)
        return len(s) * 10 + len(t), {"batch": 1}

    def for_pairs(self, pairs):
        self.calls.append(len(pairs))
        return [(len(s) * 10 + len(t), {"batch": len(pairs)}) for s, t in pairs]


def test_batches_of_pairs_give_the_same_matrix_and_resume_from_the_cache(tmp_path):
    import concurrent.futures

    names = ["a", "bb", "ccc"]
    one = distance_matrix(names, _Batched(), method="toy", params={})
    f = _Batched()
    part = distance_matrix(names[:2], f, method="toy", params={}, cache_dir=tmp_path, batch_size=4)
    assert f.calls == [2] and part.values[0, 1] == 12  # the two pairs of two tasks: one batch
    g = _Batched()
    full = distance_matrix(names, g, method="toy", params={}, cache_dir=tmp_path, batch_size=4)
    np.testing.assert_array_equal(full.values, one.values)
    assert full.from_cache == 2 and g.calls == [4]  # the four missing pairs, one batch
    assert full.extras[("ccc", "a")] == {"batch": 4}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        h = _Batched()
        fanned = distance_matrix(names, h, method="toy", params={}, executor=pool, batch_size=4, include_diagonal=True)
    assert sorted(h.calls) == [1, 4, 4]  # nine pairs in batches of 4, 4 and 1
    np.testing.assert_array_equal(fanned.values[~np.eye(3, dtype=bool)], one.values[~np.eye(3, dtype=bool)])


def test_batch_size_needs_for_pairs():
    with pytest.raises(ValueError, match="batch_size=3 needs a pair_fn with a for_pairs"):
        distance_matrix(["a", "b"], lambda s, t: 1.0, method="toy", params={}, batch_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        distance_matrix(["a", "b"], _Batched(), method="toy", params={}, batch_size=0)
