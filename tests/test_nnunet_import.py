"""Importing nnU-Net v2 results folders, and parity with nnU-Net's own predictor.

The results folder is ``tests/fixtures/nnunet_tiny`` (made by nnunetv2 itself: ``python tests/nnunet_fixture.py``).
The reference is nnunetv2's ``nnUNetPredictor`` run here on studies larger than the patch, at spacings other than the
plans' (one more than 3x anisotropic, so nnU-Net's separate-axis resampling runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_petct.cli import main
from modeling_petct.data.io import read_volume
from modeling_petct.errors import PetCtInputError
from modeling_petct.hub.nnunet_import import build_config, import_results_folder, import_to_folder, load_checkpoint
from modeling_petct.inference.nnunet import NnUNetRecipe, new_shape, predict, separate_axis
from nnunet_fixture import PATCH, PLAN_SPACING, RESULTS, phantom, write_channels

AUTOPET_IV = Path(__file__).resolve().parents[2] / "shared" / "data" / "autopet_iv"
# (array shape (z, y, x), spacing mm): larger than the patch once resampled; the second is 3.4x anisotropic
STUDIES = {"finer": ((36, 60, 52), (2.5, 1.6, 1.8)), "anisotropic": ((12, 50, 46), (6.5, 1.9, 1.9))}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("nnunet_studies")
    out = {}
    for seed, (name, (shape, spacing)) in enumerate(STUDIES.items(), start=7):
        ct, pet, _ = phantom(seed, shape, spacing)
        out[name] = write_channels([ct, pet], spacing, folder, name)
    return out


def nnunet_reference(folds, mirroring: bool, files) -> tuple[np.ndarray, np.ndarray]:
    """(mask, probabilities) from nnunetv2's predictor, arrays in SimpleITK (z, y, x) order."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=mirroring, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(RESULTS), use_folds=folds)
    image, properties = SimpleITKIO().read_images([str(f) for f in files])
    return predictor.predict_single_npy_array(image, properties, None, None, True)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_studies_exercise_windows_and_both_resampling_rules():
    for shape, spacing in STUDIES.values():
        assert all(n > p for n, p in zip(new_shape(shape, spacing, PLAN_SPACING), PATCH))
    assert separate_axis(STUDIES["finer"][1], PLAN_SPACING) is None
    assert separate_axis(STUDIES["anisotropic"][1], PLAN_SPACING) == 0


@pytest.mark.parametrize("folds", [(0,), (0, 1)], ids=["one-fold", "two-folds"])
@pytest.mark.parametrize("mirroring", [False, True], ids=["plain", "mirrored"])
def test_parity_with_nnunet_predictor(folds, mirroring, studies):
    model, provenance = import_results_folder(RESULTS, folds=[str(f) for f in folds])
    assert provenance["folds"] == [str(f) for f in folds]
    for name, files in studies.items():
        mask, reference = nnunet_reference(folds, mirroring, files)
        probabilities, organs = predict(model, read_volume(files[1]), read_volume(files[0]),
                                        NnUNetRecipe.parity(mirroring))
        ours = probabilities.transpose(0, 3, 2, 1)  # Volume (i, j, k) -> SimpleITK (z, y, x)
        assert organs is None and ours.shape == reference.shape
        assert mask.any(), "the fixture network must find lesions for the comparison to mean anything"
        assert dice(mask > 0, ours.argmax(0) > 0) >= 0.999, name
        assert np.abs(ours - reference).max() <= 1e-3, name


def test_fast_recipe_is_close_to_nnunet(studies):
    model, _ = import_results_folder(RESULTS, folds=["0"])
    files = studies["finer"]
    mask, _ = nnunet_reference((0,), True, files)
    probabilities, _ = predict(model, read_volume(files[1]), read_volume(files[0]), NnUNetRecipe.fast())
    assert dice(mask > 0, probabilities.transpose(0, 3, 2, 1).argmax(0) > 0) >= 0.8


