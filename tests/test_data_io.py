"""Reading/writing volumes: geometry survives every format and orientation; bad files are refused by name."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_affine
from modeling_petct.data.io import read_ct, read_pet, read_volume, sitk_to_volume, volume_to_sitk, write_volume
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError


def _affine(steps, origin):
    return make_affine(np.asarray(steps, float).T, origin=origin)  # rows given are the i, j, k step vectors


ORIENTATIONS = {
    "RAS": _affine([[2, 0, 0], [0, 2, 0], [0, 0, 3]], [-10, 20, -30]),
    "LPS": _affine([[-2.0364, 0, 0], [0, -2.0364, 0], [0, 0, 3]], [400, 300, -900]),
    "flipped-k": _affine([[1, 0, 0], [0, 1, 0], [0, 0, -3.27]], [0, 0, 100]),
    "anisotropic": _affine([[0.977, 0, 0], [0, 1.5, 0], [0, 0, 5]], [1.5, -2.5, 7.25]),
    "permuted": _affine([[0, 0, 3], [-2, 0, 0], [0, -1.5, 0]], [12, 34, 56]),  # i -> S, j -> L, k -> P
    "permuted-flipped": _affine([[0, 2.5, 0], [0, 0, -4], [1, 0, 0]], [-5, 5, 50]),
}


def _world(vol: Volume, ijk) -> np.ndarray:
    return (vol.affine @ np.append(np.asarray(ijk, float), 1.0))[:3]


@pytest.fixture(params=sorted(ORIENTATIONS))
def oriented(request) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.normal(size=(7, 5, 4)).astype(np.float32), ORIENTATIONS[request.param])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_voxels_and_geometry(oriented, suffix, tmp_path):
    path = write_volume(oriented, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, oriented.array)
    np.testing.assert_allclose(back.affine, oriented.affine, atol=1e-5)


def test_nibabel_and_simpleitk_agree_on_world_coordinates(oriented, tmp_path):
    nii = write_volume(oriented, tmp_path / "v.nii.gz")
    via_itk = sitk_to_volume(sitk.ReadImage(str(nii)), str(nii))
    via_nib = read_volume(nii)
    np.testing.assert_array_equal(via_itk.array, via_nib.array)
    for ijk in [(0, 0, 0), (6, 4, 3), (3, 1, 2)]:
        np.testing.assert_allclose(_world(via_itk, ijk), _world(via_nib, ijk), atol=1e-4)
    # and a voxel's world position, looked up by SimpleITK's own API, is where our affine puts it (RAS = LPS flipped)
    lps = np.array(sitk.ReadImage(str(nii)).TransformIndexToPhysicalPoint((6, 4, 3)))
    np.testing.assert_allclose(lps * [-1, -1, 1], _world(via_nib, (6, 4, 3)), atol=1e-4)


def test_nifti_to_mha_and_back_keeps_world_coordinates(oriented, tmp_path):
    nii = read_volume(write_volume(oriented, tmp_path / "a.nii.gz"))
    mha = read_volume(write_volume(nii, tmp_path / "a.mha"))
    nii2 = read_volume(write_volume(mha, tmp_path / "b.nii.gz"))
    np.testing.assert_array_equal(nii2.array, oriented.array)
    np.testing.assert_allclose(mha.affine, nii.affine, atol=1e-5)
    np.testing.assert_allclose(nii2.affine, nii.affine, atol=1e-5)


def test_volume_to_sitk_is_exact_inverse(oriented):
    back = sitk_to_volume(volume_to_sitk(oriented))
    np.testing.assert_array_equal(back.array, oriented.array)
    np.testing.assert_allclose(back.affine, oriented.affine, atol=1e-12)


def test_mask_written_like_a_nifti_carries_its_header_bit_exact(real_sts, tmp_path):
    pet = read_pet(real_sts / "STS_001/PET/nifti/image/image.nii.gz")
    mask = (pet.array > 2).astype(np.uint8)
    out = write_volume(mask, tmp_path / "mask.nii.gz", like=pet)
    src, dst = nib.load(pet.source).header, nib.load(out).header
    for key in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                "qoffset_z", "pixdim", "sform_code", "qform_code"):
        np.testing.assert_array_equal(dst[key], src[key], err_msg=key)
    back = read_volume(out)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_array_equal(back.affine, pet.affine)


def test_real_nifti_world_coordinates_agree_between_readers(real_sts):
    path = real_sts / "STS_002/CT/nifti/image/image.nii.gz"
    via_nib = read_ct(path)
    img = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (160, 142, 47), (10, 100, 20)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(lps * [-1, -1, 1], _world(via_nib, ijk), atol=1e-3)
    assert via_nib.meta["units"] == "HU"


def test_read_pet_records_that_nifti_is_taken_as_suv(real_sts):
    pet = read_pet(real_sts / "STS_001/PET/nifti/image/image.nii.gz")
    assert pet.meta["suv_status"] == "assumed-SUV-nifti" and pet.meta["units"] == "SUV"


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), tmp_path / "x.nii.gz")
    assert read_volume(tmp_path / "x.nii.gz").shape == (4, 5, 6)


def _refused(path, match):
    with pytest.raises(PetCtInputError, match=match) as err:
        read_volume(path)
    assert str(path) in str(err.value)


def test_bad_files_are_refused_naming_the_file(tmp_path):
    good = write_volume(Volume(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    _refused(truncated, "cannot read NIfTI")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti at all" * 30))
    _refused(garbage, "cannot read NIfTI")
    bad_mha = tmp_path / "bad.mha"
    bad_mha.write_text("ObjectType = Image\nNDims = 3\nnonsense\n")
    _refused(bad_mha, "cannot read image")
    _refused(tmp_path / "missing.nii.gz", "no such file")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    _refused(tmp_path / "x.png", "unknown image format")


def test_4d_and_nan_volumes_are_refused(tmp_path):
    four_d = tmp_path / "dynamic.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), four_d)
    _refused(four_d, "3-D")
    img = sitk.Image([4, 4, 4, 3], sitk.sitkFloat32)
    sitk.WriteImage(img, str(tmp_path / "dynamic.mha"))
    _refused(tmp_path / "dynamic.mha", "3-D")
    nans = np.ones((4, 4, 4), np.float32)
    nans[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nans, np.eye(4)), tmp_path / "nan.nii.gz")
    _refused(tmp_path / "nan.nii.gz", "NaN")


def test_write_refuses_a_volume_that_is_not_on_the_like_grid(tmp_path):
    a = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    b = Volume(np.zeros((3, 3, 3), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="affine differs"):
        write_volume(a, tmp_path / "x.nii.gz", like=b)
    with pytest.raises(ValueError, match="does not match the grid"):
        write_volume(np.zeros((2, 3, 3)), tmp_path / "x.nii.gz", like=b)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_scaled_integer_nifti_is_read_as_float32_values(tmp_path):
    img = nib.Nifti1Image(np.arange(27, dtype=np.int16).reshape(3, 3, 3), np.eye(4))
    img.header.set_slope_inter(0.5, -1.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = read_volume(tmp_path / "scaled.nii.gz")
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, np.arange(27).reshape(3, 3, 3) * 0.5 - 1.0)
