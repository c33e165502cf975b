"""Source adapters find studies in each dataset's published layout; the manifest carries the paper's AutoPET split."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from modeling_petct.data.adapters import discover, load_study
from modeling_petct.data.cache import StudyCache, harmonize_many
from modeling_petct.data.harmonize import harmonize, world_bounds
from modeling_petct.data.io import write_volume
from modeling_petct.data.manifest import build_manifest, load_manifest, save_manifest, split_by_subject
from modeling_petct.data.synthetic.phantom import make_phantom
from modeling_petct.errors import PetCtInputError


def tiny(seed=0):
    return make_phantom(seed, shape=(16, 16, 24))


def write_study(folder, names, seed=0, label=True):
    """Write a tiny phantom as {pet, ct, seg} under the given file names (a None name skips that file)."""
    p = tiny(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for vol, name in zip((p.pet, p.ct, p.label), names):
        if name and (label or vol is not p.label):
            write_volume(vol, folder / name)
    return p


def splits_rows(path, n):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    pick = {role: [r for r in rows if r["role"] == role][:n] for role in ("train_pool", "val", "test")}
    return pick


def test_autopet_layout_takes_the_paper_split(tmp_path, autopet_splits_csv):
    root = tmp_path / "FDG-PET-CT-Lesions"
    pick = splits_rows(autopet_splits_csv, 1)
    chosen = [pick["train_pool"][0], pick["val"][0], pick["test"][0]]
    for i, rec in enumerate(chosen):  # real subject/study names, including spaces in the study folder
        ct_name = "CTres.nii.gz" if i else "CT.nii.gz"  # CTres preferred, CT accepted
        write_study(root / rec["subject"] / rec["study"], ("SUV.nii.gz", ct_name, "SEG.nii.gz"), seed=i)
    write_study(root / "PETCT_unknown" / "01-01-2000-NA-x", ("SUV.nii.gz", "CTres.nii.gz", None), seed=9)

    m = build_manifest(("autopet", root), splits_csv=autopet_splits_csv)
    assert len(m) == 4 and set(m.column_names) >= {"study_id", "subject", "pet_path", "ct_path", "label_path",
                                                     "spacing", "shape", "suv_status", "has_label", "split"}
    by_subject = {r["subject"]: r for r in m}
    for rec in chosen:
        row = by_subject[rec["subject"]]
        assert row["split"] == rec["role"] and row["in_100pct"] == (rec["in_100pct"] == "1")
        assert row["has_label"] and row["ct_path"].endswith(("CTres.nii.gz", "CT.nii.gz"))
        assert " " not in row["study_id"] and row["study_id"].startswith(rec["subject"])
    assert by_subject["PETCT_unknown"]["split"] == "unlisted" and not by_subject["PETCT_unknown"]["has_label"]
    assert by_subject[chosen[1]["subject"]]["ct_path"].endswith("CTres.nii.gz")
    assert m[0]["spacing"] == pytest.approx([4.0, 4.0, 4.0]) and m[0]["shape"] == [16, 16, 24]

    no_test = build_manifest(("autopet", root), splits_csv=autopet_splits_csv, exclude_test=True)
    assert "test" not in no_test["split"] and len(no_test) == 3
    with pytest.raises(PetCtInputError, match="needs the split CSV"):
        build_manifest(("autopet", root), exclude_test=True)

    saved = save_manifest(m, tmp_path / "manifest")
    again = load_manifest(saved)
    assert again.to_list() == m.to_list()
    with pytest.raises(PetCtInputError):
        load_manifest(tmp_path)


def test_deeppsma_takes_fdg_only(tmp_path):
    for case in ("train_0001", "train_0002"):
        write_study(tmp_path / "0001-0020" / case / "FDG", ("PET.nii.gz", "CT.nii.gz", "TTB.nii.gz"))
        write_study(tmp_path / "0001-0020" / case / "PSMA", ("PET.nii.gz", "CT.nii.gz", "TTB.nii.gz"))
    rows = discover(tmp_path, "deeppsma")
    assert [r["subject"] for r in rows] == ["train_0001", "train_0002"]
    assert all("/FDG/" in r["pet_path"] and r["label_path"].endswith("FDG/TTB.nii.gz") for r in rows)
    assert rows[0]["study_id"] == "deeppsma_train_0001"


def test_spade_arrays_get_the_assumed_geometry_and_anomalies_are_left_out(tmp_path):
    p = tiny()
    pet_zyx = np.ascontiguousarray(p.pet.array.T)  # SPADE stores (Z, Y, X)
    ct_zyx = np.ascontiguousarray(p.ct.array.T.astype(np.float32))  # CT on a finer in-plane grid
    for key in ("LDca4b18/LDca4b79", "LDca4f40/LDca5687"):  # the second is one of the authors' 11 anomalies
        (tmp_path / key).mkdir(parents=True)
        np.save(tmp_path / key / "pet.npy", pet_zyx)
        np.save(tmp_path / key / "ct.npy", ct_zyx)
    rows = discover(tmp_path, "spade")
    assert [r["study_id"] for r in rows] == ["spade_LDca4b18_LDca4b79"]
    pet, ct, label = load_study(rows[0])
    assert label is None and pet.spacing == pytest.approx((3.5, 3.5, 3.0))
    np.testing.assert_allclose(world_bounds(pet.affine, pet.shape), world_bounds(ct.affine, ct.shape), atol=1e-6)
    h = harmonize(pet, ct)
    assert h.grid_affine[2, 0] == -3.0 and h.crop_box[0][1] <= 24  # 24 slices of 3 mm stay 24 slices
    m = build_manifest(("spade", tmp_path))
    assert m[0]["split"] == "pretrain" and m[0]["shape"] == list(pet.shape)


def test_vimed_and_folder_layouts(tmp_path):
    vimed = tmp_path / "vimed"
    write_study(vimed / "patient_0001", ("PET_AC.nii.gz", "CT_WB.nii.gz", None))
    write_study(vimed / "patient_0002", ("PET.mha", "CT.mha", None))
    (vimed / "patient_0003").mkdir()  # incomplete download: skipped
    rows = discover(vimed, "vimed")
    assert [r["subject"] for r in rows] == ["patient_0001", "patient_0002"]
    assert rows[1]["pet_path"].endswith("PET.mha") and rows[1]["ct_path"].endswith("CT.mha")

    folder = tmp_path / "cohort"
    write_study(folder / "s1", ("PET.nii.gz", "CT.nii.gz", "SEG.nii.gz"))
    write_study(folder / "s2", ("SUV.nii.gz", "CTres.nii.gz", "label.nii.gz"))
    (folder / "s2" / "CT.nii.gz").write_bytes(b"")  # CTres wins over CT
    rows = discover(folder, "folder")
    assert [(r["study_id"], r["ct_path"].rsplit("/", 1)[1], bool(r["label_path"])) for r in rows] == [
        ("s1", "CT.nii.gz", True), ("s2", "CTres.nii.gz", True)]

    nnunet = tmp_path / "Dataset221_AutoPETII"
    write_study(nnunet / "imagesTr", ("case_a_0001.nii.gz", "case_a_0000.nii.gz", None))
    write_study(nnunet / "labelsTr", (None, None, "case_a.nii.gz"))
    (rows,) = [discover(nnunet, "folder")]
    assert len(rows) == 1 and rows[0]["pet_path"].endswith("case_a_0001.nii.gz")
    assert rows[0]["ct_path"].endswith("case_a_0000.nii.gz") and rows[0]["label_path"].endswith("labelsTr/case_a.nii.gz")


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(PetCtInputError, match="no studies found"):
        discover(tmp_path, "autopet")
    with pytest.raises(PetCtInputError, match="not a folder"):
        discover(tmp_path / "missing", "folder")
    with pytest.raises(ValueError):
        discover(tmp_path, "nonsense")


def test_manifest_drives_harmonize_many_for_mixed_sources(tmp_path):
    write_study(tmp_path / "cohort" / "s1", ("PET.nii.gz", "CT.nii.gz", "SEG.nii.gz"))
    (tmp_path / "spade" / "P1" / "S1").mkdir(parents=True)
    p = tiny(3)
    np.save(tmp_path / "spade" / "P1" / "S1" / "pet.npy", np.ascontiguousarray(p.pet.array.T))
    np.save(tmp_path / "spade" / "P1" / "S1" / "ct.npy", np.ascontiguousarray(p.ct.array.T))
    m = build_manifest(("folder", tmp_path / "cohort"), ("spade", tmp_path / "spade"))
    m = split_by_subject(m, val=0.0, test=0.0)
    assert set(m["split"]) == {"train_pool"}
    summary = harmonize_many(m, StudyCache(tmp_path / "cache"), progress=False)
    assert sorted(summary.written) == ["s1", "spade_P1_S1"] and not summary.failed
    meta = StudyCache(tmp_path / "cache").load("spade_P1_S1").meta
    assert meta["source"] == "spade" and meta["study"] == "S1" and meta["split"] == "train_pool"
    assert meta["subject"] == meta["patient_id"] == "P1"  # subject-level splits work without DICOM patient ids


def test_dicom_series_folders_are_found_and_read_in_suv(tmp_path):
    from modeling_petct.data.synthetic.phantom import write_study as write_phantom_study

    p = tiny(4)
    write_phantom_study(p, tmp_path / "vimed" / "patient_0001", fmt="dicom")  # PET/ and CT/ DICOM series folders
    (row,) = discover(tmp_path / "vimed", "vimed")
    assert row["pet_path"].endswith("PET") and row["ct_path"].endswith("CT")
    pet, ct, _ = load_study(row)
    np.testing.assert_allclose(pet.array, p.pet.array, rtol=0.01, atol=0.01)  # BQML converted back to SUV
    assert row["suv_status"].startswith("DICOM") and ct.shape == p.ct.shape
