"""Chapter 1's experiment functions at tiny sizes, its claims on synthetic results, and its parameter validation."""
import dataclasses

import numpy as np
import pytest

from ctd_lib.experiments.fisher_rao_length import (
    ArchitectureRun,
    FimStudy,
    FisherRaoConfig,
    FisherRaoResult,
    OverheadStudy,
    RefinementStudy,
    ReparamStudy,
    claims,
    fim_study,
    load_transfer_data,
    metrics,
    refinement_study,
    reparam_study,
    train_source,
    transfer,
)
from ctd_lib.geometry.length import TrajectoryLength
from ctd_lib.geometry.sgd import OverheadMeasurement, TrainResult

TINY = dict(n_per_class=10, n_eval=40, batch_size=16, source_steps=10, transfer_steps=10, fim_trials=2,
            fim_n_inputs=32, checkpoint_every=5, refine_total_time=0.4, refine_lrs=(0.2, 0.1), refine_n=50)


@pytest.fixture(scope="module")
def tiny():
    cfg = FisherRaoConfig(**TINY)
    return cfg, load_transfer_data(cfg)


def test_data_split_and_sizes(tiny):
    cfg, data = tiny
    assert data.source.x.shape == (50, 1, 28, 28) and data.target.x.shape == (50, 1, 28, 28)
    assert set(data.source.y.tolist()) == {0, 1, 2, 3, 4} and set(data.target.y.tolist()) == {5, 6, 7, 8, 9}
    assert data.eval_x.shape[0] == 40


def test_fim_study_ratios_near_one_for_small_steps(tiny):
    cfg, data = tiny
    study = fim_study(data, cfg, activations=("tanh",))  # ReLU takes as long and is checked at the smoke scale
    assert study.ratios["tanh"].shape == (2, len(cfg.fim_step_sizes))
    assert abs(study.median_ratio("tanh", 1e-4) - 1) < 1e-3


def test_reparam_and_transfer_and_refinement(tiny):
    cfg, data = tiny
    model, acc = train_source("mlp", data, cfg)
    assert 0 <= acc <= 1
    import copy

    source = copy.deepcopy(model)
    run = transfer(model, "mlp", acc, data, cfg)
    assert len(run.result.checkpoints) == 3  # steps 0, 5, 10
    rep = reparam_study(model, run.result.checkpoints, data.eval_x, (0.5, 4.0))
    assert rep.fisher_rao_rel_err < 1e-10 and rep.euclidean_rel_change > 0.01
    ref = refinement_study(source, data, cfg)
    assert list(ref.steps) == [2, 4]
    assert np.all(ref.gd_length > 0) and np.all(ref.gd_per_sample <= ref.gd_length + 1e-12)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(source_task="mnist10k-0-5"), "source_task"),
        (dict(target_task="cifar10-everything"), "target_task"),
        (dict(model_a="small-cnn"), "model_a"),
        (dict(model_b="resnet"), "model_b"),
        (dict(model_b="mlp"), "model_b"),  # the same architecture as model_a
        (dict(lr=0.0), "lr"),
        (dict(lr=-0.1), "lr"),
        (dict(transfer_steps=-3), "transfer_steps"),
        (dict(transfer_steps=0), "transfer_steps"),
        (dict(source_steps=2.5), "source_steps"),
        (dict(n_per_class=0), "n_per_class"),
        (dict(n_eval=True), "n_eval"),
        (dict(batch_size=0), "batch_size"),
        (dict(fim_trials=0), "fim_trials"),
        (dict(fim_hidden=-1), "fim_hidden"),
        (dict(fim_n_inputs=0), "fim_n_inputs"),
        (dict(fim_n_inputs=501), "fim_n_inputs"),  # more than the 5 x 100 source images
        (dict(fim_ref_step=0.5), "fim_ref_step"),
        (dict(fim_ref_step="0.001"), "fim_ref_step"),
        (dict(checkpoint_every=0), "checkpoint_every"),
        (dict(refine_total_time=0.0), "refine_total_time"),
        (dict(refine_lrs=(0.1, 0.2)), "refine_lrs"),
        (dict(refine_lrs=(0.2, 0.2)), "refine_lrs"),
        (dict(refine_lrs=(0.2,)), "refine_lrs"),
        (dict(refine_lrs=(0.2, -0.1)), "refine_lrs"),
        (dict(refine_lrs=0.1), "refine_lrs"),
        (dict(refine_n=0), "refine_n"),
        (dict(refine_n=501), "refine_n"),  # more than the 5 x 100 target images
        (dict(reparam_factors=(1.0, -2.0)), "reparam_factors"),
        (dict(reparam_factors=()), "reparam_factors"),
        (dict(reparam_factors="2.0"), "reparam_factors"),
        (dict(overhead_steps=0), "overhead_steps"),
        (dict(overhead_repeats=0), "overhead_repeats"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(device="tpu"), "device"),
        (dict(scale="huge"), "scale"),
    ],
)
def test_bad_parameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        FisherRaoConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_config_fields_are_the_notebooks_parameters_and_lists_become_tuples():
    cfg = FisherRaoConfig(reparam_factors=[0.5, 2.0], refine_lrs=[0.2, 0.1], scale="smoke")
    assert cfg.reparam_factors == (0.5, 2.0) and cfg.refine_lrs == (0.2, 0.1)
    assert "results_dir" not in {f.name for f in dataclasses.fields(cfg)}
    params = cfg.parameters()
    assert params["scale"] == "smoke" and params["seed"] == 0 and params["refine_lrs"] == (0.2, 0.1)
    # the values fixed by the design are recorded with the parameters, but are not parameters
    assert params["fim_tol"] == 0.01 and params["arch_ratio_max"] == 2.0
    with pytest.raises(TypeError):
        FisherRaoConfig(arch_ratio_max=3.0)


