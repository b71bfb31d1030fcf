"""Tests of ctd_lib.iso_transfer: the iso-classification transfer of Sec. 4 of [Gao & Chaudhari 2020].

Most tests run on small synthetic tasks (8x8 images, a 16-unit model) so that
a whole transfer takes well under a second; one test uses real mnist10k digits
(a shared 10-way head) and one the CIFAR-10 code path on a small file in
torchvision's format. Tolerances are stated next to each comparison.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from ctd_lib.data import Task, TaskSpec, make_task
from ctd_lib.free_energy import iso_transfer as IT
from ctd_lib.free_energy.equilibrate import EquilibrationConfig, array_sampler, train_equilibrium
from ctd_lib.free_energy.finite_differences import Partials
from ctd_lib.free_energy.functionals import FreeEnergyTerms, hamiltonian_loss, measure
from ctd_lib.free_energy.iso_transfer import (
    IsoTransferConfig,
    StepSolution,
    TaskPath,
    TransferPartials,
    iso_transfer,
    solve_step,
    transfer_budget,
)
from ctd_lib.free_energy.model import make_free_energy_model
from ctd_lib.free_energy.transfer_baselines import finetune_baseline, scratch_baseline

SHAPE = (1, 8, 8)
NUM_CLASSES = 4
TINY = dict(steps=2, fd_equilibration=EquilibrationConfig(steps=10), equilibration=EquilibrationConfig(steps=20),
            eval_size=40, n_z_measure=2)


def _task(name: str, labels, n_per_class: int, seed: int, shape=SHAPE, num_classes=NUM_CLASSES) -> Task:
    """Blobs: class c is a bright square at a class-specific place plus noise, so classes are learnable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels).repeat_interleave(n_per_class)
    x = 0.2 * torch.rand((len(y), *shape), generator=g)
    for k, c in enumerate(y.tolist()):
        r, col = 2 * (c // 2), 2 * (c % 2) + (4 if c >= 2 else 0)
        x[k, :, r : r + 3, col : col + 3] += 0.7
    return Task(name=name, x=x.clamp(0, 1), y=y, classes=tuple(labels), num_classes=num_classes,
                input_shape=tuple(shape))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tasks():
    return dict(source=_task("src", [0, 1], 25, 1), target=_task("tgt", [2, 3], 25, 2),
                source_val=_task("src-val", [0, 1], 10, 3), target_val=_task("tgt-val", [2, 3], 10, 4))


@pytest.fixture(scope="module")
def source_model(tasks):
    m = make_free_energy_model("mnist", input_shape=SHAPE, hidden=16, latent=4, classifier_hidden=0,
                               num_classes=NUM_CLASSES)
    train_equilibrium(m, array_sampler(tasks["source"].x, tasks["source"].y), 0.25, 8.0,
                      EquilibrationConfig(steps=150, peak_lr=3e-3, schedule="cosine"))
    return m


def _run(model, tasks, **kw):
    return iso_transfer(model, tasks["source"], tasks["target"], tasks["source_val"], tasks["target_val"],
                        kw.pop("lam0", 0.25), kw.pop("gamma0", 8.0), IsoTransferConfig(**{**TINY, **kw}))


def _partials(**kw) -> TransferPartials:
    base = dict(dR_dlambda=1.0, dR_dgamma=0.1, dD_dlambda=-2.0, dD_dgamma=-0.2, dC_dlambda=-0.1, dC_dgamma=-0.05,
                n_probes=6, dR_dt=-1.0, dD_dt=2.0, dC_dt=0.5, h_lambda=0.025, h_gamma=0.8, dt=0.5)
    return TransferPartials(**{**base, **kw})


# ---------------------------------------------------------------- the transfer


@pytest.mark.parametrize("interpolation", ["mixture", "ot"])
def test_result_shapes_times_and_bounds(source_model, tasks, interpolation):
    r = _run(source_model, tasks, interpolation=interpolation)
    n = TINY["steps"] + 1
    for a in (r.t, r.lam, r.gamma, r.val_accuracy, r.target_accuracy, r.free_energy):
        assert a.shape == (n,) and np.isfinite(a).all()
    assert len(r.train) == len(r.val) == n and len(r.systems) == n - 1
    np.testing.assert_allclose(r.t, np.linspace(0, 1, n), rtol=0, atol=1e-15)
    assert r.lam[0] == 0.25 and r.gamma[0] == 8.0
    assert (r.lam >= 1e-3).all() and (r.gamma >= 1e-3).all()
    for name in ("rate", "distortion", "classification", "accuracy", "free_energy"):
        assert r.array(name).shape == (n,) and r.array(name, "val").shape == (n,)
    np.testing.assert_allclose(r.free_energy, r.array("free_energy"), rtol=1e-12)
    c = r.array("classification")
    assert r.c_max_rel_change == pytest.approx(np.max(np.abs(c - c[0])) / c[0], rel=1e-12)
    assert IT.c_max_rel_change(r, split="val") == r.max_rel_change("classification", "val")
    assert r.config["budget"] == transfer_budget(IsoTransferConfig(**{**TINY, "interpolation": interpolation}))
    assert r.slope is not None and np.isfinite(r.slope) and r.config["slope_from"].startswith("endpoints")
    assert 1 + r.slope * 0.25 >= 0.5 - 1e-12  # the clamped endpoint rule (slope_margin 0.5)
    assert r.n_updates == r.config["budget"]  # every update counted
    # the caller's model is untouched (the transfer works on a copy)
    assert r.model is not source_model


def test_deterministic_given_seed(source_model, tasks):
    a, b = _run(source_model, tasks), _run(source_model, tasks)
    np.testing.assert_array_equal(a.lam, b.lam)
    np.testing.assert_array_equal(a.gamma, b.gamma)
    assert a.train == b.train and a.val == b.val
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    c = _run(source_model, tasks, seed=1)
    assert not np.array_equal(a.array("classification"), c.array("classification"))


def test_budget_counts_every_update(source_model, tasks, monkeypatch):
    """transfer_budget equals the mini-batch updates the transfer actually takes."""
    taken = []
    real = IT.equilibrate

    def counting(model, sampler, lam, gamma, config=None, **kw):
        taken.append(config.steps)
        return real(model, sampler, lam, gamma, config, **kw)

    monkeypatch.setattr(IT, "equilibrate", counting)
    for kw in (dict(), dict(t_derivative="frozen"), dict(method="heuristic"), dict(slope=-2.0),
               dict(slope_equilibration=EquilibrationConfig(steps=7))):
        taken.clear()
        _run(source_model, tasks, **kw)
        assert sum(taken) == transfer_budget(IsoTransferConfig(**{**TINY, **kw}))


def test_heuristic_with_zero_lambda_rate_keeps_lambda(source_model, tasks):
    r = _run(source_model, tasks, method="heuristic", lambda_rate=0.0)
    np.testing.assert_array_equal(r.lam, np.full(3, 0.25))
    assert r.slope is None and all(s.method_used in ("heuristic", "hold") for s in r.systems)


def test_heuristic_zero_time_derivative_keeps_multipliers(source_model, tasks, monkeypatch):
    monkeypatch.setattr(IT, "transfer_partials", lambda *a, **k: _partials(dC_dt=0.0))
    r = _run(source_model, tasks, method="heuristic", lambda_rate=0.0)
    np.testing.assert_array_equal(r.lam, [0.25] * 3)
    np.testing.assert_array_equal(r.gamma, [8.0] * 3)
    assert r.n_fallbacks == 0 and r.n_clips == 0


def test_heuristic_rates_follow_eq38(source_model, tasks, monkeypatch):
    """gamma-dot = -(C_lambda lambda-dot + C_t) / C_gamma, applied over dt = 1/2 (exact to rounding)."""
    p = _partials(dC_dlambda=-0.1, dC_dgamma=-0.05, dC_dt=0.1)
    monkeypatch.setattr(IT, "transfer_partials", lambda *a, **k: p)
    r = _run(source_model, tasks, method="heuristic", lambda_rate=0.2, max_rel_change=None)
    gdot = -(p.dC_dlambda * 0.2 + p.dC_dt) / p.dC_dgamma
    np.testing.assert_allclose(r.lam, 0.25 + 0.2 * np.array([0, 0.5, 1.0]), rtol=1e-12)
    np.testing.assert_allclose(r.gamma, 8.0 + gdot * np.array([0, 0.5, 1.0]), rtol=1e-12)


def test_singular_system_falls_back_warns_and_counts(source_model, tasks, monkeypatch):
    p = _partials(dD_dlambda=1.0, dD_dgamma=2.0, dC_dlambda=0.5, dC_dgamma=1.0, dC_dt=-0.5)  # rank 1
    monkeypatch.setattr(IT, "transfer_partials", lambda *a, **k: p)
    with pytest.warns(RuntimeWarning, match="condition number"):
        r = _run(source_model, tasks, slope=-1.0, max_rel_change=None)
    assert r.n_fallbacks == 2 and [s for s, _ in r.fallbacks] == [0, 1]
    assert all(s.method_used == "heuristic-fallback" for s in r.systems)
    assert all(s.cond > 1e6 for s in r.systems)
    np.testing.assert_array_equal(r.lam, [0.25] * 3)  # the fallback's lambda-dot is 0
    np.testing.assert_allclose(r.gamma, 8.0 + 0.5 * np.array([0, 0.5, 1.0]), rtol=1e-12)  # -C_t / C_gamma = 0.5
    assert np.isfinite(r.free_energy).all()


def test_degenerate_system_holds_the_multipliers(source_model, tasks, monkeypatch):
    p = _partials(dD_dlambda=0.0, dD_dgamma=0.0, dC_dlambda=0.0, dC_dgamma=0.0)
    monkeypatch.setattr(IT, "transfer_partials", lambda *a, **k: p)
    with pytest.warns(RuntimeWarning, match="kept"):
        r = _run(source_model, tasks, slope=-1.0)
    assert r.n_fallbacks == 2 and all(s.method_used == "hold" for s in r.systems)
    np.testing.assert_array_equal(r.lam, [0.25] * 3)
    np.testing.assert_array_equal(r.gamma, [8.0] * 3)
    with pytest.warns(RuntimeWarning, match="dC/dgamma"):
        r = _run(source_model, tasks, method="heuristic")
    assert r.n_fallbacks == 2 and np.isfinite(r.gamma).all()


def test_trust_region_and_floor_clip_and_count(source_model, tasks, monkeypatch):
    monkeypatch.setattr(IT, "transfer_partials", lambda *a, **k: _partials(dC_dgamma=-1e-3, dC_dt=10.0))
    r = _run(source_model, tasks, method="heuristic", lambda_rate=-100.0, min_multiplier=0.05)
    # gamma-dot = -(-0.1 * -100 + 10) / -1e-3 = 20000: clipped to x1.5 per step; lambda-dot = -100 to /1.5
    np.testing.assert_allclose(r.gamma, [8.0, 12.0, 18.0], rtol=1e-12)
    np.testing.assert_allclose(r.lam, [0.25, 0.25 / 1.5, 0.25 / 2.25], rtol=1e-12)
    assert r.n_clips == 4
    r = _run(source_model, tasks, method="heuristic", lambda_rate=-100.0, min_multiplier=0.2)
    np.testing.assert_allclose(r.lam, [0.25, 0.2, 0.2], rtol=1e-12)  # 0.25 / 1.5 < 0.2: floored
    assert r.n_clips == 4  # one count per clipped multiplier update, whether trust region, floor or both
    # the count is the number of updates whose applied rate differs from the unclipped solution
    changed = sum(int(not np.isclose(a, u, rtol=1e-12, atol=0)) for s in r.systems
                  for a, u in zip(s.applied, s.solution))
    assert r.n_clipped_updates == r.n_clips == changed
    np.testing.assert_allclose(r.unclipped_rates[:, 0], [-100.0, -100.0])  # the solution before the clip


# ---------------------------------------------------------------- the linear system


def test_geodesic_solution_satisfies_eq30():
    p = _partials()
    k, lam = -0.7, 0.4
    s = solve_step(p, lam, method="geodesic", slope=k, reading="fixed_multipliers")
    A = np.array([[p.dD_dlambda, p.dD_dgamma], [p.dC_dlambda, p.dC_dgamma]])
    b = np.array([k * p.dR_dt / (1 + k * lam) - p.dD_dt, -p.dC_dt])
    np.testing.assert_allclose(A @ s.solution, b, rtol=1e-12, atol=1e-12)
    assert s.method_used == "geodesic" and s.reason is None
    assert s.cond == pytest.approx(np.linalg.cond(A), rel=1e-12)
    # the iso-classification row: C_lambda lambda-dot + C_gamma gamma-dot + C_t = 0
    assert p.dC_dlambda * s.solution[0] + p.dC_dgamma * s.solution[1] + p.dC_dt == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 8.0, 25.0])
