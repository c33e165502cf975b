"""DICOM series folders: find the series of the wanted modality among mixed ones, stack it, convert PET to SUVbw.

Pixels are read slice by slice with pydicom so that every slice gets its OWN RescaleSlope/Intercept (PET scanners
rescale each slice differently; a series reader that takes the first slice's pixel type or scaling silently clips the
others). Geometry comes from ImagePositionPatient/ImageOrientationPatient/PixelSpacing, sorted along the slice normal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PetCtInputError
from .geometry import LPS_TO_RAS
from .volume import Volume

MODALITY_NAMES = {"PT": "PET", "CT": "CT"}


@dataclass
class DicomSeries:
    """The headers (no pixels) of one series found in a folder."""

    uid: str
    modality: str
    files: list[Path] = field(default_factory=list)
    headers: list = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        return all("ImagePositionPatient" in h and "Rows" in h for h in self.headers)

    def describe(self) -> str:
        return f"{self.modality or '?'} series {self.uid} ({len(self.files)} files)"


def discover_series(folder: str | os.PathLike) -> dict[str, DicomSeries]:
    """Read the header of every DICOM file under ``folder`` (recursively) and group them by SeriesInstanceUID."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    found: dict[str, DicomSeries] = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(root) / name
            if name.upper() == "DICOMDIR" or name.startswith("."):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError) as err:
                if _looks_like_dicom(path):
                    raise PetCtInputError(path, f"unreadable DICOM header ({type(err).__name__}: {err}): truncated "
                                                "or corrupt; re-export or remove this file") from None
                continue  # not DICOM (README, thumbnails): not part of any series
            uid = str(ds.get("SeriesInstanceUID", ""))
            if not uid:
                if _looks_like_dicom(path):  # every DICOM object has one: the header stops early
                    raise PetCtInputError(path, "DICOM header ends before SeriesInstanceUID (0020,000E): truncated "
                                                "or corrupt; re-export or remove this file")
                continue
            series = found.setdefault(uid, DicomSeries(uid, str(ds.get("Modality", ""))))
            series.files.append(path)
            series.headers.append(ds)
    return found


def _looks_like_dicom(path: Path) -> bool:
    """The DICM preamble (or a .dcm name): a file meant to be DICOM, whose failure must be reported by its name."""
    if path.suffix.lower() == ".dcm":
        return True
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def choose_series(folder: Path, series: dict[str, DicomSeries], modality: str | None) -> DicomSeries:
    """The one image series of ``modality`` (or the only image series when modality is None); refuse otherwise."""
    images = [s for s in series.values() if s.is_image]
    if not images:
        listing = ", ".join(s.describe() for s in series.values()) or "no DICOM files"
        raise PetCtInputError(folder, f"no DICOM image series found ({listing})")
    if modality is None:
        if len(images) > 1:
            listing = "; ".join(s.describe() for s in images)
            raise PetCtInputError(folder, f"several image series ({listing}): say which modality to read (read_pet/read_ct)")
        return images[0]
    wanted = [s for s in images if s.modality == modality]
    if not wanted:
        first = images[0]
        raise PetCtInputError(
            first.files[0] if len(images) == 1 else folder,
            f"expected a {MODALITY_NAMES.get(modality, modality)} series, but Modality (0008,0060) is "
            + ", ".join(repr(s.modality) for s in images)
            + f" ({'; '.join(s.describe() for s in images)})",
        )
    if len(wanted) > 1 and modality == "PT":
        # Scanners store non-attenuation-corrected PET beside the corrected one: the corrected series is the image.
        corrected = [s for s in wanted if "ATTN" in _corrected_image(s.headers[0])]
        wanted = corrected or wanted
    if len(wanted) > 1:
        listing = "; ".join(s.describe() for s in wanted)
        raise PetCtInputError(folder, f"several {MODALITY_NAMES.get(modality, modality)} series ({listing}): keep one per folder")
    return wanted[0]


