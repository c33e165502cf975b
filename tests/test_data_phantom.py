"""The synthetic PET/CT cohort: anatomy and uptake are plausible, lesions are exact, everything is seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeling_petct.cli import main as cli_main
from modeling_petct.data.io import read_ct, read_pet, read_volume
from modeling_petct.data.organs import TOTALSEG_TOTAL_IDS
from modeling_petct.data.synthetic.phantom import (CENTRES, LESION_SITES, SIZES, _grids, _sample_body,
                                                 _sample_lesions, make_phantom, write_phantom_cohort)


@pytest.fixture(scope="module")
def study():
    """A lesion-free study, so organ values are not disturbed by a lesion that happens to sit there."""
    return make_phantom(3, lesion_free=True)


def test_small_study_is_on_two_grids(study):  # its speed: benchmarks/data_phantom.py
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
    assert sorted(p.name for p in (tmp_path / "c" / "phantom_004_0000").iterdir()) == ["CT.nii.gz", "PET.nii.gz", "SEG.nii.gz",
                                                                                          "organs.nii.gz", "phantom.json"]
    assert "wrote 2 small nifti studies" in capsys.readouterr().out
    assert cli_main(["phantom", "-o", str(tmp_path / "d"), "-n", "2", "--lesion-free-fraction", "1.5"]) == 2
    assert "--lesion-free-fraction" in capsys.readouterr().err


def test_shared_phantom_study_fixture(phantom_study):
    seg = read_volume(phantom_study / "SEG.nii.gz")
    pet = read_pet(phantom_study / "PET.nii.gz")
    assert seg.array.sum() > 0 and seg.shape == pet.shape
    np.testing.assert_array_equal(seg.affine, pet.affine)


def _organ_mask(st, name):
    return st.organs.array == TOTALSEG_TOTAL_IDS[name]


def _world(vol, mask):
    """Centroid (world mm) of a boolean mask on ``vol``'s grid."""
    return vol.affine[:3, :3] @ np.argwhere(mask).mean(0) + vol.affine[:3, 3]


def test_organ_map_in_totalsegmentator_ids_on_the_ct_grid(study):
    organs = study.organs
    assert organs.shape == study.ct.shape and organs.array.dtype == np.uint8
    np.testing.assert_array_equal(organs.affine, study.ct.affine)
    ids = set(np.unique(organs.array).tolist()) - {0}
    assert ids <= set(TOTALSEG_TOTAL_IDS.values())
    for name in ("liver", "spleen", "kidney_right", "kidney_left", "urinary_bladder", "heart", "brain",
                 "lung_upper_lobe_right", "lung_lower_lobe_left", "vertebrae_L1", "hip_right"):
        assert _organ_mask(study, name).any(), name
    assert 30 < np.median(study.ct.array[_organ_mask(study, "liver")]) < 80
    assert np.median(study.ct.array[_organ_mask(study, "lung_upper_lobe_left")]) < -700
    # RAS: the patient's right is +x; the right kidney and the liver lie there, the spleen on the left
    assert _world(study.ct, _organ_mask(study, "kidney_right"))[0] > 0 > _world(study.ct, _organ_mask(study, "kidney_left"))[0]
    assert _world(study.ct, _organ_mask(study, "liver"))[0] > 0 > _world(study.ct, _organ_mask(study, "spleen"))[0]
    # vertebra ids run from the sacrum up: L1 lies above L5
    assert _world(study.ct, _organ_mask(study, "vertebrae_L1"))[2] > _world(study.ct, _organ_mask(study, "vertebrae_L5"))[2]


def test_anatomy_and_physiological_uptake_vary_between_subjects():
    studies = [make_phantom(seed, lesion_free=True) for seed in range(8)]
    liver_x = [_world(st.ct, _organ_mask(st, "liver"))[0] for st in studies]
    bladder_ml = [_organ_mask(st, "urinary_bladder").sum() * np.prod(st.ct.spacing) / 1000 for st in studies]
    assert np.ptp(liver_x) > 3.0  # mm, organ positions differ
    assert max(bladder_ml) > 2.5 * min(bladder_ml)  # bladder filling, nearly empty to full
    bladder_suv = [float(np.percentile(st.pet.array[_organ_mask(st, "urinary_bladder")[::2, ::2, :]], 90)) for st in studies]
    assert max(bladder_suv) > 3 * min(bladder_suv)
    bodies = [_sample_body(np.random.default_rng(seed)) for seed in range(40)]
    assert 0.1 < np.mean([b["brown_fat_active"] for b in bodies]) < 0.5
    assert 0.05 < np.mean([b["muscle_active"] for b in bodies]) < 0.5
    assert any(b["boluses"]["kidney_left"] for b in bodies) and any(not b["boluses"]["kidney_left"] for b in bodies)


def test_ct_explains_hot_physiology():
    """Hot voxels outside lesions lie in organs with physiological uptake or show fluid/fat/bowel on CT, never the
    soft-tissue lesion appearance in fat or lung."""
    seed = next(s for s in range(60) if _sample_body(np.random.default_rng(s))["brown_fat_active"])
    st = make_phantom(seed, lesion_free=True)
    hot = st.pet.array > 3.0
    assert hot.sum() > 20
    ct = st.ct.array[::2, ::2, :]  # CT voxel at each PET voxel centre's corner: same z, 2x finer in-plane
    organ = st.organs.array[::2, ::2, :]
    in_organ = np.isin(organ, [TOTALSEG_TOTAL_IDS[n] for n in ("heart", "kidney_right", "kidney_left", "urinary_bladder",
                                                               "brain", "small_bowel", "colon")])
    brown = st.pet.array > 1.5
    assert (brown & (ct < -40) & ~in_organ).sum() > 0  # active brown fat: uptake in fat on CT
    assert in_organ[hot].mean() > 0.5


