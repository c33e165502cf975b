"""One segmentation path: settings checked when made, one Segmenter, one writer, and the same files from every caller
(`petct segment`, the demo service, the quickstart's example, the transformers pipeline)."""

from __future__ import annotations

import json
import math
import types

import nibabel as nib
import numpy as np
import pytest
import torch

from modeling_petct import PetCtConfig, PetCtForSegmentation
from modeling_petct.errors import PetCtInputError
from modeling_petct.inference import InferenceSettings, SegmentationMethod, SegmentationResult, Segmenter
from modeling_petct.outputs.files import StudyFiles, settings_path, write_study


@pytest.mark.parametrize("field, value", [("precision", "fp16"), ("backend", "onnx"), ("mode", "linear"),
                                          ("overlap", 1.0), ("sw_batch_size", 0), ("roi_size", (16, 16)),
                                          ("min_lesion_ml", -1.0), ("min_lesion_confidence", 1.5)])
def test_settings_refuse_what_they_would_not_run(field, value):
    with pytest.raises(ValueError, match=field):
        InferenceSettings(**{field: value})
    with pytest.raises(ValueError, match=field):
        InferenceSettings().with_(**{field: value})


def test_recipes_are_named_settings():
    assert InferenceSettings.recipe("reference") == InferenceSettings.reference()
    assert InferenceSettings.recipe("fast", tta=True) == InferenceSettings(overlap=0.0, tta=True)
    assert InferenceSettings.recipe("default", min_lesion_ml=None).min_lesion_ml is None  # None: the model's own
    with pytest.raises(ValueError, match="recipe"):
        InferenceSettings.recipe("quick")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small phantom and a saved tiny network whose head is shifted so ~2% of the body crop is 'lesion'."""
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study as write_phantom

    root = tmp_path_factory.mktemp("one-path")
    study = write_phantom(make_phantom(2, size="small", n_lesions=3), root / "study")
    torch.manual_seed(0)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", features_per_stage=(4, 8, 8, 8))).eval()
    fp32 = InferenceSettings(precision="fp32", backend="torch")
    lesion = Segmenter(model, fp32)(study / "PET.nii.gz", study / "CT.nii.gz", keep_probabilities=True).probabilities[1]
    p = float(np.quantile(lesion, 0.98))
    with torch.no_grad():
        model.segmentation_head.bias[1] -= math.log(p / (1 - p))
    model.save_pretrained(root / "model")
    return study, root / "model"


def test_a_method_other_than_a_network_sits_behind_the_same_call(setup, tmp_path):
    """A classical rule (SUV >= 4 on the harmonised grid) implements only ``infer`` and ``provenance``."""
    study, _ = setup

    class SuvThreshold(SegmentationMethod):
        settings, spacing, normalization = InferenceSettings(), (4.0, 4.0, 4.0), "none"

        def infer(self, harmonised, clicks, progress):
            p = (harmonised.suv >= 4.0).astype(np.float32)
            return np.stack([1 - p, p]), None

        def provenance(self):
            return {"method": "SUV >= 4"}

    result = SuvThreshold()(study / "PET.nii.gz", study / "CT.nii.gz")
    assert isinstance(result, SegmentationResult) and result.mask.shape == result.pet.shape
    rows, totals = write_study(result, tmp_path)
    assert totals["lesion_count"] == len(rows) > 0 and min(r["suv_max"] for r in rows) >= 3.0
    assert json.loads(settings_path(tmp_path / "lesions.nii.gz").read_text())["method"] == "SUV >= 4"


def test_clicks_are_refused_by_a_model_without_guidance_inputs(setup):
    study, model_dir = setup
    from modeling_petct.inference import load_segmentation_model

    with pytest.raises(PetCtInputError, match="no clicks"):
        Segmenter(load_segmentation_model(model_dir))(study / "PET.nii.gz", study / "CT.nii.gz", clicks=[(1, 2, 3)])


def test_cli_demo_quickstart_and_pipeline_write_the_same_files(setup, tmp_path, monkeypatch):
    from transformers import pipeline

    import modeling_petct.inference.pipeline  # noqa: F401  (registers the task)
    from modeling_petct.cli import main
    from modeling_petct.experiments.quickstart import _segment_one
    from modeling_petct.inference import sliding_window
    from modeling_petct.web.service import DemoSession, ModelShelf, run_study

    monkeypatch.setattr(sliding_window, "use_bf16", lambda precision, device: False)  # the quickstart asks for fp32
    study, model_dir = setup
    pet, ct = study / "PET.nii.gz", study / "CT.nii.gz"
    folders = {name: tmp_path / name for name in ("cli", "demo", "quickstart", "pipeline")}

    cli = StudyFiles.in_folder(folders["cli"])
    assert main(["segment", "--pet", str(pet), "--ct", str(ct), "--model", str(model_dir), "--device", "cpu",
                 "-o", str(cli.mask), "--stats", str(cli.csv), "--stats-json", str(cli.json)]) == 0
    shelf = ModelShelf({"m": str(model_dir)}, device="cpu")
    demo = run_study(pet, ct, shelf.get("m"), shelf.facts["m"], DemoSession.open(folders["demo"]))
    cell = types.SimpleNamespace(selected_model=str(model_dir), arm="mae", label_fraction=1.0, seed=0,
                                 best_val_score=0.5)
    case = _segment_one(folders["quickstart"], types.SimpleNamespace(dirs={"s": study}), cell, "s")
    seg = pipeline("petct-segmentation", model=str(model_dir), device="cpu")
    out = seg({"pet": str(pet), "ct": str(ct)}, output_dir=str(folders["pipeline"]))

    written = {"cli": cli, "demo": demo.files,
               "quickstart": StudyFiles.in_folder(case["mask"].parent),
               "pipeline": StudyFiles.in_folder(folders["pipeline"])}
    reference = written.pop("cli")
    mask = np.asarray(nib.load(reference.mask).dataobj)
    assert mask.any() and out["totals"]["lesion_count"] == len(case["lesions"]) == len(demo.rows) > 0
    numbered = np.asarray(nib.load(demo.files.mask).dataobj)  # the demo's download numbers lesions as its table
    assert sorted(np.unique(numbered))[1:] == [r["id"] for r in sorted(demo.rows, key=lambda r: r["id"])]
    assert np.array_equal(numbered > 0, mask > 0)
    for name, files in written.items():
        saved = np.asarray(nib.load(files.mask).dataobj)
        assert np.array_equal(saved > 0 if name == "demo" else saved, mask), name
        assert np.array_equal(nib.load(files.mask).affine, nib.load(pet).affine), name
        assert files.csv.read_text() == reference.csv.read_text(), name
        assert json.loads(files.json.read_text()) == json.loads(reference.json.read_text()), name
        record, first = (json.loads(f.settings.read_text()) for f in (files, reference))
        if name == "quickstart":  # it asks for fp32 (bf16 was slower there); "auto" gave fp32 here too (use_bf16)
            assert record["settings"].pop("precision") == "fp32" and first["settings"].pop("precision") == "auto"
        if name == "demo":  # the demo also names the uploads its downloads are of
            assert record.pop("uploads") == {"PET": "PET.nii.gz", "CT": "CT.nii.gz"}
        assert {**record, "date": None} == {**first, "date": None}, name
    assert first["model"] == model_dir.name and first["settings"]["overlap"] == InferenceSettings().overlap
    assert len(first["weights_sha256"]) == 64 and first["petct_fm_version"]


def test_clicks_reach_a_guidance_model_on_the_harmonised_grid(setup):
    """A click changes the prediction, most where it was placed (the click maps are the network's input there)."""
    from modeling_petct.data.clicks import Click
    from modeling_petct.data.io import read_pet

    study, _ = setup
    pet = read_pet(study / "PET.nii.gz")
    torch.manual_seed(0)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", features_per_stage=(4, 8, 8, 8),
                                                         guidance_channels=2)).eval()
    segmenter = Segmenter(model, InferenceSettings(precision="fp32", backend="torch"))
    centre = pet.affine[:3, :3] @ (np.asarray(pet.shape) / 2) + pet.affine[:3, 3]
    without = segmenter(pet, study / "CT.nii.gz", keep_probabilities=True)
    clicked = segmenter(pet, study / "CT.nii.gz", clicks=[Click("tumor", tuple(centre))], keep_probabilities=True)
    change = np.abs(clicked.probabilities - without.probabilities).max(0)
    grid = without.harmonized.grid_affine
    click_zyx = np.linalg.solve(grid[:3, :3], centre - grid[:3, 3])
    assert change.max() > 1e-3 and np.abs(np.unravel_index(change.argmax(), change.shape) - click_zyx).max() <= 3