def test_derived_reading_puts_dR_dt_at_fixed_D_and_C_in_row_1(gamma):
    """Sec. 4.3: R-dot = -lam D-dot + dR/dt|_{D,C}; with dR/dD = -lam, dR/dC = -gamma (Eq. 29) that partial is
    R_t + lam D_t + gamma C_t of the partials at fixed multipliers."""
    p = _partials()
    k, lam = -0.7, 0.4
    s = solve_step(p, lam, method="geodesic", slope=k, gamma=gamma)
    rho = p.dR_dt + lam * p.dD_dt + gamma * p.dC_dt
    assert s.reading == "derived" and s.rate_partial == pytest.approx(rho, rel=1e-14)
    np.testing.assert_allclose(s.rhs, [k * rho / (1 + k * lam) - p.dD_dt, -p.dC_dt], rtol=1e-12)
    A = np.array([[p.dD_dlambda, p.dD_dgamma], [p.dC_dlambda, p.dC_dgamma]])
    np.testing.assert_allclose(A @ s.solution, s.rhs, rtol=1e-12, atol=1e-12)
    fixed = solve_step(p, lam, method="geodesic", slope=k, gamma=gamma, reading="fixed_multipliers")
    assert fixed.rate_partial == p.dR_dt
    # the two readings differ unless lam D_t + gamma C_t = 0 (here D_t = 2, C_t = 0.5: never)
    assert not np.allclose(fixed.solution, s.solution)
    with pytest.raises(ValueError, match="gamma"):
        solve_step(p, lam, method="geodesic", slope=k)
    with pytest.raises(ValueError, match="reading"):
        solve_step(p, lam, method="geodesic", slope=k, gamma=gamma, reading="derivd")


