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


PHANTOM_RUN = {  # training.results.RunResult of a quickstart-style run on synthetic phantoms
    "network": "plain-conv-unet", "preset": "tiny-unet", "arm": "pretrained", "pretrained": "runs/mae/best",
    "linear_probe": False, "schedule": "epochs", "k_shot": None, "label_fraction": 0.3, "n_train": 6, "seed": 0,
    "split_seed": 0, "steps": 320, "learning_rate": 0.001, "selected_model": "runs/seg/best", "selected_step": 300,
    "best_val_dice": 0.41,
    "split": {"train": [f"phantom_000_{i:04d}" for i in range(6)], "val": ["phantom_000_0010", "phantom_000_0011"],
              "test": ["phantom_000_0020", "phantom_000_0021", "phantom_000_0022"], "pool_size": 20},
    "test": {"test_dice": 0.35, "test_fpv_ml": 1.25, "test_fnv_ml": 3.5},
    "test_cases": {f"phantom_000_002{i}": {"dice": 0.35, "fpv_ml": 1.25, "fnv_ml": 3.5} for i in range(3)},
}


def _record_card(tmp_path, record, config=CONFIG) -> ModelCard:
    """A run folder as training writes it (results.json beside best/), carded from best/ alone."""
    (tmp_path / "best").mkdir(parents=True)
    (tmp_path / "results.json").write_text(json.dumps(record))
    card = render_model_card(CardInputs("you/petct-phantom", tmp_path / "best"), config, 1_000_000)
    return validate_model_card(str(card))


def test_the_card_states_what_the_run_record_says(tmp_path):
    card = _record_card(tmp_path, PHANTOM_RUN, {**CONFIG, "backbone": "plain-conv-unet", "strides": [1, 2, 2, 2]})
    text = card.text
    assert "**The data are synthetic.**" in text and "synthetic-data" in card.data.tags
    assert "| synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic) | 6 | 2 | 3 | 11 |" in text
    for fact in ("optimiser steps: `320`", "labelled training studies: `6`", "started from: `runs/mae/best`",
                 "best validation Dice (selection metric): `0.41`", "selected at step: `300`",
                 "selected on the validation split, never on test"):
        assert fact in text, fact
    assert "4,997" not in text and "AutoPET FDG-PET-CT-Lesions" not in text  # no paper-corpus claim
    assert "| synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic) (test) | test | 3 | 0.350 |" in text
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["dice"].metric_value == 0.35 and results["dice"].dataset_split == "test"
    assert results["false_negative_volume"].metric_value == 3.5
    assert "from transformers import AutoModelForSemanticSegmentation" in text and "import AutoModel\n" not in text
    assert "pip install --no-deps dynamic-network-architectures==0.4.4" in text and "einops" not in text


def test_recorded_sources_are_named_and_unknown_data_is_not_called_synthetic(tmp_path):
    real = {**PHANTOM_RUN, "data_sources": {"autopet": 11}}  # the record's own count wins over the ids
    text = _record_card(tmp_path / "a", real).text
    assert "| AutoPET FDG-PET-CT-Lesions | 6 | 2 | 3 | 11 |" in text and "synthetic" not in text.lower()
    mixed = {**PHANTOM_RUN, "data_sources": {"autopet": 8, "synthetic-phantom": 2, "unknown": 1}}
    text = _record_card(tmp_path / "m", mixed).text
    assert "| AutoPET FDG-PET-CT-Lesions | - | - | - | 8 |" in text and "| unrecorded | - | - | - | 1 |" in text
    assert "The data are synthetic" not in text
    phantoms = {**PHANTOM_RUN, "data_sources": {"synthetic-phantom": 11}}
    assert "**The data are synthetic.**" in _record_card(tmp_path / "p", phantoms).text
    unknown = {**PHANTOM_RUN, "split": {"train": ["s1", "s2"], "val": [], "test": []}, "test": {}}
    text = _record_card(tmp_path / "b", unknown).text
    assert "| unrecorded | 2 | 0 | 0 | 2 |" in text and "The data are synthetic" not in text
    assert "no performance is claimed" in text


def test_swin_card_installs_einops_and_not_dynamic_network_architectures(tmp_path):
    text = _record_card(tmp_path, PHANTOM_RUN).text  # CONFIG is swinunetr-v2-small
    assert '"einops>=0.7"' in text and "dynamic-network-architectures" not in text
    assert "multiple of 32" in text


def test_id2label_names_the_classes(tmp_path):
    from modeling_petct import PetCtConfig

    config = PetCtConfig.from_preset("tiny-unet")
    assert config.id2label == {0: "background", 1: "lesion"} and config.label2id == {"background": 0, "lesion": 1}
    organs = PetCtConfig.from_preset("tiny-unet", organ_labels=("liver", "spleen"))
    assert organs.id2label == {0: "background", 1: "lesion"}  # the lesion head; organs have their own head
    assert organs.organ_labels == ("liver", "spleen")
    assert PetCtConfig.from_preset("tiny-unet", id2label={0: "bg", 1: "tumour"}).id2label == {0: "bg", 1: "tumour"}
    assert PetCtConfig.from_preset("tiny-unet", num_labels=3).id2label[2] == "LABEL_2"  # unknown classes: not named
    organs.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["id2label"] == {"0": "background", "1": "lesion"}
    assert PetCtConfig.from_pretrained(tmp_path).id2label == {0: "background", 1: "lesion"}
