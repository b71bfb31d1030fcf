"""``ctd-distance`` and the tasks of your own data (``Task.from_folder``, ``from_npz``, ``from_arrays``).

End to end on two tiny image folders written from the embedded digits (digits 0-4 and 5-9, six
images per class): the JSON record's fields, finite numbers, and a self-distance below the cross
distance for the methods that have one. Every bad input exits with status 2 and a one-line message
naming the argument, before any training (``train_source_model`` is replaced by a function that
fails the test) and without writing the record. The Task constructors are checked by round trips
through a folder (exact for 8-bit values), against PIL for the grey conversion, and on the same
bad inputs as ``ValueError``.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ctd_lib.cli as cli
from ctd_lib.data import Task, make_task
from ctd_lib.results import Claim
from ctd_lib.user_data import folder_classes

N_PER_CLASS = 6  # images per digit in each folder: 4 trained on, 2 held out (per_class_split's 80/20)
TINY = ["--steps", "8", "--source-steps", "40", "--lr", "0.1", "--batch-size", "16"]  # a second or two per run


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    """Two image folders (digits 0-4 and 5-9 of mnist10k, class folders named by digit), written once."""
    root = tmp_path_factory.mktemp("folders")
    tasks = {"low": make_task("mnist10k-0-4", n_per_class=N_PER_CLASS, seed=0),
             "high": make_task("mnist10k-5-9", n_per_class=N_PER_CLASS, seed=0)}
    out = {name: t.to_folder(root / name) for name, t in tasks.items()}
    return {**{k: str(v) for k, v in out.items()}, "tasks": tasks, "root": root}


@pytest.fixture
def no_training(monkeypatch):
    """Any training fails the test: bad input must be refused before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("a source model was trained before the bad input was refused")

    monkeypatch.setattr(cli, "train_source_model", refuse)


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # parser.error
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# ----------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------


def test_coupled_end_to_end_writes_a_complete_record(folders, tmp_path, capsys):
    out = tmp_path / "sub" / "record.json"
    code, stdout, _ = _run([folders["low"], folders["high"], *TINY, "--seeds", "2", "--json", str(out)], capsys)
    assert code == 0
    assert "d(SOURCE, TARGET)" in stdout and "d(SOURCE, SOURCE)" in stdout and "±" in stdout
    rec = json.loads(out.read_text())
    assert rec["schema"] == cli.RECORD_SCHEMA and rec["kind"] == "ctd-distance" and rec["method"] == "coupled"
    assert rec["command"][0] == "ctd-distance" and rec["command"][1] == folders["low"]
    assert rec["seeds"] == [0, 1]
    for key in ("distance", "self_distance"):
        block = rec[key]
        assert len(block["per_seed"]) == 2 and all(_finite(v) and v >= 0 for v in block["per_seed"])
        assert _finite(block["mean"]) and _finite(block["sd"])
        assert block["mean"] == pytest.approx(np.mean(block["per_seed"]), rel=1e-12)
        assert block["sd"] == pytest.approx(np.std(block["per_seed"], ddof=1), rel=1e-9)
    # the floor is far below the distance to new classes (measured: about 0.05 against 1.5)
    assert rec["self_distance"]["mean"] < 0.5 * rec["distance"]["mean"]
    assert rec["self_distance_note"] == ""
    # the label space: the union of the folders' class names, a 10-way head
    assert rec["label_space"]["rule"] == "names" and rec["label_space"]["num_classes"] == 10
    assert rec["label_space"]["class_names"] == [str(d) for d in range(10)]
    assert rec["source"]["kind"] == "folder" and rec["source"]["classes"] == [0, 1, 2, 3, 4]
    assert rec["target"]["classes"] == [5, 6, 7, 8, 9] and rec["target"]["n"] == 5 * N_PER_CLASS
    assert rec["data"]["n_train"] == [20, 20] and rec["data"]["n_held_out"] == [10, 10]
    assert rec["source"]["input_shape"] == [1, 28, 28]
    prov = rec["provenance"]
    assert prov["git_commit"] and prov["device"] == "cpu" and prov["wall_time_s"] > 0
    assert {"python", "torch", "numpy"} <= set(prov["versions"])
    assert prov["parameters"]["pair"]["steps"] == 8 and prov["parameters"]["coupled"]["steps"] == 8
    for s in rec["per_seed"]:
        assert len(s["per_iteration"]) >= 1 and 0 <= s["source_train_acc"] <= 1
    assert not list(out.parent.glob(".*.tmp")), "the atomic write left a temporary file"
    back = cli.read_record(out)  # the record read back as the Python API's result
    assert back.distances.tolist() == rec["distance"]["per_seed"] and back.seeds == (0, 1)
    assert back.self_mean == pytest.approx(rec["self_distance"]["mean"]) and back.source == "low"
    assert f"{back.mean:.3f}" in cli.self_distance_claim(back).evidence