def test_min_denominator_falls_back_near_the_singular_slope():
    # 1 + k lam = 1 - 0.97 = 0.03 < 0.05: Eq. (30) would divide by ~0
    s = solve_step(_partials(), 0.5, method="geodesic", slope=-1.94, gamma=8.0, min_denominator=0.05)
    assert s.method_used == "heuristic-fallback" and "min_denominator" in s.reason
    s = solve_step(_partials(), 0.5, method="geodesic", slope=-1.94, gamma=8.0, min_denominator=0.01)
    assert s.method_used == "geodesic"


def test_geodesic_fallbacks():
    s = solve_step(_partials(), 0.5, method="geodesic", slope=-2.0, gamma=8.0)  # 1 + k lambda = 0
    assert s.method_used == "heuristic-fallback" and "1 + k lambda" in s.reason
    s = solve_step(_partials(), 0.5, method="geodesic", slope=1.0, max_condition=1.0, gamma=8.0)  # every matrix has cond >= 1
    assert s.method_used == "heuristic-fallback" and "max_condition" in s.reason
    assert s.solution[0] == 0 and s.solution[1] == pytest.approx(-0.5 / -0.05)
    s = solve_step(_partials(dC_dgamma=float("nan")), 0.5, method="geodesic", slope=1.0, gamma=8.0)
    assert s.method_used == "hold" and np.array_equal(s.solution, [0.0, 0.0])



