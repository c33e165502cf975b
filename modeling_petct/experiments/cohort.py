"""A synthetic PET/CT cohort on disk and its harmonised cache: the data behind the quickstart, the study demo and tests.

The studies go through the same path as real data: NIfTI files on disk -> read (SUV/HU) -> harmonise -> StudyCache.
"""

from __future__ import annotations

from pathlib import Path


def harmonize_into_cache(study_dirs: list[Path], cache, *, spacing=(3.0, 2.0, 2.0), normalization: str = "zscore",
                         progress=None) -> list[str]:
    """Harmonise `<dir>/{PET,CT,SEG}.nii.gz` studies into `cache` (skipping ids already there); returns the ids."""
    from ..data.harmonize import harmonize
    from ..data.io import read_ct, read_pet, read_volume

    ids = []
    for i, study_dir in enumerate(study_dirs):
        study_id = Path(study_dir).name
        if study_id not in cache:
            seg = Path(study_dir) / "SEG.nii.gz"
            label = read_volume(seg, modality="SEG") if seg.exists() else None
            study = harmonize(read_pet(Path(study_dir) / "PET.nii.gz"), read_ct(Path(study_dir) / "CT.nii.gz"), label,
                              spacing=spacing, normalization=normalization)
            study.meta["label_path"] = str(seg.resolve()) if label is not None else None
            cache.write(study_id, study)
        ids.append(study_id)
        if progress is not None:
            progress(i + 1, len(study_dirs), study_id)
    return ids


def phantom_cache(root: str | Path, n: int, seed: int = 0, *, spacing=(3.0, 2.0, 2.0), lesion_free_fraction: float = 0.2,
                  progress=None):
    """`root/studies/<id>/*.nii.gz` (n small phantoms) harmonised into `root/cache`; returns (StudyCache, study dirs).

    Reuses what an earlier call left (a half-built cohort is completed, not redone).
    """
    from ..data.cache import StudyCache
    from ..data.synthetic.phantom import write_phantom_cohort

    root = Path(root)
    studies = root / "studies"
    expected = [studies / f"phantom_{seed:03d}_{i:04d}" for i in range(n)]
    if not all((d / "SEG.nii.gz").exists() for d in expected):
        expected = write_phantom_cohort(studies, n, seed, size="small", lesion_free_fraction=lesion_free_fraction)
    cache = StudyCache(root / "cache")
    harmonize_into_cache(expected, cache, spacing=spacing, progress=progress)
    return cache, expected
