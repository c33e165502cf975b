"""Lesion statistics against values computed by hand on small synthetic volumes with anisotropic, flipped affines."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from modeling_petct.outputs import lesions as quantify
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError

# spacing 2 x 3 x 4 mm, i axis flipped (x decreases with i), origin (100, -50, 20) RAS
AFFINE = np.array([[-2.0, 0, 0, 100.0], [0, 3.0, 0, -50.0], [0, 0, 4.0, 20.0], [0, 0, 0, 1]])


def _pair(mask, suv, affine=AFFINE):
    return Volume(mask, affine), Volume(suv.astype(np.float32), affine)


def test_rows_and_totals_by_hand():
    mask = np.zeros((10, 12, 8), np.uint8)
    suv = np.ones(mask.shape, np.float32)
    mask[2:4, 5:7, 3] = 1  # lesion 1: 4 voxels
    suv[2:4, 5:7, 3] = [[2.0, 4.0], [6.0, 8.0]]
    mask[8, 1, 6] = 1  # lesion 2: one voxel
    suv[8, 1, 6] = 3.0
    rows, totals = quantify.lesion_table(*_pair(mask, suv))
    assert [r["id"] for r in rows] == [1, 2]
    first, second = rows
    voxel_ml = 2 * 3 * 4 / 1000
    assert first["voxels"] == 4 and first["volume_ml"] == pytest.approx(4 * voxel_ml)
    assert first["suv_max"] == 8.0 and first["suv_mean"] == pytest.approx(5.0)
    assert first["tlg"] == pytest.approx(5.0 * 4 * voxel_ml)
    # centroid index (2.5, 5.5, 3) -> RAS (100 - 5, -50 + 16.5, 20 + 12) -> LPS (-95, 33.5, 32)
    assert (first["centroid_lps_x_mm"], first["centroid_lps_y_mm"], first["centroid_lps_z_mm"]) == pytest.approx(
        (-95.0, 33.5, 32.0)
    )
    assert second["voxels"] == 1 and second["suv_max"] == 3.0
    assert totals["lesion_count"] == 2
    assert totals["total_mtv_ml"] == pytest.approx(5 * voxel_ml)
    assert totals["total_tlg"] == pytest.approx((20.0 + 3.0) * voxel_ml)
    assert totals["suv_max"] == 8.0


def test_lesions_are_18_connected_components():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 1] = 1  # edge neighbours: one lesion
    mask[4, 4, 4] = mask[5, 5, 5] = 1  # corner neighbours: two lesions
    rows, totals = quantify.lesion_table(*_pair(mask, np.ones(mask.shape)))
    assert totals["lesion_count"] == 3 and sorted(r["voxels"] for r in rows) == [1, 1, 2]


@pytest.mark.parametrize(
    "affine",
    [np.diag([2.0, 2.0, 2.0, 1.0]), AFFINE, np.diag([4.07, 4.07, 3.27, 1.0]), np.diag([0.98, 0.98, 3.27, 1.0])],
)
def test_peak_kernel_measures_one_ml(affine):
    kernel = quantify.sphere_kernel(affine)
    assert kernel.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000 == pytest.approx(1.0, rel=0.01)
    assert kernel[tuple(s // 2 for s in kernel.shape)] == 1.0


def test_suv_peak_is_best_sphere_in_lesion_not_around_the_hottest_voxel():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((40, 20, 20), np.uint8)
    suv = np.zeros(mask.shape)
    mask[2:14, 4:16, 4:16] = 1  # 24 mm plateau: a 6.2 mm sphere fits inside
    suv[2:14, 4:16, 4:16] = 8.0
    mask[14:30, 10, 10] = 1  # thin tail ending in a single hot voxel
    suv[14:30, 10, 10] = 1.0
    suv[29, 10, 10] = 20.0
    (row,), _ = quantify.lesion_table(*_pair(mask, suv, affine))
    assert row["suv_max"] == 20.0
    assert row["suv_peak"] == pytest.approx(8.0, abs=1e-9)


def test_suv_peak_of_a_hot_voxel_in_uniform_background():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    suv = np.full((21, 21, 21), 3.0)
    suv[10, 10, 10] = 10.0
    mask = np.zeros(suv.shape, np.uint8)
    mask[10, 10, 10] = 1
    (row,), _ = quantify.lesion_table(*_pair(mask, suv, affine))
    # the centre voxel lies wholly inside the sphere; the kernel holds 1 ml = 125 voxels of 8 mm^3
    assert row["suv_peak"] == pytest.approx(3.0 + 7.0 / 125.0, abs=2e-3)


def test_suv_peak_on_voxels_larger_than_the_sphere_is_suv_max():
    affine = np.diag([20.0, 20.0, 20.0, 1.0])
    suv = np.arange(27, dtype=float).reshape(3, 3, 3)
    mask = np.ones(suv.shape, np.uint8)
    (row,), _ = quantify.lesion_table(*_pair(mask, suv, affine))
    assert row["suv_peak"] == row["suv_max"] == 26.0


def test_empty_mask_and_grid_mismatch():
    mask = np.zeros((5, 5, 5), np.uint8)
    rows, totals = quantify.lesion_table(*_pair(mask, np.ones(mask.shape)))
    assert rows == [] and totals["lesion_count"] == 0 and totals["total_mtv_ml"] == 0.0
    with pytest.raises(PetCtInputError, match="PET grid"):
        quantify.lesion_table(Volume(mask, AFFINE), Volume(np.ones((5, 5, 6)), AFFINE))
    shifted = AFFINE.copy()
    shifted[0, 3] += 2.0
    with pytest.raises(PetCtInputError):
        quantify.lesion_table(Volume(mask, AFFINE), Volume(np.ones(mask.shape), shifted))


def test_csv_and_json_writers(tmp_path):
    mask = np.zeros((10, 12, 8), np.uint8)
    mask[2:4, 5:7, 3] = 1
    mask[8, 1, 6] = 1
    rows, totals = quantify.lesion_table(*_pair(mask, np.full(mask.shape, 2.0)))
    quantify.write_lesion_csv(tmp_path / "lesions.csv", rows)
    quantify.write_lesion_json(tmp_path / "lesions.json", rows, totals)
    with open(tmp_path / "lesions.csv") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == list(quantify.COLUMNS) and len(read) == 2
    assert float(read[0]["tlg"]) == round(rows[0]["tlg"], quantify.DECIMALS["tlg"])  # the CSV is rounded for reading
    data = json.loads((tmp_path / "lesions.json").read_text())
    assert data["totals"]["lesion_count"] == 2 and data["lesions"][1]["voxels"] == 1
    assert data["lesions"][0]["tlg"] == rows[0]["tlg"]  # the JSON keeps every digit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions.csv", "lesions.json"]  # no temp files left
