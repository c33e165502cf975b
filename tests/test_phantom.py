"""The synthetic PET/CT cohort: anatomy and uptake are plausible, lesions are exact, everything is seeded."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from modeling_petct.cli import main as cli_main
from modeling_petct.data.io import read_ct, read_pet, read_volume
from modeling_petct.data.synthetic.phantom import LESION_SITES, SIZES, _grids, make_phantom, write_phantom_cohort


@pytest.fixture(scope="module")
def study():
    """A lesion-free study, so organ values are not disturbed by a lesion that happens to sit there."""
    return make_phantom(3, lesion_free=True)


def test_small_study_is_fast_and_on_two_grids(study):
    start = time.perf_counter()
    make_phantom(11)
    assert time.perf_counter() - start < 2.0  # < 0.4 s on an idle core; slack for a shared CI box
    assert study.pet.shape == (64, 64, 96) and study.pet.spacing == (4.0, 4.0, 4.0)
    assert study.ct.shape == (128, 128, 96) and study.ct.spacing == (2.0, 2.0, 4.0)
    assert study.label.shape == study.pet.shape
    np.testing.assert_array_equal(study.label.affine, study.pet.affine)
    # both grids cover the same field of view: the centre voxel of each maps to the same world point
    for vol in (study.pet, study.ct):
        centre = vol.affine @ np.append((np.array(vol.shape) - 1) / 2.0, 1.0)
        np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


def test_deterministic_per_seed():
    a, b, c = make_phantom(5), make_phantom(5), make_phantom(6)
    np.testing.assert_array_equal(a.pet.array, b.pet.array)
    np.testing.assert_array_equal(a.ct.array, b.ct.array)
    np.testing.assert_array_equal(a.label.array, b.label.array)
    assert a.lesions == b.lesions and a.meta == b.meta
    assert not np.array_equal(a.pet.array, c.pet.array)


def _world_to_voxel(vol, xyz):
    return tuple(np.rint(np.linalg.solve(vol.affine[:3, :3], np.asarray(xyz) - vol.affine[:3, 3])).astype(int))


def test_ct_has_plausible_hounsfield_units(study):
    ct = study.ct
    assert ct.array.dtype == np.int16
    sample = lambda xyz: float(np.median(ct.array[tuple(slice(v - 1, v + 2) for v in _world_to_voxel(ct, xyz))]))  # noqa: E731
    s = 0.393  # anatomy scale of the small size (FOV 384 mm of the 978 mm adult frame)
    assert sample((75 * s, 0, 170 * s)) < -700  # right lung
    assert 30 < sample((70 * s, 10 * s, 0)) < 80  # liver
    assert sample((0, -72 * s, 10 * s)) > 150  # vertebral body
    assert sample((0, 5 * s, 395 * s)) == pytest.approx(35, abs=20)  # brain
    assert sample((0, 110, 0)) < -950  # air in front of the body
    assert (ct.array < -950).mean() > 0.3 and (ct.array > 500).any()


def test_pet_has_physiological_uptake(study):
    pet, s = study.pet, 0.393
    mean = lambda xyz, r=1: float(pet.array[tuple(slice(v - r, v + r + 1) for v in _world_to_voxel(pet, xyz))].mean())  # noqa: E731
    liver, brain, lung = mean((70 * s, 10 * s, -10 * s)), mean((0, 5 * s, 395 * s)), mean((75 * s, 0, 180 * s))
    assert 1.2 < liver < 3.2
    assert brain > 2 * liver and lung < liver
    assert mean((0, 35 * s, -262 * s)) > 4  # bladder
    assert pet.array.min() >= 0 and pet.array.dtype == np.float32
    # noise: the liver is not flat
    assert pet.array[tuple(slice(v - 1, v + 2) for v in _world_to_voxel(pet, (70 * s, 10 * s, -10 * s)))].std() > 0.02


def test_lesions_are_exact_and_varied():
    sizes, suvs, sites = [], [], set()
    for seed in range(6):
        st = make_phantom(seed, n_lesions=6)
        union = np.zeros(st.pet.shape, bool)
        for les in st.lesions:
            assert les["voxels"] >= 1
            sizes.append(2 * les["radius_mm"])
            suvs.append(les["suv"])
            sites.add(les["site"])
            v = _world_to_voxel(st.pet, les["centre_mm"])
            assert st.label.array[v] == 1  # each lesion centre is inside the mask
            union[v] = True
        label = st.label.array.astype(bool)
        assert label.sum() <= sum(les["voxels"] for les in st.lesions)
        assert st.pet.array[label].mean() > 1.5 * st.pet.array[~label & (st.ct.array[::2, ::2, :] > -500)].mean()
    assert sites == set(LESION_SITES)
    assert 4.0 <= min(sizes) and max(sizes) <= 60.0 and max(sizes) > 20
    assert 2.5 <= min(suvs) and max(suvs) <= 25.0 and max(suvs) > 8


def test_lesion_free_control_has_empty_mask():
    st = make_phantom(4, lesion_free=True)
    assert st.lesions == [] and st.label.array.sum() == 0 and st.meta["lesion_free"]


def test_cohort_on_disk_reads_back_with_geometry(tmp_path):
    dirs = write_phantom_cohort(tmp_path, 3, seed=1, lesion_free_fraction=1 / 3)
    assert [d.name for d in dirs] == ["phantom_001_0000", "phantom_001_0001", "phantom_001_0002"]
    empty = 0
    for d in dirs:
        pet, ct, seg = read_pet(d / "PET.nii.gz"), read_ct(d / "CT.nii.gz"), read_volume(d / "SEG.nii.gz")
        record = json.loads((d / "phantom.json").read_text())
        np.testing.assert_array_equal(seg.affine, pet.affine)
        assert ct.spacing[0] < pet.spacing[0]
        assert int(seg.array.sum()) > 0 or record["lesion_free"]
        empty += record["lesion_free"]
        assert {"weight_kg", "dose_bq", "injection_time", "scan_start", "lesions"} <= set(record)
    assert empty == 1


def test_dicom_cohort_converts_back_to_the_phantom_suv(tmp_path):
    (d,) = write_phantom_cohort(tmp_path, 1, seed=2, fmt="dicom", shape=(24, 24, 20), lesion_free_fraction=0)
    pet, ct = read_pet(d / "PET"), read_ct(d / "CT")
    ref = make_phantom(json.loads((d / "phantom.json").read_text())["seed"], shape=(24, 24, 20), study_id=d.name)
    assert pet.meta["suv_status"] == "converted-from-BQML" and pet.meta["patient_id"] == d.name
    assert pet.meta["study_uid"] == ct.meta["study_uid"]
    np.testing.assert_allclose(pet.affine, ref.pet.affine, atol=1e-5)
    assert np.abs(pet.array - ref.pet.array).max() <= 1e-4 * ref.pet.array.max()
    np.testing.assert_array_equal(ct.array, ref.ct.array)


def test_autopet_size_grids():
    pet, ct, scale = _grids("autopet", None)
    assert pet.shape == SIZES["autopet"]["pet_shape"] == (400, 400, 326)
    assert pet.spacing == (2.0364, 2.0364, 3.0) and ct.spacing[0] < pet.spacing[0]
    assert scale == pytest.approx(1.0, abs=0.01)


def test_cli_writes_a_cohort_and_refuses_bad_options(tmp_path, capsys):
    assert cli_main(["phantom", "-o", str(tmp_path / "c"), "-n", "2", "--seed", "4", "--lesion-free-fraction", "0.5"]) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "phantom_004_0000").iterdir()) == ["CT.nii.gz", "PET.nii.gz", "SEG.nii.gz", "phantom.json"]
    assert "wrote 2 small nifti studies" in capsys.readouterr().out
    assert cli_main(["phantom", "-o", str(tmp_path / "d"), "-n", "2", "--lesion-free-fraction", "1.5"]) == 2
    assert "--lesion-free-fraction" in capsys.readouterr().err


def test_shared_phantom_study_fixture(phantom_study):
    seg = read_volume(phantom_study / "SEG.nii.gz")
    pet = read_pet(phantom_study / "PET.nii.gz")
    assert seg.array.sum() > 0 and seg.shape == pet.shape
    np.testing.assert_array_equal(seg.affine, pet.affine)
