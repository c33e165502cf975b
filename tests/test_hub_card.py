"""Model cards written from run files: which numbers become model-index results, and what fails validation."""

from __future__ import annotations

import json
import re

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
    assert [(r.metric_type, r.metric_value, r.dataset_split, r.dataset_config) for r in results] == [
        ("dice", 0.6123, "test", None), ("false_positive_volume", 2.5, "test", None)]  # NaN FNV, per-case left out
    assert card.data.metrics == ["dice", "false_positive_volume"] and card.data.license == "apache-2.0"
    assert results[0].task_type == "image-segmentation" and results[0].dataset_type == "autopet-fdg-paper-test-split"
    assert card.data.pipeline_tag == "image-segmentation" and card.data.base_model == "you/petct-mae"
    assert '"selected_on": "val_dice"' in card.text and "18.35M" in card.text


def test_files_without_results_or_bad_metadata_are_refused(tmp_path):
    with pytest.raises(PetCtInputError, match=r"results\.json: no aggregate metrics"):
        _card(tmp_path, {"history": [{"val_dice": 0.5, "val_fpv_ml": 1.0}]})
    with pytest.raises(PetCtInputError, match="license 'gpl-ish' is not a Hub licence id"):
        _card(tmp_path, FINETUNE_RESULTS, license="gpl-ish")
    with pytest.raises(PetCtInputError, match="--license other: needs the licence text"):
        _card(tmp_path, FINETUNE_RESULTS, license="other", license_name="my-terms")
    (tmp_path / "terms.md").write_text("# My terms\n")
    card = _card(tmp_path, FINETUNE_RESULTS, license="other", license_name="my-terms", license_file=tmp_path / "terms.md")
    assert (card.data.license, card.data.license_name, card.data.license_link) == ("other", "my-terms", "LICENSE.md")
    with pytest.raises(PetCtInputError, match="license_link 'LICENSE.md' is not a file of the repo"):
        validate_model_card(str(card), folder=tmp_path)
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
    for fact in ("optimiser steps: `320`", "labelled training studies: `6`", "started from: `a local checkpoint`",
                 "selection score (metric not recorded): `0.41`", "selected at step: `300`",
                 "selected on: `a split the record does not name`"):
        assert fact in text, fact
    assert "runs/mae" not in text and "best validation Dice" not in text
    assert "4,997" not in text and "AutoPET FDG-PET-CT-Lesions" not in text  # no paper-corpus claim
    assert "| synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic) (test) | - | 3 | 0.350 |" in text
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


def _full_record(**changes) -> dict:
    """A fine-tuning record as training writes it (RunResult), with per-study detection counts and a lesion filter."""
    from modeling_petct.training.results import RunResult

    ids = [f"phantom_001_{i:04d}" for i in range(12)]
    cases = {sid: {"dice": 0.2 + 0.1 * i, "fpv_ml": 0.5 * i, "fnv_ml": 1.0 + i, "gt_lesions": 2,
                   "detected_lesions": i % 3, "pred_components": 3, "false_positive_components": i}
             for i, sid in enumerate(ids[8:])}
    record = RunResult(network="plain-conv-unet", preset="tiny-unet", arm="pretrained", pretrained="/tmp/runs/mae/best",
                       linear_probe=False, schedule="epochs", k_shot=None, label_fraction=None, n_train=6, seed=4,
                       split_seed=0, steps=200, learning_rate=0.002, selected_model="/tmp/runs/seg/best",
                       selected_step=150, best_val_score=0.37, split={"train": ids[:6], "val": ids[6:8], "test": ids[8:]},
                       test={"test_dice": 0.35, "test_fpv_ml": 0.75, "test_fnv_ml": 2.5}, test_cases=cases,
                       data_sources={"synthetic-phantom": 12}, min_lesion_ml=0.2, min_lesion_confidence=0.9,
                       selection_metric="val_dice_fp", select_on="val")
    return {**record.to_dict(), **changes}


