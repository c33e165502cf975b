"""The released phantom models: built by one command (tiny plan here), Hub-format folders with a true record and card,
loadable by name, and never trained on the quickstart's validation or test cohorts."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from modeling_petct.atomic import file_sha256
from modeling_petct.experiments.release import (FOUNDATION, PLANS, SEGMENTER, build_release, released_cohort_seeds,
                                                released_models)
from modeling_petct.experiments.quickstart import BUDGETS
from modeling_petct.experiments.release_card import render_card

QUICKSTART_SEEDS = range(0, 100)  # `petct quickstart --seed S`: any seed a user plausibly passes


def _quickstart_eval_seeds() -> set[int]:
    """Cohort seeds of the quickstart's validation, test and held-out-centre pools, every budget and seed."""
    return {pool_seed for budget in BUDGETS.values() for seed in QUICKSTART_SEEDS
            for role, _, _, pool_seed, _ in budget.cohort.pools(seed) if role in ("val", "test", "held_out_test")}


def test_release_plans_never_use_the_quickstarts_evaluation_cohorts():
    for plan in PLANS.values():
        seeds = {p[3] for p in plan.cohort.pools(plan.seed)}
        assert not seeds & _quickstart_eval_seeds()


def test_shipped_models_records_are_disjoint_and_true():
    shipped = released_models()
    if not shipped:
        pytest.skip("no released models in this checkout")
    assert not released_cohort_seeds() & _quickstart_eval_seeds()
    for name, folder in shipped.items():
        record = json.loads((folder / "release.json").read_text())
        assert record["sha256"]["model.safetensors"] == file_sha256(folder / "model.safetensors")
        card = (folder / "README.md").read_text()
        assert "synthetic phantoms only" in card and record["command"] in card and str(record["steps"]) in card
        assert card == render_card(record)  # the shipped card is the one its record writes, nothing edited by hand
        meta = ModelCard(card).data
        assert meta.pipeline_tag == ("image-feature-extraction" if "autoencoder" in record["kind"]
                                     else "image-segmentation")  # no MAE sent to a segmentation pipeline
        assert "AutoModel" in json.loads((folder / "config.json").read_text())["auto_map"]  # AutoModel.from_pretrained
    shipped_steps = json.loads((shipped[FOUNDATION] / "release.json").read_text())["steps"]
    assert shipped_steps == PLANS["full"].mae_steps  # `petct release` (plan full) rebuilds what ships


def test_tiny_release_builds_loadable_folders(tmp_path):
    from modeling_petct import PetCtForMaskedImageModeling
    from modeling_petct.inference import load_segmentation_model

    out = build_release(tmp_path / "work", tmp_path / "released", plan="tiny", command="petct release --plan tiny",
                        log=lambda *_: None)
    assert set(out) == {FOUNDATION, "petct-phantom-fm-pet", "petct-phantom-fm-ct", SEGMENTER}
    PetCtForMaskedImageModeling.from_pretrained(out[FOUNDATION])
    model = load_segmentation_model(out[SEGMENTER])
    assert model.config.organ_labels  # organ-aware
    record = json.loads((out[SEGMENTER] / "release.json").read_text())
    assert record["cohort_seed"] == PLANS["tiny"].seed and record["steps"] == PLANS["tiny"].segmenter_steps
    assert {p["cohort_seed"] for p in record["cohort"]} == released_cohort_seeds(tmp_path / "released")


def test_the_released_segmenter_is_offered_by_name_and_by_the_demo():
    from modeling_petct.cli.demo import released_segmenters
    from modeling_petct.inference.loading import resolve_model_dir

    shipped = released_models()
    if SEGMENTER not in shipped:
        pytest.skip("no released segmenter in this checkout")
    assert resolve_model_dir(SEGMENTER) == str(shipped[SEGMENTER])
    offered = released_segmenters()
    assert list(offered.values()) == [str(shipped[SEGMENTER])]  # the MAEs are not segmenters
    assert "synthetic phantoms only" in next(iter(offered))


def test_the_quickstart_starts_from_the_released_foundation_models():
    from modeling_petct.experiments.quickstart import Budget, released_foundations
    from modeling_petct.experiments.quickstart_report import _foundation_line

    if FOUNDATION not in released_models():
        pytest.skip("no released foundation models in this checkout")
    assert Budget().foundation == "released"
    maes = released_foundations()
    record = json.loads((maes["joint"].model_dir / "release.json").read_text())
    assert maes["joint"].state.step == record["steps"] and maes["pet"].model_dir.name == "petct-phantom-fm-pet"
    line = _foundation_line(maes)
    assert "released weights" in line and "not trained in this run" in line and record["command"] in line
