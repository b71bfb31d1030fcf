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
    LengthStudy,
    SeedSpread,
    Variant,
    claims,
    convergence,
    ingredient_variants,
    input_space_comparison,
    make_bank,
    mantel_table,
    metrics,
    preset_differences,
    rank_agreement,
    relative_asymmetry,
    subset_comparison,
    subset_pairs,
    target_comparison,
)
from ctd_lib.task_distance.matrices import DistanceMatrix

NESTED = ("mnist10k-all", "mnist10k-0-4", "mnist10k-0-2")  # every ordered pair i < j is (superset, subset)
DISJOINT = ("mnist10k-01", "mnist10k-23", "mnist10k-45", "mnist10k-67")  # 4! = 24 relabellings: p can be < 0.05
CLAIM_IDS = ["coupled_shorter_than_uncoupled", "coupled_asymmetric", "subset_easier", "converges_in_few_iterations",
             "larger_model_shorter", "mantel_coupled_vs_finetuning", "input_space_distances_not_finetuning"]


def _matrix(method, names, values, extras=None, per_step=None):
    """A matrix with a zero diagonal; ``per_step`` (a matrix) fills every pair's per-step distance."""
    values = np.asarray(values, dtype=float).copy()
    np.fill_diagonal(values, 0.0)
    extras = {k: dict(v) for k, v in (extras or {}).items()}
    if per_step is not None:
        for i, s in enumerate(names):
            for j, t in enumerate(names):
                if i != j:
                    extras.setdefault((s, t), {})["per_step_distance"] = float(np.asarray(per_step)[i, j])
    return DistanceMatrix(method=method, names=list(names), values=values, extras=extras)


def _study():
    chords = {10: np.array([1, 2, 5, 10])}
    poly = {f"{k}/10": np.array([1.0, 1.5, 2.0, 3.0]) for k in ("coupled", "uncoupled", "self")}
    return LengthStudy(kinds=("coupled", "uncoupled", "self"), steps=(10,), chords=chords, polyline=poly,
                       per_step_batch={k: 4.0 for k in poly}, reported={k: 2.0 for k in poly}, coarse_chords=5)


def _pairs(names):
    return [(s, t) for s in names for t in names if s != t]