def test_step_solution_is_typed_and_needs_the_t_partials():
    s = solve_step(_partials(), 0.4, method="geodesic", slope=-0.7, gamma=8.0)
    assert isinstance(s, StepSolution) and s.partials is None and s.clips == 0
    assert (s.lam_dot, s.gamma_dot) == (float(s.solution[0]), float(s.solution[1]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cond = 0.0
    no_t = Partials(dR_dlambda=1.0, dR_dgamma=0.1, dD_dlambda=-2.0, dD_dgamma=-0.2, dC_dlambda=-0.1,
                    dC_dgamma=-0.05, n_probes=4)
    assert not no_t.has_t and _partials().has_t and TransferPartials is Partials
    with pytest.raises(ValueError, match="partials in t"):
        solve_step(no_t, 0.4, method="heuristic", slope=None)


@pytest.mark.parametrize("t_derivative, probes", [("equilibrate", 6), ("frozen", 4)])
def test_systems_carry_their_partials_and_clips(source_model, tasks, t_derivative, probes):
    r = _run(source_model, tasks, t_derivative=t_derivative)
    assert all(isinstance(s, StepSolution) for s in r.systems)
    for s in r.systems:
        p = s.partials
        assert isinstance(p, Partials) and p.has_t and p.n_probes == probes and p.dt == pytest.approx(0.5)
        assert set(p.to_dict()) >= {"dC_dgamma", "dC_dt", "h_lambda", "h_gamma", "dt"}
    assert sum(s.clips for s in r.systems) == r.n_clips


# ---------------------------------------------------------------- data at time t


def test_mixture_sampler_endpoints(tasks):
    path = TaskPath("mixture", tasks["source"], tasks["target"], IsoTransferConfig(**TINY))
    rng = np.random.default_rng(0)
    x0, y0 = path.batch_sampler(0.0)(200, rng)
    x1, y1 = path.batch_sampler(1.0)(200, rng)
    assert y0.dtype == torch.int64 and set(y0.tolist()) <= {0, 1} and set(y1.tolist()) <= {2, 3}
    src = {tuple(v.flatten().tolist()) for v in tasks["source"].x}
    tgt = {tuple(v.flatten().tolist()) for v in tasks["target"].x}
    assert all(tuple(v.flatten().tolist()) in src for v in x0)
    assert all(tuple(v.flatten().tolist()) in tgt for v in x1)
    xh, yh = path.batch_sampler(0.5)(400, rng)
    frac = (yh >= 2).float().mean().item()
    assert 0.4 < frac < 0.6  # Binomial(400, 1/2): 5 standard deviations


def test_mixture_functionals_are_exact_mixtures(source_model, tasks):
    path = TaskPath("mixture", tasks["source"], tasks["target"], IsoTransferConfig(**TINY))
    a = measure(source_model, *path.src, n_z=2, seed=5)
    b = measure(source_model, *path.tgt, n_z=2, seed=5)
    assert path.terms(source_model, 0.0, n_z=2, seed=5) == FreeEnergyTerms.mix(a, b, 0.0)
    m = path.terms(source_model, 0.3, n_z=2, seed=5)
    assert m.classification == pytest.approx(0.7 * a.classification + 0.3 * b.classification, rel=1e-12)


def test_frozen_time_derivative_of_the_mixture_is_target_minus_source(source_model, tasks):
    """For Eq. (23) at fixed weights, d/dt X = X_target - X_source exactly, whatever dt."""
    cfg = IsoTransferConfig(**TINY, t_derivative="frozen")
    path = TaskPath("mixture", tasks["source"], tasks["target"], cfg)
    p = IT.transfer_partials(source_model, path, 0.25, 0.5, 0.25, 8.0, cfg, seed=3)
    a = measure(source_model, *path.src, n_z=2, seed=3)
    b = measure(source_model, *path.tgt, n_z=2, seed=3)
    assert p.dC_dt == pytest.approx(b.classification - a.classification, rel=1e-9)
    assert p.dD_dt == pytest.approx(b.distortion - a.distortion, rel=1e-9)
    assert p.h_lambda == pytest.approx(0.025) and p.h_gamma == pytest.approx(0.8) and p.dt == 0.25


@pytest.mark.parametrize("solver", ["exact", "block"])
def test_ot_labels_interpolate_one_hots(tasks, solver):
    cfg = IsoTransferConfig(**TINY, interpolation="ot", ot_solver=solver, ot_block_size=10)
    path = TaskPath("ot", tasks["source"], tasks["target"], cfg)
    P = path.plan.to_dense() if solver == "block" else path.plan.plan
    np.testing.assert_allclose(P.sum(1), 1 / 50, atol=1e-12)  # uniform marginals of the coupling (36)
    np.testing.assert_allclose(P.sum(0), 1 / 50, atol=1e-12)
    xs, ys, xt, yt = path.pairs
    for t in (0.0, 0.25, 1.0):
        x, y = path.eval_data(t)
        np.testing.assert_allclose(y.sum(1).numpy(), 1.0, atol=1e-6)
        np.testing.assert_allclose(y.numpy(), ((1 - t) * ys + t * yt).numpy(), atol=1e-7)
        np.testing.assert_allclose(x.numpy(), ((1 - t) * xs + t * xt).numpy(), atol=1e-6)
        xb, yb = path.batch_sampler(t)(64, np.random.default_rng(1))
        np.testing.assert_allclose(yb.sum(1).numpy(), 1.0, atol=1e-6)
        src_part = yb[:, :2].sum(1).numpy()  # source classes 0, 1; target classes 2, 3
        np.testing.assert_allclose(src_part, 1 - t, atol=1e-6)
    x0, y0 = path.eval_data(0.0)
    assert torch.equal(y0.argmax(1), ys.argmax(1)) and set(y0.argmax(1).tolist()) <= {0, 1}
    x1, y1 = path.eval_data(1.0)
    assert set(y1.argmax(1).tolist()) <= {2, 3}


def test_mnist_shared_head():
    """Digits 0-4 -> 5-9 keep their ids in a 10-way head (label_offset=None), as Sec. 5.2 needs."""
    src = make_task("mnist10k-0-4", "train", n_per_class=4)
    tgt = make_task("mnist10k-5-9", "train", n_per_class=4)
    sv = make_task("mnist10k-0-4", "test", n_per_class=2)
    tv = make_task("mnist10k-5-9", "test", n_per_class=2)
    assert src.num_classes == tgt.num_classes == 10
    model = make_free_energy_model("mnist", hidden=16, latent=4)
    r = iso_transfer(model, src, tgt, sv, tv, 0.25, 8.0, IsoTransferConfig(**TINY))
    assert r.t.tolist() == [0.0, 0.5, 1.0] and np.isfinite(r.free_energy).all()


# ---------------------------------------------------------------- validation


def test_bad_inputs_raise_naming_the_argument(source_model, tasks):
    with pytest.raises(ValueError, match="steps"):
        IsoTransferConfig(steps=0)
    with pytest.raises(ValueError, match="steps"):
        IsoTransferConfig(steps=1)  # a step count in t below 2
    for name, value in [("eq30_reading", "derivd"), ("slope_rule", "endpoint"), ("c_measure", "exces"),
                        ("method", "repeat"), ("controller_max_repeats", -1), ("controller_gamma_factor", 1.0),
                        ("controller_tolerance", -0.1), ("slope_margin", 0.0), ("slope_margin", 1.5),
                        ("min_denominator", 0.0)]:
        with pytest.raises(ValueError, match=name) as err:
            IsoTransferConfig(**{name: value})
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="steps"):
        EquilibrationConfig(steps=0)  # a non-positive probe length
    with pytest.raises(ValueError, match="method"):
        IsoTransferConfig(method="straight")
    with pytest.raises(ValueError, match="interpolation"):
        IsoTransferConfig(interpolation="sinkhorn")
    with pytest.raises(ValueError, match="t_derivative"):
        IsoTransferConfig(t_derivative="backward")
    with pytest.raises(ValueError, match="fd_rel_lambda"):
        IsoTransferConfig(fd_rel_lambda=1.5)
    with pytest.raises(ValueError, match="ot_solver"):
        IsoTransferConfig(ot_solver="sinkhorn")
    t = tasks
    other = _task("small", [2, 3], 5, 9, shape=(1, 6, 6))
    with pytest.raises(ValueError, match=r"source and target have different input shapes: \(1, 8, 8\) and \(1, 6, 6\)"):
        iso_transfer(source_model, t["source"], other, t["source_val"], t["target_val"], 0.25, 8.0)
    empty = Task(name="none", x=torch.zeros((0, *SHAPE)), y=torch.zeros(0, dtype=torch.int64), classes=(2,),
                 num_classes=NUM_CLASSES, input_shape=SHAPE)
    with pytest.raises(ValueError, match="target_val is an empty task"):
        iso_transfer(source_model, t["source"], t["target"], t["source_val"], empty, 0.25, 8.0)
    wide = _task("wide", [2, 3], 5, 9, num_classes=6)
    with pytest.raises(ValueError, match="num_classes"):
        iso_transfer(source_model, t["source"], wide, t["source_val"], t["target_val"], 0.25, 8.0)
    with pytest.raises(ValueError, match="lam0"):
        iso_transfer(source_model, t["source"], t["target"], t["source_val"], t["target_val"], 0.0, 8.0)
    with pytest.raises(ValueError, match="gamma0"):
        iso_transfer(source_model, t["source"], t["target"], t["source_val"], t["target_val"], 0.25, -1.0)
    with pytest.raises(ValueError, match="slope"):
        iso_transfer(source_model, t["source"], t["target"], t["source_val"], t["target_val"], 0.25, 8.0,
                     IsoTransferConfig(slope=-4.0))
    with pytest.raises(ValueError, match="steps"):
        finetune_baseline(source_model, t["target"], t["target_val"], 0.25, 8.0, steps=0, eval_every=1)


# ---------------------------------------------------------------- baselines


def test_baselines(source_model, tasks):
    cfg = EquilibrationConfig(peak_lr=3e-3, schedule="constant")
    ft = finetune_baseline(source_model, tasks["target"], tasks["target_val"], 0.25, 8.0, steps=30, config=cfg,
                           eval_every=10, eval_size=20, n_z=2)
    np.testing.assert_array_equal(ft.steps, [0, 10, 20, 30])
    assert ft.target_accuracy.shape == ft.target_loss.shape == (4,)
    before = measure(source_model, tasks["target_val"].x, tasks["target_val"].y, n_z=2, seed=0)
    assert ft.initial_accuracy == before.accuracy == 0.0  # the source head never predicts target classes
    assert ft.final_accuracy == ft.target_accuracy[-1]
    assert ft.target_loss[-1] < ft.target_loss[0]  # fine-tuning fits the target
    sc = scratch_baseline(source_model.config, tasks["target"], tasks["target_val"], 0.25, 8.0, steps=25,
                          config=cfg, eval_every=10, eval_size=20, n_z=2)
    np.testing.assert_array_equal(sc.steps, [0, 10, 20, 25])
    assert np.isfinite(sc.target_loss).all()



def _reference_curve(model, target, target_val, lam, gamma, *, steps, config, eval_every, eval_size, n_z):
    """The baselines' Adam loop as it was written out before it went through equilibrate (the reference)."""
    cfg = dataclasses.replace(config, steps=steps)
    rng = np.random.default_rng(cfg.seed)
    k = IT._subset(target_val.x.shape[0], eval_size, rng)
    xv, yv = target_val.x[torch.as_tensor(k)], target_val.y[torch.as_tensor(k)]
    sampler, gen = array_sampler(target.x, target.y), torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.peak_lr)
    acc = [measure(model, xv, yv, n_z=n_z, seed=cfg.seed).accuracy]
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for s in range(steps):
            xb, yb = sampler(cfg.batch_size, rng)
            r, d, c = hamiltonian_loss(model, xb, yb, lam, gamma, n_z=cfg.n_z, generator=gen)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(s)
            opt.zero_grad(set_to_none=True)
            (r + lam * d + gamma * c).backward()
            opt.step()
            if (s + 1) % eval_every == 0 or s + 1 == steps:
                acc.append(measure(model, xv, yv, n_z=n_z, seed=cfg.seed).accuracy)
    return model, np.array(acc)