# ----------------------------------------------------------------------------
# claims on synthetic results: each must hold for one and fail for another
# ----------------------------------------------------------------------------

STEPS = np.asarray(FisherRaoConfig.fim_step_sizes)


def _run(name, manifold, euclidean, n_clamped=0):
    length = TrajectoryLength(manifold=manifold, per_sample=0.9 * manifold, euclidean=euclidean, steps=4,
                              n_clamped=n_clamped, n_kl_evals=8, min_raw_kl=0.0,
                              cumulative={k: np.linspace(0, v, 4) for k, v in
                                          (("manifold", manifold), ("per_sample", 0.9 * manifold),
                                           ("euclidean", euclidean))})
    train = TrainResult(losses=np.ones(4), length=length, checkpoints=[], wall_time=0.1)
    return ArchitectureRun(name, 100, 0.9, 0.8, train)


def _result(*, tanh_ratio=1.0005, fr_rel=1e-15, eu_rel=0.5, gd=(1.0, 1.01), sgd=(1.2, 1.4),
            manifold_a=2.0, manifold_b=3.0):
    cfg = FisherRaoConfig(fim_trials=2, refine_lrs=(0.2, 0.1), scale="smoke")
    ratios = np.ones((2, STEPS.size))
    ratios[:, list(STEPS).index(cfg.fim_ref_step)] = tanh_ratio
    factors = np.asarray([0.5, 2.0])
    reparam = ReparamStudy(factors, np.asarray([2.0, 2.0 * (1 + fr_rel)]), np.asarray([1.8, 1.8]),
                           np.asarray([5.0, 5.0 * (1 + eu_rel)]), 2.0, 1.8, 5.0)
    refine = RefinementStudy(np.asarray(cfg.refine_lrs), np.asarray([2, 4]), np.asarray(gd), np.asarray(sgd),
                             0.9 * np.asarray(gd), 0.9 * np.asarray(sgd))
    meas = OverheadMeasurement(ratios=np.asarray([1.3]), plain_seconds=np.asarray([1.0]),
                               tracked_seconds=np.asarray([1.3]))
    slow = dataclasses.replace(meas, ratios=np.asarray([1.5]))
    return FisherRaoResult(
        config=cfg, n_source=500, n_target=500, n_eval=500,
        fim=FimStudy(step_sizes=STEPS, ratios={"tanh": ratios, "relu": 0.99 * ratios}, n_params=970),
        reparam=reparam, refine=refine, run_a=_run("mlp", manifold_a, 10.0, n_clamped=1),
        run_b=_run("small-cnn", manifold_b, 30.0), overhead=OverheadStudy(("mlp", "small-cnn"), (meas, slow),
                                                                          (slow, meas)),
    )


