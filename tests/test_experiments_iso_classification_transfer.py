"""Tests of ctd_lib.experiments.iso_classification_transfer (chapter 6): the configuration's checks and
the verdicts of every claim on hand-built results (no training), so that no verdict is a constant."""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from ctd_lib.experiments.iso_classification_transfer import (
    IsoClassificationTransferConfig,
    IsoClassificationTransferResult,
    claims,
    metrics,
)
from ctd_lib.free_energy.functionals import FreeEnergyTerms
from ctd_lib.free_energy.iso_transfer import IsoTransferResult
from ctd_lib.free_energy.transfer_baselines import BaselineCurve

Config = IsoClassificationTransferConfig


def _transfer(c, target_acc, val_acc=None, lam=None, gamma=None, n_fallbacks=0) -> IsoTransferResult:
    """A transfer whose training C follows ``c`` (rate 1 + C, distortion 10 - C) and whose accuracies are given."""
    n = len(c)
    val_acc = np.full(n, 0.8) if val_acc is None else np.asarray(val_acc, dtype=np.float64)
    terms = [FreeEnergyTerms(rate=1.0 + x, distortion=10.0 - x, classification=x, accuracy=a, n=10)
             for x, a in zip(c, val_acc)]
    lam = np.full(n, 0.25) if lam is None else np.asarray(lam, dtype=np.float64)
    gamma = np.full(n, 8.0) if gamma is None else np.asarray(gamma, dtype=np.float64)
    return IsoTransferResult(
        t=np.linspace(0, 1, n), lam=lam, gamma=gamma, train=terms, val=terms, val_accuracy=val_acc,
        target_accuracy=np.asarray(target_acc, dtype=np.float64), free_energy=np.zeros(n), systems=[],
        fallbacks=[(0, "x")] * n_fallbacks, n_fallbacks=n_fallbacks, n_clips=0, slope=1.0, model=nn.Identity())


def _curve(initial, final) -> BaselineCurve:
    return BaselineCurve(steps=np.array([0, 5, 10]), target_accuracy=np.array([initial, (initial + final) / 2, final]),
                         target_loss=np.array([2.0, 1.5, 1.0]), final_accuracy=float(final),
                         initial_accuracy=float(initial), model=nn.Identity())


def _result(*, c_main=(2.0, 2.02, 2.05), c_other=(2.0, 2.1, 2.04), acc_isoc=0.9, scratch=0.91, ft=(0.0, 0.95),
            val_min=0.7, c_tolerance=0.1, scratch_margin=0.02) -> IsoClassificationTransferResult:
    main = _transfer(c_main, [0.0, 0.5, acc_isoc], val_acc=[0.9, val_min, 0.85], lam=[0.25, 0.3, 0.35],
                     gamma=[8.0, 9.0, 10.0])
    transfers = {("geodesic", "mixture"): main, ("geodesic", "ot"): _transfer(c_other, [0.0, 0.4, 0.8]),
                 ("heuristic", "mixture"): _transfer((2.0, 2.0, 2.0), [0.0, 0.3, 0.7], n_fallbacks=2)}
    return IsoClassificationTransferResult(
        source_terms=FreeEnergyTerms(rate=1.0, distortion=2.0, classification=0.1, accuracy=0.95, n=10),
        transfers=transfers, main_key=("geodesic", "mixture"), budget=66, finetune=_curve(*ft),
        scratch=_curve(0.1, scratch), c_tolerance=c_tolerance, scratch_margin=scratch_margin)


def _claim(result, cid):
    (c,) = [c for c in claims(result) if c.id == cid]
    return c


# ---------------------------------------------------------------- claims


def test_claim_ids_and_sources():
    assert [c.id for c in claims(_result())] == ["transfer_c_constant", "isoc_matches_scratch", "finetune_starts_low"]
    # with a control and the authors' controller, two more claims
    assert [c.id for c in claims(_full_result())][3:] == ["source_at_equilibrium", "controller_holds_c"]


def _full_result(*, control_val=(1.0, 1.02, 0.99), held=(True, True)):
    import dataclasses

    from ctd_lib.free_energy.iso_transfer import FixedMultiplierControl
    from ctd_lib.free_energy.repeat_controller import ControllerStep
    r = _result()
    steps = [ControllerStep(gamma_start=8.0, gamma_end=12.0, repeats=1, updates=20, c_history=(2.2, 1.9), held=h,
                            c_target=2.0) for h in held]
    ctrl = dataclasses.replace(_transfer((2.0, 1.9, 1.95), [0.0, 0.5, 0.85]), controller=steps, n_updates=40)
    vc = np.array(control_val)
    control = FixedMultiplierControl(train_c=vc, val_c=vc, train_max_rel_change=float(np.max(np.abs(vc - vc[0]))),
                                     val_max_rel_change=float(np.max(np.abs(vc - vc[0]))), n_updates=30)
    return dataclasses.replace(r, transfers={**r.transfers, ("repeat_equilibration", "mixture"): ctrl},
                               control=control)


