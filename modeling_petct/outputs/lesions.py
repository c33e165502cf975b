"""Per-lesion PET quantification of a lesion mask: what a nuclear-medicine report lists.

A lesion is an 18-connected component of the mask (the autoPET convention, same as metrics.py). Per lesion:
voxels, volume (ml), SUVmax, SUVmean, SUVpeak, TLG = SUVmean x volume, and the centroid in DICOM patient coordinates
(LPS, mm: the numbers a PET/CT viewer shows). Study totals: lesion count, total MTV (ml), total TLG.

SUVpeak (PERCIST/QIBA practice): the highest mean SUV of a 1 ml sphere (radius 6.204 mm) whose centre is a voxel of
the lesion. The sphere may reach outside the lesion (it averages the image, not the mask). Each voxel of the sphere
kernel is weighted by the fraction of its volume inside the sphere (8^3 sub-samples, in world millimetres, so
anisotropic and oblique grids are handled), so the kernel measures 1 ml even on coarse PET voxels. At the image border
the kernel is truncated and renormalised.

With an organ map on the PET grid (the organ-aware model's, or TotalSegmentator's via data/organs.py) each lesion also
gets ``organ`` (the organ holding most of its voxels; "other" when most lie outside every organ of the vocabulary),
``organ_fraction`` (the share of its voxels in that organ) and ``physiological`` (its organ is one of
``PHYSIOLOGICAL_UPTAKE``: brain, bladder, kidneys, heart - read it as "check for physiological uptake").
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
from scipy import ndimage

from ..atomic import atomic_path
from ..data.geometry import LPS_TO_RAS, check_same_grid, label_lesions
from ..data.volume import Volume

PEAK_SPHERE_ML = 1.0
PEAK_RADIUS_MM = (3.0 * PEAK_SPHERE_ML * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
COLUMNS = (
    "id", "voxels", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg",
    "centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_lps_z_mm",
)  # fmt: skip
ORGAN_COLUMNS = ("organ", "organ_fraction", "physiological")  # present when an organ map was given
# Decimals a person reads (the CSV, the demo's table and summary): 3.84, not 3.8399999999999985. The JSON keeps all.
DECIMALS = {"volume_ml": 2, "suv_max": 2, "suv_mean": 2, "suv_peak": 2, "tlg": 1, "organ_fraction": 2}
CENTROID_DECIMALS = 1


def sphere_kernel(affine: np.ndarray, radius_mm: float = PEAK_RADIUS_MM, subsamples: int = 8) -> np.ndarray:
    """Weights (odd-sized box) = fraction of each voxel inside a sphere of ``radius_mm`` centred on the middle voxel."""
    linear = np.asarray(affine, dtype=float)[:3, :3]
    # a world offset of length r moves index i by at most r * |row i of the inverse|
    half = np.ceil(radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1) + 0.5).astype(int)
    sub = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    axes = [np.add.outer(np.arange(-h, h + 1), sub).ravel() for h in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # sub-sample index offsets
    inside = np.linalg.norm(grid @ linear.T, axis=-1) <= radius_mm
    shape = tuple(int(2 * h + 1) for h in half)
    inside = inside.reshape(shape[0], subsamples, shape[1], subsamples, shape[2], subsamples)
    return inside.mean(axis=(1, 3, 5))


def lesion_components(mask: Volume) -> np.ndarray:
    """The lesions of a mask as 18-connected components, labelled 1..N (the ids of the lesion table's rows)."""
    return label_lesions(mask.array)[0]


def lesion_table(mask: Volume, suv: Volume, organs: Volume | None = None,
                 organ_names=None) -> tuple[list[dict], dict]:
    """One row per lesion (columns ``COLUMNS``, plus ``ORGAN_COLUMNS`` with ``organs``) and the study totals;
    ``mask``, ``suv`` and ``organs`` (labels 1..N named by ``organ_names``, default ORGANS) share one grid."""
    check_same_grid(mask, suv, reference_name="the PET")
    if organs is not None:
        check_same_grid(organs, suv, reference_name="the PET")
    labels = lesion_components(mask)
    values = np.asarray(suv.array, dtype=np.float64)
    kernel = sphere_kernel(suv.affine)
    pad = np.array(kernel.shape) // 2
    voxel_ml = suv.voxel_volume_ml
    rows = []
    for lesion_id, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = labels[box] == lesion_id
        lesion_suv = values[box][inside]
        ijk = np.argwhere(inside).mean(axis=0) + [s.start for s in box]
        centroid = (suv.affine[:3, :3] @ ijk + suv.affine[:3, 3]) @ LPS_TO_RAS
        voxels = int(inside.sum())
        volume_ml = voxels * voxel_ml
        suv_mean = float(lesion_suv.mean())
        rows.append(
            {
                "id": lesion_id,
                "voxels": voxels,
                "volume_ml": volume_ml,
                "suv_max": float(lesion_suv.max()),
                "suv_mean": suv_mean,
                "suv_peak": _suv_peak(values, labels, lesion_id, box, kernel, pad),
                "tlg": suv_mean * volume_ml,
                "centroid_lps_x_mm": float(centroid[0]),
                "centroid_lps_y_mm": float(centroid[1]),
                "centroid_lps_z_mm": float(centroid[2]),
            }
        )
        if organs is not None:
            rows[-1].update(lesion_organ(np.asarray(organs.array)[box][inside], organ_names))
    totals = {
        "lesion_count": len(rows),
        "total_mtv_ml": float(sum(r["volume_ml"] for r in rows)),
        "total_tlg": float(sum(r["tlg"] for r in rows)),
        "suv_max": max((r["suv_max"] for r in rows), default=None),
        "coordinates": "DICOM patient LPS, mm",
    }
    if organs is not None:
        totals["physiological_count"] = sum(r["physiological"] for r in rows)
        totals["lesions_by_organ"] = {o: sum(r["organ"] == o for r in rows) for o in sorted({r["organ"] for r in rows})}
    return rows, totals


def lesion_organ(organ_labels: np.ndarray, organ_names=None) -> dict:
    """``organ``/``organ_fraction``/``physiological`` of one lesion from the organ labels of its voxels."""
    from ..data.organs import OTHER, PHYSIOLOGICAL_UPTAKE, organ_names as names_of

    names = names_of(organ_names)
    counts = np.bincount(np.asarray(organ_labels, np.intp).ravel(), minlength=len(names) + 1)
    best = int(np.argmax(counts))
    organ = names[best - 1] if 0 < best <= len(names) else OTHER
    return {"organ": organ, "organ_fraction": float(counts[best] / max(1, counts.sum())),
            "physiological": organ in PHYSIOLOGICAL_UPTAKE}


def _suv_peak(values, labels, lesion_id, box, kernel, pad) -> float:
    """Max over the lesion's voxels of the kernel-weighted mean SUV (computed on the lesion's padded bounding box)."""
    lo = [max(s.start - p, 0) for s, p in zip(box, pad)]
    hi = [min(s.stop + p, n) for s, p, n in zip(box, pad, values.shape)]
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    weighted = ndimage.correlate(values[region], kernel, mode="constant", cval=0.0)
    weight = ndimage.correlate(np.ones_like(values[region]), kernel, mode="constant", cval=0.0)
    return float((weighted / weight)[labels[region] == lesion_id].max())


def rounded(row: dict) -> dict:
    """A lesion row with the ``DECIMALS`` a person reads (centroids to ``CENTROID_DECIMALS``)."""
    out = {k: round(float(v), DECIMALS[k]) if k in DECIMALS else v for k, v in row.items()}
    return {k: round(v, CENTROID_DECIMALS) if k.startswith("centroid_") else v for k, v in out.items()}


def write_lesion_csv(path, rows: list[dict], *, with_organs: bool | None = None) -> None:
    """One line per lesion (header ``COLUMNS``, + ``ORGAN_COLUMNS`` when the rows have them), ``rounded``, written
    atomically."""
    with_organs = bool(rows) and "organ" in rows[0] if with_organs is None else with_organs
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + ORGAN_COLUMNS * with_organs)
        writer.writeheader()
        writer.writerows(rounded(r) for r in rows)


def write_lesion_json(path, rows: list[dict], totals: dict) -> None:
    """``{"lesions": [...], "totals": {...}}``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"lesions": rows, "totals": totals}, indent=2, allow_nan=True))