def test_lesion_sizes_and_ct_correlates():
    pet, _, scale = _grids("small", None)
    diameters = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        diameters += [2 * les["radius_mm"] for les in _sample_lesions(rng, 6, scale, pet, _sample_body(rng))]
    assert np.mean(np.array(diameters) >= 8.0) > 0.85 and 12 < np.median(diameters) < 20
    checked = set()
    for seed in range(12):
        st = make_phantom(seed, n_lesions=6)
        for les in st.lesions:
            if les["radius_mm"] < 5 or les["necrotic"]:
                continue
            v = _world_to_voxel(st.ct, les["centre_mm"])
            hu = float(np.median(st.ct.array[tuple(slice(a - 1, a + 2) for a in v)]))
            if les["site"] == "lung":
                assert hu > -300  # a soft-tissue nodule in aerated lung
            elif les["site"] == "liver":
                assert hu < 45  # hypodense against liver (55 HU)
            elif les["site"] == "bone":
                assert hu > 500 if les["ct"] == "lesion_sclerotic" else hu < 100
            else:  # a node sits in a rim of fat
                rim = np.array(les["centre_mm"]) + np.array([les["radii_mm"][0] + 2.5, 0, 0])
                assert st.ct.array[_world_to_voxel(st.ct, rim)] < -40
            checked.add(les["ct"] if les["site"] == "bone" else les["site"])
    assert checked >= {"lung", "liver", "lymph_node", "lesion_sclerotic", "lesion_lytic"}


def test_centres_differ_in_scanner_and_field_of_view():
    whole, torso = make_phantom(7, centre="A"), make_phantom(7, centre="B")
    assert CENTRES["B"]["fov"] == "torso" and torso.pet.shape[2] < whole.pet.shape[2]
    assert torso.ct.shape[2] == torso.pet.shape[2] == torso.label.shape[2] == torso.organs.shape[2]
    # the crop keeps world positions: the same body voxel lies at the same world z
    z_whole = whole.pet.affine[2, 3] + whole.pet.affine[2, 2] * np.arange(whole.pet.shape[2])
    assert np.isclose(z_whole, torso.pet.affine[2, 3]).any()
    assert not _organ_mask(torso, "brain").any() and _organ_mask(whole, "brain").any()
    assert torso.label.array.sum() >= 1 or torso.meta["lesion_free"]
    # noisier scanner, noisier liver; a centre's draw is deterministic
    sharp, noisy = make_phantom(9, centre="C", lesion_free=True), make_phantom(9, centre="D", lesion_free=True)
    liver = lambda st: st.pet.array[_organ_mask(st, "liver")[::2, ::2, :]]  # noqa: E731
    assert liver(noisy).std() / liver(noisy).mean() > liver(sharp).std() / liver(sharp).mean()
    np.testing.assert_array_equal(make_phantom(9, centre="D").pet.array, make_phantom(9, centre="D").pet.array)
    with pytest.raises(ValueError, match="centre"):
        make_phantom(1, centre="Z")


def test_cohort_half_lesion_free_and_unlabelled_pools(tmp_path):
    dirs = write_phantom_cohort(tmp_path / "l", 6, seed=3)
    assert sum(json.loads((d / "phantom.json").read_text())["lesion_free"] for d in dirs) == 3  # autoPET: ~50 %
    (pool,) = write_phantom_cohort(tmp_path / "u", 1, seed=4, centre="C", labels=False)
    assert sorted(p.name for p in pool.iterdir()) == ["CT.nii.gz", "PET.nii.gz", "phantom.json"]
    assert json.loads((pool / "phantom.json").read_text())["centre"] == "C"


def test_build_cohort_keeps_roles_apart_in_the_papers_regime(tmp_path):
    from modeling_petct.experiments.cohort import CohortPlan, build_cohort

    plan = CohortPlan(train=2, val=2, test=2, held_out_test=1, unlabelled=(("B", 2), ("C", 1)))
    cohort = build_cohort(tmp_path, plan, seed=3, spacing=(8.0, 8.0, 8.0))
    roles = cohort.roles
    assert {k: len(v) for k, v in roles.items()} == {"train": 2, "val": 2, "test": 2, "held_out_test": 1, "unlabelled": 3}
    every = [i for ids in roles.values() for i in ids]
    assert len(every) == len(set(every)) == len(cohort.cache.ids())  # no study in two roles
    assert set(cohort.mae_train) == set(roles["unlabelled"]) | set(roles["train"])  # never validation or test
    assert (tmp_path / "splits" / "mae_train.txt").read_text().split() == cohort.mae_train
    centre = lambda i: json.loads((cohort.dirs[i] / "phantom.json").read_text())["centre"]  # noqa: E731
    assert {centre(i) for i in roles["train"] + roles["val"] + roles["test"]} == {"A"}
    assert {centre(i) for i in roles["held_out_test"]} == {"D"} and {centre(i) for i in roles["unlabelled"]} == {"B", "C"}
    assert not any((cohort.dirs[i] / "SEG.nii.gz").exists() for i in roles["unlabelled"])
    assert all(cohort.cache.info(i).get("has_label") for i in roles["test"] + roles["held_out_test"])
    again = build_cohort(tmp_path, plan, seed=3, spacing=(8.0, 8.0, 8.0))  # resumes: nothing rewritten
    assert again.roles == roles
