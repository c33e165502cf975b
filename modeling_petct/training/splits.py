"""Which studies train, validate and test: the paper's AutoPET split, or seeded subject-wise draws (data/subjects.py,
shared with the manifest's split of cohorts without an official one).

Every draw is subject-wise (a patient's studies never straddle train and test) and nested: with one seed, the 10%
subset is inside the 30% subset, as in the paper's 70 / 210 / 700-scan subsets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..data.subjects import draw_subjects, holdout, split_subjects
from ..errors import PetCtInputError

__all__ = ["Split", "draw_subjects", "holdout", "random_split", "label_subset", "paper_split"]

PAPER_FRACTIONS = {0.1: "in_10pct", 0.3: "in_30pct", 1.0: "in_100pct"}


@dataclass
class Split:
    train: list[str]
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)  # the labelled pool the train subset was drawn from

    def to_dict(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test, "pool_size": len(self.pool)}


def random_split(ids: list[str], subject_of: dict[str, str], *, seed: int, val_fraction: float = 0.15,
                 test_fraction: float = 0.2) -> Split:
    """Train pool / validation / test drawn subject-wise from `ids` (when no official split exists)."""
    pool, val, test = split_subjects(ids, subject_of, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return Split(train=pool, val=val, test=test, pool=pool)


def label_subset(split: Split, subject_of: dict[str, str], *, seed: int, fraction: float | None = None,
                 n_scans: int | None = None) -> Split:
    """The split with its training set reduced to a subject-wise labelled subset of the pool."""
    if fraction is None and n_scans is None:
        return split
    train = draw_subjects(split.pool, subject_of, seed=seed, fraction=fraction, n_scans=n_scans)
    return Split(train=train, val=split.val, test=split.test, pool=split.pool)


def paper_split(csv_path: str | Path, available: list[str], *, fraction: float = 1.0, seed: int = 0,
                n_scans: int | None = None) -> tuple[Split, dict[str, str]]:
    """The paper's AutoPET split restricted to the cached studies; returns (split, subject_of).

    Fractions 0.1 / 0.3 / 1.0 use the paper's exact subsets; other fractions or `n_scans` are drawn subject-wise
    from the 700-scan pool with `seed`. Cache ids match a CSV row by study name, subject id, or both joined by '_'.
    """
    from ..data.adapters import safe_id

    rows = _read_split_csv(csv_path)
    lookup = {}
    for row in rows:
        for key in (safe_id(row["subject"], row["study"]), row["study"], row["subject"]):
            lookup.setdefault(key, row)
    subject_of, roles = {}, {"train_pool": [], "val": [], "test": []}
    chosen_rows = {}
    for study_id in available:
        row = lookup.get(study_id)
        if row is None:
            continue
        subject_of[study_id] = row["subject"]
        roles.setdefault(row["role"], []).append(study_id)
        chosen_rows[study_id] = row
    pool = sorted(roles["train_pool"])
    if not pool:
        raise PetCtInputError(csv_path, "none of the cached studies is in this split's train pool")
    column = PAPER_FRACTIONS.get(round(fraction, 6)) if n_scans is None else None
    if column:
        train = sorted(s for s in pool if chosen_rows[s][column] == "1")
    else:
        train = draw_subjects(pool, subject_of, seed=seed, fraction=None if n_scans else fraction, n_scans=n_scans)
    return Split(train=train, val=sorted(roles["val"]), test=sorted(roles["test"]), pool=pool), subject_of


def _read_split_csv(path: str | Path) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise PetCtInputError(path, f"cannot read split CSV ({err.strerror})") from err
    needed = {"subject", "study", "role", *PAPER_FRACTIONS.values()}
    if not rows or not needed <= set(rows[0]):
        raise PetCtInputError(path, f"split CSV needs columns {sorted(needed)}")
    return rows
