"""Shared fixtures. One pytest process for the whole suite: importing monai costs seconds per process."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_STS = SHARED_DATA / "real_sts"


@pytest.fixture(scope="session")
def real_sts() -> Path:
    """The two real GE FDG PET/CT patients (DICOM + NIfTI) that sit beside the checkout."""
    if not (REAL_STS / "STS_001").is_dir():
        pytest.fail(f"real test data missing: {REAL_STS} (the checkout must have ../shared beside it)")
    return REAL_STS


@pytest.fixture(scope="session")
def autopet_splits_csv() -> Path:
    return SHARED_DATA / "autopet_splits.csv"


@pytest.fixture(scope="session")
def phantom_study(tmp_path_factory) -> Path:
    """One small synthetic study written once per session (IO helper): ``<dir>/PET.nii.gz`` (SUV, 64x64x96 at 4 mm),
    ``CT.nii.gz`` (HU, finer 2x2x4 mm grid), ``SEG.nii.gz`` (uint8, 4 lesions, on the PET grid), ``phantom.json``."""
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    study = make_phantom(0, n_lesions=4, study_id="phantom_fixture")
    return write_study(study, tmp_path_factory.mktemp("phantom") / study.study_id)