@pytest.mark.parametrize("steps, eval_every, eval_size", [(12, 4, 2000), (13, 5, 7)])
def test_baselines_match_the_written_out_adam_loop(source_model, tasks, steps, eval_every, eval_size):
    """Through equilibrate the baselines take exactly the updates of their old loop (bit for bit): the same
    mini-batches (also when the evaluation subset is drawn first), noise, dropout and learning rates."""
    cfg = EquilibrationConfig(peak_lr=3e-3, schedule="cosine", seed=5)
    kw = dict(steps=steps, config=cfg, eval_every=eval_every, eval_size=eval_size, n_z=2)
    ft = finetune_baseline(source_model, tasks["target"], tasks["target_val"], 0.25, 8.0, **kw)
    ref_model, ref_acc = _reference_curve(copy.deepcopy(source_model), tasks["target"], tasks["target_val"],
                                          0.25, 8.0, **kw)
    np.testing.assert_array_equal(ft.target_accuracy, ref_acc)
    assert all(torch.equal(a, b) for a, b in zip(ft.model.state_dict().values(), ref_model.state_dict().values()))
    assert not ft.model.training


# ---------------------------------------------------------------- CIFAR-10 path


@pytest.mark.parametrize("interpolation", ["mixture", "ot"])
def test_cifar10_vehicles_to_animals_conv(cifar10_root, interpolation):
    """Appendix G's setting: vehicles -> four animals (bird, cat, deer, dog), a 4-way head, a conv encoder."""
    root, _ = cifar10_root
    animals = TaskSpec(name="cifar10-animals-4", dataset="cifar10", classes=(2, 3, 4, 5),
                       description="bird, cat, deer, dog")
    src = make_task("cifar10-vehicles", "train", root=root, label_offset=0)
    tgt = make_task(animals, "train", root=root, label_offset=0)
    sv = make_task("cifar10-vehicles", "test", root=root, label_offset=0)
    tv = make_task(animals, "test", root=root, label_offset=0)
    assert src.num_classes == tgt.num_classes == 4 and src.input_shape == (3, 32, 32)
    model = make_free_energy_model("mnist", encoder="conv", input_shape=(3, 32, 32), num_classes=4, hidden=16,
                                   latent=4)
    cfg = IsoTransferConfig(**{**TINY, "steps": 2, "interpolation": interpolation, "method": "heuristic",
                               "lambda_rate": -1.5, "fd_equilibration": EquilibrationConfig(steps=2, batch_size=8),
                               "equilibration": EquilibrationConfig(steps=3, batch_size=8)})
    r = iso_transfer(model, src, tgt, sv, tv, 4.0, 100.0, cfg)  # the paper's (lambda, gamma) = (4, 100)
    assert r.t.tolist() == [0.0, 0.5, 1.0] and np.isfinite(r.free_energy).all()
    assert np.isfinite(r.lam).all() and np.isfinite(r.gamma).all() and (r.target_accuracy >= 0).all()