def test_read_record_refuses_other_files(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"kind": "results", "schema": 1}))
    (tmp_path / "broken.json").write_text("{")
    for name in ("other.json", "broken.json", "missing.json"):
        with pytest.raises(ValueError, match="path="):
            cli.read_record(tmp_path / name)


@pytest.mark.parametrize("method", ["uncoupled", "fine-tuning", "task2vec", "w2-pixel"])
def test_every_method_runs_and_says_whether_it_has_a_self_distance(folders, tmp_path, capsys, method):
    out = tmp_path / "r.json"
    code, stdout, _ = _run([folders["low"], folders["high"], *TINY, "--seeds", "1", "--samples", "8",
                            "--method", method, "--json", str(out)], capsys)
    assert code == 0
    rec = json.loads(out.read_text())
    assert rec["method"] == method and _finite(rec["distance"]["mean"]) and rec["distance"]["mean"] > 0
    assert rec["distance"]["sd"] is None  # one seed: no spread (nan is written as null)
    if method in cli.NO_SELF_DISTANCE:
        assert rec["self_distance"] is None and "no self-distance" in rec["self_distance_note"]
        assert "none:" in stdout
    else:
        assert rec["self_distance"]["mean"] < rec["distance"]["mean"]
        assert rec["self_distance_note"] == ""


