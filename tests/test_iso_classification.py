"""Properties of ctd_lib.iso_classification: Lemma 3 checks, Eq. (31) and Remark 10."""
import numpy as np
import pytest
import torch

import ctd_lib.free_energy.iso_classification as iso
from ctd_lib.data import make_task
from ctd_lib.free_energy.equilibrate import EquilibrationConfig, array_sampler, train_equilibrium
from ctd_lib.free_energy.finite_differences import Partials, central_differences, finite_difference_partials
from ctd_lib.free_energy.functionals import FreeEnergyTerms, measure
from ctd_lib.free_energy.iso_classification import (
    IsoClassificationConfig,
    IsoClassificationResult,
    first_law_check,
    fixed_multiplier_control,
    fixed_multiplier_path,
    iso_c_max_rel_change,
    iso_classification,
    remark10_check,
)
from ctd_lib.free_energy.model import make_free_energy_model
from ctd_lib.free_energy.surface import SurfaceGrid, _subset, equilibrium_surface, lemma3_check

TINY = dict(hidden=32, latent=4, classifier_hidden=8)
FAST = EquilibrationConfig(steps=30, peak_lr=3e-3, batch_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return make_task("mnist10k-all", "train", n_per_class=20)  # 200 images


@pytest.fixture(scope="module")
def trained(task):
    """A tiny model trained at (lam, gamma) = (0.5, 4)."""
    m = make_free_energy_model("mnist", **TINY)
    train_equilibrium(m, array_sampler(task.x, task.y), 0.5, 4.0,
                      EquilibrationConfig(steps=60, peak_lr=3e-3, schedule="cosine", batch_size=32))
    return m


def synthetic_grid(kind: str, lambdas, gammas) -> SurfaceGrid:
    """Exact terms of a known F.

    "concave": F = 2 sqrt(lam) + 2 sqrt(gamma), the lower envelope of its tangent planes,
    so D = 1/sqrt(lam), C = 1/sqrt(gamma), R = F - lam D - gamma C = sqrt(lam) + sqrt(gamma).
    "convex": F = lam^2 + gamma^2 with D = 2 lam, C = 2 gamma, R = -(lam^2 + gamma^2): not a minimum
    of affine functions, every tangent plane lies below F.
    """
    def terms(lam, gam):
        if kind == "concave":
            d, c, r = lam ** -0.5, gam ** -0.5, lam ** 0.5 + gam ** 0.5
        else:
            d, c, r = 2 * lam, 2 * gam, -(lam ** 2 + gam ** 2)
        return FreeEnergyTerms(rate=r, distortion=d, classification=c, accuracy=1.0, n=1)

    rows = [[terms(lam, gam) for gam in gammas] for lam in lambdas]
    return SurfaceGrid(lambdas=np.asarray(lambdas, float), gammas=np.asarray(gammas, float), train=rows, val=rows)


# ---------------------------------------------------------------- Lemma 3


def test_lemma3_on_a_concave_free_energy():
    lambdas, gammas = np.linspace(0.5, 2.0, 16), np.geomspace(2.0, 20.0, 12)  # non-uniform gamma spacing
    grid = synthetic_grid("concave", lambdas, gammas)
    np.testing.assert_allclose(grid.F, 2 * np.sqrt(lambdas)[:, None] + 2 * np.sqrt(gammas)[None, :])
    check = lemma3_check(grid)
    assert check.n_pairs == (16 * 12) * (16 * 12 - 1)
    assert check.supporting_plane_violations == 0 and check.supporting_plane_max_rel_violation == 0.0
    # a concave F with F' = D: every secant lies between the derivatives at its ends
    assert check.secants_bracketed and check.n_lambda_secants == 15 * 12 and check.n_gamma_secants == 16 * 11
    assert check.lambda_secant_max_rel_violation == 0.0 and check.gamma_secant_max_rel_violation == 0.0
    np.testing.assert_allclose(check.secant_lambda[0], (grid.F[1] - grid.F[0]) / (lambdas[1] - lambdas[0]))
    assert check.hessian_eigenvalues.shape == (14 * 10, 2)
    assert check.hessian_negative_fraction == 1.0
    # exact second derivatives: -1/(2 lam^1.5) and -1/(2 gamma^1.5), no cross term
    assert np.all(check.hessian_eigenvalues < 0)
    np.testing.assert_allclose(check.cross_dC_dlambda, 0.0, atol=1e-12)
    np.testing.assert_allclose(check.cross_dD_dgamma, 0.0, atol=1e-12)


def test_lemma3_secants_catch_a_wrong_derivative():
    """D off by 20% at one point: the secant no longer lies between the neighbouring D values."""
    lambdas, gammas = np.linspace(0.5, 2.0, 4), np.array([2.0, 4.0, 8.0])
    grid = synthetic_grid("concave", lambdas, gammas)
    t = grid.train[1][1]
    grid.train[1][1] = FreeEnergyTerms(rate=t.rate - 0.2 * lambdas[1] * t.distortion, distortion=1.2 * t.distortion,
                                       classification=t.classification, accuracy=1.0, n=1)  # F unchanged
    np.testing.assert_allclose(grid.F, 2 * np.sqrt(lambdas)[:, None] + 2 * np.sqrt(gammas)[None, :])
    check = lemma3_check(grid)
    assert check.lambda_secants_bracketed == check.n_lambda_secants - 1
    assert check.gamma_secants_bracketed == check.n_gamma_secants and not check.secants_bracketed
    assert check.lambda_secant_max_rel_violation > 0.01  # 2.4% here
    assert lemma3_check(grid, tol=1.0).secants_bracketed


def test_lemma3_cross_differences_of_a_coupled_surface():
    """F = 2 sqrt(lam gamma): D = sqrt(gamma/lam), C = sqrt(lam/gamma), dC/dlam = dD/dgamma = 1/(2 sqrt(lam gamma))."""
    lambdas, gammas = np.linspace(1.0, 1.2, 3), np.linspace(4.0, 4.4, 3)
    rows = [[FreeEnergyTerms(rate=0.0, distortion=(g / l) ** 0.5, classification=(l / g) ** 0.5, accuracy=1.0, n=1)
             for g in gammas] for l in lambdas]
    grid = SurfaceGrid(lambdas=lambdas, gammas=gammas, train=rows, val=rows)
    check = lemma3_check(grid)
    exact = 1 / (2 * np.sqrt(lambdas[1] * gammas[1]))
    np.testing.assert_allclose(check.cross_dC_dlambda, [exact], rtol=2e-3)
    np.testing.assert_allclose(check.cross_dD_dgamma, [exact], rtol=2e-3)


def test_lemma3_flags_a_convex_free_energy():
    grid = synthetic_grid("convex", np.linspace(0.5, 2.0, 5), np.linspace(2.0, 10.0, 4))
    check = lemma3_check(grid)
    assert check.supporting_plane_violations == check.n_pairs  # every other model's plane is below F
    assert check.supporting_plane_max_rel_violation > 0
    assert check.hessian_negative_fraction == 0.0
    # D = 2 lam increases: each secant (2 lam + h) lies above D at its left end, outside the bracket
    assert check.lambda_secants_bracketed == 0 and check.gamma_secants_bracketed == 0
    assert lemma3_check(grid, tol=1e6).supporting_plane_violations == 0


def test_surface_grid_arrays():
    grid = synthetic_grid("concave", [1.0, 4.0], [1.0, 9.0, 16.0])
    np.testing.assert_allclose(grid.array("classification"), [[1, 1 / 3, 1 / 4]] * 2)
    np.testing.assert_allclose(grid.array("rate", "val")[1], [3, 5, 6])
    with pytest.raises(ValueError, match="name"):
        grid.array("entropy")
    with pytest.raises(ValueError, match="split"):
        grid.array("rate", "test")
    with pytest.raises(ValueError, match="at least 2"):
        lemma3_check(synthetic_grid("concave", [1.0], [1.0, 2.0]))


def test_equilibrium_surface_small(task):
    x, y, xv, yv = task.x[:120], task.y[:120], task.x[120:], task.y[120:]
    grid = equilibrium_surface(x, y, xv, yv, [0.5, 1.0], [2.0, 8.0], model_config=make_free_energy_model(
        "mnist", **TINY).config, train_config=EquilibrationConfig(steps=15, schedule="cosine", batch_size=32),
        n_z_measure=2, measure_size=60, show_progress=False)
    assert grid.F.shape == (2, 2) and len(grid.val) == 2 and grid.train[1][0].n == 60 and grid.val[0][1].n == 60
    assert np.all(np.isfinite(grid.F))
    check = lemma3_check(grid)
    assert check.n_pairs == 12 and check.hessian_eigenvalues.shape == (0, 2)
    assert np.isnan(check.hessian_negative_fraction)
    with pytest.raises(ValueError, match="keep_models"):
        grid.model(0.5, 2.0)


def test_equilibrium_surface_keeps_the_models_it_measured(task):
    x, y, xv, yv = task.x[:120], task.y[:120], task.x[120:], task.y[120:]
    grid = equilibrium_surface(x, y, xv, yv, [0.5, 1.0], [2.0, 8.0], model_config=make_free_energy_model(
        "mnist", **TINY).config, train_config=EquilibrationConfig(steps=10, schedule="cosine", batch_size=32),
        n_z_measure=2, measure_size=60, keep_models=True, show_progress=False)
    m = grid.model(1.0, 2.0)
    assert m is not grid.model(0.5, 2.0)
    xm, ym = _subset(x, y, 60, 0)  # the same seeded subset the grid measured on
    again = measure(m, xm, ym, n_z=2)
    assert again.rate == grid.train[1][0].rate and again.classification == grid.train[1][0].classification
    with pytest.raises(ValueError, match="not a point"):
        grid.model(0.7, 2.0)


@pytest.mark.parametrize("lambdas, gammas, match", [
    ([1.0, 0.5], [1.0, 2.0], "lambdas"), ([0.5, 0.5], [1.0, 2.0], "lambdas"), ([-0.5, 1.0], [1.0], "lambdas"),
    ([1.0], [2.0, 1.0], "gammas"), ([1.0], [-1.0], "gammas"), ([1.0], [], "gammas"),
])
def test_equilibrium_surface_rejects_bad_grids(task, lambdas, gammas, match):
    with pytest.raises(ValueError, match=match):
        equilibrium_surface(task.x, task.y, task.x, task.y, lambdas, gammas, model_config="mnist",
                            train_config=FAST)


# ---------------------------------------------------------------- finite differences and Eq. (31)


def test_finite_difference_partials(task, trained):
    before = [p.detach().clone() for p in trained.parameters()]
    p = finite_difference_partials(trained, array_sampler(task.x, task.y), task.x, task.y, 0.5, 4.0,
                                   h_lambda=0.25, h_gamma=3.0, equilibration=FAST, n_z_measure=4)
    assert all(torch.equal(a, b) for a, b in zip(before, trained.parameters()))  # probes work on copies
    assert p.n_probes == 4
    assert all(np.isfinite(v) for v in p.to_dict().values())
    # the transfer's optional t-partials stay unset here, and out of to_dict (its keys as before)
    assert not p.has_t and p.dC_dt is None and p.h_lambda is None
    assert set(p.to_dict()) == {"dR_dlambda", "dR_dgamma", "dD_dlambda", "dD_dgamma", "dC_dlambda", "dC_dgamma",
                                "n_probes"}
    # more weight on D lowers D; more weight on C lowers C (Lemma 3: d2F/dlam2, d2F/dgamma2 < 0)
    assert p.dD_dlambda < 0
    assert p.dC_dgamma < 0


@pytest.mark.parametrize("kw, match", [
    (dict(h_lambda=0.0, h_gamma=1.0), "h_lambda"), (dict(h_lambda=0.1, h_gamma=-1.0), "h_gamma"),
    (dict(h_lambda=0.6, h_gamma=1.0), "h_lambda"),
])
def test_finite_difference_partials_rejects_bad_widths(task, kw, match):
    with pytest.raises(ValueError, match=match):
        finite_difference_partials(None, None, task.x, task.y, 0.5, 4.0, equilibration=FAST, **kw)


@pytest.mark.parametrize("bad, match", [
    (dict(alpha=0), "alpha"), (dict(alpha=float("nan")), "alpha"), (dict(fd_rel_lambda=0), "fd_rel_lambda"),
    (dict(fd_rel_gamma=-0.1), "fd_rel_gamma"), (dict(fd_rel_gamma=1.0), "fd_rel_gamma"), (dict(steps=0), "steps"),
    (dict(dt=0), "dt"), (dict(fd_steps=0), "fd_steps"), (dict(step_rel=0.0), "step_rel"),
])
def test_bad_iso_config(bad, match):
    with pytest.raises(ValueError, match=match):
        IsoClassificationConfig(**bad)


def fixed_partials(dC_dlambda, dC_dgamma):
    def fake(*args, **kwargs):
        return Partials(dR_dlambda=0.0, dR_dgamma=0.0, dD_dlambda=0.0, dD_dgamma=0.0, dC_dlambda=dC_dlambda,
                        dC_dgamma=dC_dgamma, n_probes=4)
    return fake


def test_euler_steps_of_eq31(task, trained, monkeypatch):
    monkeypatch.setattr(iso, "finite_difference_partials", fixed_partials(0.02, -0.05))
    monkeypatch.setattr(iso, "equilibrate", lambda *a, **k: None)
    cfg = IsoClassificationConfig(steps=3, alpha=2.0, dt=0.5)
    res = iso_classification(trained, task.x, task.y, task.x, task.y, 0.5, 4.0, cfg, eval_size=50,
                             show_progress=False)
    # lambda_dot = -alpha dC/dgamma = 0.1, gamma_dot = alpha dC/dlambda = 0.04, dt = 0.5
    np.testing.assert_allclose(res.lam, [0.5, 0.55, 0.6, 0.65])
    np.testing.assert_allclose(res.gamma, [4.0, 4.02, 4.04, 4.06])
    assert res.n_clipped == 0 and len(res.partials) == 3
    # rescaled steps keep the direction and fix the largest relative change
    res = iso_classification(trained, task.x, task.y, task.x, task.y, 0.5, 4.0,
                             IsoClassificationConfig(steps=1, step_rel=0.2), eval_size=50)
    assert res.lam[1] == pytest.approx(0.6) and res.gamma[1] == pytest.approx(4.0 + 0.1 * 0.02 / 0.05)


def test_multipliers_are_clipped_and_counted(task, trained, monkeypatch):
    monkeypatch.setattr(iso, "finite_difference_partials", fixed_partials(-10.0, 10.0))
    monkeypatch.setattr(iso, "equilibrate", lambda *a, **k: None)
    with pytest.warns(RuntimeWarning, match="clipped"):
        res = iso_classification(trained, task.x, task.y, task.x, task.y, 0.5, 4.0,
                                 IsoClassificationConfig(steps=2), eval_size=50)
    assert res.n_clipped == 2 and np.all(res.lam > 0) and np.all(res.gamma > 0)
    assert res.lam[-1] == res.config["min_multiplier"]


def test_iso_classification_runs(task, trained):
    cfg = IsoClassificationConfig(steps=2, alpha=5.0, fd_steps=10,
                                  equilibration=EquilibrationConfig(steps=20, batch_size=32), n_z_measure=2)
    res = iso_classification(trained, task.x[:150], task.y[:150], task.x[150:], task.y[150:], 0.5, 4.0, cfg,
                             eval_size=100, show_progress=False)
    assert res.lam.shape == res.gamma.shape == res.free_energy.shape == (3,)
    assert len(res.train) == len(res.val) == 3 and len(res.partials) == 2
    assert np.all(res.lam > 0) and np.all(res.gamma > 0) and res.n_clipped == 0
    assert res.train[0].n == 100 and res.val[0].n == 50
    np.testing.assert_allclose(res.free_energy, res.array("rate") + res.lam * res.array("distortion")
                               + res.gamma * res.array("classification"))
    assert res.model is not trained and res.config["alpha"] == 5.0
    assert np.isfinite(remark10_check(res)) and iso_c_max_rel_change(res, "val") >= 0


def test_iso_classification_rejects_bad_start(task, trained):
    with pytest.raises(ValueError, match="lam0"):
        iso_classification(trained, task.x, task.y, task.x, task.y, 0.0, 4.0)
    with pytest.raises(ValueError, match="gamma0"):
        iso_classification(trained, task.x, task.y, task.x, task.y, 0.5, -4.0)
    with pytest.raises(ValueError, match="eval_size"):
        iso_classification(trained, task.x, task.y, task.x, task.y, 0.5, 4.0, eval_size=0)


def path_result(lam, R, D, C):
    terms = [FreeEnergyTerms(rate=r, distortion=d, classification=c, accuracy=1.0, n=1) for r, d, c in zip(R, D, C)]
    lam = np.asarray(lam, float)
    return IsoClassificationResult(lam=lam, gamma=np.ones_like(lam), train=terms, val=terms,
                                   free_energy=np.zeros_like(lam), partials=[], wall_time=0.0, config={})


def test_remark10_and_iso_c_on_known_paths():
    # R = -lam^2 / 2 ... use D = -lam and R = lam^2 / 2: dR = lam dlam = -lam dD, and the
    # midpoint rule is exact for this quadratic
    lam = np.array([0.5, 0.7, 1.0, 1.6])
    exact = path_result(lam, lam ** 2 / 2, -lam, [0.2, 0.2, 0.21, 0.19])
    assert remark10_check(exact) == pytest.approx(0.0, abs=1e-12)
    assert iso_c_max_rel_change(exact) == pytest.approx(0.05)
    wrong = path_result(lam, lam ** 2 / 2, +lam, [0.2] * 4)  # dR = +lam dD: maximal violation
    assert remark10_check(wrong) == pytest.approx(2.0)
    assert np.isnan(remark10_check(path_result(lam, [1.0] * 4, -lam, [0.2] * 4)))


def test_first_law_check_on_known_paths():
    # gamma = 1 in path_result; R = lam^2 / 2 - C and D = -lam give dR = -lam dD - gamma dC exactly
    # (the midpoint rule is exact for the quadratic), while Remark 10 alone misses the dC part
    lam = np.array([0.5, 0.7, 1.0, 1.6])
    C = np.array([0.2, 0.3, 0.25, 0.4])
    path = path_result(lam, lam ** 2 / 2 - C, -lam, C)
    assert first_law_check(path) == pytest.approx(0.0, abs=1e-12)
    assert remark10_check(path) > 0.1
    assert np.isnan(first_law_check(path_result(lam, [1.0] * 4, -lam, C)))


def test_fixed_multiplier_control_is_the_process_without_its_steps(task, trained, monkeypatch):
    """With zero partials Eq. (31) never moves (lam, gamma), so the process is its own control, exactly."""
    cfg = IsoClassificationConfig(steps=2, fd_steps=5, equilibration=EquilibrationConfig(steps=12, batch_size=32),
                                  n_z_measure=2)
    zero = Partials(dR_dlambda=0.0, dR_dgamma=0.0, dD_dlambda=0.0, dD_dgamma=0.0, dC_dlambda=0.0, dC_dgamma=0.0,
                    n_probes=0)
    monkeypatch.setattr(iso, "finite_difference_partials", lambda *a, **k: zero)
    x, y = task.x[:150], task.y[:150]
    res = iso_classification(trained, x, y, task.x[150:], task.y[150:], 0.5, 4.0, cfg, eval_size=100,
                             show_progress=False)
    control = fixed_multiplier_control(trained, x, y, 0.5, 4.0, cfg, eval_size=100)
    assert control.shape == (3,)
    np.testing.assert_array_equal(control, res.array("classification"))
    assert not np.all(control == control[0])  # the equilibrations did move C: the check is not vacuous
    path = fixed_multiplier_path(trained, x, y, 0.5, 4.0, cfg, x_val=task.x[150:], y_val=task.y[150:],
                                 eval_size=100)
    np.testing.assert_array_equal(path.array("classification"), control)
    np.testing.assert_array_equal(path.array("classification", "val"), res.array("classification", "val"))
    C = path.array("classification", "val")
    assert path.max_rel_change(split="val") == pytest.approx(np.max(np.abs(C - C[0])) / C[0])
    assert path.noise(split="val") == pytest.approx(np.std(C[1:], ddof=1) / C[0])
    with pytest.raises(ValueError, match="held-out"):
        fixed_multiplier_path(trained, x, y, 0.5, 4.0, cfg, eval_size=100).array("classification", "val")
    with pytest.raises(ValueError, match="gamma"):
        fixed_multiplier_control(trained, x, y, 0.5, -1.0, cfg)


def test_central_differences_are_exact_for_quadratic_terms_and_probe_in_order():
    calls = []

    def probe(lam, gamma):  # R = lam^2 + gamma, D = 3 lam gamma, C = gamma^2: central differences are exact
        calls.append((lam, gamma))
        return FreeEnergyTerms(rate=lam ** 2 + gamma, distortion=3 * lam * gamma, classification=gamma ** 2,
                               accuracy=1.0, n=1)

    d = central_differences(probe, 0.5, 2.0, 0.1, 0.25)
    assert calls == [(0.6, 2.0), (0.4, 2.0), (0.5, 2.25), (0.5, 1.75)]
    expected = dict(dR_dlambda=1.0, dR_dgamma=1.0, dD_dlambda=6.0, dD_dgamma=1.5, dC_dlambda=0.0, dC_dgamma=4.0)
    assert d.keys() == expected.keys()
    for k, v in expected.items():
        assert d[k] == pytest.approx(v, abs=1e-12), k


def test_max_rel_change_is_the_drift_from_the_first_value():
    """One definition for every "C held constant" check: max_k |x_k - x_0| / |x_0|, with x_0 = 0 handled."""
    from ctd_lib.free_energy.surface import max_rel_change

    assert max_rel_change([2.0, 2.5, 1.0, 2.2]) == 0.5
    assert max_rel_change([-4.0, -3.0]) == 0.25
    assert max_rel_change([3.0, 3.0]) == 0.0
    assert max_rel_change([0.0, 0.0]) == 0.0 and max_rel_change([0.0, 1e-9]) == float("inf")
