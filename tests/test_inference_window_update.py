"""A click re-runs only the windows around it: inside the updated region the probabilities equal a full re-run."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_petct.data.clicks import encode_voxels
from modeling_petct.inference import InferenceSettings, predict_probabilities
from modeling_petct.inference.sliding_window import window_count
from modeling_petct.inference.window_update import influence_margin, update_probabilities, window_starts

SETTINGS = InferenceSettings(overlap=0.25, precision="fp32", backend="torch", roi_size=(16, 16, 16))
SHAPE = (40, 16, 52)  # several windows along z and x, exactly one along y


@pytest.fixture(scope="module")
def guided():
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation

    torch.manual_seed(3)
    config = PetCtConfig.from_preset("tiny-unet", num_labels=2, crop_size=(16, 16, 16), guidance_channels=2,
                                     guidance_encoding="ball", guidance_size=2.0, target_spacing=(4.0, 4.0, 4.0))
    return PetCtForSegmentation(config).eval()


def _maps(model, clicks):
    c = model.config
    return encode_voxels(clicks, SHAPE, c.guidance_encoding, c.guidance_size, c.guidance_channels)


@pytest.mark.parametrize("size,roi,overlap", [(52, 16, 0.25), (40, 16, 0.5), (16, 16, 0.25), (10, 16, 0.25)])
def test_window_starts_are_monais_grid(size, roi, overlap):
    starts = window_starts(size, roi, overlap)
    assert len(starts) == window_count((size,), (roi,), overlap)
    assert starts[0] == 0 and starts[-1] == max(0, size - roi) and starts == sorted(set(starts))


def test_a_click_updates_its_region_as_a_full_rerun_would(guided):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, *SHAPE)).astype(np.float32)
    old_clicks = [(0, (8, 8, 10))]
    new_clicks = old_clicks + [(1, (30, 5, 40))]
    old_maps, new_maps = _maps(guided, old_clicks), _maps(guided, new_clicks)
    previous = predict_probabilities(guided, image, SETTINGS, guidance=old_maps)
    full = predict_probabilities(guided, image, SETTINGS, guidance=new_maps)
    margin = (3, 3, 3)
    fixed, region = update_probabilities(guided, image, previous, old_maps, new_maps, margin, SETTINGS, tolerance=1.0)
    # the region: the new click's ball (non-zero within 1 voxel of it: radius 2, falling to 0) plus the margin
    assert region == (slice(26, 35), slice(1, 10), slice(36, 45))
    np.testing.assert_allclose(fixed[(slice(None), *region)], full[(slice(None), *region)], atol=1e-5)
    outside = np.ones(SHAPE, bool)
    outside[region] = False
    np.testing.assert_array_equal(fixed[:, outside], previous[:, outside])
    assert np.abs(full - previous)[:, ~outside].max() > 1e-3  # the click did change the region
    # with the default tolerance the region grows until its faces are still: wider here (random weights reach far)
    grown, wider = update_probabilities(guided, image, previous, old_maps, new_maps, margin, SETTINGS)
    assert all(w.start <= r.start and w.stop >= r.stop for w, r in zip(wider, region)) and wider != region
    np.testing.assert_allclose(grown[(slice(None), *wider)], full[(slice(None), *wider)], atol=1e-5)
    same, none = update_probabilities(guided, image, full, new_maps, new_maps, margin, SETTINGS)
    assert none is None and same is full


def test_the_influence_margin_is_measured_and_bounded_by_a_window(guided):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, *SHAPE)).astype(np.float32)
    margin = influence_margin(guided, image, SETTINGS)
    assert all(0 < m < 16 for m in margin)
    assert influence_margin(guided, image, SETTINGS, tolerance=1.0) == (0, 0, 0)


def test_the_spaces_refiner_gives_the_full_reruns_mask_on_the_pet_grid(guided):
    """Successive clicks (added, then one undone) through ClickRefiner vs the Segmenter re-run on the whole study."""
    from dataclasses import replace

    from modeling_petct.data.clicks import Click
    from modeling_petct.data.synthetic.phantom import make_phantom
    from modeling_petct.inference import Segmenter

    phantom = make_phantom(5, size="small", n_lesions=2)
    segmenter = Segmenter(guided, replace(SETTINGS, roi_size=(32, 32, 32)))  # few windows: a quick test
    first = segmenter(phantom.pet, phantom.ct, keep_probabilities=True)
    refiner = segmenter.click_refiner(first.harmonized, first.probabilities)
    affine = phantom.pet.affine
    clicks = [Click(kind, tuple(affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]))
              for kind, ijk in (("tumor", (30, 30, 40)), ("background", (20, 36, 60)))]
    full = {upto: segmenter(phantom.pet, phantom.ct, clicks=clicks[:upto]).mask.array for upto in (1, 2)}
    for upto in (1, 2, 1):  # a click, another, then undo
        mask = refiner(clicks[:upto])
        assert refiner.region is not None  # re-run (random weights: the region may grow to the whole study)
        assert np.mean(mask != full[upto]) < 1e-4  # only voxels at p = 0.5 +- the click's far reach may differ


def test_a_region_of_the_harmonised_grid_reaches_only_its_native_box():
    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.synthetic.phantom import make_phantom

    phantom = make_phantom(5, size="small", n_lesions=1)
    study = harmonize(phantom.pet, phantom.ct, spacing=(4.0, 4.0, 4.0))
    region = (slice(10, 20), slice(5, 15), slice(20, 30))
    box = study.native_box(region)
    before = np.random.default_rng(2).random(study.shape).astype(np.float32)
    after = before.copy()
    after[region] += 1.0
    full_before, full_after = (study.to_native(a, order="linear") for a in (before, after))
    np.testing.assert_allclose(study.to_native(after, order="linear", box=box), full_after[box], atol=1e-6)
    outside = np.ones(full_after.shape, bool)
    outside[box] = False
    np.testing.assert_array_equal(full_after[outside], full_before[outside])
    assert 0 < outside.sum() < outside.size and (full_after[box] != full_before[box]).any()