def _synthetic(*, uncoupled_shift=1.0, symmetric=False, subset_upper=1.0, last_change=0.01, large_factor=0.5,
               anti_correlated=False, seeds=(1.0, 1.01), input_space_like_finetuning=False):
    """A result for which every claim holds with the defaults; each argument can break one claim."""
    rng = np.random.default_rng(0)
    F = rng.uniform(1.0, 3.0, size=(4, 4))  # fine-tuning distances on the disjoint tasks, all distinct
    C = 10.0 - F if anti_correlated else F.copy()
    if symmetric:
        C = (C + C.T) / 2
    idx = {n: i for i, n in enumerate(DISJOINT)}
    c_extras = {(s, t): {"per_iteration": [C[idx[s], idx[t]] / (1 + last_change), C[idx[s], idx[t]]],
                         "target_val_acc": 0.9, "target_val_loss": 0.3, "endpoint_val_acc": 0.7,
                         "endpoint_val_loss": 0.9} for s, t in _pairs(DISJOINT)}
    f_extras = {(s, t): {"target_val_acc": 0.8, "target_val_loss": 0.4} for s, t in _pairs(DISJOINT)}
    # input-space distances: one pattern unrelated to fine-tuning (exact p = 0.625 against F), or F itself
    G = F if input_space_like_finetuning else np.random.default_rng(101).uniform(1.0, 3.0, size=(4, 4))
    disjoint = {"coupled": _matrix("coupled-mlp", DISJOINT, C, c_extras, per_step=5 * C),
                "uncoupled": _matrix("uncoupled-mlp", DISJOINT, C + uncoupled_shift, per_step=5 * C + 1),
                "fine-tuning": _matrix("fine-tuning-mlp", DISJOINT, F, f_extras),
                "w2-pixel": _matrix("w2-pixel", DISJOINT, G), "w2-feature": _matrix("w2-feature", DISJOINT, G * 2)}
    vae = {"vae-mixture": _matrix("vae-mixture", DISJOINT, G + 1), "vae-fine-tuning": _matrix("vae-fine-tuning",
                                                                                              DISJOINT, G * 3)}
    N = np.array([[0, subset_upper, subset_upper + 0.1], [2.0, 0, subset_upper + 0.2], [2.1, 2.2, 0]])
    nested = {"coupled": _matrix("coupled-mlp", NESTED, N, per_step=N), "uncoupled": _matrix("uncoupled-mlp", NESTED,
                                                                                             N + 1.5, per_step=N + 1),
              "fine-tuning": _matrix("fine-tuning-mlp", NESTED, N.T + rng.uniform(0, 0.1, size=(3, 3)))}
    large = {"coupled": _matrix("coupled-mlp-wide", DISJOINT, C * large_factor, per_step=6 * C),
             "fine-tuning": _matrix("fine-tuning-mlp-wide", DISJOINT, F)}
    cross = {"coupled": _matrix("coupled-mlp", ("digits-all", "mnist10k-all"), [[0, 1.0], [2.0, 0]])}
    config = CoupledDistanceConfig(nested_tasks=NESTED, disjoint_tasks=DISJOINT, seeds=(0, 1), permutations=99,
                                   scale="test")
    ingredients = IngredientStudy(variants=(Variant("base", 1.0, 1.1, 2.0, [1.0]), Variant("eps x10", 0.5, 0.6, 2.0)),
                                  self_pair=Variant("same task", 0.3, 0.3, 0.4))
    trained = {k: disjoint[k] for k in ("coupled", "uncoupled", "fine-tuning")}
    return CoupledDistanceResult(
        config=config, nested=nested, disjoint=disjoint, large=large, cross=cross, subset=subset_comparison(nested),
        mantel_disjoint=mantel_table(trained, permutations=99, seed=0),
        mantel_nested=mantel_table(nested, permutations=99, seed=0),
        ingredients=ingredients, convergence=convergence(disjoint["coupled"]), target=target_comparison(disjoint),
        spread=SeedSpread(coupled=np.asarray(seeds), uncoupled=np.asarray(seeds) * 2), study=_study(), vae=vae,
        input_space=input_space_comparison({**vae, "w2-pixel": disjoint["w2-pixel"],
                                            "w2-feature": disjoint["w2-feature"]}, disjoint["fine-tuning"], seed=0),
        rank_disjoint=rank_agreement(trained), rank_nested=rank_agreement(nested),
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
    ("input_space_distances_not_finetuning", {"input_space_like_finetuning": True}),
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
    assert f"per-step estimator on the mini-batches: shorter for {n} of {n}" in ev["coupled_shorter_than_uncoupled"]
    assert ev["subset_easier"].count(" vs ") == len(subset_pairs(NESTED)) == 3
    assert "mnist10k-all>mnist10k-0-4 1.00 vs mnist10k-0-4>mnist10k-all 2.00" in ev["subset_easier"]
    assert "K=3 iterations: 1.0%" in ev["converges_in_few_iterations"]
    assert "over 24 relabellings" in ev["mantel_coupled_vs_finetuning"]
    assert ev["larger_model_shorter"].startswith("mlp-wide shorter than mlp for 12 of 12 ordered pairs, by more than")
    assert "per-step estimator: 0 of 12" in ev["larger_model_shorter"]  # per step the wide model is not shorter


def test_a_comparison_within_the_noise_margin_does_not_hold():
    """All coupled distances below the uncoupled ones, but by less than twice the seed spread: not shown."""
    r = _synthetic(uncoupled_shift=0.05, seeds=(1.0, 1.2))
    n_nested = len(NESTED) * (len(NESTED) - 1)  # the nested pairs are 1.5 apart: beyond the margin
    assert r.n_shorter == len(r.coupled_all) and r.n_shorter_resolved == n_nested
    assert _verdicts(r)["coupled_shorter_than_uncoupled"] is False
    assert _verdicts(_synthetic(uncoupled_shift=0.05))["coupled_shorter_than_uncoupled"] is True  # a small spread


def test_metrics_record_the_estimator_the_preset_and_the_studies(holding):
    m = metrics(holding)
    assert (m["length_estimator"], m["length_inputs"]) == ("checkpoints", "interpolated")
    assert m["preset_differences"] == {k: list(v) for k, v in preset_differences(holding.config).items()}
    assert "lr" in m["preset_differences"] and "momentum" not in m["preset_differences"]
    assert m["length_study_polyline[self/10]"].tolist() == [1.0, 1.5, 2.0, 3.0]
    assert "weighted_tau_disjoint_coupled" in m and "fig7_mantel_r_vs_finetuning[vae-mixture]" in m
    assert m["coupled_endpoint_loss_better_fraction"] == 0.0  # endpoint 0.9 against fine-tuning 0.4


def test_length_study_split():
    survives, noise = _study().split("coupled", 10)
    assert survives == pytest.approx(2.0 + 1.0 * (5 - 5) / 5) and noise == pytest.approx(1.0)


def test_paper_parameters_are_the_authors_preset():
    import yaml

    from ctd_lib.task_distance.coupled import AUTHORS_PRESET
    paper = yaml.safe_load(open("params/paper/03_coupled_distance.yml"))
    for k, v in AUTHORS_PRESET.items():
        assert paper.get(k) == v, k
    assert preset_differences(CoupledDistanceConfig(**{**paper, "device": "cpu"})) == {}


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
    cfg = CoupledDistanceConfig(lr=0.1, source_lr=0.2, finetune_lr=0.3, steps=50, seed=3, nested_tasks=list(NESTED),
                                momentum=0.5, schedule="linear", length_inputs="held_out")
    assert (cfg.study().source_lr, cfg.study().finetune_lr, cfg.study().seed) == (0.2, 0.3, 3)
    assert cfg.coupled().lr == 0.1 and cfg.coupled().steps == 50 and cfg.coupled().seed == 3
    assert (cfg.coupled().momentum, cfg.coupled().schedule, cfg.coupled().length_inputs) == (0.5, "linear", "held_out")
    assert cfg.nested_tasks == NESTED  # stored as a tuple
    p = cfg.parameters()
    assert p["scale"] == "cpu" and p["nested_tasks"] == list(NESTED) and p["permutations"] == 9999
    assert "cache_dir" not in p and "results_dir" not in p
    variants = ingredient_variants(cfg)
    assert variants["schedule: arcsine"] == {"schedule": "arcsine"}  # the other choice than the base's
    assert variants["no proximal term"] == {"prox_lam": 0.0} and len(variants) == 6
    assert "schedule: linear" in ingredient_variants(CoupledDistanceConfig())


def test_make_bank_with_a_seed_trains_nothing():
    bank = make_bank(CoupledDistanceConfig(seed=0), seed=7)
    assert bank.cfg.seed == 7 and not bank._models and not bank._tasks


@pytest.mark.parametrize("name, value", [
    ("lr", -1), ("lr", 0.0), ("tol", 0.0), ("outer_iters", 0), ("steps", 1), ("steps", 2.5), ("n_per_class", 0),
    ("n_val_per_class", -3), ("source_steps", 0), ("batch_size", 0), ("block_size", 0), ("reg", -0.1),
    ("prox_lam", -1.0), ("prox_growth", 0.0), ("finetune_steps", 0), ("task2vec_samples", 0), ("w2_samples", 0),
    ("permutations", 0), ("permutations", 9.5), ("length_checkpoints", 0), ("length_checkpoints", 500),
    ("length_estimator", "exact"), ("length_inputs", "test"), ("length_samples", 0), ("block_sampling", "per_block"),
    ("schedule", "cosine"), ("momentum", -0.5), ("weight_decay", -1e-4), ("source_lr", 0.0), ("finetune_lr", -1.0),
    ("study_steps", []), ("study_steps", [1, 10]), ("study_steps", 100), ("vae_fisher", "pixels"), ("vae_steps", 0),
    ("vae_source_steps", 0),
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
        assert msg.startswith("lr=") and "source_lr" not in msg  # the transfer's rate, not the source models'


def test_capacity_tasks_must_be_disjoint_tasks():
    with pytest.raises(ValueError, match="capacity_tasks=.*disjoint_tasks"):
        CoupledDistanceConfig(capacity_tasks=["mnist10k-01", "mnist10k-0-4"])


def test_length_checkpoints_must_fit_the_steps():
    CoupledDistanceConfig(steps=20, length_checkpoints=20)  # a chord per step is the per-step estimator
    with pytest.raises(ValueError, match="length_checkpoints=21"):
        CoupledDistanceConfig(steps=20, length_checkpoints=21)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a CUDA device")
def test_cuda_without_a_gpu_is_rejected():
    with pytest.raises(ValueError, match="device='cuda'"):
        CoupledDistanceConfig(device="cuda")
