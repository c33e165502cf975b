"""Preprocessed studies on disk, laid out for training: one folder per study with uncompressed ``.npy`` arrays
(memory-mapped, so a random crop reads only its own bytes) and a JSON sidecar with geometry and normalisation.

A study folder is built under a temporary name and renamed into place in one step, so a folder that exists is
complete: an interrupted run leaves only a temporary folder, which the next run ignores (and removes) and redoes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import alive
from ..errors import PetCtInputError
from ..seeds import foreground_seed
from .conventions import DEFAULT_NORMALIZATION, HARMONISED_SPACING_MM, SAFE_STUDY_ID
from .harmonize import HarmonizedStudy

SIDECAR = "study.json"
_SAFE_ID = re.compile(SAFE_STUDY_ID)
MAX_FOREGROUND_POINTS = 200_000
LESION_CROP_PROB = 0.5  # chance a segmentation training crop is centred on a lesion voxel (the one default)


class StudyCache:
    """``root/<study_id>/{image.npy, label.npy, foreground.npy, organs.npy, study.json}`` (label and organs optional)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, study_id: str) -> Path:
        if not _SAFE_ID.match(study_id):
            raise PetCtInputError(study_id, "is not a safe study id (a folder name of letters, digits, . _ -)")
        return self.root / study_id

    def check_replaceable(self, study_ids) -> None:
        """A folder in the cache named like a study but without the cache's sidecar is the user's (a raw copy):
        refused, never deleted to make room for the harmonised study."""
        for study_id in study_ids:
            folder = self.path(study_id)
            if folder.exists() and not (folder / SIDECAR).is_file():
                raise PetCtInputError(folder, f"exists and was not written by `petct harmonize` (no {SIDECAR}): it "
                                              "is never replaced; move it or choose another output folder")

    def __contains__(self, study_id: str) -> bool:
        return (self.path(study_id) / SIDECAR).is_file()

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / SIDECAR).is_file())

    def write(self, study_id: str, study: HarmonizedStudy, *, dtype=np.float32, extra: dict | None = None) -> Path:
        """Store a study atomically (replacing an older copy). ``dtype`` float16 halves disk and read bandwidth."""
        from ..atomic import public
        from .plausibility import check_storable

        check_storable(study.image, dtype, study.meta.get("pet_source") or study_id)  # float16 Inf never stored
        dest = self.path(study_id)
        self.check_replaceable([study_id])
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = public(tempfile.mkdtemp(prefix=f".tmp-{study_id}-{socket.gethostname()}-{os.getpid()}-", dir=self.root))
        try:
            np.save(tmp / "image.npy", np.ascontiguousarray(study.image, dtype=dtype))
            if study.label is not None:
                np.save(tmp / "label.npy", np.ascontiguousarray(study.label, dtype=np.uint8))
                np.save(tmp / "foreground.npy", foreground_points(study.label, seed=foreground_seed(study_id)))
            if study.organs is not None:
                np.save(tmp / "organs.npy", np.ascontiguousarray(study.organs, dtype=np.uint8))
            info = {"study_id": study_id, "dtype": np.dtype(dtype).name, **study.to_dict(), **(extra or {})}
            (tmp / SIDECAR).write_text(json.dumps(info, indent=1))
            if dest.exists():  # replace: move the old copy aside first, the rename onto dest must find it free
                old = Path(tempfile.mkdtemp(prefix=f".old-{study_id}-", dir=self.root))
                os.replace(dest, old / "study")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def info(self, study_id: str) -> dict:
        return json.loads((self.path(study_id) / SIDECAR).read_text())

    def load(self, study_id: str, mmap: bool = True) -> HarmonizedStudy:
        """The stored study; arrays memory-mapped read-only by default. ``suv`` is not stored (None)."""
        folder = self.path(study_id)
        if not (folder / SIDECAR).is_file():
            raise KeyError(f"{study_id} is not in the cache at {self.root}")
        mode = "r" if mmap else None
        image = np.load(folder / "image.npy", mmap_mode=mode)
        label, organs = (np.load(folder / f, mmap_mode=mode) if (folder / f).is_file() else None
                         for f in ("label.npy", "organs.npy"))
        return HarmonizedStudy.from_dict(self.info(study_id), image, label, organs=organs)

    def foreground(self, study_id: str) -> np.ndarray:
        """(N, 3) int32 (z, y, x) lesion voxels (a random subset for large lesions); empty if none or unlabelled."""
        f = self.path(study_id) / "foreground.npy"
        return np.load(f) if f.is_file() else np.zeros((0, 3), np.int32)

    def remove_partial(self) -> list[str]:
        """Delete temporary folders left by killed writers on this host; returns their names."""
        removed = []
        host = socket.gethostname()
        for p in self.root.glob(".tmp-*") if self.root.is_dir() else []:
            m = re.match(rf"^\.tmp-.*-{re.escape(host)}-(\d+)-[^-]+$", p.name)
            if m and not alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed


def open_cache(root: str | os.PathLike, *, labelled: bool = False) -> StudyCache:
    """The cache at ``root`` for training or a study, refused (PetCtInputError) when it is missing or holds no study
    (no labelled study when ``labelled``): training on nothing would otherwise "succeed" with an empty table."""
    if not str(root).strip():
        raise PetCtInputError("--cache_dir", "required: a folder written by `petct harmonize`")
    cache = StudyCache(root)
    if not cache.root.is_dir():
        raise PetCtInputError(root, "no such cache folder; build one with `petct harmonize`")
    ids = cache.ids()
    if not ids or (labelled and not any(cache.info(i).get("has_label") for i in ids)):
        kind = "labelled study" if labelled and ids else "harmonised study"
        raise PetCtInputError(root, f"the cache holds no {kind}; build one with `petct harmonize`")
    return cache


def foreground_points(label: np.ndarray, seed: int = 0, limit: int = MAX_FOREGROUND_POINTS) -> np.ndarray:
    """Lesion voxel coordinates for foreground-aware crop sampling, computed once at write time."""
    pts = np.argwhere(np.asarray(label) > 0).astype(np.int32)
    if len(pts) > limit:
        pts = pts[np.sort(np.random.default_rng(seed).choice(len(pts), limit, replace=False))]
    return pts



@dataclass
class HarmonizeSummary:
    """What a ``harmonize_many`` run did; ``failed`` maps study id -> one-line reason."""

    written: list = field(default_factory=list)
    already_done: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)

    def report(self) -> str:
        lines = [f"harmonised {len(self.written)}, already in cache {len(self.already_done)}, "
                 f"skipped {len(self.failed)}"]
        lines += [f"  skipped {sid}: {why}" for sid, why in sorted(self.failed.items())]
        return "\n".join(lines)


def harmonize_many(studies, cache, *, workers: int = 1, normalization: str = DEFAULT_NORMALIZATION,
                   spacing=HARMONISED_SPACING_MM, dtype=np.float32, overwrite: bool = False,
                   progress: bool = True) -> HarmonizeSummary:
    """Harmonise many studies into ``cache`` in parallel worker processes.

    ``studies``: a manifest (``datasets.Dataset``), dicts with ``study_id``, ``pet_path``, ``ct_path`` and optional
    ``label_path`` and ``organ_path`` (TotalSegmentator output, see data/organs.py), or tuples in that order.
    Studies already in the cache are skipped (unless ``overwrite``); one that fails is reported in the summary and
    the others go on.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    cache = cache if isinstance(cache, StudyCache) else StudyCache(cache)
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.remove_partial()
    keys = ("study_id", "pet_path", "ct_path", "label_path", "source", "subject", "study", "split", "organ_path")
    rows = [dict(zip(keys, r)) if isinstance(r, (tuple, list)) else {k: r.get(k) for k in keys} for r in studies]
    summary = HarmonizeSummary()
    todo = []
    for r in rows:
        if overwrite or r["study_id"] not in cache:
            todo.append(r)
        else:
            summary.already_done.append(r["study_id"])
    options = {"normalization": normalization, "spacing": tuple(spacing), "dtype": np.dtype(dtype).name}
    bar = tqdm(total=len(todo), desc="harmonize", unit="study", disable=not progress)
    if workers <= 1:
        results = (_harmonize_row(r, str(cache.root), options) for r in todo)
    else:
        # the platform's default start method (fork on Linux, like DataLoader): workers reuse the parent's imports
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(workers,))
        futures = {pool.submit(_harmonize_row, r, str(cache.root), options): r["study_id"] for r in todo}
        results = (_result(f, futures[f]) for f in as_completed(futures))
    try:
        for sid, error in results:
            if error is None:
                summary.written.append(sid)
            else:
                summary.failed[sid] = error
            bar.update(1)
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    return summary


def _init_worker(workers: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, (os.cpu_count() or 1) // workers))


def _result(future, study_id):
    try:
        return future.result()
    except Exception as err:  # the worker process itself died (e.g. killed for memory)
        return study_id, f"worker failed: {type(err).__name__}: {err}"


def _harmonize_row(row: dict, root: str, options: dict):
    """Read, harmonise and store one study; returns (study_id, None) or (study_id, reason)."""
    from .adapters import load_organs, load_study
    from .harmonize import harmonize

    from .memory import check_memory
    from .plausibility import check_label, check_pet_ct

    sid = row["study_id"]
    try:
        if row.get("source") != "spade":  # HI: the grid harmonize builds, sized from the headers before any voxel
            check_memory(row["pet_path"], row["ct_path"], spacing=options["spacing"])
        pet, ct, label = load_study(row)
        check_pet_ct(pet, ct)  # HI: SUV and HU from the voxels (Bq/ml, swapped, empty, Inf)
        check_label(label, pet)  # HI: a lesion mask on the PET grid, integer labels
        organs = load_organs(row)
        study = harmonize(pet, ct, label, spacing=options["spacing"], normalization=options["normalization"],
                          organs=organs)
        # provenance for training-time splits: the manifest's subject stands in for a missing DICOM patient id
        study.meta.update({k: row.get(k) for k in ("source", "subject", "study", "split")}, study_id=sid)
        for key in ("label_path", "organ_path"):
            study.meta[key] = str(Path(row[key]).resolve()) if row.get(key) else None
        study.meta["patient_id"] = study.meta.get("patient_id") or row.get("subject") or sid
        StudyCache(root).write(sid, study, dtype=options["dtype"])
    except Exception as err:
        return sid, f"{type(err).__name__}: {err}"
    return sid, None