def test_import_writes_a_model_folder_that_runs_without_nnunetv2(tmp_path, studies):
    out = import_to_folder(RESULTS, tmp_path / "model", weights_licence="cc-by-4.0", source_url="https://example.org/x")
    provenance = json.loads((out / "conversion.json").read_text())
    assert provenance["trainer"] == "nnUNetTrainer" and set(provenance["sha256"]) == {"fold_0", "fold_1"}
    card = (out / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "https://example.org/x" in card and "`PET` -> PET" in card
    model, _ = import_results_folder(RESULTS)
    files = studies["finer"]
    expected, _ = predict(model, read_volume(files[1]), read_volume(files[0]), NnUNetRecipe.parity(False))
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys, numpy as np
sys.modules["nnunetv2"] = None  # any import of nnunetv2 now fails
from modeling_petct.inference import load_segmentation_model
from modeling_petct.inference.nnunet import NnUNetRecipe, predict
from modeling_petct.data.io import read_volume
model = load_segmentation_model({str(out)!r})
got, _ = predict(model, read_volume({str(files[1])!r}), read_volume({str(files[0])!r}), NnUNetRecipe.parity(False))
assert type(model).__name__ == "PetCtEnsembleForSegmentation", type(model)
loaded = [m for m, v in sys.modules.items() if v is not None and m.startswith("nnunetv2")]
assert not loaded, loaded
print(float(np.abs(got - np.load({str(tmp_path / "expected.npy")!r})).max()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) <= 1e-5


def test_segment_cli_runs_an_imported_model(tmp_path, studies, capsys):
    assert main(["import-nnunet", str(RESULTS), "-o", str(tmp_path / "model"), "--folds", "0"]) == 0
    ct, pet = studies["finer"]
    code = main(["segment", "--model", str(tmp_path / "model"), "--pet", str(pet), "--ct", str(ct),
                 "-o", str(tmp_path / "mask.nii.gz"), "--device", "cpu"])
    assert code == 0 and "lesion(s)" in capsys.readouterr().out
    mask_file = read_volume(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(mask_file.affine, read_volume(pet).affine, atol=1e-5)
    reference, _ = nnunet_reference((0,), True, studies["finer"])
    assert dice(reference.transpose(2, 1, 0) > 0, mask_file.array > 0) >= 0.999


def test_segmenter_runs_imported_models_with_the_chosen_recipe(studies):
    from modeling_petct.inference import InferenceSettings, Segmenter

    model, _ = import_results_folder(RESULTS, folds=["0"])
    ct, pet = studies["anisotropic"]
    reference, _ = nnunet_reference((0,), True, studies["anisotropic"])
    parity = Segmenter(model, InferenceSettings(), "cpu")
    result = parity(pet, ct, keep_probabilities=True)
    assert type(parity).__name__ == "NnUNetSegmenter" and result.harmonized is None
    assert result.provenance["nnunet_recipe"]["mirroring"] and not result.provenance["nnunet_recipe"]["approximate"]
    assert dice(reference.transpose(2, 1, 0) > 0, result.mask.array > 0) >= 0.999
    fast = Segmenter(model, InferenceSettings.fast(), "cpu")
    assert fast.recipe.approximate and fast(pet, ct).provenance["nnunet_recipe"]["resampling"] == "torch"


def test_autopet_iv_plans_are_read():
    dataset = json.loads((AUTOPET_IV / "dataset.json").read_text())
    plans = json.loads((AUTOPET_IV / "plans.json").read_text())
    checkpoint = {"init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)}
    config, how = build_config(dataset, plans, checkpoint, 1, folder=AUTOPET_IV)
    assert config.modalities == ("CT", "PET") and config.guidance_channels == 2 and config.in_channels == 4
    assert config.crop_size == (112, 160, 128) and config.size_divisors == (16, 32, 32)
    assert config.strides[-1] == (1, 2, 2) and config.target_spacing[0] == 3.0
    ct, pet, fg, bg = config.nnunet["normalization"]
    stats = plans["foreground_intensity_properties_per_channel"]["0"]
    assert ct == {"scheme": "CTNormalization", "mean": stats["mean"], "std": stats["std"],
                  "lower": stats["percentile_00_5"], "upper": stats["percentile_99_5"]}
    assert pet["scheme"] == fg["scheme"] == bg["scheme"] == "ZScoreNormalization"
    assert how == "channel names in dataset.json" and config.nnunet["mirror_axes"] == [0, 1, 2]


def test_two_channels_named_ct_follow_the_autopet_order():
    dataset = json.loads((RESULTS / "dataset.json").read_text())
    dataset["channel_names"] = {"0": "CT", "1": "CT"}  # as the DKFZ autoPET II models name them
    plans = json.loads((RESULTS / "plans.json").read_text())
    config, how = build_config(dataset, plans, load_checkpoint(RESULTS / "fold_0" / "checkpoint_final.pth"), 1,
                               folder=RESULTS)
    assert config.modalities == ("CT", "PET") and "autoPET convention" in how
    assert [n["scheme"] for n in config.nnunet["normalization"]] == ["CTNormalization", "ZScoreNormalization"]


def test_lesiontracer_organ_head_becomes_the_organ_head(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = load_checkpoint(path)
    width = checkpoint["network_weights"]["decoder.seg_layers.1.weight"].shape[1]
    organ = {f"decoder.organ_seg_layers.{i}.{p}": torch.randn((11, c, 1, 1, 1) if p == "weight" else (11,))
             for i, c in ((0, 8), (1, width)) for p in ("weight", "bias")}
    checkpoint["network_weights"].update(organ)
    checkpoint["trainer_name"] = "autoPET3_Trainer"
    torch.save(checkpoint, path)
    model, provenance = import_results_folder(folder, folds=["0"])
    assert len(model.config.organ_labels) == 10 and provenance["organ_head"]
    assert torch.equal(model.organ_head.weight, organ["decoder.organ_seg_layers.1.weight"])
    x = torch.zeros(1, 2, *PATCH)
    assert model(x).organ_logits.shape == (1, 11, *PATCH)


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(RESULTS, tmp_path / "results"))


def _edit_json(folder: Path, name: str, edit) -> None:
    data = json.loads((folder / name).read_text())
    edit(data)
    (folder / name).write_text(json.dumps(data))


def _edit_checkpoint(folder: Path, edit) -> None:
    path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = load_checkpoint(path)
    edit(checkpoint)
    torch.save(checkpoint, path)


class Planted:  # a pickled object: loading it would run code
    def __reduce__(self):
        return (print, ("unpickled!",))


REFUSALS = {
    "region labels": (lambda f: _edit_json(f, "dataset.json", lambda d: d["labels"].update(lesion=[1, 2])),
                      "region-based labels"),
    "cascade": (lambda f: _edit_json(f, "plans.json", lambda p: p["configurations"]["3d_fullres"].update(
        previous_stage="3d_lowres")), "cascade"),
    "2-D": (lambda f: _edit_json(f, "plans.json", lambda p: p["configurations"]["3d_fullres"].update(
        patch_size=[32, 32])), "not 3-D"),
    "unknown trainer": (lambda f: _edit_checkpoint(f, lambda c: c.update(trainer_name="MyTrainer")),
                        "trainer 'MyTrainer' is unknown"),
    "other network": (lambda f: _edit_json(f, "plans.json", lambda p: p["configurations"]["3d_fullres"][
        "architecture"].update(network_class_name="x.Primus")), "not supported"),
    "batch norm": (lambda f: _edit_json(f, "plans.json", lambda p: p["configurations"]["3d_fullres"]["architecture"][
        "arch_kwargs"].update(norm_op="torch.nn.BatchNorm3d")), "norm_op"),
    "pickled object": (lambda f: _edit_checkpoint(f, lambda c: c.update(payload=Planted())), "refused"),
    "changed weights": (lambda f: _edit_checkpoint(f, lambda c: c["network_weights"].pop(
        "decoder.seg_layers.1.bias")), "do not fit"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_are_one_line_and_write_nothing(case, tmp_path, capsys):
    folder = _copy(tmp_path)
    REFUSALS[case][0](folder)
    code = main(["import-nnunet", str(folder), "-o", str(tmp_path / "model"), "--folds", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and REFUSALS[case][1] in err, err
    assert not (tmp_path / "model").exists() and "unpickled!" not in err


def test_import_validates_arguments_before_reading():
    with pytest.raises(PetCtInputError, match="checkpoint"):
        import_results_folder(RESULTS, checkpoint="latest")
    with pytest.raises(PetCtInputError, match="fold 7 has no"):
        import_results_folder(RESULTS, folds=["7"])
