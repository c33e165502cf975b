"""Find and pair prediction / ground-truth mask files (single files, folders, per-study folders) and score them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.geometry import check_same_grid, in_voxel_order_of
from ..errors import PetCtInputError
from .metrics import case_metrics
from .statistics import aggregate

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


def evaluate_cases(pairs: dict, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Score matched (prediction, ground truth) files: ``{case: metrics, ..., "aggregate": {...}}``."""
    from ..data.io import read_volume
    from ..data.plausibility import check_label_map

    per_case = {}
    for name, (pred_path, gt_path) in pairs.items():
        gt = read_volume(gt_path)
        pred = read_volume(pred_path)
        check_label_map(pred, what="prediction")  # a probability map or a PET would be binarised with > 0
        check_label_map(gt, what="ground-truth label map")
        pred = in_voxel_order_of(pred, gt)  # the same grid saved in another voxel order is no misregistration
        check_same_grid(pred, gt, reference_name="the ground truth's")
        per_case[name] = case_metrics(pred.array, gt.array, header_voxel_volume_ml(gt))
    return {**per_case, "aggregate": aggregate(per_case, n_boot=n_boot, seed=seed)}
