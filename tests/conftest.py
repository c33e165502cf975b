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