def _corrected_image(ds) -> set[str]:
    value = ds.get("CorrectedImage", [])
    return {str(v).upper() for v in ([value] if isinstance(value, str) else value)}


def slice_geometry(series: DicomSeries) -> tuple[np.ndarray, np.ndarray]:
    """Return (order of slices along the normal, 4x4 RAS affine of the stacked (i, j, k) volume)."""
    headers, files = series.headers, series.files
    ref = headers[0]
    for ds, path in zip(headers, files):
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise PetCtInputError(path, "multi-frame (enhanced) DICOM is not supported: export the series as single-frame slices")
        for tag in ("ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if tag not in ds:
                raise PetCtInputError(path, f"{tag} missing")
            if np.any(np.abs(np.asarray(ds[tag].value, float) - np.asarray(ref[tag].value, float)) > 1e-4):
                raise PetCtInputError(path, f"{tag} differs from {files[0].name}: slices of one series must share it")
    iop = np.asarray(ref.ImageOrientationPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    if len(headers) < 2:
        raise PetCtInputError(files[0], "a single slice is not a volume")
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        dup = files[order[int(np.argmin(steps)) + 1]]
        raise PetCtInputError(dup, "several images at the same slice position: a dynamic/4-D or duplicated series is not supported")
    if np.ptp(steps) > 0.01 * np.median(steps) + 1e-3:
        raise PetCtInputError(files[0], f"slice spacing is not uniform ({steps.min():.3f}-{steps.max():.3f} mm): missing slices?")
    span = positions[order[-1]] - positions[order[0]]
    k_step = span / (len(headers) - 1)
    if np.linalg.norm(np.cross(k_step / np.linalg.norm(k_step), normal)) > 1e-3:
        raise PetCtInputError(files[0], "slices are sheared (gantry tilt): resample the series before use")
    row_spacing, col_spacing = (float(v) for v in ref.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # i runs along a row (columns index)
    lps[:3, 1] = col_dir * row_spacing  # j runs down a column (rows index)
    lps[:3, 2] = k_step
    lps[:3, 3] = positions[order[0]]
    affine = np.eye(4)
    affine[:3] = LPS_TO_RAS @ lps[:3]
    return order, affine


def read_pixels(files: list[Path], order: np.ndarray) -> np.ndarray:
    """Stack the slices (in ``order``) as float32 (i, j, k), each with its own RescaleSlope/Intercept."""
    import pydicom

    slices = []
    for idx in order:
        path = files[idx]
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
        except Exception as err:  # truncated pixel data, missing codec, ...
            raise PetCtInputError(path, f"cannot decode pixel data ({type(err).__name__}: {err})") from err
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        slices.append((pixels.astype(np.float64) * slope + intercept).T.astype(np.float32))
    return np.stack(slices, axis=-1)


def read_dicom_series(folder: str | os.PathLike, *, modality: str | None = None) -> Volume:
    """Read the chosen series of a DICOM folder; PET comes back in SUVbw (see :mod:`.suv`), CT in HU."""
    folder = Path(folder)
    series = choose_series(folder, discover_series(folder), modality)
    order, affine = slice_geometry(series)
    array = read_pixels(series.files, order)
    ref = series.headers[0]
    meta = {
        "format": "dicom",
        "modality": series.modality,
        "patient_id": str(ref.get("PatientID", "")),
        "study_uid": str(ref.get("StudyInstanceUID", "")),
        "series_uid": series.uid,
        "dicom_files": sorted(str(f) for f in series.files),
        "manufacturer": str(ref.get("Manufacturer", "")),
    }
    if series.modality == "PT":
        from .suv import suv_scale

        factors, info = suv_scale([series.headers[i] for i in order], [series.files[i] for i in order])
        array *= factors.astype(np.float32)[None, None, :]
        meta.update(info, units="SUV")
    elif series.modality == "CT":
        meta["units"] = "HU"
    return Volume(array, affine, str(folder), None, meta)