def test_installed_script_runs_as_a_reader_would_type_it(folders, tmp_path):
    script = Path(sys.executable).parent / "ctd-distance"
    assert script.exists(), ("the ctd-distance script is not installed: run `.venv/bin/pip install -e . --no-deps` "
                             "(make setup does it when pyproject.toml changes)")
    out = tmp_path / "r.json"
    run = subprocess.run([str(script), folders["low"], folders["high"], *TINY, "--seeds", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "d(SOURCE, TARGET)" in run.stdout
    assert json.loads(out.read_text())["command"][:2] == ["ctd-distance", folders["low"]]


def test_the_same_numbers_from_the_python_api(folders):
    """pair_distance on Task.from_folder gives the command's numbers for the same settings (bitwise here)."""
    names = sorted(folder_classes(folders["low"]) + folder_classes(folders["high"]))
    src = Task.from_folder(folders["low"], class_names=names)
    tgt = Task.from_folder(folders["high"], class_names=names)
    cfg = cli.PairConfig(method="uncoupled", steps=8, source_steps=40, lr=0.1, batch_size=16, seeds=1)
    a = cli.pair_distance(src, tgt, cfg, show_progress=False)
    b = cli.pair_distance(src, tgt, cfg, show_progress=False)
    assert a.distances.tolist() == b.distances.tolist()  # deterministic
    assert a.self_mean < a.mean and math.isnan(a.sd)


# ----------------------------------------------------------------------------
# bad input: exit status 2, the argument named, nothing trained, nothing written
# ----------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _bad_inputs(root: Path, folders: dict) -> dict:
    """name -> (argv, words the message must hold)."""
    low, high = folders["low"], folders["high"]
    (root / "empty").mkdir()
    (root / "no-images" / "a").mkdir(parents=True)
    (root / "no-images" / "b").mkdir(parents=True)
    (root / "no-images" / "a" / "notes.txt").write_text("not an image")
    _write_png(root / "one-class" / "7" / "0.png", np.zeros((28, 28), np.uint8))
    _write_png(root / "one-class" / "7" / "1.png", np.zeros((28, 28), np.uint8))
    shutil.copytree(low, root / "two-sizes")
    _write_png(root / "two-sizes" / "3" / "odd.png", np.zeros((32, 30), np.uint8))
    shutil.copytree(high, root / "rgb")
    for png in (root / "rgb").rglob("*.png"):
        Image.open(png).convert("RGB").save(png)
    x8 = np.zeros((10, 8, 8), np.uint8)
    np.savez(root / "no-x.npz", y=np.arange(10) % 2)
    np.savez(root / "no-y.npz", x=x8)
    np.savez(root / "float-labels.npz", x=x8, y=np.linspace(0, 1, 10))
    np.savez(root / "string-labels.npz", x=x8, y=np.array(["cat", "dog"] * 5))
    np.savez(root / "small-images.npz", x=x8, y=np.arange(10) % 2)
    (root / "notes.txt").write_text("not a task")
    return {
        "missing folder": ([str(root / "nope"), high], ["argument SOURCE", "does not exist"]),
        "no class folders": ([str(root / "empty"), high], ["argument SOURCE", "no class sub-folders"]),
        "no images": ([low, str(root / "no-images")], ["argument TARGET", "no images", ".png"]),
        "one class": ([str(root / "one-class"), high], ["argument SOURCE", "one class only", "'7'"]),
        "sizes without --resize": ([str(root / "two-sizes"), high], ["argument SOURCE", "--resize H W", "32x30"]),
        "npz without x": ([low, str(root / "no-x.npz")], ["argument TARGET", "no ['x']"]),
        "npz without y": ([low, str(root / "no-y.npz")], ["argument TARGET", "no ['y']"]),
        "float labels": ([low, str(root / "float-labels.npz")], ["argument TARGET", "labels must be integers"]),
        "string labels": ([low, str(root / "string-labels.npz")], ["argument TARGET", "labels must be integers"]),
        "method typo": ([low, high, "--method", "coupeld"], ["argument --method", "'coupeld'", "'coupled'",
                                                            "'w2-pixel'"]),
        "model typo": ([low, high, "--model", "resnet"], ["argument --model", "'mlp'"]),
        "shapes differ": ([low, str(root / "small-images.npz")], ["SOURCE and TARGET", "(1, 28, 28)", "(1, 8, 8)",
                                                                  "--resize H W"]),
        "channels differ": ([low, str(root / "rgb")], ["SOURCE and TARGET", "(3, 28, 28)", "--channels"]),
        "task name typo": ([low, "mnist10k-5-8"], ["argument TARGET", "did you mean", "mnist10k-5-9"]),
        "not an npz": ([str(root / "notes.txt"), high], ["argument SOURCE", "not an .npz"]),
        "too few steps": ([low, high, "--steps", "1"], ["argument --steps", ">= 2"]),
        "no device": ([low, high, "--device", "tpu"], ["argument --device", "'cpu'"]),
        "model too small for the images": ([low, high, "--model", "small-cnn", "--resize", "4", "4"],
                                           ["argument --model", "H, W >= 8"]),
    }


BAD = ["missing folder", "no class folders", "no images", "one class", "sizes without --resize", "npz without x",
       "npz without y", "float labels", "string labels", "method typo", "model typo", "shapes differ",
       "channels differ", "task name typo", "not an npz", "too few steps", "no device",
       "model too small for the images"]


@pytest.fixture(scope="module")
def bad_inputs(folders, tmp_path_factory) -> dict:
    return _bad_inputs(tmp_path_factory.mktemp("bad"), folders)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_naming_the_argument_before_training(bad_inputs, case, tmp_path, capsys, no_training):
    argv, words = bad_inputs[case]
    out = tmp_path / "record.json"
    code, stdout, stderr = _run([*argv, "--json", str(out)], capsys)
    assert code == 2, stdout + stderr
    message = stderr.strip().splitlines()[-1]  # argparse: the usage line, then "ctd-distance: error: ..."
    assert message.startswith("ctd-distance: error: ")
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not out.exists() and not list(tmp_path.iterdir()), "nothing may be written for bad input"


def test_the_bad_input_cases_are_not_trivial(bad_inputs, folders, tmp_path, capsys):
    """The same folders with the fix the message names pass the checks (so the cases test what they claim)."""
    two_sizes = str(Path(bad_inputs["sizes without --resize"][0][0]))
    code, _, stderr = _run([two_sizes, folders["high"], *TINY, "--seeds", "1", "--resize", "28", "28",
                            "--method", "w2-pixel"], capsys)
    assert code == 0, stderr
    rgb = bad_inputs["channels differ"][0][1]
    code, _, stderr = _run([folders["low"], rgb, "--channels", "1", "--method", "w2-pixel", "--seeds", "1"], capsys)
    assert code == 0, stderr


# ----------------------------------------------------------------------------
# the Task constructors
# ----------------------------------------------------------------------------


def test_folder_round_trip_is_exact_for_8_bit_images(folders):
    """mnist10k's values are multiples of 1/255: to_folder then from_folder gives the same tensors."""
    t = folders["tasks"]["high"]
    back = Task.from_folder(folders["high"], class_names=[str(i) for i in range(10)])
    assert torch.equal(back.x, t.x) and torch.equal(back.y, t.y)
    assert back.classes == t.classes == (5, 6, 7, 8, 9) and back.num_classes == 10
    assert back.x.dtype == torch.float32 and back.input_shape == (1, 28, 28)  # grey stays one channel
    own = Task.from_folder(folders["high"])  # the folder's own names: labels are positions among them
    assert own.class_names == ("5", "6", "7", "8", "9") and own.num_classes == 5
    assert torch.equal(own.y, t.y - 5)


def test_rgb_round_trip_and_mixed_modes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 3, 5, 7), dtype=np.uint8)
    t = Task.from_arrays(x, np.array([0, 0, 1, 1, 2, 2]), class_names=["a", "b", "c"])
    back = Task.from_folder(t.to_folder(tmp_path / "rgb"))
    assert back.input_shape == (3, 5, 7) and torch.equal(back.x, t.x) and torch.equal(back.y, t.y)
    # one grey image among RGB ones: the folder is RGB, the grey image repeated on the three channels
    _write_png(tmp_path / "rgb" / "a" / "grey.png", np.full((5, 7), 51, np.uint8))
    mixed = Task.from_folder(tmp_path / "rgb")
    grey = mixed.x[mixed.y == 0][-1]
    assert mixed.input_shape == (3, 5, 7) and torch.allclose(grey, torch.full((3, 5, 7), 0.2))


