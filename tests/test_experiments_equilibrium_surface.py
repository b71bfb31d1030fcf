"""Chapter 5's experiment module: the configuration's checks, the iso-run summary, metrics and the claims.

Every claim is evaluated on a hand-built result for which it must hold and on one for which it must fail,
so no verdict can be a constant. Nothing here trains a model.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from ctd_lib.experiments.equilibrium_surface import (
    EquilibriumChange,
    EquilibriumSurfaceConfig,
    EquilibriumSurfaceResult,
    IsoRun,
    claims,
    iso_run,
    metrics,
)
from ctd_lib.free_energy import (
    FixedMultiplierPath,
    FreeEnergyTerms,
    IsoClassificationResult,
    Lemma3Check,
    Partials,
    SurfaceGrid,
)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_equilibrium_surface.py"


def _terms(R, D, C, acc=0.9) -> FreeEnergyTerms:
    return FreeEnergyTerms(rate=float(R), distortion=float(D), classification=float(C), accuracy=acc, n=10)


def _grid() -> SurfaceGrid:
    lambdas, gammas = np.array([0.25, 0.5, 1.0]), np.array([2.0, 4.0, 8.0])
    train = [[_terms(5 + 4 * lam + g / 4, 40 - 10 * lam, 1.0 / g) for g in gammas] for lam in lambdas]
    val = [[_terms(t.rate, t.distortion, 1.1 * t.classification, 0.8) for t in row] for row in train]
    return SurfaceGrid(lambdas=lambdas, gammas=gammas, train=train, val=val)


def _lemma3(**changes) -> Lemma3Check:
    base = Lemma3Check(supporting_plane_violations=0, supporting_plane_max_rel_violation=0.0, n_pairs=72,
                       secant_lambda=np.zeros((2, 3)), secant_gamma=np.zeros((3, 2)), lambda_secants_bracketed=6,
                       gamma_secants_bracketed=6, lambda_secant_max_rel_violation=0.0,
                       gamma_secant_max_rel_violation=0.0, cross_dC_dlambda=np.array([-0.2]),
                       cross_dD_dgamma=np.array([-0.21]), hessian_eigenvalues=np.array([[-2.0, -1.0]]),
                       hessian_negative_fraction=1.0)
    return dataclasses.replace(base, **changes)


PARTIALS = Partials(dR_dlambda=1.0, dR_dgamma=0.1, dD_dlambda=-2.0, dD_dgamma=0.2, dC_dlambda=0.19,
                    dC_dgamma=-0.05, n_probes=4)


def _process(lam=(0.25, 0.35, 0.45), R=(1.0, 1.3, 1.7), D=(10.0, 9.0, 8.0), C=(0.5, 0.5, 0.5),
             C_val=(0.6, 0.62, 0.63), partials=None) -> IsoClassificationResult:
    lam, gamma = np.array(lam), np.full(len(lam), 4.0)
    train = [_terms(r, d, c) for r, d, c in zip(R, D, C)]
    val = [_terms(r, d, c, 0.8) for r, d, c in zip(R, D, C_val)]
    partials = partials or [PARTIALS] * (len(lam) - 1)
    free = np.array([t.free_energy(l_, g_) for t, l_, g_ in zip(train, lam, gamma)])
    return IsoClassificationResult(lam=lam, gamma=gamma, train=train, val=val, free_energy=free,
                                   partials=partials, wall_time=0.0, config={"alpha": 1.0})


def _control(C=(0.5, 0.55, 0.6), C_val=(0.6, 0.6, 0.6)) -> FixedMultiplierPath:
    return FixedMultiplierPath(lam=0.25, gamma=4.0, train=[_terms(1.0, 10.0, c) for c in C],
                               val=[_terms(1.0, 10.0, c) for c in C_val])


def _iso(start=(0.25, 4.0), **changes) -> IsoRun:
    base = IsoRun(start=start, c_change=0.01, c_change_val=0.02, c_change_control=0.03, c_change_control_val=0.015,
                  c_noise_control_val=0.005, c_vs_control=0.01, dR=0.7, dD=-2.0, remark10=0.02, first_law=0.01,
                  lam_end=0.45, gam_end=start[1] + 1.0, symmetry=np.array([0.05, 0.1]), n_concave=2,
                  lam_gamma_turns=0.25, process=_process(), control=_control())
    return dataclasses.replace(base, **changes)


def _result(iso=None, lemma3=None, rel_change=0.01, **config) -> EquilibriumSurfaceResult:
    change = EquilibriumChange(before=(0.5, 2.0), after=(0.51, 2.08), F_before=100.0, F_after=100.0 + 100 * rel_change,
                               F_before_at_new=101.0, rel_change=rel_change)
    return EquilibriumSurfaceResult(config=EquilibriumSurfaceConfig(**config), n_train=100, n_val=50, grid=_grid(),
                                    lemma3=lemma3 or _lemma3(), change=change,
                                    iso=tuple(iso) if iso is not None else (_iso(), _iso(start=(0.25, 8.0))))


def _claim(result, claim_id):
    (c,) = [c for c in claims(result) if c.id == claim_id]
    return c


# ----------------------------------------------------------------------------
# claims: one result that holds, one that fails
# ----------------------------------------------------------------------------


def test_claims_all_hold_on_a_good_result_and_have_the_notebooks_ids():
    cs = claims(_result())
    assert [c.id for c in cs] == ["iso_c_constant", "rate_up_distortion_down", "remark10_relation",
                                  "multipliers_rise", "free_energy_concave", "derivatives_of_F",
                                  "hessian_symmetric", "equilibration_keeps_F"]
    assert all(c.holds is True for c in cs)


def test_iso_c_constant_is_judged_on_held_out_C_with_the_control_beside_it():
    good = _claim(_result(), "iso_c_constant")
    assert good.holds and good.evidence == (
        "largest relative change of the held-out C over 2 runs of 8 steps: 2.0% (tolerance 5%); training C: 1.0%; "
        "the same equilibrations at fixed multipliers move the held-out C by up to 1.5% (training 3.0%; SGD noise "
        "floor of the held-out C 0.5%)")
    bad = _claim(_result(iso=[_iso(), _iso(c_change_val=0.2)]), "iso_c_constant")
    assert not bad.holds and "20.0%" in bad.evidence
    assert _claim(_result(iso=[_iso(), _iso(c_change=0.2)]), "iso_c_constant").holds  # training C alone: no verdict
    assert not _claim(_result(iso_c_tolerance=0.005), "iso_c_constant").holds


def test_multipliers_rise_holds_and_fails():
    good = _claim(_result(), "multipliers_rise")
    assert good.holds and good.evidence == ("(0.25, 4.0) -> (0.45, 5); (0.25, 8.0) -> (0.45, 9); lambda covered "
                                            "[0.25, 0.45]; gamma-dot first turns positive at lambda = 0.25")
    falling = _claim(_result(iso=[_iso(), _iso(start=(0.25, 8.0), gam_end=7.0, lam_gamma_turns=None)]),
                     "multipliers_rise")
    assert not falling.holds
    never = _claim(_result(iso=[_iso(gam_end=3.0, lam_gamma_turns=None)]), "multipliers_rise")
    assert not never.holds and "gamma-dot is negative at every step" in never.evidence
    assert not _claim(_result(iso=[_iso(lam_end=0.2)]), "multipliers_rise").holds


def test_hessian_symmetric_holds_and_fails():
    good = _claim(_result(), "hessian_symmetric")
    assert good.holds and good.evidence == ("largest relative difference over 4 probed steps 10.0% (tolerance 25%), "
                                            "median 7.5%, within tolerance at 4 of 4; on the grid's interior: "
                                            "-0.2 vs -0.21")
    bad = _claim(_result(iso=[_iso(), _iso(symmetry=np.array([0.05, 0.4]))]), "hessian_symmetric")
    assert not bad.holds and "40.0%" in bad.evidence and "within tolerance at 3 of 4" in bad.evidence
    assert not _claim(_result(symmetry_tolerance=0.08), "hessian_symmetric").holds


def test_rate_up_distortion_down_holds_and_fails():
    good = _claim(_result(), "rate_up_distortion_down")
    assert good.holds and good.evidence == "start (0.25, 4.0): R +0.70, D -2.00; start (0.25, 8.0): R +0.70, D -2.00"
    assert not _claim(_result(iso=[_iso(), _iso(dR=-0.1)]), "rate_up_distortion_down").holds
    assert not _claim(_result(iso=[_iso(dD=0.5)]), "rate_up_distortion_down").holds


def test_remark10_relation_holds_and_fails():
    good = _claim(_result(), "remark10_relation")
    assert good.holds and good.evidence == ("|sum(dR + lambda dD)| / sum|dR| = 2.0% at worst (tolerance 10%); "
                                            "with the gamma dC term (Eq. 7) 1.0%")
    assert not _claim(_result(iso=[_iso(), _iso(remark10=0.3)]), "remark10_relation").holds


def test_free_energy_concave_holds_and_fails():
    good = _claim(_result(), "free_energy_concave")
    assert good.holds and good.evidence.startswith("0 of 72 supporting-plane inequalities violated (largest 0.00%)")
    assert not _claim(_result(lemma3=_lemma3(supporting_plane_violations=3,
                                             supporting_plane_max_rel_violation=0.01)), "free_energy_concave").holds
    assert not _claim(_result(lemma3=_lemma3(hessian_negative_fraction=0.5)), "free_energy_concave").holds
    assert good.evidence.endswith("at 4 of 4 probed steps of the iso runs")
    assert not _claim(_result(iso=[_iso(), _iso(n_concave=1)]), "free_energy_concave").holds


def test_derivatives_of_F_holds_and_fails():
    good = _claim(_result(), "derivatives_of_F")
    assert good.holds and good.evidence == ("secants of F between the neighbouring derivatives: 6 of 6 along lambda "
                                            "(D), 6 of 6 along gamma (C); largest excursions 0.00% and 0.00%")
    assert not _claim(_result(lemma3=_lemma3(gamma_secants_bracketed=5)), "derivatives_of_F").holds
    assert not _claim(_result(lemma3=_lemma3(lambda_secants_bracketed=0)), "derivatives_of_F").holds


def test_equilibration_keeps_F_holds_and_fails():
    good = _claim(_result(), "equilibration_keeps_F")
    assert good.holds and good.evidence == ("(0.5, 2) to (0.51, 2.08): F 100.00 to 101.00, relative change 1.00% "
                                            "(tolerance 5%)")
    assert not _claim(_result(rel_change=0.1), "equilibration_keeps_F").holds


# ----------------------------------------------------------------------------
# the iso-run summary and the metrics
# ----------------------------------------------------------------------------


def test_iso_run_summary_of_an_exact_iso_classification_path():
    # dR_k = -lambda_mid_k dD_k exactly (mids 0.3, 0.4; dD = -1, -1), C constant: Remark 10 and Eq. 7 exact
    run = iso_run((0.25, 4.0), _process(), _control(C=(0.5, 0.55, 0.6), C_val=(0.6, 0.66, 0.63)))
    assert run.c_change == 0.0 and run.remark10 == pytest.approx(0.0, abs=1e-12)
    assert run.first_law == pytest.approx(0.0, abs=1e-12)
    assert run.dR == pytest.approx(0.7) and run.dD == pytest.approx(-2.0)
    assert run.c_change_val == pytest.approx(0.05)
    assert run.c_change_control == pytest.approx(0.2) and run.c_vs_control == pytest.approx(0.1 / 0.6)
    assert run.c_change_control_val == pytest.approx(0.1)
    assert run.c_noise_control_val == pytest.approx(np.std([0.66, 0.63], ddof=1) / 0.6)
    assert (run.lam_end, run.gam_end) == (0.45, 4.0)
    # dC/dlambda = 0.19 against dD/dgamma = 0.2; Hessian [[-2, 0.195], [0.195, -0.05]] has det > 0: concave
    np.testing.assert_allclose(run.symmetry, [0.05, 0.05])
    assert run.n_concave == 2 and run.lam_gamma_turns == 0.25 and run.steps == 2
    off = iso_run((0.25, 4.0), _process(R=(1.0, 1.5, 2.0)), _control())
    assert off.remark10 > 0.1  # the check can fail
    # a saddle (det < 0) at the second step, and dC/dlambda < 0 first (gamma falls), then > 0 (gamma turns up)
    saddle = dataclasses.replace(PARTIALS, dC_dlambda=0.5, dD_dgamma=0.5)
    falling = dataclasses.replace(PARTIALS, dC_dlambda=-0.19, dD_dgamma=-0.2)
    mixed = iso_run((0.25, 4.0), _process(partials=[falling, saddle]), _control())
    assert mixed.n_concave == 1 and mixed.lam_gamma_turns == pytest.approx(0.35)


def test_metrics_of_a_hand_built_result():
    result = _result(iso=[_iso(c_change=0.04, c_change_val=0.05, c_change_control=0.06, c_vs_control=0.07,
                               remark10=0.08, first_law=0.09), _iso()])
    m = metrics(result)
    assert (m["iso_c_max_rel_change"], m["iso_c_max_rel_change_val"], m["iso_c_max_rel_change_fixed_multipliers"],
            m["iso_c_max_rel_diff_vs_fixed_multipliers"], m["remark10_rel_err"], m["first_law_rel_err"]) == (
        0.04, 0.05, 0.06, 0.07, 0.08, 0.09)
    assert m["lambda_secants_bracketed"] == 6 and m["n_lambda_secants"] == 6 and m["supporting_plane_violations"] == 0
    assert m["iso_c_max_rel_change_fixed_multipliers_val"] == 0.015 and m["iso_c_noise_floor_val"] == 0.005
    assert m["symmetry_max_rel_diff"] == 0.1 and m["probed_hessian_concave_steps"] == m["n_probed_steps"] == 4
    assert m["iso_paths"][0]["control_classification_val"] == [0.6, 0.6, 0.6]
    assert m["iso_paths"][0]["dC_dlambda"] == [0.19, 0.19] and m["iso_lambda_range"] == [0.25, 0.45]
    assert m["hessian_negative_fraction"] == 1.0 and m["equilibration_F_rel_change"] == 0.01
    np.testing.assert_allclose(m["grid_distortion"][:, 0], [37.5, 35.0, 30.0])
    np.testing.assert_allclose(m["grid_free_energy"], result.grid.F)
    assert len(m["iso_paths"]) == 2 and m["iso_paths"][0]["rate"] == [1.0, 1.3, 1.7]
    assert m["iso_paths"][0]["classification_val"] == [0.6, 0.62, 0.63]
    dl, dg = result.dC_partials()
    assert dl.shape == dg.shape == (4,) and result.n_rd_ok == 2


# ----------------------------------------------------------------------------
# the configuration
# ----------------------------------------------------------------------------


def test_defaults_are_the_notebooks_parameters_cell():
    text = NOTEBOOK.read_text()
    cell = re.search(r'# %% tags=\["parameters"\]\n(.*?)\n# %%', text, re.S).group(1)
    values: dict = {}
    exec(cell, {}, values)  # the cell is literals only
    values.pop("results_dir")
    assert EquilibriumSurfaceConfig().parameters() == values


def test_parameters_are_plain_lists_and_contain_scale():
    p = EquilibriumSurfaceConfig(iso_starts=[[0.25, 4.0]], scale="smoke").parameters()
    assert p["scale"] == "smoke" and p["iso_starts"] == [[0.25, 4.0]] and p["lambdas"] == [0.25, 0.5, 1.0]
    assert EquilibriumSurfaceConfig(step_rel=None).step_rel is None


@pytest.mark.parametrize(
    "name, value",
    [
        ("n_per_class", 0), ("n_val_per_class", -1), ("train_steps", 1.5), ("parent_steps", 0),
        ("grid_start", "parnet"), ("parent_point", [0.5]), ("parent_point", [[0.5, 4.0]]), ("parent_point", [0.0, 4.0]),
        ("symmetry_tolerance", -0.1), ("iso_eval_size", 0), ("fd_steps", -5), ("batch_size", 0), ("n_z", 0),
        ("n_z_measure", True), ("iso_steps", 0), ("fd_steps", 0), ("equil_steps", 0), ("threads", 0),
        ("train_lr", -1e-3), ("peak_lr", 0.0), ("dt", float("inf")), ("iso_c_tolerance", 0),
        ("derivative_tolerance", "0.1"), ("step_rel", 0.0), ("fd_rel_lambda", 0.0), ("fd_rel_gamma", 1.0),
        ("lambdas", [0.5, 0.25, 1.0]), ("lambdas", [0.25, 0.5]), ("gammas", [-1.0, 2.0, 4.0]), ("gammas", "248"),
        ("iso_starts", [[-0.25, 4.0]]), ("iso_starts", [[0.0, 4.0]]), ("iso_starts", []), ("iso_starts", [[0.25]]),
        ("equilibrium_change", [[0.5, 2.0]]), ("equilibrium_change", [[0.5, 2.0], [0.5, -1.0]]),
        ("alpha", 0.0), ("alpha", float("nan")), ("marginal", "laplace"), ("decoder", "poisson"),
        ("seed", -1), ("seed", 0.5), ("scale", "huge"),
    ],
)
def test_config_rejects_a_bad_value_naming_the_parameter(name, value):
    with pytest.raises(ValueError, match=rf"^{name}=") as err:
        EquilibriumSurfaceConfig(**{name: value})
    assert "\n" not in str(err.value)
