"""autoPET metrics against a straightforward per-component implementation and hand-built cases."""

from __future__ import annotations

import math

import cc3d
import numpy as np
import pytest

from modeling_petct import evaluation as metrics


def _reference(pred, gt, voxel_ml):
    """The official algorithm written plainly: loop over components, scan the full volume for each."""
    pred, gt = pred > 0, gt > 0
    if gt.sum() == 0:
        dice = fnv = math.nan
    else:
        dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        gt_cc = cc3d.connected_components(gt.astype(np.uint8), connectivity=18)
        fnv = sum((gt_cc == i).sum() for i in range(1, gt_cc.max() + 1) if ((gt_cc == i) & pred).sum() == 0) * voxel_ml
    fpv = 0.0
    if pred.sum():
        pred_cc = cc3d.connected_components(pred.astype(np.uint8), connectivity=18)
        fpv = sum((pred_cc == i).sum() for i in range(1, pred_cc.max() + 1) if ((pred_cc == i) & gt).sum() == 0)
        fpv *= voxel_ml
    return {"dice": float(dice), "fpv_ml": float(fpv), "fnv_ml": float(fnv)}


def _assert_same(a, b):
    for key in ("dice", "fpv_ml", "fnv_ml"):
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-12), key


def test_hand_built_case_numbers():
    gt = np.zeros((20, 20, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[2:5, 2:5, 2:5] = 1  # 27 voxels, half found
    gt[10:12, 10:12, 10:12] = 1  # 8 voxels, missed
    pred[3:5, 2:5, 2:5] = 1  # 18 voxels overlapping lesion 1
    pred[15:17, 15:17, 15] = 1  # 4 voxels, false positive
    m = metrics.case_metrics(pred, gt, voxel_volume_ml=0.5)
    assert m["dice"] == pytest.approx(2 * 18 / (35 + 22))
    assert m["fnv_ml"] == pytest.approx(8 * 0.5)
    assert m["fpv_ml"] == pytest.approx(4 * 0.5)
    assert (m["gt_lesions"], m["detected_lesions"], m["pred_components"], m["false_positive_components"]) == (2, 1, 2, 1)


def test_connectivity_is_18_not_26():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[2, 2, 2] = 1
    edge, corner = gt * 0, gt * 0
    edge[2, 2, 2] = edge[3, 3, 2] = 1  # shares an edge with the true voxel: one component, no false positive
    corner[2, 2, 2] = corner[3, 3, 3] = 1  # shares only a corner: a separate, false-positive component
    assert metrics.autopet_case_metrics(edge, gt, 1.0)["fpv_ml"] == 0.0
    assert metrics.autopet_case_metrics(corner, gt, 1.0)["fpv_ml"] == 1.0


def test_nan_rules():
    empty = np.zeros((8, 8, 8), np.uint8)
    blob = empty.copy()
    blob[2:4, 2:4, 2:4] = 1
    no_gt = metrics.autopet_case_metrics(blob, empty, 2.0)
    assert math.isnan(no_gt["dice"]) and math.isnan(no_gt["fnv_ml"]) and no_gt["fpv_ml"] == 16.0
    no_pred = metrics.autopet_case_metrics(empty, blob, 2.0)
    assert no_pred == {"dice": 0.0, "fpv_ml": 0.0, "fnv_ml": 16.0}
    both = metrics.autopet_case_metrics(empty, empty, 2.0)
    assert math.isnan(both["dice"]) and both["fpv_ml"] == 0.0 and math.isnan(both["fnv_ml"])


@pytest.mark.parametrize("seed", range(6))
def test_equals_per_component_reference_on_many_lesions(seed):
    rng = np.random.default_rng(seed)
    gt = (rng.random((24, 20, 16)) > 0.82).astype(np.uint8)  # hundreds of small components
    pred = (rng.random(gt.shape) > 0.85).astype(np.uint8) | (gt & (rng.random(gt.shape) > 0.5))
    if seed == 0:
        gt[:] = 0
    _assert_same(metrics.autopet_case_metrics(pred, gt, 0.0124), _reference(pred, gt, 0.0124))


def test_label_values_above_one_count_as_lesion():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1:3, 1:3, 1:3] = 2
    assert metrics.autopet_case_metrics(gt * 3, gt, 1.0)["dice"] == 1.0


def test_aggregate_leaves_nan_out_and_bootstraps():
    cases = {
        "a": {"dice": 0.8, "fpv_ml": 1.0, "fnv_ml": 0.0, "gt_lesions": 2, "detected_lesions": 2, "false_positive_components": 1},
        "b": {"dice": 0.4, "fpv_ml": 3.0, "fnv_ml": 2.0, "gt_lesions": 3, "detected_lesions": 1, "false_positive_components": 0},
        "neg": {"dice": math.nan, "fpv_ml": 5.0, "fnv_ml": math.nan, "gt_lesions": 0, "detected_lesions": 0, "false_positive_components": 2},
    }  # fmt: skip
    agg = metrics.aggregate(cases, n_boot=500)
    assert agg["dice"] == pytest.approx(0.6) and agg["fnv_ml"] == pytest.approx(1.0) and agg["fpv_ml"] == pytest.approx(3.0)
    assert agg["n_cases"] == 3 and agg["n_lesion_positive"] == 2
    assert agg["lesion_sensitivity"] == pytest.approx(3 / 5) and agg["fp_per_case"] == pytest.approx(1.0)
    lo, hi = agg["dice_ci95"]
    assert 0.4 - 1e-9 <= lo <= 0.6 <= hi <= 0.8 + 1e-9
    assert agg == metrics.aggregate(cases, n_boot=500)  # seeded


def test_bootstrap_ci_covers_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.7, 0.1, 20), rng.normal(0.7, 0.1, 400)
    lo_s, hi_s = metrics.bootstrap_ci(small, n_boot=1000)
    lo_l, hi_l = metrics.bootstrap_ci(large, n_boot=1000)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 2


def test_paired_wilcoxon_drops_nan_pairs_and_detects_a_shift():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.5, 0.9, 30)
    b = a - 0.05 + rng.normal(0, 0.01, 30)
    a[3] = math.nan
    res = metrics.paired_wilcoxon(a, b)
    assert res["n"] == 29 and res["pvalue"] < 1e-4 and res["median_difference"] > 0
    assert metrics.paired_wilcoxon(a, a)["pvalue"] == 1.0
