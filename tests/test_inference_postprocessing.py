"""Post-processing stored in the model (inference.LesionFilter): lesion components under config.min_lesion_ml, or whose
peak lesion probability is under config.min_lesion_confidence, are dropped from every mask it makes (`petct segment`,
training's scoring), counted with autoPET's 18-connectivity on the grid the mask lies on; training chooses both on
validation."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_petct.inference import LesionFilter


def drop_small_lesions(mask, voxel_ml, min_ml):
    return LesionFilter(min_ml=min_ml).apply(mask, np.ones(mask.shape, np.float32), voxel_ml)


def _mask_with_components(sizes: list[int]) -> np.ndarray:
    mask = np.zeros((40, 12, 12), np.uint8)
    for i, n in enumerate(sizes):
        mask[4 * i + 1, 2 : 2 + n, 3] = 1  # a line of n voxels, 3 slices from the next
    return mask


@pytest.mark.parametrize("voxel_ml, min_ml, kept", [(0.064, 0.2, [4, 6]), (0.064, 0.192, [3, 4, 6]),
                                                     (0.012, 0.05, [6]), (0.064, 0.0, [1, 2, 3, 4, 6])])
def test_components_smaller_than_the_volume_are_dropped(voxel_ml, min_ml, kept):
    mask = _mask_with_components([1, 2, 3, 4, 6])
    out = drop_small_lesions(mask, voxel_ml, min_ml)
    import cc3d

    labels, n = cc3d.connected_components(out, connectivity=18, return_N=True)
    assert sorted(int((labels == i).sum()) for i in range(1, n + 1)) == kept
    assert out.dtype == mask.dtype and not (out & ~mask).any()  # only removes


def test_diagonal_neighbours_count_as_one_lesion_as_autopet_counts_them():
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2, 2, 2] = mask[3, 3, 2] = 1  # edge neighbours (18-connected), not face neighbours
    assert drop_small_lesions(mask, 0.1, 0.2).sum() == 2
    mask[3, 3, 2], mask[3, 3, 3] = 0, 1  # corner neighbours: one lesion under 26-connectivity, two one-voxel ones here
    assert drop_small_lesions(mask, 0.1, 0.2).sum() == 0


def test_segment_uses_the_models_volume_and_the_setting_overrides_it(phantom_study, monkeypatch):
    from dataclasses import replace

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.inference import InferenceSettings, Segmenter, sliding_window

    def speckled(model, image, settings, **kwargs):  # lesion probability 0.9 on a random 10% of voxels: specks
        p = (np.random.default_rng(0).random(image.shape[1:]) < 0.1) * 0.8 + 0.1
        return np.stack([1 - p, p]).astype(np.float32), None

    monkeypatch.setattr(sliding_window, "predict_with_organs", speckled)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", target_spacing=(4.0, 4.0, 4.0))).eval()
    pet, ct = phantom_study / "PET.nii.gz", phantom_study / "CT.nii.gz"
    settings = InferenceSettings(precision="fp32", backend="torch")
    noisy = Segmenter(model, settings)(pet, ct).mask.array  # config.min_lesion_ml = 0: all kept
    model.config.min_lesion_ml = 0.3
    cleaned = Segmenter(model, settings)(pet, ct).mask.array
    forced = Segmenter(model, replace(settings, min_lesion_ml=0.0))(pet, ct).mask.array
    assert np.array_equal(forced, noisy) and noisy.sum() > cleaned.sum() > 0
    assert np.array_equal(cleaned, drop_small_lesions(noisy, 0.064, 0.3))  # the PET's 4 mm voxels: 5 or more kept


def test_components_whose_peak_probability_is_low_are_dropped_whatever_their_size():
    mask = _mask_with_components([1, 2, 3, 4, 6])
    probability = np.where(mask > 0, 0.6, 0.0).astype(np.float32)
    probability[1, 2, 3] = 0.99  # the one-voxel component is confident
    probability[9, 4, 3] = 0.92  # one voxel of the 3-voxel component
    probability[17, 2, 3] = 0.85  # the 6-voxel component's peak
    import cc3d

    def sizes(out):
        labels, n = cc3d.connected_components(out, connectivity=18, return_N=True)
        return sorted(int((labels == i).sum()) for i in range(1, n + 1))

    assert sizes(LesionFilter(min_confidence=0.9).apply(mask, probability, 0.064)) == [1, 3]
    assert sizes(LesionFilter(min_confidence=0.8).apply(mask, probability, 0.064)) == [1, 3, 6]
    assert sizes(LesionFilter(min_ml=0.1, min_confidence=0.8).apply(mask, probability, 0.064)) == [3, 6]  # both rules
    assert LesionFilter().apply(mask, probability, 0.064) is mask  # nothing to do: the mask itself


def test_segment_uses_the_models_confidence_and_the_setting_overrides_it(phantom_study, monkeypatch):
    from dataclasses import replace

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.inference import InferenceSettings, Segmenter, sliding_window

    def two_levels(model, image, settings, **kwargs):  # lesion probability 0.7 or 0.95 on alternate slabs of specks
        rng = np.random.default_rng(1)
        p = (rng.random(image.shape[1:]) < 0.05) * 0.6 + 0.1
        p[::2] *= 0.95 / 0.7
        return np.stack([1 - p, p]).astype(np.float32), None

    monkeypatch.setattr(sliding_window, "predict_with_organs", two_levels)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", target_spacing=(4.0, 4.0, 4.0))).eval()
    pet, ct = phantom_study / "PET.nii.gz", phantom_study / "CT.nii.gz"
    settings = InferenceSettings(precision="fp32", backend="torch")
    everything = Segmenter(model, settings)(pet, ct).mask.array
    model.config.min_lesion_confidence = 0.9
    confident = Segmenter(model, settings)(pet, ct).mask.array
    forced = Segmenter(model, replace(settings, min_lesion_confidence=0.0))(pet, ct).mask.array
    assert np.array_equal(forced, everything) and everything.sum() > confident.sum() > 0
    assert not (confident & ~everything).any()


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_config_refuses_a_confidence_outside_0_1(value):
    from modeling_petct import PetCtConfig

    with pytest.raises(ValueError, match="min_lesion_confidence"):
        PetCtConfig.from_preset("tiny-unet", min_lesion_confidence=value)


@pytest.mark.parametrize("ml, confidence, n", [("auto", "auto", 36), ("0.2", "auto", 6), ("auto", "0.5", 6),
                                               ("0", "0", 1)])
def test_training_chooses_among_the_candidates_of_each_auto_setting(ml, confidence, n):
    from modeling_petct.training.args import SegArguments
    from modeling_petct.training.segmentation import lesion_filter_candidates

    candidates = lesion_filter_candidates(SegArguments(min_lesion_ml=ml, min_lesion_confidence=confidence))
    assert len(candidates) == len(set(candidates)) == n
    if ml != "auto":
        assert {c.min_ml for c in candidates} == {float(ml)}
    if confidence != "auto":
        assert {c.min_confidence for c in candidates} == {float(confidence)}


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_config_refuses_a_negative_or_infinite_volume(value):
    from modeling_petct import PetCtConfig

    with pytest.raises(ValueError, match="min_lesion_ml"):
        PetCtConfig.from_preset("tiny-unet", min_lesion_ml=value)


@pytest.mark.parametrize("field, value", [("min_lesion_ml", "-0.5"), ("min_lesion_ml", "big"), ("min_lesion_ml", "inf"),
                                          ("min_lesion_confidence", "1.01"), ("min_lesion_confidence", "nan")])
def test_training_refuses_a_bad_post_processing_value(field, value):
    from modeling_petct.errors import PetCtInputError
    from modeling_petct.training.args import SegArguments, TrainArguments
    from modeling_petct.training.segmentation import check_arguments

    with pytest.raises(PetCtInputError, match=field):
        check_arguments(TrainArguments(output_dir="x"), SegArguments(**{field: value}))


def test_auto_mixed_precision_follows_the_inference_rule():
    from modeling_petct.inference import use_bf16
    from modeling_petct.training.loop import resolve_mixed_precision

    assert resolve_mixed_precision("auto", cpu=True) == ("bf16" if use_bf16("auto", "cpu") else "no")
    assert resolve_mixed_precision("no", cpu=True) == "no" and resolve_mixed_precision("bf16", cpu=True) == "bf16"


def test_runs_with_another_precision_follow_each_other_in_one_process(tmp_path):
    """The quickstart's bf16 cells and then an fp32 run in one process: Accelerate's process-wide state is renewed."""
    from modeling_petct.training.args import TrainArguments
    from modeling_petct.training.loop import make_accelerator

    for precision in ("bf16", "no", "bf16"):
        args = TrainArguments(output_dir=str(tmp_path), mixed_precision=precision, cpu=True, report_to="none")
        assert make_accelerator(args).mixed_precision == precision

