"""Scoring lesion masks the way the autoPET challenge scores them, plus the statistics a paper needs.

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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np

from .errors import PetCtInputError

CONNECTIVITY = 18


@dataclass(frozen=True)
class _Components:
    """Per-component voxel counts of one mask and how many voxels of the other mask each component overlaps."""

    sizes: np.ndarray  # (n,) voxels per component
    overlap: np.ndarray  # (n,) voxels of the other mask inside the component

    @property
    def count(self) -> int:
        return int(self.sizes.size)

    @property
    def isolated(self) -> np.ndarray:
        """Components that touch no voxel of the other mask (false positives / missed lesions)."""
        return self.overlap == 0


def _components(mask: np.ndarray, other: np.ndarray) -> _Components:
    labels, n = cc3d.connected_components(mask.astype(np.uint8, copy=False), connectivity=CONNECTIVITY, return_N=True)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)[1:]
    overlap = np.bincount(flat[other.ravel()], minlength=n + 1)[1:]
    return _Components(sizes, overlap)


def _binary(mask) -> np.ndarray:
    return np.asarray(mask) > 0


def case_metrics(pred, gt, voxel_volume_ml: float) -> dict:
    """All per-case numbers from one labelling of each mask: the autoPET triple plus lesion-wise detection counts.

    Lesion-wise detection uses the same overlap rule as FNV/FPV: a ground-truth lesion is detected when any predicted
    voxel touches it; a predicted component is a false positive when it touches no ground-truth voxel.
    """
    pred, gt = _binary(pred), _binary(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    gt_voxels, pred_voxels = int(gt.sum()), int(pred.sum())
    gt_cc, pred_cc = _components(gt, pred), _components(pred, gt)
    if gt_voxels == 0:
        dice = fnv = math.nan
    else:
        dice = 2.0 * int(np.count_nonzero(gt & pred)) / (gt_voxels + pred_voxels)
        fnv = float(gt_cc.sizes[gt_cc.isolated].sum()) * voxel_volume_ml
    fpv = float(pred_cc.sizes[pred_cc.isolated].sum()) * voxel_volume_ml
    return {
        "dice": float(dice),
        "fpv_ml": fpv,
        "fnv_ml": float(fnv),
        "gt_lesions": gt_cc.count,
        "detected_lesions": int((~gt_cc.isolated).sum()),
        "pred_components": pred_cc.count,
        "false_positive_components": int(pred_cc.isolated.sum()),
    }


def autopet_case_metrics(pred, gt, voxel_volume_ml: float) -> dict:
    """autoPET Dice, false-positive volume and false-negative volume (ml) of one case."""
    m = case_metrics(pred, gt, voxel_volume_ml)
    return {k: m[k] for k in ("dice", "fpv_ml", "fnv_ml")}


def bootstrap_ci(
    values,
    statistic: Callable[[np.ndarray], float] = np.nanmean,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over cases (rows of ``values`` are resampled with replacement).

    ``statistic`` receives the resampled rows, so ratio statistics (e.g. detected / total lesions summed over cases)
    are bootstrapped as ratios, not as means of per-case ratios.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample gives NaN, dropped below
        stats = np.array([statistic(values[rng.integers(0, n, n)]) for _ in range(n_boot)], dtype=float)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _ratio_of_sums(rows: np.ndarray) -> float:
    total = rows[:, 1].sum()
    return float(rows[:, 0].sum() / total) if total > 0 else math.nan


def aggregate(per_case: dict[str, dict], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Means over cases (NaNs left out, as autoPET does) with bootstrap 95% CIs; lesion sensitivity and FP per case."""
    cases = list(per_case.values())
    out: dict = {"n_cases": len(cases), "n_lesion_positive": sum(c["gt_lesions"] > 0 for c in cases)}
    for key in ("dice", "fpv_ml", "fnv_ml"):
        col = np.array([c[key] for c in cases], dtype=float)
        finite = col[np.isfinite(col)]
        out[key] = float(finite.mean()) if finite.size else math.nan
        out[f"{key}_ci95"] = list(bootstrap_ci(col, n_boot=n_boot, seed=seed))
    det = np.array([[c["detected_lesions"], c["gt_lesions"]] for c in cases], dtype=float).reshape(-1, 2)
    out["lesion_sensitivity"] = _ratio_of_sums(det) if len(det) else math.nan
    out["lesion_sensitivity_ci95"] = list(bootstrap_ci(det, _ratio_of_sums, n_boot=n_boot, seed=seed))
    fp = np.array([c["false_positive_components"] for c in cases], dtype=float)
    out["fp_per_case"] = float(fp.mean()) if fp.size else math.nan
    out["fp_per_case_ci95"] = list(bootstrap_ci(fp, np.mean, n_boot=n_boot, seed=seed))
    return out


