"""`petct study` scores the classical threshold baselines beside its networks: each rule chosen on the study's
validation studies only, scored on its test studies, in table.md and results.json, with the best arm against the
organ-excluded threshold. The cells' records are written by hand (no training here); the baselines run for real on
harmonised phantoms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modeling_petct.data.cache import StudyCache
from modeling_petct.experiments.baselines import choose_rules, load_study
from modeling_petct.experiments.cohort import harmonize_into_cache
from modeling_petct.experiments.study import StudyArguments, cell_arguments, grid, run_study
from modeling_petct.inference.threshold import METHODS
from modeling_petct.training.results import RunResult


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 validation and 4 test phantoms (other cohort seeds: their rules' optima differ), harmonised into a cache."""
    from modeling_petct.data.synthetic.phantom import write_phantom_cohort

    root = tmp_path_factory.mktemp("study_baselines")
    val, test = (write_phantom_cohort(root / role, 4, seed, size="small") for role, seed in (("val", 21), ("test", 22)))
    cache = StudyCache(root / "cache")
    harmonize_into_cache([*val, *test], cache)
    return root, cache, val, test


def _study_with_cells(cache, out: Path, val, test, **grid_options) -> StudyArguments:
    """A one-cell study whose cell already ran: its record holds the split and a network that predicts the truth."""
    from modeling_petct.evaluation import case_metrics

    args = StudyArguments(presets=["tiny-unet"], fractions=[1.0], seeds=[0], probe_k=0, cache_dir=str(cache.root),
                          output_dir=str(out), **grid_options)
    (cell,) = grid(args)
    cases = {}
    for folder in test:
        study = load_study(folder)
        cases[folder.name] = case_metrics(study.label, study.label, study.voxel_ml)
    record = RunResult(network="plain-conv-unet", preset="tiny-unet", arm="scratch", pretrained=None,
                       linear_probe=False, schedule="epochs", k_shot=None, label_fraction=1.0, n_train=2, seed=0,
                       split_seed=0, steps=1, learning_rate=1e-3, selected_model="", selected_step=1,
                       best_val_score=0.5, split={"train": [], "val": [d.name for d in val], "test": [d.name for d in test]},
                       test_cases=cases)
    record.save(Path(cell_arguments(args, cell)[2].output_dir))
    return args


def test_study_reports_every_baseline_chosen_on_validation_only(cohort, tmp_path):
    root, cache, val, test = cohort
    paths = run_study(_study_with_cells(cache, tmp_path / "study", val, test), log=lambda *_: None)
    table = Path(paths["table"]).read_text()
    saved = json.loads(Path(paths["json"]).read_text())["baselines"]
    on_val, _ = choose_rules(METHODS, [load_study(d) for d in val])
    on_test, _ = choose_rules(METHODS, [load_study(d) for d in test])
    assert any(on_val[m][0] != on_test[m][0] for m in METHODS)  # the two optima differ: the test below can fail
    for method in METHODS:
        record = saved["methods"][method]
        assert record["rules"]["0"] == {"method": method, "t": on_val[method][0].t, "min_ml": on_val[method][0].min_ml}
        assert sorted(record["per_case"]) == sorted(f"seed0/{d.name}" for d in test)
        assert f"| {method} | {on_val[method][0].label} |" in table
    assert "## Classical threshold baselines, same test studies" in table
    versus = saved["best_arm_versus_reference"]
    assert versus["reference"] == "suv-organs" and versus["arm"] == "scratch" and versus["n"] >= 1
    reference = saved["methods"]["suv-organs"]["aggregate"]["dice"]
    assert versus["diff"] == pytest.approx(1.0 - reference, abs=1e-6)  # a network that predicts the truth
    assert "against the organ-excluded threshold (SUV >= " in table


def test_study_skips_organ_rules_without_organ_maps_and_baselines_can_be_turned_off(cohort, tmp_path):
    root, _, val, test = cohort
    bare = []
    for folder in [*val, *test]:
        copy = tmp_path / "bare" / folder.name
        shutil.copytree(folder, copy)
        (copy / "organs.nii.gz").unlink()
        bare.append(copy)
    cache = StudyCache(tmp_path / "cache")
    harmonize_into_cache(bare, cache)
    paths = run_study(_study_with_cells(cache, tmp_path / "study", bare[:4], bare[4:], baselines=["suv", "suv-organs"]),
                      log=lambda *_: None)
    table, saved = Path(paths["table"]).read_text(), json.loads(Path(paths["json"]).read_text())["baselines"]
    assert saved["methods"]["suv-organs"] == {"skipped": "4 of 4 validation studies have no organ map"}
    assert "- suv-organs: not scored (4 of 4 validation studies have no organ map)" in table
    assert "aggregate" in saved["methods"]["suv"] and set(saved["methods"]) == {"suv", "suv-organs"}
    assert saved["best_arm_versus_reference"]["reference"] == "suv"  # the plain threshold when no organ map
    off = run_study(_study_with_cells(cache, tmp_path / "off", bare[:4], bare[4:], baselines=["none"]),
                    log=lambda *_: None)
    assert "baselines" not in json.loads(Path(off["json"]).read_text())
    assert "threshold baselines" not in Path(off["table"]).read_text()


def test_study_refuses_an_unknown_baseline_before_any_cell_runs(tmp_path, capsys):
    from modeling_petct.cli import main

    code = main(["study", "--cache-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--baselines", "otsu"])
    assert code == 2 and "--baselines" in capsys.readouterr().err and not (tmp_path / "o").exists()
