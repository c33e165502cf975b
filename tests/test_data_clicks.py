"""Clicks as data: the Grand Challenge click file read in the right axis order, placed through real headers, and
stamped as Gaussian / distance-ball guidance maps on the harmonised grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import SHARED_DATA, make_affine
from modeling_petct.data.clicks import (Click, clicks_from_points, encode_clicks, encode_voxels, grid_voxels,
                                        read_clicks, voxel_of, write_clicks)
from modeling_petct.data.harmonize import HarmonizedStudy, canonical_grid, harmonize
from modeling_petct.data.io import read_volume, write_volume
from modeling_petct.errors import PetCtInputError

AUTOPET_CLICKS = SHARED_DATA / "autopet_iv" / "lesion-clicks.json"


def _ball(array: np.ndarray, centre, radius: int, value: int) -> None:
    box = tuple(slice(max(0, c - radius), c + radius + 1) for c in centre)
    grids = np.ogrid[box]
    inside = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2
    array[box][inside] = value


def _geometry_only_study(affine: np.ndarray, shape, spacing) -> HarmonizedStudy:
    """The harmonised grid of a PET header (uncropped), without voxels: what the click placement needs."""
    grid_affine, grid_shape = canonical_grid(affine, shape, spacing)
    return HarmonizedStudy(np.broadcast_to(np.float32(0), (2, *grid_shape)), grid_affine, affine, tuple(shape),
                           tuple((0, n) for n in grid_shape), "none", {}, spacing)


def test_the_autopet_click_file_is_read_in_nibabel_order_not_the_reversed_one():
    """A study built so that each tumour click (i, j, k) sits in a lesion while (k, j, i) sits in the liver: the FG
    map, stamped on the harmonised grid and carried back to the PET grid by SimpleITK, lies in the lesions only."""
    points = json.loads(AUTOPET_CLICKS.read_text())["points"]
    tumours = [tuple(p["point"]) for p in points if p["name"] == "tumor"]
    assert len(tumours) == 10 and sum(p["name"] == "background" for p in points) == 10
    shape = (392, 120, 392)  # i and k large enough that the reversed order is also on the image
    affine = make_affine(np.diag([-2.0364, -2.0364, 3.0]), centre_of=shape)  # autoPET's LPS-like NIfTI
    lesions, liver = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for i, j, k in tumours:
        _ball(lesions, (i, j, k), 6, 1)
        _ball(liver, (k, j, i), 6, 1)
    assert not (lesions & liver).any()  # the two readings are told apart

    clicks = read_clicks(AUTOPET_CLICKS, affine, shape)
    reversed_clicks = clicks_from_points([("tumor", p[::-1]) for p in tumours], affine, shape)
    study = _geometry_only_study(affine, shape, (6.0, 4.0, 4.0))
    for chosen, organ, other in ((clicks, lesions, liver), (reversed_clicks, liver, lesions)):
        fg = encode_clicks(chosen, study.grid_affine, study.shape, "ball", 1.5)[0]
        native = study.to_native(fg, order="nearest") > 0.5
        assert native.any() and organ[native].all() and not other[native].any()
    fg_native = study.to_native(encode_clicks(clicks, study.grid_affine, study.shape, "ball", 1.5)[0]) > 0.5
    assert all(fg_native[i - 6:i + 7, j - 6:j + 7, k - 6:k + 7].any() for i, j, k in tumours)  # every click kept


@pytest.fixture(scope="module")
def phantom():
    from modeling_petct.data.synthetic.phantom import make_phantom

    study = make_phantom(0, n_lesions=4, study_id="phantom_clicks")
    return study, harmonize(study.pet, study.ct, study.label, normalization="none")


def _lesion_centres(label: np.ndarray) -> list[tuple[int, int, int]]:
    """The voxel of each lesion component nearest its centre of mass (a voxel of the lesion)."""
    from scipy import ndimage

    parts, n = ndimage.label(label > 0)
    centres = []
    for part in range(1, n + 1):
        voxels = np.argwhere(parts == part)
        centres.append(tuple(int(v) for v in voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]))
    return centres


def test_lesion_clicks_land_on_the_harmonised_lesions_of_a_cropped_study(phantom, tmp_path):
    source, study = phantom
    centres = _lesion_centres(source.label.array)
    assert len(centres) >= 2 and study.crop_box != tuple((0, n) for n in study.shape)
    background = tuple(int(n) // 2 for n in source.pet.shape)
    clicks = clicks_from_points([("tumor", c) for c in centres] + [("background", background)],
                                source.pet.affine, source.pet.shape)
    path = write_clicks(tmp_path / "clicks.json", clicks, source.pet.affine)
    assert json.loads(path.read_text())["points"][0] == {"point": list(centres[0]), "name": "tumor"}
    again = read_clicks(path, source.pet.affine, source.pet.shape)
    assert np.allclose([c.world for c in again], [c.world for c in clicks])

    placed = grid_voxels(again, study.grid_affine, study.shape)
    assert [channel for channel, _ in placed] == [0] * len(centres) + [1]
    maps = encode_clicks(again, study.grid_affine, study.shape, "gaussian", 2.0)
    for channel, zyx in placed:
        assert maps[channel][zyx] == 1.0 and maps[1 - channel][zyx] < 1.0
        assert (study.label[zyx] > 0) == (channel == 0)  # the harmonised voxel of a tumour click is a lesion voxel


def test_world_clicks_in_ras_and_lps_agree_with_voxel_clicks(phantom):
    source, _ = phantom
    affine, shape = source.pet.affine, source.pet.shape
    ijk = [(10, 20, 30), (40.5, 3.25, 80)]
    voxel = clicks_from_points([("tumor", p) for p in ijk], affine, shape)
    ras = [affine[:3, :3] @ p + affine[:3, 3] for p in np.asarray(ijk, float)]
    for space, points in (("world", ras), ("world-lps", [np.diag([-1, -1, 1]) @ p for p in ras])):
        world = clicks_from_points([("tumor", list(p)) for p in points], affine, shape, space)
        assert np.allclose([c.world for c in world], [c.world for c in voxel])


OBLIQUE = [[1.5 * np.cos(0.3), -1.5 * np.sin(0.3), 0], [0, 0, -3.0], [2.0 * np.sin(0.3), 2.0 * np.cos(0.3), 0]]


@pytest.mark.parametrize("columns", [np.diag([-4.0, -4.0, 3.0]), np.diag([2.0, -2.5, -3.0]), np.array(OBLIQUE).T])
def test_clicks_round_trip_through_real_headers(columns, tmp_path):
    """Flipped and oblique NIfTI headers: a click's world point is nibabel's and SimpleITK's (an independent
    library), and writing then reading the click file gives the voxel back."""
    shape = (20, 24, 16)
    affine = make_affine(columns, origin=(12.0, -30.0, 55.0))
    nib.Nifti1Image(np.zeros(shape, np.float32), affine).to_filename(tmp_path / "pet.nii.gz")
    pet = read_volume(tmp_path / "pet.nii.gz")
    write_volume(pet, tmp_path / "pet.mha")
    itk = sitk.ReadImage(str(tmp_path / "pet.mha"))
    ijk = (3.0, 17.0, 11.0)
    (click,) = clicks_from_points([("background", ijk)], pet.affine, pet.shape)
    assert np.allclose(click.world, nib.affines.apply_affine(nib.load(tmp_path / "pet.nii.gz").affine, ijk))
    lps = itk.TransformContinuousIndexToPhysicalPoint(ijk)  # SimpleITK's index order is (i, j, k) as well
    assert np.allclose(click.world, (-lps[0], -lps[1], lps[2]), atol=1e-4)
    again = read_clicks(write_clicks(tmp_path / "c.json", [click], pet.affine), pet.affine, pet.shape)
    assert np.allclose(voxel_of(again[0].world, pet.affine), ijk)
    study = _geometry_only_study(pet.affine, pet.shape, (3.0, 2.0, 2.0))
    (_, zyx), = grid_voxels(again, study.grid_affine, study.shape)
    world_back = study.grid_affine[:3, :3] @ zyx + study.grid_affine[:3, 3]
    assert np.linalg.norm(world_back - click.world) <= np.linalg.norm([1.5, 1.0, 1.0]) + 1e-6  # nearest voxel


def test_the_gaussian_is_the_baseline_kernel_unnormalised_and_truncated():
    maps = encode_voxels([(0, (10, 10, 10)), (1, (4, 4, 4))], (21, 21, 21), "gaussian", 2.0)
    assert maps.dtype == np.float32 and maps.shape == (2, 21, 21, 21)
    assert maps[0, 10, 10, 10] == 1.0 and maps[1, 4, 4, 4] == 1.0 and maps[0, 4, 4, 4] == 0.0
    assert maps[0, 10, 10, 13] == pytest.approx(np.exp(-9 / 8), rel=1e-6)
    assert maps[0, 10, 12, 12] == pytest.approx(np.exp(-8 / 8), rel=1e-6)
    assert maps[0, 10, 10, 17] == 0.0  # 7 voxels > 3 sigma


def test_the_ball_falls_linearly_from_one_to_zero_at_the_radius_and_clicks_combine_by_maximum():
    maps = encode_voxels([(0, (8, 8, 8)), (0, (8, 8, 11))], (17, 17, 17), "ball", 4.0)[0]
    assert maps[8, 8, 8] == 1.0 and maps[8, 8, 11] == 1.0
    assert maps[8, 8, 6] == pytest.approx(0.5) and maps[8, 6, 8] == pytest.approx(0.5)
    assert maps[8, 8, 4] == 0.0 and maps[8, 8, 15] == 0.0
    assert maps[8, 8, 10] == pytest.approx(0.75)  # the nearer click wins, no sum above 1
    assert maps.max() == 1.0 and maps.min() == 0.0


def test_clicks_off_the_model_grid_are_left_out_and_bad_encodings_refused():
    study = _geometry_only_study(np.diag([4.0, 4.0, 4.0, 1.0]), (10, 10, 10), (4.0, 4.0, 4.0))
    far = Click("tumor", (1000.0, 0.0, 0.0))
    assert grid_voxels([far], study.grid_affine, study.shape) == []
    assert not encode_clicks([far], study.grid_affine, study.shape, "ball", 3.0).any()
    with pytest.raises(ValueError, match="encoding"):
        encode_voxels([], (4, 4, 4), "disk", 3.0)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a JSON click file"),
    ('{"type": "Multiple lines", "points": []}', "Multiple points"),
    ('{"type": "Multiple points", "points": [{"point": [1, 2, 3], "name": "lesion"}]}', "point 0: name"),
    ('{"type": "Multiple points", "points": [{"point": [1, 2], "name": "tumor"}]}', "three finite"),
    ('{"type": "Multiple points", "points": [{"point": [1, 2, 30], "name": "tumor"}]}', "outside the PET image"),
])
def test_bad_click_files_are_one_readable_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "clicks.json"
    path.write_text(content)
    with pytest.raises(PetCtInputError, match=problem) as err:
        read_clicks(path, np.eye(4), (10, 10, 10))
    assert str(path) in str(err.value)
    with pytest.raises(PetCtInputError, match="clicks-space"):
        read_clicks(path, np.eye(4), (10, 10, 10), space="mm")