def paired_wilcoxon(a, b) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired per-case values (e.g. Dice of two models on the same cases).

    Pairs where either value is NaN (e.g. Dice on a lesion-free case) are dropped.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    result = {"n": int(keep.sum()), "median_difference": float(np.median(diff)) if diff.size else math.nan}
    if diff.size == 0 or not np.any(diff):
        return {**result, "statistic": math.nan, "pvalue": 1.0 if diff.size else math.nan}
    test = wilcoxon(a[keep], b[keep])
    return {**result, "statistic": float(test.statistic), "pvalue": float(test.pvalue)}


# --- files and folders --------------------------------------------------------------------------------------------

MASK_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
# inside a per-study folder, the mask file is the only image or one of these names (phantom / autoPET layouts)
MASK_NAMES = ("SEG", "PRED", "lesions", "label", "mask")


def _case_name(path) -> str:
    name = path.name
    for suffix in MASK_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _mask_in_folder(folder):
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(MASK_SUFFIXES))
    if len(images) == 1:
        return images[0]
    for stem in MASK_NAMES:
        for p in images:
            if _case_name(p) == stem:
                return p
    return None


def find_cases(path) -> dict:
    """Case name -> mask file: a single file, a folder of mask files, or a folder of per-study folders."""
    path = Path(path)
    if path.is_file():
        return {_case_name(path): path}
    if not path.is_dir():
        raise PetCtInputError(path, "no such file or folder")
    cases = {}
    for entry in sorted(path.iterdir()):
        if entry.is_file() and entry.name.endswith(MASK_SUFFIXES):
            cases[_case_name(entry)] = entry
        elif entry.is_dir() and (mask := _mask_in_folder(entry)) is not None:
            cases[entry.name] = mask
    if not cases:
        raise PetCtInputError(path, f"no mask files ({', '.join(MASK_SUFFIXES)}) found")
    return cases


def match_cases(pred, gt) -> dict:
    """Case name -> (prediction file, ground-truth file); two single files pair up whatever their names."""
    if Path(pred).is_file() and Path(gt).is_file():
        return {_case_name(Path(gt)): (Path(pred), Path(gt))}
    preds, gts = find_cases(pred), find_cases(gt)
    missing, extra = sorted(set(gts) - set(preds)), sorted(set(preds) - set(gts))
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"no prediction for {len(missing)} case(s): {', '.join(missing[:5])}")
        if extra:
            problems.append(f"no ground truth for {len(extra)} case(s): {', '.join(extra[:5])}")
        raise PetCtInputError(pred, "; ".join(problems) + f" (ground truth: {gt})")
    return {name: (preds[name], gts[name]) for name in sorted(gts)}


def header_voxel_volume_ml(volume) -> float:
    """Voxel volume as the official script takes it: the NIfTI header's pixdim, else the affine's determinant."""
    zooms = getattr(volume.header, "get_zooms", None)
    if zooms is not None:
        return float(np.prod(zooms()[:3])) / 1000.0
    return volume.voxel_volume_ml


def check_same_grid(pred, gt, *, atol_mm: float = 1e-3) -> None:
    """Refuse to score a prediction that is not voxel-aligned with its ground truth."""
    if pred.shape != gt.shape:
        raise PetCtInputError(pred.source, f"shape {pred.shape} differs from the ground truth's {gt.shape} ({gt.source})")
    if not np.allclose(pred.affine, gt.affine, atol=atol_mm, rtol=0):
        raise PetCtInputError(
            pred.source,
            f"affine differs from the ground truth's ({gt.source}) by up to "
            f"{np.abs(pred.affine - gt.affine).max():.4g} mm: not on the same grid",
        )


def evaluate_cases(pairs: dict, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Score matched (prediction, ground truth) files: ``{case: metrics, ..., "aggregate": {...}}``."""
    from .data.io import read_volume

    per_case = {}
    for name, (pred_path, gt_path) in pairs.items():
        gt = read_volume(gt_path)
        pred = read_volume(pred_path)
        check_same_grid(pred, gt)
        per_case[name] = case_metrics(pred.array, gt.array, header_voxel_volume_ml(gt))
    return {**per_case, "aggregate": aggregate(per_case, n_boot=n_boot, seed=seed)}