def _verdict(result, claim_id):
    (claim,) = [c for c in claims(result) if c.id == claim_id]
    return claim.holds


def test_all_claims_hold_on_the_good_synthetic_result():
    found = claims(_result())
    assert [c.id for c in found] == ["ds2_equals_fim_form", "fr_length_reparam_invariant",
                                     "length_converges_as_dtau_shrinks", "fr_length_comparable_across_architectures"]
    assert all(c.holds for c in found)


def test_ds2_claim_fails_when_the_ratio_is_off():
    assert _verdict(_result(tanh_ratio=1.009), "ds2_equals_fim_form")
    assert not _verdict(_result(tanh_ratio=1.02), "ds2_equals_fim_form")
    assert not _verdict(_result(tanh_ratio=0.98), "ds2_equals_fim_form")


def test_reparam_claim_needs_an_invariant_fr_length_and_a_moving_euclidean_one():
    assert _verdict(_result(fr_rel=1e-9, eu_rel=0.02), "fr_length_reparam_invariant")
    assert not _verdict(_result(fr_rel=1e-6), "fr_length_reparam_invariant")
    assert not _verdict(_result(eu_rel=0.005), "fr_length_reparam_invariant")  # |dw| did not change: no test


def test_refinement_claim_fails_when_the_gd_length_still_moves():
    assert _verdict(_result(gd=(1.0, 1.04)), "length_converges_as_dtau_shrinks")
    assert not _verdict(_result(gd=(1.0, 1.2)), "length_converges_as_dtau_shrinks")


def test_architecture_claim_fails_outside_the_factor_either_way():
    assert _verdict(_result(manifold_a=2.0, manifold_b=3.9), "fr_length_comparable_across_architectures")
    assert _verdict(_result(manifold_a=2.0, manifold_b=1.1), "fr_length_comparable_across_architectures")
    assert not _verdict(_result(manifold_a=2.0, manifold_b=4.2), "fr_length_comparable_across_architectures")
    assert not _verdict(_result(manifold_a=2.0, manifold_b=0.9), "fr_length_comparable_across_architectures")


def test_claim_evidence_states_the_numbers_and_thresholds():
    ev = {c.id: c.evidence for c in claims(_result(gd=(1.0, 1.25)))}
    assert ev["ds2_equals_fim_form"] == ("median ratio 1.00050 at |dw|=0.001 over 2 tanh networks "
                                         "(tolerance 0.01); ReLU 0.9905")
    assert ev["length_converges_as_dtau_shrinks"].startswith("GD length change 20.00% between d tau=0.2 and 0.1 "
                                                             "(tolerance 5%)")
    assert ev["fr_length_comparable_across_architectures"] == ("small-cnn/mlp FR length ratio 1.50 (within x2 "
                                                               "required); Euclidean ratio 3.00")


def test_metrics_of_a_synthetic_result():
    m = metrics(_result())
    assert m["arch_fisher_rao_ratio"] == 1.5 and m["arch_euclidean_ratio"] == 3.0
    assert m["length_mlp_manifold"] == 2.0 and m["length_small-cnn_manifold"] == 3.0
    assert m["length_overhead_ratio"] == 1.5  # the larger Fisher-Rao-only ratio
    assert m["length_overhead_ratio_mlp"] == 1.3 and m["length_overhead_ratio_mlp_with_euclidean"] == 1.5
    assert m["negative_kl_clamped"] == 1 and m["kl_evaluations"] == 16
    assert m["fim_kl_ratio"] == pytest.approx(1.0005) and m["fim_n_params"] == 970
    assert len(m) == 26
