"""Chapter 3's configuration (every bad value named), its small steps on hand-built distance matrices, and
its claims on synthetic results: for each claim one result for which it holds and one for which it fails."""
import math

import numpy as np
import pytest
import torch

from ctd_lib.experiments.coupled_distance import (
    CoupledDistanceConfig,
    CoupledDistanceResult,
    IngredientStudy,
    SeedSpread,
    Variant,
    claims,
    convergence,
    ingredient_variants,
    make_bank,
    mantel_table,
    metrics,
    relative_asymmetry,
    subset_comparison,
    subset_pairs,
    target_comparison,
)
from ctd_lib.task_distance.matrices import DistanceMatrix

NESTED = ("mnist10k-all", "mnist10k-0-4", "mnist10k-0-2")  # every ordered pair i < j is (superset, subset)
DISJOINT = ("mnist10k-01", "mnist10k-23", "mnist10k-45", "mnist10k-67")  # 4! = 24 relabellings: p can be < 0.05
CLAIM_IDS = ["coupled_shorter_than_uncoupled", "coupled_asymmetric", "subset_easier", "converges_in_few_iterations",
             "larger_model_shorter", "mantel_coupled_vs_finetuning"]


def _matrix(method, names, values, extras=None):
    values = np.asarray(values, dtype=float).copy()
    np.fill_diagonal(values, 0.0)
    return DistanceMatrix(method=method, names=list(names), values=values, extras=extras or {})


def _pairs(names):
    return [(s, t) for s in names for t in names if s != t]


def _synthetic(*, uncoupled_shift=1.0, symmetric=False, subset_upper=1.0, last_change=0.01, large_factor=0.5,
               anti_correlated=False, seeds=(1.0, 1.01)):
    """A result for which every claim holds with the defaults; each argument can break one claim."""
    rng = np.random.default_rng(0)
    F = rng.uniform(1.0, 3.0, size=(4, 4))  # fine-tuning distances on the disjoint tasks, all distinct
    C = 10.0 - F if anti_correlated else F.copy()
    if symmetric:
        C = (C + C.T) / 2
    idx = {n: i for i, n in enumerate(DISJOINT)}
    c_extras = {(s, t): {"per_iteration": [C[idx[s], idx[t]] / (1 + last_change), C[idx[s], idx[t]]],
                         "target_val_acc": 0.9, "target_val_loss": 0.3} for s, t in _pairs(DISJOINT)}
    f_extras = {(s, t): {"target_val_acc": 0.8, "target_val_loss": 0.4} for s, t in _pairs(DISJOINT)}
    disjoint = {"coupled": _matrix("coupled-mlp", DISJOINT, C, c_extras),
                "uncoupled": _matrix("uncoupled-mlp", DISJOINT, C + uncoupled_shift),
                "fine-tuning": _matrix("fine-tuning-mlp", DISJOINT, F, f_extras)}
    N = np.array([[0, subset_upper, subset_upper + 0.1], [2.0, 0, subset_upper + 0.2], [2.1, 2.2, 0]])
    nested = {"coupled": _matrix("coupled-mlp", NESTED, N), "uncoupled": _matrix("uncoupled-mlp", NESTED, N + 1.5),
              "fine-tuning": _matrix("fine-tuning-mlp", NESTED, N.T + rng.uniform(0, 0.1, size=(3, 3)))}
    large = {"coupled": _matrix("coupled-mlp-wide", DISJOINT, C * large_factor),
             "fine-tuning": _matrix("fine-tuning-mlp-wide", DISJOINT, F)}
    cross = {"coupled": _matrix("coupled-mlp", ("digits-all", "mnist10k-all"), [[0, 1.0], [2.0, 0]])}
    config = CoupledDistanceConfig(nested_tasks=NESTED, disjoint_tasks=DISJOINT, seeds=(0, 1), permutations=99,
                                   scale="test")
    ingredients = IngredientStudy(variants=(Variant("base", 1.0, 1.1, 2.0, [1.0]), Variant("eps x10", 0.5, 0.6, 2.0)),
                                  self_pair=Variant("same task", 0.3, 0.3, 0.4))
    return CoupledDistanceResult(
        config=config, nested=nested, disjoint=disjoint, large=large, cross=cross, subset=subset_comparison(nested),
        mantel_disjoint=mantel_table(disjoint, permutations=99, seed=0),
        mantel_nested=mantel_table(nested, permutations=99, seed=0),
        ingredients=ingredients, convergence=convergence(disjoint["coupled"]), target=target_comparison(disjoint),
        spread=SeedSpread(coupled=np.asarray(seeds), uncoupled=np.asarray(seeds) * 2),
    )


