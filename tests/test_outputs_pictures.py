"""The demo's pictures (modeling_petct.outputs.pictures): radiological orientation whatever the voxel order, outlines on lesions."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_petct.data.volume import Volume
from modeling_petct.outputs.pictures import (
    OUTLINE, fused_slice, pet_mip_overlay, resample_like, slice_count, slice_position, to_ras,
)


def _study(flip_lps: bool = False):
    """PET 20x16x30 voxels (4x4x3 mm) with one hot lesion high up on the patient's left; optionally stored LPS."""
    suv = np.full((20, 16, 30), 0.5, np.float32)
    suv[2:5, 6:9, 24:27] = 8.0  # small i = patient's left (RAS), large k = superior
    affine = np.diag([4.0, 4.0, 3.0, 1.0])
    if flip_lps:
        suv = suv[::-1, ::-1].copy()
        affine = affine @ np.array([[-1, 0, 0, 19], [0, -1, 0, 15], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    pet = Volume(suv, affine)
    return pet, pet.with_array((suv > 4).astype(np.uint8))


def _outline_centre(image, colour):
    rows, cols = np.nonzero(np.all(image == colour, axis=-1))
    assert rows.size, "no outline drawn"
    return rows.mean() / image.shape[0], cols.mean() / image.shape[1]


def test_mip_outlines_lesion_top_right_of_picture_for_patients_upper_left():
    pet, mask = _study()
    image = pet_mip_overlay(pet, mask, height=300)
    assert image.dtype == np.uint8 and image.shape == (300, 267, 3)  # 90 mm tall, 80 mm wide: square pixels
    row, col = _outline_centre(image, OUTLINE)
    assert row < 0.3 and col > 0.7  # superior at the top; patient's left on the viewer's right
    assert not np.all(pet_mip_overlay(pet, None, height=300) == OUTLINE, axis=-1).any()


def test_views_do_not_depend_on_voxel_order():
    ras, lps = _study(), _study(flip_lps=True)
    assert np.array_equal(pet_mip_overlay(*ras), pet_mip_overlay(*lps))
    for plane, index in (("axial", 25), ("coronal", 7)):
        # index counts slices in RAS+ order, so the same index is the same anatomy
        a = fused_slice(ras[0], ras[0].with_array(np.zeros((20, 16, 30), np.float32)), ras[1], plane=plane, index=index)
        b = fused_slice(lps[0], lps[0].with_array(np.zeros((20, 16, 30), np.float32)), lps[1], plane=plane, index=index)
        assert np.array_equal(a, b)
        assert np.all(a == OUTLINE, axis=-1).any()


def test_fused_slice_range_and_grid_checks():
    pet, mask = _study()
    ct = pet.with_array(np.zeros(pet.shape, np.float32))
    assert slice_count(pet, "axial") == 30 and slice_count(pet, "coronal") == 16
    empty = fused_slice(pet, ct, mask, plane="axial", index=0)  # far below the lesion: nothing outlined
    assert not np.all(empty == OUTLINE, axis=-1).any()
    with pytest.raises(IndexError):
        fused_slice(pet, ct, mask, plane="axial", index=30)
    with pytest.raises(ValueError, match="not on the PET grid"):
        fused_slice(pet, Volume(np.zeros((10, 8, 15), np.float32), np.diag([8.0, 8.0, 6.0, 1.0])), mask)


def test_resample_like_puts_ct_on_pet_grid_in_world_coordinates():
    pet, _ = _study()
    ct_array = np.full((40, 32, 45), -1000.0, np.float32)
    ct_array[:, :, 30:] = 50.0  # world z >= 60 mm is soft tissue
    ct = Volume(ct_array, np.diag([2.0, 2.0, 2.0, 1.0]))
    on_pet = resample_like(ct, pet, fill=-1024.0)
    assert on_pet.shape == pet.shape and np.array_equal(on_pet.affine, pet.affine)
    z_mm = np.arange(30) * 3.0
    assert np.allclose(on_pet.array[10, 8, z_mm >= 61], 50.0) and np.allclose(on_pet.array[10, 8, z_mm <= 57], -1000.0)


def test_annotated_views_number_lesions_beside_their_outline_and_carry_markers_and_a_colour_bar():
    pet, mask = _study()
    labels = mask.with_array(mask.array.astype(np.int32) * 7)  # lesion id 7, as in the lesion table
    plain = pet_mip_overlay(pet, labels, height=300)
    annotated = pet_mip_overlay(pet, labels, height=300, annotate=True)
    assert annotated.shape[1] == plain.shape[1] and annotated.shape[0] > plain.shape[0]  # the colour bar strip
    top = annotated[: plain.shape[0]]
    near = np.abs(top.astype(int) - OUTLINE).sum(axis=-1) < 60  # the number, in the outline colour (anti-aliased)
    extra = near & ~np.all(plain == OUTLINE, axis=-1)
    rows, cols = np.nonzero(extra)
    assert rows.size > 10
    lesion_rows, lesion_cols = np.nonzero(np.all(plain == OUTLINE, axis=-1))
    assert abs(np.median(rows) - lesion_rows.min()) < 30 and np.median(cols) > lesion_cols.mean()  # beside, top right
    bar = annotated[plain.shape[0] :]
    assert bar[:, 40:200].std() > 20  # a grey ramp, not an empty strip
    fused = fused_slice(pet, pet.with_array(np.zeros(pet.shape, np.float32)), labels, plane="axial", index=25,
                        annotate=True)  # fmt: skip
    assert (np.abs(fused.astype(int) - OUTLINE).sum(axis=-1) < 60).sum() > np.all(
        fused_slice(pet, pet.with_array(np.zeros(pet.shape, np.float32)), labels, plane="axial", index=25) == OUTLINE,
        axis=-1,
    ).sum()


def test_slice_position_is_in_patient_millimetres():
    pet, _ = _study()
    ras = to_ras(pet)
    assert slice_position(ras, "axial", 10) == "z 30 mm"  # 3 mm slices from z = 0
    assert slice_position(ras, "coronal", 0) == "A 0 mm" and slice_position(ras, "coronal", 5) == "A 20 mm"