def test_grey_conversion_matches_pil():
    """channels=1 on arrays is PIL's convert("L") (ITU-R 601-2 luma), up to PIL's rounding to 8 bits."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(4, 6, 6, 3), dtype=np.uint8)
    ours = Task.from_arrays(x.transpose(0, 3, 1, 2), np.array([0, 1, 0, 1]), channels=1).x
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in x])[:, None] / 255.0
    assert ours.shape == (4, 1, 6, 6)
    assert np.abs(ours.numpy() - pil).max() <= 1 / 255 + 1e-6  # tolerance: PIL rounds to the nearest 1/255


def test_resize_keeps_constant_images_constant_and_in_range():
    x = np.full((4, 1, 9, 13), 0.25, np.float32)
    t = Task.from_arrays(x, np.array([0, 1, 0, 1]), resize=(5, 4))
    assert t.input_shape == (1, 5, 4) and torch.allclose(t.x, torch.full_like(t.x, 0.25), atol=1e-6)
    spiky = Task.from_arrays(np.random.default_rng(2).random((4, 1, 9, 13)), np.array([0, 1, 0, 1]), resize=(30, 30))
    assert float(spiky.x.min()) >= 0 and float(spiky.x.max()) <= 1


def test_n_per_class_draws_without_replacement_and_is_seeded(folders):
    a = Task.from_folder(folders["low"], n_per_class=2, seed=3)
    b = Task.from_folder(folders["low"], n_per_class=2, seed=3)
    c = Task.from_folder(folders["low"], n_per_class=2, seed=4)
    assert np.bincount(a.y.numpy()).tolist() == [2] * 5
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert len({tuple(v.flatten().tolist()) for v in a.x}) == 10  # no image twice


def test_arrays_keep_their_ids_and_npz_reads_uint8(tmp_path):
    x = np.arange(3 * 16, dtype=np.uint8).reshape(3, 4, 4)
    t = Task.from_arrays(x, np.array([2, 7, 7]))
    assert t.classes == (2, 7) and t.num_classes == 8 and t.class_names == ()
    np.savez(tmp_path / "t.npz", x=x, y=np.array([2, 7, 7]))
    n = Task.from_npz(tmp_path / "t.npz", num_classes=10)
    assert n.name == "t" and n.num_classes == 10 and torch.equal(n.x, t.x)
    assert torch.equal(n.x * 255, torch.from_numpy(x[:, None].astype(np.float32)))


@pytest.mark.parametrize("kwargs, words", [
    ({"x": np.zeros((4, 8, 8, 3)), "y": np.array([0, 1, 0, 1])}, ["channels-last", "transpose(0, 3, 1, 2)"]),
    ({"x": np.zeros((4, 8)), "y": np.array([0, 1, 0, 1])}, ["x has shape", "(N, C, H, W)"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0.0, 1.0, 0.0, 1.0])}, ["labels must be integers", "astype(int)"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0.5, 1.0, 0.0, 1.0])}, ["labels must be integers"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([1, 1, 1, 1])}, ["one class only"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 0])}, ["y has shape", "(4,)"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, -1, 0, 1])}, ["negative"]),
    ({"x": np.full((4, 8, 8), 2.0), "y": np.array([0, 1, 0, 1])}, ["[0, 1]"]),
    ({"x": np.full((4, 8, 8), 300), "y": np.array([0, 1, 0, 1])}, ["[0, 255]"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 3, 0, 1]), "num_classes": 3}, ["num_classes=3", "at least 4"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 0, 1]), "resize": (0, 3)}, ["resize=(0, 3)"]),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 0, 1]), "channels": 2}, ["channels=2", "3 (RGB)"]),
])
def test_from_arrays_refuses_bad_input_with_a_value_error_naming_it(kwargs, words):
    with pytest.raises(ValueError) as err:
        Task.from_arrays(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_from_folder_and_npz_refuse_bad_input_with_value_errors(bad_inputs):
    for case, word in [("missing folder", "does not exist"), ("no images", "no images"),
                       ("one class", "one class only"), ("sizes without --resize", "resize=(H, W)"),
                       ("no class folders", "no class sub-folders")]:
        argv = bad_inputs[case][0]
        path = argv[1] if case == "no images" else argv[0]
        with pytest.raises(ValueError, match="path=") as err:
            Task.from_folder(path)
        assert word in str(err.value)
    for case, word in [("npz without x", "no ['x']"), ("npz without y", "no ['y']"),
                       ("float labels", "labels must be integers")]:
        with pytest.raises(ValueError, match="path=") as err:
            Task.from_npz(bad_inputs[case][0][1])
        assert word in str(err.value)
    with pytest.raises(ValueError, match="class_names"):
        Task.from_folder(bad_inputs["one class"][0][0], class_names=["1", "2"])  # lacks the folder's '7'


def test_hidden_folders_are_not_classes(folders, tmp_path):
    root = Path(shutil.copytree(folders["low"], tmp_path / "low"))
    _write_png(root / ".ipynb_checkpoints" / "x.png", np.zeros((28, 28), np.uint8))
    assert folder_classes(root) == ("0", "1", "2", "3", "4")


# ----------------------------------------------------------------------------
# label space, split and claim
# ----------------------------------------------------------------------------


def test_two_folders_share_the_sorted_union_of_their_class_names():
    x = np.zeros((4, 2, 2), np.uint8)
    a = Task.from_arrays(x, np.array([0, 1, 0, 1]), class_names=["cat", "dog"])
    b = Task.from_arrays(x, np.array([0, 1, 0, 1]), class_names=["dog", "emu"])
    sa, sb, rule = cli.shared_label_space(a, b)
    assert rule == "names" and sa.class_names == sb.class_names == ("cat", "dog", "emu")
    assert sa.y.tolist() == [0, 1, 0, 1] and sb.y.tolist() == [1, 2, 1, 2]  # "dog" is output 1 in both
    assert sa.classes == (0, 1) and sb.classes == (1, 2) and sa.num_classes == sb.num_classes == 3
    c = Task.from_arrays(x, np.array([3, 5, 3, 5]))  # ids: the head is the wider one
    sa, sc, rule = cli.shared_label_space(a, c)
    assert rule == "ids" and sa.num_classes == sc.num_classes == 6 and sa.class_names == ()
    assert sa.y.tolist() == [0, 1, 0, 1] and sc.y.tolist() == [3, 5, 3, 5]


def test_split_keeps_every_class_on_both_sides_and_refuses_single_examples():
    t = Task.from_arrays(np.zeros((7, 2, 2), np.uint8), np.array([0, 0, 1, 1, 1, 1, 1]))
    train, held = cli.split_task(t)
    assert sorted(train.y.tolist()) == [0, 1, 1, 1, 1] and sorted(held.y.tolist()) == [0, 1]
    single = Task.from_arrays(np.zeros((3, 2, 2), np.uint8), np.array([0, 0, 1]), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"'b' \(1 image\)"):
        cli.split_task(single)


def test_pair_distance_checks_before_training(monkeypatch):
    monkeypatch.setattr(cli, "train_source_model", lambda *a, **k: pytest.fail("trained"))
    a = Task.from_arrays(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1]))
    b = Task.from_arrays(np.zeros((4, 9, 9), np.uint8), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="different image shapes"):
        cli.pair_distance(a, b)
    with pytest.raises(ValueError, match="method='coupeld'"):
        cli.PairConfig(method="coupeld")


def _result(d, d_self) -> cli.PairDistance:
    return cli.PairDistance(method="coupled", source="S", target="T", distances=np.asarray(d, float),
                            self_distances=None if d_self is None else np.asarray(d_self, float), no_self_reason="",
                            seeds=tuple(range(len(d))), per_seed=[], config={})


def test_self_distance_claim_holds_beyond_the_noise_and_fails_within_it():
    held = cli.self_distance_claim(_result([2.0, 2.1, 1.9], [0.1, 0.12, 0.11]))
    assert isinstance(held, Claim) and held.holds and "2.000 +/- 0.100" in held.evidence
    noisy = cli.self_distance_claim(_result([1.0, 2.0, 0.3], [0.2, 0.9, 0.1]))  # gap 0.7 < 2 sd
    assert not noisy.holds
    with pytest.raises(ValueError, match="no self-distance"):
        cli.self_distance_claim(_result([1.0], None))