def _verdicts(result):
    return {c.id: c.holds for c in claims(result)}


@pytest.fixture(scope="module")
def holding():
    return _synthetic()


def test_every_claim_holds_on_the_default_synthetic_result(holding):
    assert _verdicts(holding) == dict.fromkeys(CLAIM_IDS, True)


@pytest.mark.parametrize("claim_id, changes", [
    ("coupled_shorter_than_uncoupled", {"uncoupled_shift": -0.5}),
    ("coupled_asymmetric", {"symmetric": True}),
    ("subset_easier", {"subset_upper": 3.0}),
    ("converges_in_few_iterations", {"last_change": 0.2}),
    ("larger_model_shorter", {"large_factor": 1.5}),
    ("mantel_coupled_vs_finetuning", {"anti_correlated": True}),
])
def test_each_claim_fails_when_its_numbers_say_so(claim_id, changes):
    verdicts = _verdicts(_synthetic(**changes))
    assert verdicts[claim_id] is False
    assert all(v for k, v in verdicts.items() if k != claim_id), verdicts  # only the targeted claim changed


def test_asymmetry_claim_compares_with_twice_the_seed_spread():
    asym = relative_asymmetry(_synthetic().disjoint["coupled"])
    assert asym > 0.1
    cv = asym  # a seed-to-seed coefficient of variation equal to the asymmetry: asymmetry is not twice it
    assert _verdicts(_synthetic(seeds=(1.0 - cv, 1.0 + cv)))["coupled_asymmetric"] is False


def test_claim_evidence_states_the_numbers(holding):
    ev = {c.id: c.evidence for c in claims(holding)}
    n = len(NESTED) * (len(NESTED) - 1) + len(DISJOINT) * (len(DISJOINT) - 1)
    assert ev["coupled_shorter_than_uncoupled"].startswith(f"shorter for {n} of {n} ordered pairs")
    assert ev["subset_easier"].count(" vs ") == len(subset_pairs(NESTED)) == 3
    assert "mnist10k-all>mnist10k-0-4 1.00 vs mnist10k-0-4>mnist10k-all 2.00" in ev["subset_easier"]
    assert "K=3 iterations: 1.0%" in ev["converges_in_few_iterations"]
    assert "over 24 relabellings" in ev["mantel_coupled_vs_finetuning"]
    assert ev["larger_model_shorter"] == "mlp-wide shorter than mlp for 12 of 12 ordered pairs"


def test_metrics_of_the_synthetic_result(holding):
    m = metrics(holding)
    assert m["coupled_shorter_fraction"] == 1.0
    assert m["large_model_shorter_fraction"] == 1.0
    assert m["coupled_loss_better_than_finetune_fraction"] == 1.0
    assert math.isclose(m["max_rel_change_last_iteration"], 0.01)
    assert math.isclose(m["seed_sd_coupled"], np.std([1.0, 1.01], ddof=1))
    assert m["ingredient_ratio[base]"] == 0.5 and m["ingredient_ratio[eps x10]"] == 0.25
    assert m["self_distance_coupled"] == 0.3
    assert math.isclose(m["mantel_r_disjoint_coupled"], 1.0)
    assert set(k for k in m if k.startswith("mantel_r_disjoint_")) == {"mantel_r_disjoint_coupled",
                                                                      "mantel_r_disjoint_uncoupled"}
    assert m["matrix_cross_coupled"].shape == (2, 2) and "matrix_large_fine-tuning" in m


def test_one_seed_gives_nan_spread():
    s = SeedSpread(coupled=np.array([1.0]), uncoupled=np.array([2.0]))
    assert math.isnan(s.sd("coupled")) and math.isnan(s.sd("uncoupled"))