# ---------------------------------------------------------------- soft labels, the controller, the control


def test_excess_cross_entropy_is_nonnegative_and_zero_for_a_perfect_soft_prediction():
    """CE(y, q) - H(y) = KL(y || q) >= 0, with equality at q = y (Remark 11's labels)."""
    g = torch.Generator().manual_seed(0)
    for t in (0.0, 0.3, 0.5, 1.0):
        a, b = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
        y = (1 - t) * torch.nn.functional.one_hot(a, 4).double() + t * torch.nn.functional.one_hot(b, 4).double()
        q = torch.softmax(torch.randn(50, 4, generator=g, dtype=torch.float64), 1)
        ce = float(-(y * torch.log(q)).sum(1).mean())
        assert ce - IT.label_entropy(y) >= 0
        perfect = float(-(torch.where(y > 0, y * torch.log(y.clamp_min(1e-300)), torch.zeros_like(y))).sum(1).mean())
        assert perfect - IT.label_entropy(y) == pytest.approx(0.0, abs=1e-12)
    # two distinct classes at t = 1/2: ln 2
    y = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert IT.label_entropy(y) == pytest.approx(np.log(2), rel=1e-12)
    assert IT.label_entropy(torch.tensor([0, 1])) == 0.0


def test_ot_transfer_records_the_label_entropy_and_raw_ce(source_model, tasks):
    r = _run(source_model, tasks, interpolation="ot")
    h = r.label_entropy_val
    assert h[0] == 0.0 and h[-1] == 0.0 and h[1] > 0.1  # soft labels in the middle (t = 1/2)
    np.testing.assert_allclose(r.raw_classification("val"), r.array("classification", "val") + h, rtol=1e-12)
    raw = _run(source_model, tasks, interpolation="ot", c_measure="raw")
    np.testing.assert_allclose(raw.array("classification", "val")[0], r.array("classification", "val")[0],
                               rtol=1e-12)  # at t = 0 the labels are hard: the two measures agree