def test_every_statement_of_the_card_is_the_run_records(tmp_path):
    from modeling_petct.evaluation.statistics import aggregate

    record = _full_record()
    config = {**CONFIG, "backbone": "plain-conv-unet", "strides": [1, 2, 2, 2], "min_lesion_ml": 0.2,
              "min_lesion_confidence": 0.9}  # the lesion filter stored in the model, which petct segment applies
    card = _record_card(tmp_path, record, config)
    text, meta = card.text, card.data
    assert "- `min_lesion_ml`: `0.2`\n- `min_lesion_confidence`: `0.9`" in text
    facts = dict(re.findall(r"^- ([^:`]+(?:\([^)]*\))?): `([^`]*)`$", text.split("## Training procedure")[1], re.M))
    assert facts == {
        "started from": "a local checkpoint", "arm": record["arm"], "network": record["network"],
        "preset": record["preset"], "linear probe": str(record["linear_probe"]),
        "labelled training studies": str(record["n_train"]), "optimiser steps": str(record["steps"]),
        "learning rate": str(record["learning_rate"]), "seed": str(record["seed"]),
        "selected at step": str(record["selected_step"]), "selected on": "the validation split",
        "selection score (validation Dice minus 0.05 per false-positive lesion on an average lesion-free study)":
            str(record["best_val_score"])}
    assert "/tmp/runs" not in text and meta.base_model is None  # a local start is not a base model

    split = record["split"]
    assert (f"| synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic) | {len(split['train'])} | "
            f"{len(split['val'])} | {len(split['test'])} | 12 |") in text and "**The data are synthetic.**" in text

    expected = aggregate(record["test_cases"])  # the test metrics, recomputed from the record's per-study table
    row = next(line for line in text.splitlines() if line.startswith("| synthetic") and "(test)" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "4"
    for cell, key in zip(cells[3:8], ("dice", "fpv_ml", "fnv_ml", "lesion_sensitivity", "fp_per_case")):
        lo, hi = expected[f"{key}_ci95"]
        assert cell == f"{expected[key]:.3f} [{lo:.3f}, {hi:.3f}]", key
    assert cells[8] == ("components under 0.2 ml dropped; components whose peak lesion probability is under 0.9 "
                        "dropped")
    results = {r.metric_type: r for r in meta.eval_results}
    assert {t: r.metric_value for t, r in results.items()} == {
        "dice": round(expected["dice"], 4), "false_positive_volume": round(expected["fpv_ml"], 4),
        "false_negative_volume": round(expected["fnv_ml"], 4), "recall": round(expected["lesion_sensitivity"], 4),
        "false_positives_per_case": round(expected["fp_per_case"], 4)}
    assert all(r.dataset_split == "test" and r.dataset_config is None and r.metric_args ==
               {"min_lesion_ml": 0.2, "min_lesion_confidence": 0.9} for r in results.values())
    assert meta.metrics == list(results) and meta.license == "apache-2.0"


def test_a_hub_start_is_the_base_model_and_test_selection_is_called_optimistic(tmp_path):
    record = _full_record(pretrained="you/petct-mae", select_on="test", selection_metric="val_dice",
                          min_lesion_ml=0.0, min_lesion_confidence=0.0)
    card = _record_card(tmp_path, record)
    assert card.data.base_model == "you/petct-mae" and "- started from: `you/petct-mae`" in card.text
    assert "- selected on: `the test split (the authors' protocol: test numbers are optimistic)`" in card.text
    assert "- selection score (validation Dice (mean over lesion-positive studies)): `0.37`" in card.text
    assert "| none (every predicted component kept) |" in card.text
    given = render_model_card(CardInputs("you/x", tmp_path / "best", base_model="org/released"), CONFIG)
    assert given.data.base_model == "org/released" and "- started from: `org/released`" in given.text


MAE_CONFIG = {"architectures": ["PetCtForMaskedImageModeling"], "preset": "tiny-unet", "backbone": "plain-conv-unet",
              "strides": [1, 2, 2, 2], "modalities": ["PET", "CT"]}


def test_the_mae_card_claims_no_segmentation_and_says_its_data_are_synthetic(tmp_path):
    ids = [f"phantom_002_{i:04d}" for i in range(5)]
    record = {"network": "plain-conv-unet", "preset": "tiny-unet", "seed": 1, "steps": 40, "learning_rate": 0.001,
              "selected_step": 30, "best_val_loss": 0.1234567, "split": {"train": ids[:4], "val": ids[4:]},
              "data_sources": {"synthetic-phantom": 5}}
    (tmp_path / "best").mkdir()
    (tmp_path / "pretraining.json").write_text(json.dumps(record))
    card = validate_model_card(str(render_model_card(CardInputs("you/mae", tmp_path / "best"), MAE_CONFIG)))
    meta = card.data
    assert "image-segmentation" not in str(meta.to_dict()) and meta.pipeline_tag == "image-feature-extraction"
    assert "**The data are synthetic.**" in card.text and "synthetic-data" in meta.tags
    assert "`petct segment` refuses it" in card.text and "`petct finetune --pretrained you/mae`" in card.text
    assert "`petct segment` and the Gradio demo" not in card.text
    for fact in ("optimiser steps: `40`", "seed: `1`", "selected at step: `30`",
                 "selection score (validation reconstruction loss): `0.1235`"):
        assert f"- {fact}" in card.text, fact
    assert "| synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic) | 4 | 1 | 0 | 5 |" in card.text
    assert "no performance is claimed" in card.text and "AutoModelForMaskedImageModeling.from_pretrained(" in card.text


def test_converted_weights_carry_the_data_providers_terms_in_a_linked_file(tmp_path):
    from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling
    from modeling_petct.hub.export import export_model_folder

    PetCtForMaskedImageModeling(PetCtConfig.from_preset("tiny-unet")).save_pretrained(tmp_path / "converted")
    (tmp_path / "converted" / "conversion.json").write_text(json.dumps(
        {"source": "plainconv.pth", "sha256": "ab" * 32, "preset": "tiny-unet"}))
    out = export_model_folder(tmp_path / "converted", tmp_path / "out", CardInputs("you/conv", tmp_path / "converted"))
    card = validate_model_card((out / "README.md").read_text(), folder=out)
    assert (card.data.license, card.data.license_name, card.data.license_link) == (
        "other", "upstream-data-terms", "LICENSE.md")
    terms = (out / "LICENSE.md").read_text()
    assert "TCIA data usage policy" in terms and "zenodo.org/records/15281784" in terms
    assert "started from" not in card.text and "4,997" in card.text


def test_the_snippet_feeds_click_channels_and_loads_no_backbone_of_an_ensemble(tmp_path):
    guided = {**MAE_CONFIG, "architectures": ["PetCtForSegmentation"], "guidance_channels": 2}
    text = render_model_card(CardInputs("you/guided", tmp_path), guided).text
    assert "torch.zeros(1, 4, 16, 128, 128)  # PET + CT + foreground clicks + background clicks, (z, y, x)" in text
    assert "backbone = AutoModel.from_pretrained(" in text
    ensemble = {**MAE_CONFIG, "architectures": ["PetCtEnsembleForSegmentation"], "ensemble_size": 2}
    text = render_model_card(CardInputs("you/folds", tmp_path), ensemble).text
    assert "from transformers import AutoModelForSemanticSegmentation\n" in text and "AutoModel.from" not in text
    assert "`petct segment` and the Gradio demo take this repo id" in text


def test_an_imported_nnunet_keeps_its_own_card_and_links_a_licence_the_hub_does_not_know(tmp_path):
    from nnunet_fixture import RESULTS

    from modeling_petct.hub.export import export_model_folder
    from modeling_petct.hub.nnunet_import import import_to_folder

    imported = import_to_folder(RESULTS, tmp_path / "model", weights_licence="research use only (see source)")
    for folder in (imported, export_model_folder(imported, tmp_path / "out", CardInputs("you/imported", imported))):
        card = validate_model_card((folder / "README.md").read_text(), folder=folder)
        assert (card.data.license, card.data.license_name, card.data.license_link) == (
            "other", "research use only (see source)", "LICENSE.md")
        assert "research use only (see source)" in (folder / "LICENSE.md").read_text()
        assert "nnU-Net v2 model" in card.text and "4,997" not in card.text  # not the authors' converted corpus