def test_subset_pairs_follow_the_registry():
    assert subset_pairs(NESTED) == [("mnist10k-all", "mnist10k-0-4"), ("mnist10k-all", "mnist10k-0-2"),
                                    ("mnist10k-0-4", "mnist10k-0-2")]
    assert subset_pairs(DISJOINT) == []
    assert subset_pairs(("digits-all", "mnist10k-0-4")) == []  # different datasets


def test_convergence_without_two_iterations_is_nan():
    D = _matrix("coupled", DISJOINT[:3], np.ones((3, 3)), {p: {"per_iteration": [1.0]} for p in _pairs(DISJOINT[:3])})
    assert math.isnan(convergence(D).max_rel_change)


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------


def test_config_builds_the_study_and_coupled_configs():
    cfg = CoupledDistanceConfig(lr=0.1, steps=50, seed=3, nested_tasks=list(NESTED))
    assert cfg.study().source_lr == cfg.study().finetune_lr == 0.1 and cfg.study().seed == 3
    assert cfg.coupled().lr == 0.1 and cfg.coupled().steps == 50 and cfg.coupled().seed == 3
    assert cfg.nested_tasks == NESTED  # stored as a tuple
    p = cfg.parameters()
    assert p["scale"] == "cpu" and p["nested_tasks"] == list(NESTED) and p["permutations"] == 9999
    assert "cache_dir" not in p and "results_dir" not in p
    assert set(ingredient_variants(cfg)) >= {"base", "half the steps", "twice the steps"}
    assert ingredient_variants(cfg)["half the steps"] == {"steps": 25}


def test_make_bank_with_a_seed_trains_nothing():
    bank = make_bank(CoupledDistanceConfig(seed=0), seed=7)
    assert bank.cfg.seed == 7 and not bank._models and not bank._tasks


@pytest.mark.parametrize("name, value", [
    ("lr", -1), ("lr", 0.0), ("tol", 0.0), ("outer_iters", 0), ("steps", 1), ("steps", 2.5), ("n_per_class", 0),
    ("n_val_per_class", -3), ("source_steps", 0), ("batch_size", 0), ("block_size", 0), ("reg", -0.1),
    ("prox_lam", -1.0), ("prox_growth", 0.0), ("finetune_steps", 0), ("task2vec_samples", 0), ("w2_samples", 0),
    ("permutations", 0), ("permutations", 9.5), ("cost_checkpoints", 1), ("cost_checkpoints", 500),
    ("interpolation", "linear"), ("convention", "both"), ("model", "resnet-9000"), ("large_model", "nope"),
    ("nested_tasks", ["mnist10k-all", "mnist10k-0-4"]), ("nested_tasks", "mnist10k-all"),
    ("disjoint_tasks", ["mnist10k-01", "nope"]), ("disjoint_tasks", ["mnist10k-01", "mnist10k-23"]),
    ("disjoint_tasks", ["mnist10k-01", "mnist10k-23", "mnist10k-01"]),
    ("cross_domain", ["digits-all", "mnist10k-all", "mnist10k-01"]), ("ingredient_pair", ["mnist10k-0-4"]),
    ("seeds", []), ("seeds", [0, -1]), ("seeds", 3), ("seed", -1), ("seed", 0.5), ("device", "tpu"),
    ("device", 0), ("cache_dir", 3), ("scale", ""),
])
def test_config_rejects_a_bad_value_naming_the_parameter(name, value):
    with pytest.raises(ValueError) as err:
        CoupledDistanceConfig(**{name: value})
    msg = str(err.value)
    assert name in msg and "\n" not in msg
    if name == "lr":
        assert msg.startswith("lr=") and "source_lr" not in msg  # the notebook's name, not StudyConfig's


def test_cost_checkpoints_must_suit_the_half_steps_variant():
    CoupledDistanceConfig(steps=20, cost_checkpoints=11)  # valid for the base trajectory...
    with pytest.raises(ValueError, match="cost_checkpoints=12 .*half the steps"):
        CoupledDistanceConfig(steps=20, cost_checkpoints=12)  # ...but not once the steps are halved


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a CUDA device")
def test_cuda_without_a_gpu_is_rejected():
    with pytest.raises(ValueError, match="device='cuda'"):
        CoupledDistanceConfig(device="cuda")
