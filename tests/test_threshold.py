"""Classical threshold baselines: the four rules, the component scorer behind their choice, the choice on its own
studies only, and `petct segment --method threshold` writing a model's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeling_petct.data.organs import ORGANS
from modeling_petct.evaluation import ComponentScorer, case_metrics
from modeling_petct.experiments.baselines import Study, choose_rules, load_study, score_rules, threshold_baselines
from modeling_petct.inference.threshold import ThresholdRule, fixed_fraction, liver_threshold

BRAIN, LIVER = ORGANS.index("brain") + 1, ORGANS.index("liver") + 1


def _volume():
    """Background SUV 1; a 27-voxel lesion (SUV 8, core 10); a 1-voxel speck (SUV 6); a brain block (SUV 9)."""
    suv = np.ones((20, 20, 20), np.float32)
    suv[2:5, 2:5, 2:5] = 8.0
    suv[3, 3, 3] = 10.0
    suv[10, 10, 10] = 6.0
    suv[14:18, 14:18, 14:18] = 9.0
    organs = np.zeros(suv.shape, np.uint8)
    organs[14:18, 14:18, 14:18] = BRAIN
    label = np.zeros(suv.shape, np.uint8)
    label[2:5, 2:5, 2:5] = 1
    return suv, organs, label


def test_suv_rule_keeps_every_hot_component_over_the_minimum_volume():
    suv, organs, _ = _volume()
    assert ThresholdRule("suv", 4.0, 0.0).mask(suv, 1.0).sum() == 27 + 1 + 64
    assert ThresholdRule("suv", 4.0, 2.0).mask(suv, 1.0).sum() == 27 + 64  # the 1-voxel speck is under 2 ml
    assert ThresholdRule("suv", 7.0, 0.0).mask(suv, 1.0).sum() == 27 + 64


def test_organ_rule_drops_physiological_uptake_and_its_one_voxel_rim():
    suv, organs, _ = _volume()
    suv[13, 15, 15] = 9.0  # hot voxel touching the brain: inside the dilated organ
    mask = ThresholdRule("suv-organs", 4.0, 0.0).mask(suv, 1.0, organs, ORGANS)
    assert mask[14:18, 14:18, 14:18].sum() == 0 and mask[13, 15, 15] == 0
    assert mask.sum() == 27 + 1
    with pytest.raises(ValueError, match="organ map"):
        ThresholdRule("suv-organs").mask(suv, 1.0)


def test_fixed_fraction_is_per_region():
    suv = np.ones((10, 10, 20), np.float32)
    suv[1:4, 1:4, 1:4] = 5.0
    suv[2, 2, 2] = 20.0  # 41% of 20 = 8.2: only the peak of this region stays
    suv[5:8, 5:8, 10:13] = 5.0  # its own SUVmax 5: the whole region stays
    out = fixed_fraction(suv, suv >= 4.0)
    assert out[1:4, 1:4, 1:4].sum() == 1 and out[5:8, 5:8, 10:13].sum() == 27


def test_percist_threshold_from_the_liver():
    rng = np.random.default_rng(0)
    suv = np.ones((12, 12, 12), np.float32)
    organs = np.zeros(suv.shape, np.uint8)
    organs[2:10, 2:10, 2:10] = LIVER
    suv[2:10, 2:10, 2:10] = rng.normal(2.0, 0.2, (8, 8, 8))
    core = suv[3:9, 3:9, 3:9]
    assert liver_threshold(suv, organs, ORGANS) == pytest.approx(1.5 * core.mean() + 2 * core.std(), rel=1e-5)
    assert liver_threshold(suv, np.zeros_like(organs), ORGANS) is None
    assert ThresholdRule("percist", 0, 0).mask(suv, 1.0, np.zeros_like(organs), ORGANS).sum() == 0


def test_component_scorer_equals_case_metrics_of_each_filtered_mask():
    rng = np.random.default_rng(1)
    pred = rng.random((24, 24, 24)) > 0.93
    gt = rng.random((24, 24, 24)) > 0.95
    scorer = ComponentScorer(pred, gt, 0.064)
    import cc3d

    labels = cc3d.connected_components(pred.astype(np.uint8), connectivity=18)
    for min_voxels in (0, 2, 3, 5):
        kept = scorer.sizes >= min_voxels
        filtered = np.isin(labels, np.flatnonzero(kept) + 1)
        assert scorer.metrics(kept) == pytest.approx(case_metrics(filtered, gt, 0.064), nan_ok=True)
    assert np.isnan(ComponentScorer(pred, np.zeros_like(gt), 1.0).metrics()["dice"])


def _study(study_id, suv, organs, label):
    return Study(study_id, suv, label > 0, 1.0, organs, ORGANS)


def test_choice_uses_only_the_studies_it_is_given():
    suv, organs, label = _volume()
    choose = [_study("a", suv, organs, label)]
    (rule, score), = choose_rules(("suv-organs",), choose)[0].values()
    assert rule.method == "suv-organs" and rule.min_ml >= 1.0  # the speck is dropped, the lesion kept
    assert score == pytest.approx(1.0)
    other = suv.copy()
    other[10, 10, 10] = 1.0
    out = threshold_baselines(choose, [_study("b", other, organs, label)], methods=("suv", "suv-organs"))
    assert out["suv-organs"]["per_case"]["b"]["dice"] == pytest.approx(1.0)
    assert out["suv"]["per_case"]["b"]["false_positive_components"] >= 1  # the brain, whatever t the choice took
    assert json.dumps(out["suv"]["rule"])  # plain values for the report's JSON


def _calibrated(study_id, lesion_suv, distractor_suv):
    """Background SUV 1; a 27-voxel lesion at ``lesion_suv``; a 27-voxel non-lesion hot spot at ``distractor_suv``."""
    suv = np.ones((16, 16, 16), np.float32)
    suv[2:5, 2:5, 2:5] = lesion_suv
    suv[10:13, 10:13, 10:13] = distractor_suv
    label = np.zeros(suv.shape, np.uint8)
    label[2:5, 2:5, 2:5] = 1
    return _study(study_id, suv, np.zeros(suv.shape, np.uint8), label)


def test_the_rule_is_chosen_on_validation_even_where_the_test_optimum_differs():
    """Validation lesions are faint (SUV 3.2, nothing else hot): t = 2.5 wins there. Test lesions are bright (SUV 8)
    beside a hot non-lesion spot (SUV 4.5): t = 5 would win there. The choice must stay t = 2.5."""
    val = [_calibrated("v1", 3.2, 1.0), _calibrated("v2", 3.4, 1.0)]
    test = [_calibrated("t1", 8.0, 4.5), _calibrated("t2", 8.0, 4.5)]
    (on_val, _), = choose_rules(("suv",), val)[0].values()
    (on_test, _), = choose_rules(("suv",), test)[0].values()
    assert on_val.t == 2.5 and on_test.t == 5.0
    out = threshold_baselines(val, test, methods=("suv",), n_boot=50)
    assert out["suv"]["rule"]["t"] == 2.5 and out["suv"]["label"] == on_val.label
    assert [m["false_positive_components"] for m in out["suv"]["per_case"].values()] == [1, 1]  # what t = 2.5 costs


def test_rules_needing_organs_are_skipped_with_the_reason_not_scored_on_a_subset():
    suv, organs, label = _volume()
    mapped, unmapped = _study("a", suv, organs, label), Study("b", suv, label > 0, 1.0, None, ORGANS)
    out = threshold_baselines([mapped], [mapped, unmapped], methods=("suv", "suv-organs", "percist"), n_boot=50)
    assert set(out["suv"]["per_case"]) == {"a", "b"}
    assert out["suv-organs"] == {"skipped": "1 of 2 test studies have no organ map"}
    assert out["percist"] == {"skipped": "1 of 1 validation studies have no liver in the organ map"}
    per_case, skipped = score_rules({"percist": ThresholdRule("percist", 0, 0)}, [unmapped])
    assert skipped == {"percist": "1 of 1 scored studies have no organ map"} and per_case["percist"] == {}


def test_phantom_study_loads_on_the_pet_grid(phantom_study):

    study = load_study(phantom_study)
    assert study.suv.shape == study.label.shape == study.organs.shape
    assert study.excluded.any() and not study.excluded.all()
    per_case, _ = score_rules({"suv-organs": ThresholdRule("suv-organs", 3.0, 0.5)}, [study])
    assert per_case["suv-organs"][phantom_study.name]["gt_lesions"] == 4


def test_segment_method_threshold_writes_a_models_outputs(phantom_study, tmp_path, capsys):
    """The TMTV workflow from the command line: SUV >= 4, >= 3 ml on the PET grid, the same files as a model's run."""
    from modeling_petct.cli import main
    from modeling_petct.data.io import read_pet, read_volume

    out = tmp_path / "lesions.nii.gz"
    code = main(["segment", "--method", "threshold", "--pet", str(phantom_study / "PET.nii.gz"),
                 "--ct", str(phantom_study / "CT.nii.gz"), "-o", str(out), "--stats", str(tmp_path / "lesions.csv"),
                 "--stats-json", "-q"])
    assert code == 0
    pet, mask = read_pet(phantom_study / "PET.nii.gz"), read_volume(out, modality="SEG")
    assert np.allclose(mask.affine, pet.affine) and mask.shape == pet.shape
    expected = ThresholdRule("suv", 4.0, 3.0).mask(np.asarray(pet.array, np.float32), pet.voxel_volume_ml)
    assert np.array_equal(np.asarray(mask.array) > 0, expected > 0) and expected.any()
    settings = json.loads((tmp_path / "lesions.settings.json").read_text())
    assert settings["method"] == "threshold" and settings["rule"] == {"method": "suv", "t": 4.0, "min_ml": 3.0}
    assert (tmp_path / "lesions.csv").is_file() and (tmp_path / "lesions.json").is_file()


def test_segment_method_threshold_refuses_network_flags(phantom_study, tmp_path, capsys):
    from modeling_petct.cli import main

    code = main(["segment", "--method", "threshold", "--model", "some/model", "--pet", str(phantom_study / "PET.nii.gz"),
                 "--ct", str(phantom_study / "CT.nii.gz"), "-o", str(tmp_path / "m.nii.gz")])
    assert code == 2 and "--model" in capsys.readouterr().err and not (tmp_path / "m.nii.gz").exists()
