"""The statistics a paper needs over per-case metrics: bootstrap CIs, autoPET aggregates, paired Wilcoxon tests."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np


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
    keys = ("dice", "fpv_ml", "fnv_ml") + (("fpv_physiological_ml",) if cases and all(
        "fpv_physiological_ml" in c for c in cases) else ())
    for key in keys:
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
