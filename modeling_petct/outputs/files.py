"""Write one segmented study's files, all or nothing: every caller (``petct segment``, the demo, the quickstart, the
transformers pipeline) goes through ``write_study``, so one study gives the same files whoever asked.

The files: the mask on the PET grid (PET header reused), the lesion table (CSV rounded for reading, JSON in full),
the optional DICOM SEG and organ map, and a settings record beside them (what made the mask: method, model name,
config and weights checksums, settings, package version, date), as nnU-Net records its plans beside its predictions.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


@dataclass(frozen=True)
class StudyFiles:
    """Where one study's outputs go; None = not written. ``settings`` is the provenance record. ``numbered``: the
    mask's voxel values are the lesion table's numbers (the demo's download) instead of 1 for every lesion (the
    autoPET convention, which evaluation scripts expect)."""

    mask: Path
    csv: Path | None = None
    json: Path | None = None
    dicom_seg: Path | None = None
    organs: Path | None = None
    settings: Path | None = None
    numbered: bool = False

    @classmethod
    def in_folder(cls, folder, *, dicom_seg: bool = False, organs: bool = False) -> "StudyFiles":
        """The standard names in one folder: lesions.nii.gz, lesions.csv, lesions.json, lesions.settings.json (and
        lesions_seg.dcm, organs.nii.gz when asked)."""
        folder = Path(folder)
        return cls.beside(folder / "lesions.nii.gz", csv=folder / "lesions.csv", json=folder / "lesions.json",
                          dicom_seg=folder / "lesions_seg.dcm" if dicom_seg else None,
                          organs=folder / "organs.nii.gz" if organs else None)

    @classmethod
    def beside(cls, mask, *, numbered: bool = False, **others) -> "StudyFiles":
        """``mask`` and the given ``others`` (csv, json, dicom_seg, organs), the settings record beside the mask."""
        paths = {k: Path(v) for k, v in others.items() if v is not None}
        return cls(Path(mask), settings=settings_path(mask), numbered=numbered, **paths)

    def paths(self) -> dict[str, Path]:
        """The files that will be written, by role."""
        return {k: v for k, v in vars(self).items() if isinstance(v, Path)}


def settings_path(mask) -> Path:
    """The settings record of a mask: ``lesions.nii.gz`` -> ``lesions.settings.json`` beside it."""
    mask = Path(mask)
    stem = next((mask.name[: -len(s)] for s in IMAGE_SUFFIXES if mask.name.lower().endswith(s)), mask.stem)
    return mask.with_name(f"{stem}.settings.json")


def lesion_report(result) -> tuple[list[dict], dict]:
    """The lesion table (rows, study totals) of a SegmentationResult, with organ columns when it has an organ map
    and the Bq/ml -> SUV conversion when the PET was converted."""
    from .lesions import lesion_table

    organs, names = result.organs, result.organ_names
    rows, totals = lesion_table(result.mask, result.pet, organs, names or None)
    if result.pet.meta.get("suv_conversion"):  # a Bq/ml PET converted from the user's weight/dose/times
        totals["suv_conversion"] = result.pet.meta["suv_conversion"]
    if organs is not None:
        totals.update(organ_labels={i: n for i, n in enumerate(names, start=1)}, organ_source=result.organ_source,
                      suppressed_physiological=result.suppressed)
    return rows, totals


def provenance_record(result) -> dict:
    """What made the mask (``result.provenance``), with the package version and the date."""
    import datetime

    from .. import __version__

    return {"petct_fm_version": __version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), **result.provenance}


def write_study(result, files: StudyFiles | str | Path) -> tuple[list[dict], dict]:
    """Write ``files`` (a ``StudyFiles``, or a folder for ``StudyFiles.in_folder``) for one SegmentationResult, all
    or nothing; returns the lesion table (rows, totals).

    Everything is computed in memory first; each file goes to a temporary name and is renamed only after every
    file was written, so a refused input or a failed writer leaves no output behind.
    """
    from ..atomic import atomic_path
    from ..data.io import write_volume
    from ..errors import PetCtInputError
    from .lesions import write_lesion_csv, write_lesion_json

    files = files if isinstance(files, StudyFiles) else StudyFiles.in_folder(files)
    if files.organs is not None and result.organs is None:
        raise PetCtInputError(files.organs, "--organs-out needs an organ-aware model or --organs (no organ map here)")
    rows, totals = lesion_report(result)
    seg = _dicom_seg(result) if files.dicom_seg is not None else None
    with contextlib.ExitStack() as stack:
        write_volume(_numbered(result.mask) if files.numbered else result.mask,
                     stack.enter_context(atomic_path(files.mask)))
        if files.organs is not None:
            write_volume(result.organs, stack.enter_context(atomic_path(files.organs)))
        if files.csv is not None:
            write_lesion_csv(stack.enter_context(atomic_path(files.csv)), rows, with_organs=result.organs is not None)
        if files.json is not None:
            write_lesion_json(stack.enter_context(atomic_path(files.json)), rows, totals)
        if seg is not None:
            seg.save_as(stack.enter_context(atomic_path(files.dicom_seg)))
        if files.settings is not None:
            text = json.dumps(provenance_record(result), indent=2, default=str)
            stack.enter_context(atomic_path(files.settings)).write_text(text + "\n")
    return rows, totals


def _numbered(mask):
    """The mask with each lesion's voxels set to its number in the lesion table (the table numbers them so)."""
    import numpy as np

    from ..data.geometry import label_lesions

    return mask.with_array(label_lesions(mask.array)[0].astype(np.int32))


def _dicom_seg(result):
    from .dicom_seg import build_dicom_seg

    name = result.provenance.get("model") or "petct-fm"
    return build_dicom_seg(result.mask, result.pet, model_name=name, organs=result.organs,
                           organ_names=result.organ_names)
