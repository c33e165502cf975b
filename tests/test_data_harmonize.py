"""Harmonisation: geometry is exact and reversible in every orientation, normalisation and body crop do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXACT_GRIDS, SHAPE, centred_affine, linear_field, make_study, world
from modeling_petct.data.harmonize import CLINICAL_STATS, harmonize
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError


@pytest.mark.parametrize("name", EXACT_GRIDS)
def test_label_round_trip_is_exact_on_aligned_grids(name):
    pet, ct, label = make_study(EXACT_GRIDS[name], SHAPE)
    h = harmonize(pet, ct, label, normalization="none")
    assert h.image.shape[0] == 2 and h.image.dtype == np.float32 and h.label.dtype == np.uint8
    assert h.label.sum() == label.array.sum()  # nothing lost by resampling or the crop
    np.testing.assert_array_equal(h.to_native(h.label), label.array)
    # PET intensities land where the world says they should
    np.testing.assert_allclose(h.suv, linear_field(world(h.grid_affine, h.shape)), atol=1e-3)


def test_z_runs_head_to_feet_and_grid_affine_is_consistent():
    pet, ct, label = make_study(EXACT_GRIDS["RAS"], SHAPE)
    h = harmonize(pet, ct, label)
    assert h.grid_affine[2, 0] < 0  # z index increases towards the feet (RAS z decreases)
    assert h.grid_affine[1, 1] < 0 and h.grid_affine[0, 2] < 0  # y: anterior -> posterior, x: right -> left (RAS -x)
    np.testing.assert_allclose(np.linalg.norm(h.grid_affine[:3, :3], axis=0), (3, 2, 2))


@pytest.mark.parametrize(
    "columns",
    [np.diag([4.0, 4.0, 2.5]), np.diag([-2.0364, -2.0364, 3.0]),
     np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1]]) @ np.diag([2.0, 2.0, 3.0])],
    ids=["anisotropic", "autopet-spacing", "oblique"],
)
def test_round_trip_on_other_spacings_preserves_lesions(columns):
    pet, ct, label = make_study(centred_affine(columns, SHAPE), SHAPE)
    h = harmonize(pet, ct, label, normalization="none")
    back = h.to_native(h.label)
    dice = 2 * (back & label.array).sum() / (back.sum() + label.array.sum())
    assert dice > 0.85
    np.testing.assert_allclose(h.suv[2:-2, 2:-2, 2:-2], linear_field(world(h.grid_affine, h.shape))[2:-2, 2:-2, 2:-2], atol=1e-2)


def test_ct_on_a_different_grid_is_resampled_by_world_coordinates():
    pet_aff = centred_affine(np.diag([-4.0, -4.0, 3.0]), SHAPE)
    ct_shape = (80, 70, 30)
    ct_aff = centred_affine([[0, 0, 1.2], [1.1, 0, 0], [0, 0.9, 0]], ct_shape)[:, [0, 1, 2, 3]]  # permuted, finer, RAS
    ct_aff[:3, 3] += [1.0, 2.0, -3.0]
    pet, ct, label = make_study(pet_aff, SHAPE, ct_affine=ct_aff, ct_shape=ct_shape)
    ct = Volume(linear_field(world(ct_aff, ct_shape)).astype(np.float32), ct_aff, "ct.nii.gz", meta={"patient_id": "P1"})
    h = harmonize(pet, ct, label, normalization="none", crop_body=False)
    expect = linear_field(world(h.grid_affine, h.shape))
    pts = world(h.grid_affine, h.shape).reshape(3, -1)
    idx = (np.linalg.inv(ct_aff)[:3, :3] @ pts + np.linalg.inv(ct_aff)[:3, 3:4]).reshape(3, *h.shape)
    inside = np.all((idx >= 0) & (idx <= np.reshape(ct_shape, (3, 1, 1, 1)) - 1), axis=0)
    assert inside.mean() > 0.2
    assert np.all(h.image[1][np.any((idx < -0.51) | (idx > np.reshape(ct_shape, (3, 1, 1, 1)) - 0.49), axis=0)] == -1024)
    np.testing.assert_allclose(h.image[1][inside], expect[inside], atol=2e-3)


def test_body_crop_keeps_the_largest_component_only():
    pet, ct, label = make_study(EXACT_GRIDS["LPS"], SHAPE)
    full = harmonize(pet, ct, label, crop_body=False)
    cropped = harmonize(pet, ct, label)
    assert np.prod(cropped.shape) < np.prod(full.shape)
    (z0, z1), (y0, y1), (x0, x1) = cropped.crop_box
    ct_full = full.image[1] * full.norm_stats["ct"]["sd"] + full.norm_stats["ct"]["mean"]
    body = ct_full > -500
    outside = body.copy()
    outside[z0:z1, y0:y1, x0:x1] = False
    assert outside.any()  # the detached slab was left out of the crop
    zs = np.flatnonzero(body[:, y0:y1, x0:x1].any(axis=(1, 2)))
    assert z0 == max(0, zs[0] - 3)  # padding of 3 voxels


def test_normalizations_are_applied_and_recorded():
    pet, ct, label = make_study(EXACT_GRIDS["LPS"], SHAPE)
    z = harmonize(pet, ct, normalization="zscore")
    assert z.normalization == "zscore"
    np.testing.assert_allclose(z.image.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.image.std(axis=(1, 2, 3)), 1, atol=1e-4)
    c = harmonize(pet, ct, normalization="clinical")
    lo, hi, mean, sd = CLINICAL_STATS["ct"]
    assert c.normalization == "clinical" and c.norm_stats["ct"]["clip"] == [lo, hi]
    assert c.image[1].min() == pytest.approx((lo - mean) / sd, abs=1e-5)  # air clipped at -832 HU
    lo, hi, mean, sd = CLINICAL_STATS["pet"]
    assert c.image[0].max() == pytest.approx((min(hi, z.suv.max()) - mean) / sd, abs=1e-4)
    n = harmonize(pet, ct, normalization="none")
    np.testing.assert_array_equal(n.image[0], n.suv)
    with pytest.raises(ValueError):
        harmonize(pet, ct, normalization="minmax")


def test_mismatched_pairs_are_refused_naming_both_files():
    pet, ct, _ = make_study(EXACT_GRIDS["LPS"], SHAPE)
    other = Volume(ct.array, ct.affine, "other_ct.nii.gz", meta={"patient_id": "P2"})
    with pytest.raises(PetCtInputError, match="different patients") as err:
        harmonize(pet, other)
    assert "pet.nii.gz" in str(err.value) and "other_ct.nii.gz" in str(err.value)
    far = ct.affine.copy()
    far[2, 3] += 1000.0
    with pytest.raises(PetCtInputError, match="do not overlap") as err:
        harmonize(pet, Volume(ct.array, far, "far_ct.nii.gz"))
    assert "pet.nii.gz" in str(err.value) and "far_ct.nii.gz" in str(err.value)


def test_probabilities_map_back_with_background_outside_the_crop():
    pet, ct, label = make_study(EXACT_GRIDS["LPS"], SHAPE)
    h = harmonize(pet, ct, label)
    prob = np.stack([1.0 - h.label, h.label.astype(np.float32)]).astype(np.float32)
    native = h.to_native_probabilities(prob)
    assert native.shape == (2, *SHAPE)
    np.testing.assert_array_equal(native.argmax(0), label.array)
    np.testing.assert_allclose(native.sum(0), 1.0, atol=1e-6)


def test_serialisation_round_trip():
    pet, ct, label = make_study(EXACT_GRIDS["RAS"], SHAPE)
    h = harmonize(pet, ct, label)
    from modeling_petct.data.harmonize import HarmonizedStudy
    import json

    again = HarmonizedStudy.from_dict(json.loads(json.dumps(h.to_dict())), h.image, h.label)
    np.testing.assert_array_equal(again.to_native(again.label), label.array)
    assert again.normalization == "zscore" and again.crop_box == h.crop_box


def test_the_suv_is_recovered_from_a_cached_study_by_its_recorded_normalisation(tmp_path):
    """A cache keeps only the normalised image: pet_suv() undoes the recorded z-score (what the 41%-of-SUVmax tool
    and its thresholds need), and returns the kept SUV when there is one."""
    from modeling_petct.data.cache import StudyCache

    pet, ct, label = make_study(EXACT_GRIDS["LPS"], SHAPE)
    h = harmonize(pet, ct, label, normalization="zscore")
    np.testing.assert_array_equal(h.pet_suv(), h.suv)
    cache = StudyCache(tmp_path / "cache")
    cache.write("s", h)
    cached = cache.load("s")
    assert cached.suv is None and not np.allclose(cached.image[0], h.suv, atol=1e-2)  # normalised, SUV not kept
    np.testing.assert_allclose(cached.pet_suv(), h.suv, rtol=1e-5, atol=1e-4)
