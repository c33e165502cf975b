"""Inference geometry: the mask lands on the PET's own grid, exactly aligned, whatever the orientation.

The "oracle" model is a real tiny PetCtForSegmentation (normalization "none", so channel 0 is SUV) whose output
convolution's result is replaced, through a forward hook, by logits that follow the PET: lesion where SUV > 2.5.
Everything else (harmonisation, MONAI sliding window, blending, TTA flips, resampling back) runs as in production,
so the mask must equal a threshold of the PET in native space: exactly where the PET grid is axis-aligned at the
model's 3x2x2 mm (no interpolation anywhere), and up to interpolation at the borders elsewhere.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import CT, THRESHOLD, grid, oracle_model, sample, suv_at
from modeling_petct import PetCtConfig, PetCtForSegmentation
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError
from modeling_petct.inference import InferenceSettings, Segmenter, load_segmentation_model
from modeling_petct.evaluation import autopet_case_metrics

@pytest.fixture(scope="module")
def model():
    return oracle_model()


@pytest.mark.parametrize(
    "flips, perm",
    [((1, 1, 1), (0, 1, 2)), ((-1, -1, 1), (0, 1, 2)), ((1, -1, -1), (0, 1, 2)), ((-1, 1, 1), (2, 1, 0))],
    ids=["RAS", "LPS", "flipped-y-z", "transposed-z-y-x"],
)
def test_mask_equals_pet_threshold_on_aligned_grids(model, flips, perm):
    shape_world = np.array([40, 32, 24])  # x, y, z voxels at 2 x 2 x 3 mm (the model's spacing)
    shape = tuple(int(shape_world[w]) for w in perm)
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), shape, flips, perm), shape, patient_id="P1")
    result = Segmenter(model, InferenceSettings(overlap=0.25))(pet, CT)
    assert result.mask.shape == pet.shape and np.array_equal(result.mask.affine, pet.affine)
    expected = pet.array > THRESHOLD
    assert expected.sum() > 300
    np.testing.assert_array_equal(result.mask.array.astype(bool), expected)


def test_tta_and_fast_keep_alignment(model):
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24), (-1, -1, 1)), (40, 32, 24), patient_id="P1")
    for settings in (InferenceSettings(tta=True), InferenceSettings.fast(), InferenceSettings.reference()):
        mask = Segmenter(model, settings)(pet, CT).mask.array
        np.testing.assert_array_equal(mask.astype(bool), pet.array > THRESHOLD)


@pytest.mark.parametrize("settings", [InferenceSettings(), InferenceSettings.reference(), InferenceSettings.fast(),
                                      InferenceSettings(sw_batch_size=3)], ids=["default", "reference", "fast", "batch3"])
def test_progress_moves_window_by_window(settings):
    """Every window the network runs is reported, and the count it announces is the count MONAI runs."""
    model = oracle_model()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24)), (40, 32, 24), patient_id="P1")
    seen = []
    Segmenter(model, replace(settings, roi_size=(16, 16, 16)))(
        pet, CT, progress=lambda fraction, message: seen.append((fraction, message)))
    windows = [m for _, m in seen if m.startswith("window")]
    assert sum(calls) > 4 and windows[-1] == f"window {sum(calls)}/{sum(calls)}"
    assert len(windows) == len(calls)  # one report per batch of windows
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_anisotropic_oblique_pet_on_other_grid_than_ct(model):
    # STS-like PET voxels (4.07 x 4.07 x 3.27 mm), rotated 10 degrees in-plane, LPS-flipped, off-centre
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    affine = grid((4.07, 4.07, 3.27), (21, 17, 22), (-1, -1, 1))
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    affine[:3, 3] += (1.3, -0.7, 0.9)
    pet = sample(suv_at, affine, (21, 17, 22), patient_id="P1")
    mask = Segmenter(model)(pet, CT).mask
    assert mask.shape == pet.shape and np.array_equal(mask.affine, pet.affine)
    assert autopet_case_metrics(mask.array, pet.array > THRESHOLD, 1.0)["dice"] > 0.9
    assert autopet_case_metrics(mask.array[::-1], pet.array > THRESHOLD, 1.0)["dice"] < 0.5  # a flip would show


def test_real_sts_patient_pet_and_ct_on_different_grids(model, real_sts):
    from modeling_petct.data.io import read_ct, read_pet

    root = real_sts / "STS_002"
    pet = read_pet(root / "PET" / "nifti" / "image" / "image.nii.gz")
    ct = read_ct(root / "CT" / "nifti" / "image" / "image.nii.gz")
    assert pet.shape != ct.shape
    mask = Segmenter(model, InferenceSettings(overlap=0.0, roi_size=(32, 64, 64)))(pet, ct).mask
    assert mask.shape == pet.shape and np.array_equal(mask.affine, pet.affine)
    truth = pet.array > THRESHOLD
    assert truth.sum() > 20 and autopet_case_metrics(mask.array, truth, pet.voxel_volume_ml)["dice"] > 0.9


def test_pet_only_model_reads_channel_zero():
    model = oracle_model(modalities=("PET",))
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24)), (40, 32, 24), patient_id="P1")
    mask = Segmenter(model)(pet, CT).mask.array
    np.testing.assert_array_equal(mask.astype(bool), pet.array > THRESHOLD)


def test_refuses_pairs_that_do_not_belong_together(model):
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24)), (40, 32, 24), patient_id="P1")
    other = Volume(CT.array, CT.affine, meta={"patient_id": "P2"})
    with pytest.raises(PetCtInputError, match="different patients"):
        Segmenter(model)(pet, other)
    far = CT.affine.copy()
    far[2, 3] += 1000.0
    with pytest.raises(PetCtInputError, match="overlap"):
        Segmenter(model)(pet, Volume(CT.array, far))


def test_load_model_from_folder_and_offline_hub_message(tmp_path, monkeypatch):
    import huggingface_hub.constants

    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet"))
    model.save_pretrained(tmp_path / "m")
    loaded = load_segmentation_model(tmp_path / "m", "cpu")
    assert not loaded.training
    torch.testing.assert_close(loaded.state_dict()["segmentation_head.weight"], model.state_dict()["segmentation_head.weight"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PetCtInputError, match="pass --model with a local folder"):
        load_segmentation_model("someone/not-cached", "cpu")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best_model.pth").write_bytes(b"")
    with pytest.raises(PetCtInputError, match="convert the original checkpoint"):
        load_segmentation_model(tmp_path / "weights", "cpu")
    with pytest.raises(PetCtInputError, match="no model given"):
        load_segmentation_model(None, "cpu")


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--petct--tiny"
    PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet")).save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert load_segmentation_model("petct/tiny", "cpu").config.preset == "tiny-unet"
