"""Chapter 1's experiment functions at tiny sizes, and its parameter validation."""
import numpy as np
import pytest

from ctd_lib.experiments.fisher_rao_length import (
    FisherRaoConfig,
    fim_study,
    load_transfer_data,
    refinement_study,
    reparam_study,
    train_source,
    transfer,
)

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
    study = fim_study(data, cfg)
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
        (dict(lr=0.0), "lr"),
        (dict(transfer_steps=-3), "transfer_steps"),
        (dict(n_per_class=0), "n_per_class"),
        (dict(fim_ref_step=0.5), "fim_ref_step"),
        (dict(refine_lrs=(0.1, 0.2)), "refine_lrs"),
        (dict(reparam_factors=(1.0, -2.0)), "reparam_factors"),
        (dict(device="tpu"), "device"),
        (dict(arch_ratio_max=0.5), "arch_ratio_max"),
    ],
)
def test_bad_parameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FisherRaoConfig(**kwargs)
