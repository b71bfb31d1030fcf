"""Chapter 2's configuration, metrics and claims, on results built by hand (no training, no OT on MNIST)."""
import dataclasses

import numpy as np
import pytest

from ctd_lib.experiments.optimal_transport import (
    BlockStudy,
    BuresCheck,
    NearestRealStudy,
    OptimalTransportConfig,
    OptimalTransportResult,
    ProximalStudy,
    SolverTiming,
    SpeedStudy,
    claims,
    metrics,
)

TAUS = np.linspace(0, 1, 11)
CONFIG = OptimalTransportConfig(taus=[0.0, 0.5, 1.0], block_sizes=[10, 30], block_size=30, block_cost_tol=0.25,
                                bures_n=300, scale="smoke")


def make_result(*, speed_dev=0.0, w2=(3.1, 3.2), centroid_b30=1.02, nn_mid=(0.4, 1.0), lam0=0.0):
    """A result of chapter 2 with the numbers behind each claim set by hand (defaults: every claim holds)."""
    speed = SpeedStudy(TAUS, {"exact": TAUS + speed_dev, "entropic, eps = 0.5 x median": TAUS + 0.003})
    beta_mid, feature_mid = nn_mid
    nearest = NearestRealStudy(np.array([0.0, 0.5, 1.0]), {"pixel OT": np.array([0.0, 2.0, 0.0]),
                                                           "feature OT": np.array([0.0, feature_mid, 0.0]),
                                                           "Beta-mixup": np.array([0.0, beta_mid, 0.0])})
    prox = ProximalStudy(np.array([0.0, 1.0]), np.array([0.05, 0.01]), np.array([lam0, 0.02]),
                         np.array([1.0, 1.1]), lam0)
    blocks = BlockStudy(np.array([10, 30]), ("centroid", "sorted", "random"),
                        {"centroid": np.array([1.07, centroid_b30]), "sorted": np.array([1.05, 1.03]),
                         "random": np.array([1.23, 1.06])},
                        {m: np.array([0.1, 0.2]) for m in ("centroid", "sorted", "random")}, 5.0, 0.3)
    timing = SolverTiming(200, 30, np.array([0.2]), np.array([0.1]), 3e-11)
    return OptimalTransportResult(config=CONFIG, speed=speed, bures=BuresCheck(*w2, 300), nearest=nearest,
                                  proximal=prox, blocks=blocks, timing=timing)


def verdicts(result):
    return {c.id: c.holds for c in claims(result)}


def test_every_claim_holds_on_the_good_result():
    out = claims(make_result())
    assert [c.id for c in out] == ["displacement_constant_speed", "w2_matches_bures", "block_plan_close_to_full",
                                   "beta_mixup_avoids_artefacts", "proximal_lambda0_is_sinkhorn"]
    assert all(c.holds for c in out)


@pytest.mark.parametrize(
    "claim, good, bad",
    [
        ("displacement_constant_speed", dict(speed_dev=5e-7), dict(speed_dev=2e-6)),
        ("w2_matches_bures", dict(w2=(3.1, 3.2)), dict(w2=(3.0, 3.2))),  # 3.1% against 6.25%
        ("block_plan_close_to_full", dict(centroid_b30=1.25), dict(centroid_b30=1.26)),
        ("beta_mixup_avoids_artefacts", dict(nn_mid=(0.99, 1.0)), dict(nn_mid=(1.01, 1.0))),
        ("proximal_lambda0_is_sinkhorn", dict(lam0=5e-13), dict(lam0=2e-12)),
    ],
)
def test_each_claim_holds_and_fails(claim, good, bad):
    assert verdicts(make_result(**good))[claim] is True
    v = verdicts(make_result(**bad))
    assert v[claim] is False
    assert all(h for k, h in v.items() if k != claim), "only the claim under test may change"


def test_claim_evidence_and_statement_carry_the_numbers():
    by_id = {c.id: c for c in claims(make_result(centroid_b30=1.019, w2=(3.1, 3.25)))}
    assert by_id["block_plan_close_to_full"].statement.endswith("(B=30) cost about as much as the full plan")
    assert by_id["block_plan_close_to_full"].evidence == ("cost ratio 1.019 with centroid matching (tolerance 25%); "
                                                          "random blocks 1.060")
    assert by_id["w2_matches_bures"].evidence == "3.1000 against 3.2500: 4.62% with 300 samples (tolerance 5%)"
    assert by_id["beta_mixup_avoids_artefacts"].evidence.endswith("Beta-mixup / displacement = 0.40")


def test_metrics_keys_and_values():
    m = metrics(make_result(speed_dev=1e-9, centroid_b30=1.019))
    assert m["constant_speed_max_dev"] == pytest.approx(1e-9)
    assert m["constant_speed_max_dev_entropic, eps = 0.5 x median"] == pytest.approx(0.003)
    assert m["block_vs_full_cost_ratio"] == m["block_vs_full_cost_ratio_centroid_B30"] == 1.019
    assert m["block_vs_full_cost_ratio_random_B10"] == 1.23
    assert m["bures_rel_err"] == pytest.approx(0.1 / 3.2)
    assert m["batched_block_speedup"] == pytest.approx(0.5)
    assert m["nn_distance_ratio_beta_mixup_vs_displacement"] == pytest.approx(0.4)
    assert set(m) >= {"batched_block_max_abs_diff", "proximal_lambda0_max_abs_diff", "proximal_dist_to_prev"}


def test_parameters_are_plain_and_complete():
    p = OptimalTransportConfig().parameters()
    assert [f.name for f in dataclasses.fields(OptimalTransportConfig)] == list(p)
    assert p["scale"] == "cpu" and p["taus"] == [0.0, 0.25, 0.5, 0.75, 1.0] and isinstance(p["block_sizes"], list)
    assert "results_dir" not in p


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_points=0), "n_points"),
        (dict(bures_n=1.5), "bures_n"),
        (dict(n_per_class=-1), "n_per_class"),
        (dict(feature_steps=0), "feature_steps"),
        (dict(grid_pairs=0), "grid_pairs"),
        (dict(nn_samples=True), "nn_samples"),
        (dict(prox_n=0), "prox_n"),
        (dict(timing_n=0), "timing_n"),
        (dict(timing_repeats=0), "timing_repeats"),
        (dict(block_size=0), "block_size"),
        (dict(block_size=20, block_sizes=[10, 30]), "block_size"),
        (dict(ot_reg=0.0), "ot_reg"),
        (dict(block_cost_tol=-0.1), "block_cost_tol"),
        (dict(taus=[0.0, 1.5]), "taus"),
        (dict(taus=[]), "taus"),
        (dict(taus=0.5), "taus"),
        (dict(speed_regs=[0.05, -1.0]), "speed_regs"),
        (dict(prox_lams=[0.0, -1.0]), "prox_lams"),
        (dict(prox_lams=[0.0]), "prox_lams"),
        (dict(block_sizes=[10, 0], block_size=10), "block_sizes"),
        (dict(block_sizes="30"), "block_sizes"),
        (dict(source_task="mnist10k-0-5"), "source_task"),
        (dict(target_task="cifar10-everything"), "target_task"),
        (dict(seed=-1), "seed"),
        (dict(scale="huge"), "scale"),
    ],
)
def test_config_rejects_bad_values_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        OptimalTransportConfig(**kwargs)
    assert "\n" not in str(err.value)
