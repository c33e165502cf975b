"""Subject-wise draws, the one implementation behind every split of studies (training's label fractions and
hold-outs, the manifest's train/val/test for cohorts without an official split): a patient's studies always land
together, and one seed gives nested subsets (the 10% draw lies inside the 30% draw)."""

from __future__ import annotations

import random

from ..seeds import holdout_seed, validation_split_seed


def draw_subjects(ids: list[str], subject_of: dict[str, str], *, seed: int, fraction: float | None = None,
                  n_scans: int | None = None) -> list[str]:
    """Studies of a seeded random set of subjects: `fraction` of the subjects, or subjects until `n_scans` studies.

    Subjects are taken in one seeded order, so larger fractions contain smaller ones (nested subsets).
    """
    if (fraction is None) == (n_scans is None):
        raise ValueError("give exactly one of fraction or n_scans")
    by_subject: dict[str, list[str]] = {}
    for study in sorted(ids):
        by_subject.setdefault(subject_of.get(study, study), []).append(study)
    subjects = sorted(by_subject)
    random.Random(seed).shuffle(subjects)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
        chosen = subjects[: max(1, round(fraction * len(subjects)))]
    else:
        if n_scans < 1 or n_scans > len(ids):
            raise ValueError(f"n_scans must be in 1..{len(ids)}, got {n_scans}")
        chosen, count = [], 0
        for subject in subjects:
            if count >= n_scans:
                break
            chosen.append(subject)
            count += len(by_subject[subject])
    return sorted(s for subject in chosen for s in by_subject[subject])


def holdout(ids: list[str], subject_of: dict[str, str], *, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept, held_out): a seeded subject-wise hold-out of about `fraction` of the subjects (at least one)."""
    held = draw_subjects(ids, subject_of, seed=holdout_seed(seed), fraction=fraction) if len(ids) > 1 else []
    kept = sorted(set(ids) - set(held))
    return kept, held


def split_subjects(ids: list[str], subject_of: dict[str, str], *, seed: int, val_fraction: float,
                   test_fraction: float) -> tuple[list[str], list[str], list[str]]:
    """(train pool, validation, test) study ids: test held out first, then validation from the rest."""
    rest, test = holdout(ids, subject_of, fraction=test_fraction, seed=seed) if test_fraction > 0 else (sorted(ids), [])
    pool, val = holdout(rest, subject_of, fraction=val_fraction, seed=validation_split_seed(seed)) if val_fraction > 0 else (rest, [])
    return pool, val, test
