"""Model cards written from run files: which numbers become model-index results, and what fails validation."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from modeling_petct.errors import PetCtInputError
from modeling_petct.hub.card import CardInputs, EvalSource, render_model_card, validate_model_card

CONFIG = {"architectures": ["PetCtForSegmentation"], "preset": "swinunetr-v2-small", "backbone": "swinunetr-v2",
          "modalities": ["PET", "CT"], "num_labels": 2}
FINETUNE_RESULTS = {  # the shape of training/segmentation.py's results.json
    "preset": "swinunetr-v2-small", "best_val_dice": 0.58, "history": [{"val_dice": 0.5, "val_fpv_ml": 3.0}],
    "test": {"test_dice": 0.612345, "test_fpv_ml": 2.5, "test_fnv_ml": float("nan")},
    "test_cases": {"case_a": {"dice": 0.1, "fpv_ml": 0.0, "fnv_ml": 4.0}},
}


def _card(tmp_path, results, **inputs) -> ModelCard:
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "training_summary.json").write_text(json.dumps({"selected_on": "val_dice", "step": 1200}))
    source = EvalSource(tmp_path / "results.json", "AutoPET FDG (paper test split)")
    card = render_model_card(CardInputs("you/petct-seg", tmp_path, evals=[source], **inputs), CONFIG, 18_350_000)
    return validate_model_card(str(card))


def test_only_aggregate_finite_results_enter_the_model_index(tmp_path):
    card = _card(tmp_path, FINETUNE_RESULTS, base_model="you/petct-mae")
    results = card.data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_config) for r in results] == [
        ("dice", 0.6123, "test"), ("false_positive_volume", 2.5, "test")]  # NaN FNV and per-case Dice left out
    assert results[0].task_type == "image-segmentation" and results[0].dataset_type == "autopet-fdg-paper-test-split"
    assert card.data.pipeline_tag == "image-segmentation" and card.data.base_model == "you/petct-mae"
    assert '"selected_on": "val_dice"' in card.text and "18.35M" in card.text


def test_files_without_results_or_bad_metadata_are_refused(tmp_path):
    with pytest.raises(PetCtInputError, match=r"results\.json: no aggregate metrics"):
        _card(tmp_path, {"history": [{"val_dice": 0.5, "val_fpv_ml": 1.0}]})
    with pytest.raises(PetCtInputError, match="license 'gpl-ish' is not a Hub licence id"):
        _card(tmp_path, FINETUNE_RESULTS, license="gpl-ish")
    broken = "---\nmodel-index:\n- name: x\n  results:\n  - task: {type: image-segmentation}\n---\n# x\n"
    with pytest.raises(PetCtInputError, match="README.md: invalid model card metadata"):
        validate_model_card(broken)