def test_source_at_equilibrium_and_controller_claims():
    cs = {c.id: c for c in claims(_full_result())}
    assert cs["source_at_equilibrium"].holds and "2.0%" in cs["source_at_equilibrium"].evidence
    assert cs["controller_holds_c"].holds and "40 updates" in cs["controller_holds_c"].evidence
    cs = {c.id: c for c in claims(_full_result(control_val=(1.0, 1.2, 1.0), held=(True, False)))}
    assert not cs["source_at_equilibrium"].holds and not cs["controller_holds_c"].holds
    # the controller is not one of the transfers judged by transfer_c_constant (it holds C <= C_0 by construction)
    assert "repeat_equilibration" not in cs["transfer_c_constant"].evidence
    assert "fixed-multiplier control: held-out 20.0%" in cs["transfer_c_constant"].evidence
    m = metrics(_full_result())
    assert m["controller[repeat_equilibration/mixture]"]["updates"] == 40
    assert m["controller[repeat_equilibration/mixture]"]["n_repeats"] == 2
    assert m["control_c_max_rel_change_val"] == pytest.approx(0.02)


def test_transfer_c_constant():
    c = _claim(_result(), "transfer_c_constant")  # largest change 0.1 / 2 = 5% < 10%
    assert c.holds
    assert c.evidence == ("geodesic/mixture: max relative change held-out 2.5%, training 2.5%; geodesic/ot: max "
                          "relative change held-out 5.0%, training 5.0%; heuristic/mixture: max relative change "
                          "held-out 0.0%, training 0.0% (tolerance 10%)")
    assert c.statement == "C stays at its starting value during iso-classification transfer"
    assert c.source == "Seed 004, Sec. 4.2-4.3, Sec. 5.2"
    # any one transfer past the tolerance fails it; the tolerance is the result's
    assert not _claim(_result(c_other=(2.0, 2.3, 2.0)), "transfer_c_constant").holds
    assert not _claim(_result(c_tolerance=0.05), "transfer_c_constant").holds  # 5% is not < 5%


def test_isoc_matches_scratch():
    c = _claim(_result(acc_isoc=0.9, scratch=0.91), "isoc_matches_scratch")
    assert c.holds
    assert c.evidence == "geodesic/mixture 90.0% against scratch 91.0% (margin 2%); fine-tuning ends at 95.0%"
    assert c.statement == "Final target accuracy of iso-classification transfer matches training from scratch"
    assert c.source == "Seed 004, Sec. 5.2 (Fig. 5b)"
    assert not _claim(_result(acc_isoc=0.85, scratch=0.91), "isoc_matches_scratch").holds
    assert _claim(_result(acc_isoc=0.85, scratch=0.91, scratch_margin=0.1), "isoc_matches_scratch").holds


def test_finetune_starts_low():
    c = _claim(_result(ft=(0.03, 0.95), acc_isoc=0.9, val_min=0.317), "finetune_starts_low")
    assert c.holds
    assert c.evidence == ("fine-tuning starts at 3.0%; iso-classification transfer keeps 31.7% or more on the "
                          "interpolated task")
    assert c.statement == "Fine-tuning the source model starts with a very low target accuracy"
    assert not _claim(_result(ft=(0.03, 0.95), acc_isoc=0.4), "finetune_starts_low").holds  # 3% is not < -10%
    assert not _claim(_result(ft=(0.5, 0.95), acc_isoc=0.9), "finetune_starts_low").holds


# ---------------------------------------------------------------- metrics


