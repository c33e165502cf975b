"""The table of studies every later step reads: a Hugging Face ``datasets.Dataset`` saved with ``save_to_disk``.

Columns: study_id, source, subject, study (the dataset's own scan/study folder name), pet_path, ct_path,
label_path ("" = none), organ_path (TotalSegmentator organ map, "" = none), spacing (PET, mm along i, j, k),
shape (PET voxels), suv_status, has_label, split, in_10pct, in_30pct, in_100pct. AutoPET rows carry the paper's
subject-level split ("train_pool" / "val" / "test", plus the 10/30/100 % training subsets); rows of the
unlabelled pretraining sources get split "pretrain"; AutoPET studies missing from the split file get "unlisted".
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import PetCtInputError
from .adapters import SPADE_SPACING_ZYX, attach_organs, check_study_ids, discover
from .geometry import peek_grid

COLUMNS = ("study_id", "source", "subject", "study", "pet_path", "ct_path", "label_path", "spacing", "shape", "suv_status",
           "has_label", "split", "in_10pct", "in_30pct", "in_100pct", "organ_path")
FRACTIONS = ("in_10pct", "in_30pct", "in_100pct")


def build_manifest(*inputs, rows=None, splits_csv=None, exclude_test: bool = False, probe: bool = True,
                   organs_dir=None):
    """Manifest of the studies found under each ``(source, root)`` in ``inputs`` (plus any ready-made ``rows``).

    ``splits_csv``: the paper's AutoPET split (``subject,study,role,in_10pct,in_30pct,in_100pct``).
    ``exclude_test``: leave the AutoPET test split out, e.g. for a pretraining corpus that never saw the test scans.
    ``probe``: read image headers (not voxels) for spacing and shape.
    ``organs_dir``: where organ maps are (``<organs_dir>/<study_id>...``, see adapters); default beside each PET.
    """
    import datasets

    found = attach_organs([dict(r) for r in rows or []], organs_dir)
    for source, root in inputs:
        found += discover(root, source, organs_dir)
    splits = read_autopet_splits(splits_csv) if splits_csv else None
    if exclude_test and splits is None and any(r.get("source") == "autopet" for r in found):
        raise PetCtInputError("exclude_test", "leaving out the AutoPET test split needs the split CSV (splits_csv)")
    table = []
    for r in found:
        r = {**r, **_split_of(r, splits)}
        if exclude_test and r["split"] == "test":
            continue
        spacing, shape = probe_geometry(r["pet_path"], r.get("source")) if probe else ([], [])
        r.update(spacing=spacing, shape=shape, has_label=bool(r.get("label_path")))
        table.append({k: r.get(k, "") for k in COLUMNS})
    check_study_ids(table, inputs[0][1] if inputs else "manifest")
    features = datasets.Features({
        **{k: datasets.Value("string") for k in ("study_id", "source", "subject", "study", "pet_path", "ct_path",
                                                 "label_path", "suv_status", "split", "organ_path")},
        "spacing": datasets.Sequence(datasets.Value("float64")),
        "shape": datasets.Sequence(datasets.Value("int64")),
        **{k: datasets.Value("bool") for k in ("has_label", *FRACTIONS)},
    })
    return datasets.Dataset.from_list(table, features=features)


def save_manifest(manifest, path) -> Path:
    manifest.save_to_disk(str(path))
    return Path(path)


def load_manifest(path):
    import datasets

    if not (Path(path) / "dataset_info.json").is_file():
        raise PetCtInputError(path, "not a saved manifest (expected a datasets.save_to_disk folder)")
    return datasets.load_from_disk(str(path))


def read_autopet_splits(path) -> dict:
    """(subject, study folder) -> {"split", "in_10pct", "in_30pct", "in_100pct"}."""
    out = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            out[(rec["subject"], rec["study"])] = {"split": rec["role"], **{k: rec[k] == "1" for k in FRACTIONS}}
    if not out:
        raise PetCtInputError(path, "no rows in the AutoPET split file")
    return out


def _split_of(row: dict, splits: dict | None) -> dict:
    none = {k: False for k in FRACTIONS}
    if row.get("source") != "autopet":
        return {"split": row.get("split") or "pretrain", **none}
    if splits is None:
        return {"split": "unlisted", **none}
    return splits.get((row["subject"], row.get("study", "")), {"split": "unlisted", **none})


def split_by_subject(manifest, *, val: float = 0.1, test: float = 0.2, seed: int = 0, only_split: str = "pretrain"):
    """Give rows with ``split == only_split`` a subject-level train_pool/val/test split.

    For cohorts without an official split (e.g. the synthetic phantoms): all studies of a subject land together. The
    draw is training's own (data/subjects.split_subjects), so the same seed splits a cohort the same way everywhere.
    """
    from .subjects import split_subjects

    subject_of = {r["study_id"]: r["subject"] for r in manifest if r["split"] == only_split}
    pool, val_ids, test_ids = split_subjects(sorted(subject_of), subject_of, seed=seed, val_fraction=val,
                                             test_fraction=test)
    role = {**dict.fromkeys(pool, "train_pool"), **dict.fromkeys(val_ids, "val"), **dict.fromkeys(test_ids, "test")}

    def assign(row):
        if row["split"] != only_split:
            return {}
        return {"split": role[row["study_id"]], "in_100pct": role[row["study_id"]] == "train_pool"}

    return manifest.map(assign)


def probe_geometry(path, source: str | None = None) -> tuple[list[float], list[int]]:
    """PET spacing (mm, i/j/k) and shape from the file header alone (``geometry.peek_grid``); empty lists where
    unknown (DICOM folders, broken files: they are reported when harmonised, the manifest still lists them)."""
    path = Path(path)
    if path.name.lower().endswith(".npy") and source == "spade":
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError):
            return [], []
        return list(SPADE_SPACING_ZYX[::-1]), [int(s) for s in shape[::-1]]
    grid = peek_grid(path)
    if grid is None:
        return [], []
    shape, affine = grid
    return [round(float(s), 6) for s in np.linalg.norm(affine[:3, :3], axis=0)], list(shape)