@pytest.mark.parametrize("max_repeats", [0, 2])
def test_controller_stops_at_c0_or_its_maximum_and_counts_updates(source_model, tasks, max_repeats):
    r = _run(source_model, tasks, method="repeat_equilibration", controller_max_repeats=max_repeats,
             controller_gamma_factor=2.0)
    assert len(r.controller) == 2 and r.systems == [] and np.all(r.lam == 0.25)
    c0 = r.array("classification", "val")[0]
    for k, s in enumerate(r.controller):
        assert s.repeats <= max_repeats and len(s.c_history) == 1 + s.repeats
        assert s.held == (s.c_history[-1] <= c0)
        assert s.repeats == max_repeats or s.held  # it stops only when C <= C_0 or at its maximum
        assert all(c > c0 for c in s.c_history[:-1])  # it repeats only while C > C_0
        assert s.gamma_end == pytest.approx(s.gamma_start * 2.0 ** s.repeats)
        assert s.c_history[-1] == pytest.approx(r.array("classification", "val")[k + 1], rel=1e-12)
    assert r.n_updates == sum((1 + s.repeats) * 20 for s in r.controller)
    assert r.n_updates <= transfer_budget(IsoTransferConfig(**{**TINY, "method": "repeat_equilibration",
                                                               "controller_max_repeats": max_repeats}))


