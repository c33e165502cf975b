"""`petct evaluate` on files and folders: per-case JSON, aggregate, NaN as null, refusal of misaligned masks."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from modeling_petct.cli import main

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _save(path, array, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), path)


@pytest.fixture
def cohort(tmp_path):
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    pred = np.zeros_like(gt)
    pred[2:6, 2:6, 3:6] = 1
    pred[9, 9, 9] = 1  # one false-positive voxel
    _save(tmp_path / "gt" / "caseA" / "SEG.nii.gz", gt)  # phantom/autoPET layout: a folder per study
    _save(tmp_path / "pred" / "caseA.nii.gz", pred)  # flat folder of predictions
    _save(tmp_path / "gt" / "caseB" / "SEG.nii.gz", np.zeros_like(gt))  # lesion-free control
    _save(tmp_path / "pred" / "caseB.nii.gz", pred)
    return tmp_path


def test_folders_matched_by_case_name(cohort, capsys):
    out = cohort / "metrics.json"
    assert main(["evaluate", "--pred", str(cohort / "pred"), "--gt", str(cohort / "gt"), "--json", str(out),
                 "--bootstrap", "200"]) == 0  # fmt: skip
    assert "aggregate (2 cases, 1 with lesions)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"caseA", "caseB", "aggregate"}
    voxel_ml = 2 * 2 * 3 / 1000
    assert data["caseA"]["dice"] == pytest.approx(2 * 48 / (64 + 49))
    assert data["caseA"]["fpv_ml"] == pytest.approx(voxel_ml) and data["caseA"]["fnv_ml"] == 0.0
    assert data["caseB"]["dice"] is None and data["caseB"]["fnv_ml"] is None
    assert data["caseB"]["fpv_ml"] == pytest.approx(49 * voxel_ml)
    assert data["aggregate"]["dice"] == pytest.approx(data["caseA"]["dice"])
    assert data["aggregate"]["fpv_ml"] == pytest.approx(25 * voxel_ml)


def test_single_files_and_refusals(cohort, capsys):
    assert main(["evaluate", "--pred", str(cohort / "pred" / "caseA.nii.gz"),
                 "--gt", str(cohort / "gt" / "caseA" / "SEG.nii.gz")]) == 0  # fmt: skip
    capsys.readouterr()
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0
    _save(cohort / "bad" / "caseA.nii.gz", np.zeros((12, 12, 12)), shifted)
    assert main(["evaluate", "--pred", str(cohort / "bad" / "caseA.nii.gz"),
                 "--gt", str(cohort / "gt" / "caseA" / "SEG.nii.gz"), "--json", str(cohort / "x.json")]) == 2
    assert "affine differs" in capsys.readouterr().err and not (cohort / "x.json").exists()
    _save(cohort / "bad2" / "caseA.nii.gz", np.zeros((12, 12, 11)))
    assert main(["evaluate", "--pred", str(cohort / "bad2"), "--gt", str(cohort / "gt")]) == 2
    assert "no prediction for 1 case(s): caseB" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(cohort / "bad2" / "caseA.nii.gz"),
                 "--gt", str(cohort / "gt" / "caseA" / "SEG.nii.gz")]) == 2
    assert "shape (12, 12, 11) differs" in capsys.readouterr().err
