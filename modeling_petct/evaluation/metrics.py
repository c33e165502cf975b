"""Scoring lesion masks the way the autoPET challenge scores them.

Definitions follow the official autoPET evaluation (lab-midas/autoPET ``val_script.py`` and the autoPET III
``evaluation-metrics``): masks are binarised (> 0); connected components use 18-connectivity (cc3d);
FPV = volume of predicted components that touch no ground-truth voxel; FNV = volume of ground-truth components that
touch no predicted voxel; the voxel volume comes from the ground truth header. Empty ground truth: Dice and FNV are
NaN (left out of means); empty prediction: FPV = 0.

The official code loops over components and scans the whole volume for each (O(components x voxels)). Here each mask
is labelled once and the overlap of every component with the other mask is one ``bincount``: same numbers, O(voxels).
"""

from __future__ import annotations

import math

import cc3d
import numpy as np

from ..data.geometry import LESION_CONNECTIVITY as CONNECTIVITY


class ComponentScorer:
    """Both masks labelled once (18-connected); then the per-case metrics of any subset of the predicted components,
    each as `case_metrics` would give for the mask holding only those components (dropping a component leaves the
    others as they are). Scoring several minimum volumes or thresholds of one prediction costs one labelling."""

    def __init__(self, pred, gt, voxel_volume_ml: float):
        pred, gt = _binary(pred), _binary(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
        self.voxel_ml = float(voxel_volume_ml)
        plabels, n = cc3d.connected_components(pred.astype(np.uint8), connectivity=CONNECTIVITY, return_N=True)
        glabels, m = cc3d.connected_components(gt.astype(np.uint8), connectivity=CONNECTIVITY, return_N=True)
        self.sizes = np.bincount(plabels.ravel(), minlength=n + 1)[1:]  # voxels per predicted component
        self.gt_sizes = np.bincount(glabels.ravel(), minlength=m + 1)[1:]
        self.overlap = np.bincount(plabels[gt], minlength=n + 1)[1:]  # true-lesion voxels in each predicted one
        both = (plabels > 0) & gt
        pairs = np.unique(plabels[both].astype(np.int64) * (m + 1) + glabels[both])
        self.pairs = (pairs // (m + 1) - 1, pairs % (m + 1) - 1)  # (predicted, true) components that touch

    def metrics(self, kept: np.ndarray | None = None) -> dict:
        """The autoPET triple and lesion-wise counts of the predicted components flagged in ``kept`` (all: None)."""
        kept = np.ones(self.sizes.size, bool) if kept is None else np.asarray(kept, bool)
        gt_voxels, pred_voxels = int(self.gt_sizes.sum()), int(self.sizes[kept].sum())
        touched = np.zeros(self.gt_sizes.size, bool)
        touched[self.pairs[1][kept[self.pairs[0]]]] = True
        false_positive = kept & (self.overlap == 0)
        if gt_voxels == 0:
            dice = fnv = math.nan
        else:
            dice = 2.0 * int(self.overlap[kept].sum()) / (gt_voxels + pred_voxels)
            fnv = float(self.gt_sizes[~touched].sum()) * self.voxel_ml
        return {
            "dice": float(dice),
            "fpv_ml": float(self.sizes[false_positive].sum()) * self.voxel_ml,
            "fnv_ml": float(fnv),
            "gt_lesions": int(self.gt_sizes.size),
            "detected_lesions": int(touched.sum()),
            "pred_components": int(kept.sum()),
            "false_positive_components": int(false_positive.sum()),
        }


def _binary(mask) -> np.ndarray:
    return np.asarray(mask) > 0


def case_metrics(pred, gt, voxel_volume_ml: float) -> dict:
    """All per-case numbers from one labelling of each mask: the autoPET triple plus lesion-wise detection counts.

    Lesion-wise detection uses the same overlap rule as FNV/FPV: a ground-truth lesion is detected when any predicted
    voxel touches it; a predicted component is a false positive when it touches no ground-truth voxel.
    """
    return ComponentScorer(pred, gt, voxel_volume_ml).metrics()


def autopet_case_metrics(pred, gt, voxel_volume_ml: float) -> dict:
    """autoPET Dice, false-positive volume and false-negative volume (ml) of one case."""
    m = case_metrics(pred, gt, voxel_volume_ml)
    return {k: m[k] for k in ("dice", "fpv_ml", "fnv_ml")}


DETECTION_IOU = 0.1  # autoPET V's lesion-level detection: a match needs intersection over union >= 0.1


def lesion_f1(pred, gt, min_iou: float = DETECTION_IOU) -> float:
    """Lesion-level F1: a ground-truth lesion is found, and a predicted component is right, when some component of
    the other mask overlaps it with IoU >= ``min_iou`` (18-connected components). NaN when both masks are empty."""
    pred, gt = _binary(pred), _binary(gt)
    gt_labels, n_gt = cc3d.connected_components(gt.astype(np.uint8), connectivity=CONNECTIVITY, return_N=True)
    pred_labels, n_pred = cc3d.connected_components(pred.astype(np.uint8), connectivity=CONNECTIVITY, return_N=True)
    if n_gt == 0 and n_pred == 0:
        return math.nan
    if n_gt == 0 or n_pred == 0:
        return 0.0
    both = gt & pred
    pairs = np.bincount(gt_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both],
                        minlength=(n_gt + 1) * (n_pred + 1)).reshape(n_gt + 1, n_pred + 1)[1:, 1:]
    gt_sizes = np.bincount(gt_labels.ravel(), minlength=n_gt + 1)[1:]
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
    matched = pairs >= min_iou * (gt_sizes[:, None] + pred_sizes[None, :] - pairs)
    matched &= pairs > 0
    recall, precision = matched.any(1).mean(), matched.any(0).mean()
    return float(0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision))


def physiological_fpv_ml(pred, gt, organs, organ_names, voxel_volume_ml: float, physiological=None) -> float:
    """False-positive volume (ml) inside physiological-uptake organs: voxels of predicted components touching no true
    lesion (autoPET's FPV rule) that lie in ``physiological`` (default data.organs.PHYSIOLOGICAL_UPTAKE: brain,
    urinary bladder, kidneys, heart), read from an organ map whose label i + 1 is ``organ_names[i]``."""
    from ..data.organs import PHYSIOLOGICAL_UPTAKE

    pred, gt = _binary(pred), _binary(gt)
    wanted = [i + 1 for i, name in enumerate(organ_names) if name in (physiological or PHYSIOLOGICAL_UPTAKE)]
    labels = cc3d.connected_components(pred.astype(np.uint8), connectivity=CONNECTIVITY)
    touching = np.unique(labels[gt & (labels > 0)])
    false_positive = (labels > 0) & ~np.isin(labels, touching)
    return float(np.count_nonzero(false_positive & np.isin(np.asarray(organs), wanted))) * voxel_volume_ml