def test_controller_repeats_when_c_rises(source_model, tasks, monkeypatch):
    """A C that only falls below C_0 after two raises of gamma: the controller takes exactly two repeats."""
    from ctd_lib.free_energy import repeat_controller as RC
    calls = []
    vals = iter([5.0, 4.0, 0.1])
    out = RC.repeat_until_held(copy.deepcopy(source_model), IT.TaskPath("mixture", tasks["source"], tasks["target"],
                               IsoTransferConfig(**TINY)).batch_sampler(0.5), 0.25, 8.0, 1.0,
                               lambda: calls.append(1) or next(vals), EquilibrationConfig(steps=5),
                               gamma_factor=1.5, max_repeats=3, tolerance=0.0, gamma_max=1e4, seed=0)
    assert (out.repeats, out.updates, out.held) == (2, 15, True) and out.gamma_end == pytest.approx(18.0)
    vals = iter([5.0, 4.0, 3.0, 2.0])
    out = RC.repeat_until_held(copy.deepcopy(source_model), IT.TaskPath("mixture", tasks["source"], tasks["target"],
                               IsoTransferConfig(**TINY)).batch_sampler(0.5), 0.25, 8.0, 1.0, lambda: next(vals),
                               EquilibrationConfig(steps=5), gamma_factor=1.5, max_repeats=3, tolerance=0.0,
                               gamma_max=10.0, seed=0)
    assert (out.repeats, out.held, out.gamma_end) == (3, False, 10.0)  # stopped at its maximum; gamma capped
    assert out.finite
    vals = iter([5.0, float("nan"), 0.1])
    out = RC.repeat_until_held(copy.deepcopy(source_model), IT.TaskPath("mixture", tasks["source"], tasks["target"],
                               IsoTransferConfig(**TINY)).batch_sampler(0.5), 0.25, 8.0, 1.0, lambda: next(vals),
                               EquilibrationConfig(steps=5), gamma_factor=1.5, max_repeats=3, tolerance=0.0,
                               gamma_max=1e4, seed=0)
    assert (out.repeats, out.held, out.finite) == (1, False, False)  # a diverged model ends the loop at once


def test_endpoint_slope_clamp_keeps_one_plus_k_lambda_away_from_zero(source_model, tasks, monkeypatch):
    monkeypatch.setattr(IT, "_endpoint_slope", lambda *a, **k: (-9.8, "endpoints"))
    with pytest.warns(RuntimeWarning, match="slope_margin"):
        r = _run(source_model, tasks)
    assert r.slope_endpoint == -9.8 and 1 + r.slope * 0.25 == pytest.approx(0.5)
    assert r.config["slope_from"] == "endpoints-clamped"
    raw = _run(source_model, tasks, slope_rule="endpoints")
    assert raw.slope == -9.8 and 1 + raw.slope * 0.25 < 0  # the endpoint rule as measured: past -1/lambda


def test_fixed_multiplier_control_and_probe_check(source_model, tasks):
    cfg = IsoTransferConfig(**TINY)
    c = IT.fixed_multiplier_control(source_model, tasks["source"], tasks["source_val"], 0.25, 8.0, cfg)
    assert c.val_c.shape == (3,) and c.n_updates == 40
    assert c.val_max_rel_change == pytest.approx(np.max(np.abs(c.val_c - c.val_c[0])) / c.val_c[0])
    pc = IT.probe_length_check(source_model, tasks["source"], tasks["target"], 0.25, 8.0, cfg, factor=2)
    assert pc.long.dC_dt != pc.short.dC_dt and set(pc.rel_diff) == {"dC_dt", "dR_dt", "dD_dt", "rate_partial"}
    assert pc.values["dC_dt"] == (pc.short.dC_dt, pc.long.dC_dt)
    short, long = (p.dR_dt + 0.25 * p.dD_dt + 8.0 * p.dC_dt for p in (pc.short, pc.long))  # the derived row 1
    assert pc.values["rate_partial"] == pytest.approx((short, long))
    assert pc.rel_diff["rate_partial"] == pytest.approx(abs(short - long) / abs(long))
    with pytest.raises(ValueError, match="factor"):
        IT.probe_length_check(source_model, tasks["source"], tasks["target"], 0.25, 8.0, cfg, factor=0)