def test_metrics_keys_and_values():
    r = _result()
    m = metrics(r)
    assert m["transfer_c_max_rel_change"] == pytest.approx(0.05)
    assert (m["final_acc_isoc"], m["final_acc_scratch"], m["final_acc_finetune"], m["finetune_initial_acc"]) == (
        0.9, 0.91, 0.95, 0.0)
    assert m["budget_updates"] == 66 and isinstance(m["budget_updates"], int)
    for key in ("geodesic/mixture", "geodesic/ot", "heuristic/mixture"):
        assert f"c_max_rel_change[{key}]" in m and f"final_acc[{key}]" in m and f"fallbacks[{key}]" in m
    assert m["fallbacks[heuristic/mixture]"] == 2 and m["final_acc[geodesic/ot]"] == 0.8
    path = m["paths"]["geodesic/mixture"]
    assert set(path) == {"t", "lam", "gamma", "rate", "distortion", "classification", "target_accuracy",
                         "classification_val", "raw_ce_train", "raw_ce_val", "label_entropy_val"}
    eq30 = m["eq30[geodesic/mixture]"]
    assert eq30["n_clipped_updates"] == 0 and eq30["slope"] == 1.0 and eq30["one_plus_k_lambda0"] == 1.25
    assert path["gamma"] == [8.0, 9.0, 10.0] and path["rate"] == pytest.approx([3.0, 3.02, 3.05], rel=1e-15)
    assert list(m["paths"]) == ["geodesic/mixture", "geodesic/ot", "heuristic/mixture"]


# ---------------------------------------------------------------- the configuration


def test_defaults_parameters_and_transfer_keys(tmp_path):
    cfg = Config(interpolations=["ot", "mixture"], data_root=str(tmp_path), scale="smoke")
    p = cfg.parameters()
    assert p["scale"] == "smoke" and p["interpolations"] == ["ot", "mixture"] and p["data_root"] == str(tmp_path)
    assert set(p) == set(Config.__dataclass_fields__)
    assert cfg.transfer_keys() == [("geodesic", "ot"), ("geodesic", "mixture"), ("repeat_equilibration", "ot")]
    t = cfg.transfer_config("geodesic", "ot")
    assert (t.steps, t.fd_equilibration.steps, t.equilibration.steps, t.max_rel_change) == (25, 24, 100, 1.0)
    assert (t.eq30_reading, t.slope_rule, t.c_measure) == ("derived", "endpoints_clamped", "excess")
    both = Config(methods=["heuristic", "repeat_equilibration"]).transfer_keys()
    assert both[2:] == [("heuristic", "mixture"), ("repeat_equilibration", "mixture")]
    assert cfg.baseline_config(66).steps == 66 and cfg.baseline_config(66).schedule == "cosine"


@pytest.mark.parametrize("name, value", [
    ("source_task", "mnist10k-0-99"), ("target_task", 3), ("head", "both"), ("model", "resnet"), ("encoder", "vit"),
    ("t_derivative", "backward"), ("scale", "huge"),
    ("interpolations", []), ("interpolations", "mixture"), ("interpolations", ["linear"]),
    ("interpolations", ["ot", "ot"]),
    ("n_per_class", 0), ("n_val_per_class", 2.5), ("source_steps", -1), ("batch_size", True), ("transfer_steps", 0),
    ("transfer_steps", 1), ("eq30_reading", "derivd"), ("slope_rule", "endpoint"), ("c_measure", "exces"),
    ("methods", ["repeat"]), ("methods", "heuristic"), ("controller_max_repeats", -1),
    ("controller_gamma_factor", 1.0), ("slope_margin", 0.0), ("eval_size", 0), ("probe_check_factor", 0),
    ("fd_steps", 0), ("equil_steps", 0), ("threads", 0),
    ("lam0", -1.0), ("gamma0", 0.0), ("train_lr", float("nan")), ("peak_lr", 0.0), ("max_condition", -1.0),
    ("max_rel_change", 0.0), ("c_tolerance", 0.0), ("scratch_margin", -0.1),
    ("fd_rel_lambda", 0.0), ("fd_rel_gamma", 1.0), ("fd_rel_gamma", 0.0),
    ("slope", float("inf")), ("slope", "steep"), ("slope", -4.0), ("lambda_rate", float("nan")),
    ("seed", -1), ("seed", 1.5),
    ("data_root", "/nonexistent/dir"), ("data_root", 3),
])
def test_config_rejects_bad_values_by_name(name, value):
    with pytest.raises(ValueError, match=name) as err:
        Config(**{name: value})
    assert "\n" not in str(err.value)


def test_config_needs_a_root_for_torchvision_datasets_and_one_dataset(tmp_path):
    with pytest.raises(ValueError, match="data_root is required"):
        Config(source_task="cifar10-vehicles", target_task="cifar10-animals-4", head="shared")
    Config(source_task="cifar10-vehicles", target_task="cifar10-animals-4", head="shared", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="source_task"):
        Config(source_task="mnist10k-0-4", target_task="cifar10-animals-4", data_root=str(tmp_path))
