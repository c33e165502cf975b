"""Write PET and CT volumes as DICOM series with real quantitation tags (pydicom).

Used by the phantom's DICOM output and by tests that must exercise the SUV rules: every unit (BQML, GML, Philips CNTS),
decay correction (START, ADMIN), scan-start rule (series time, GE private tag) and injection-time form (date-time, or
time only, across midnight). Each slice is stored as 16-bit integers with its own RescaleSlope, as scanners do.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ..conventions import F18_HALF_LIFE_S
from ..geometry import LPS_TO_RAS
from ..suv import GE_PRIVATE_CREATOR, PHILIPS_PRIVATE_CREATOR
from ..volume import Volume

PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _da(value: dt.datetime) -> str:
    return value.strftime("%Y%m%d")


def _tm(value: dt.datetime) -> str:
    return value.strftime("%H%M%S.%f")[:13]


def _base_dataset(vol: Volume, k: int, *, sop_class: str, modality: str, ids: dict, series_uid: str, number: int,
                  when: dt.datetime):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    lps = LPS_TO_RAS @ vol.affine[:3]  # LPS_TO_RAS is its own inverse
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(series_uid, k)
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientID = ds.PatientName = ids["patient_id"]
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = ids["study_uid"], ids["frame_uid"]
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, number, k + 1
    ds.StudyDate, ds.StudyTime = _da(when), _tm(when)
    ds.Manufacturer = "petct-fm phantom"
    ds.ImageOrientationPatient = [round(float(v), 8) for v in np.concatenate([lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]])]
    ds.ImagePositionPatient = [round(float(v), 6) for v in lps[:, 3] + lps[:, 2] * k]
    ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]  # row spacing (j), column spacing (i)
    ds.SliceThickness = round(float(spacing[2]), 6)
    ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def _save(ds, pixels: np.ndarray, path: Path) -> None:
    ds.PixelData = np.ascontiguousarray(pixels.T).tobytes()  # DICOM rows run along j, columns along i
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def write_pet_series(suv: Volume, out_dir, *, weight_kg: float, dose_bq: float, injection_time: dt.datetime,
                     scan_start: dt.datetime, half_life_s: float = F18_HALF_LIFE_S, units: str = "BQML",
                     decay_correction: str = "START", series_time: dt.datetime | None = None,
                     acquisition_time: dt.datetime | None = None, ge_scan_start: dt.datetime | None = None,
                     injection_as: str = "datetime", philips_factor: float = 2.5e-4,
                     corrected_image=("ATTN", "DECY", "SCAT", "DTIM", "RAN", "NORM"), ids: dict | None = None,
                     prefix: str = "PT") -> list[Path]:
    """Write an SUV volume as a PET series whose tags convert back to exactly that SUV.

    ``scan_start`` is the time the dose is decayed to (START); ``series_time``/``acquisition_time`` default to it and
    can be set apart to exercise the scan-start rules; ``ge_scan_start`` writes GE's private (0009,100D).
    ``injection_as``: "datetime" writes RadiopharmaceuticalStartDateTime, "time" only RadiopharmaceuticalStartTime.
    """
    from pydicom.dataset import Dataset

    ids = ids or default_ids(suv.meta.get("patient_id", "PHANTOM"))
    decayed = dose_bq * 2.0 ** (-(scan_start - injection_time).total_seconds() / half_life_s)
    to_stored = {"BQML": (decayed if decay_correction == "START" else dose_bq) / (weight_kg * 1000.0),
                 "GML": 1.0, "CNTS": 1.0 / philips_factor}[units]
    series_uid = _uid(ids["study_uid"], prefix, units, decay_correction)
    series_time = series_time or scan_start
    acquisition_time = acquisition_time or scan_start
    out = Path(out_dir)
    paths = []
    for k in range(suv.shape[2]):
        values = suv.array[:, :, k].astype(np.float64) * to_stored
        peak = float(np.abs(values).max())
        slope = peak / 32767.0 if peak > 0 else 1.0
        ds = _base_dataset(suv, k, sop_class=PET_SOP_CLASS, modality="PT", ids=ids, series_uid=series_uid, number=2,
                           when=series_time)
        ds.SeriesDate, ds.SeriesTime = _da(series_time), _tm(series_time)
        ds.AcquisitionDate, ds.AcquisitionTime = _da(acquisition_time), _tm(acquisition_time)
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = units, decay_correction, list(corrected_image)
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.PatientWeight = f"{weight_kg:.6g}"
        ds.NumberOfSlices, ds.ImageIndex = suv.shape[2], k + 1
        radio = Dataset()
        radio.Radiopharmaceutical = "Fluorodeoxyglucose"
        radio.RadionuclideTotalDose = f"{dose_bq:.10g}"
        radio.RadionuclideHalfLife = f"{half_life_s:.6g}"
        radio.RadionuclidePositronFraction = "0.9673"
        radio.RadiopharmaceuticalStartTime = _tm(injection_time)
        if injection_as == "datetime":
            radio.RadiopharmaceuticalStartDateTime = _da(injection_time) + _tm(injection_time)
        ds.RadiopharmaceuticalInformationSequence = [radio]
        if ge_scan_start is not None:
            block = ds.private_block(0x0009, GE_PRIVATE_CREATOR, create=True)
            block.add_new(0x0D, "DT", _da(ge_scan_start) + _tm(ge_scan_start))
        if units == "CNTS":
            ds.private_block(0x7053, PHILIPS_PRIVATE_CREATOR, create=True).add_new(0x00, "DS", f"{philips_factor:.10g}")
        stored = np.rint(values / float(ds.RescaleSlope)).astype(np.int16)
        path = out / f"{prefix}_{k + 1:04d}.dcm"
        _save(ds, stored, path)
        paths.append(path)
    return paths


def write_ct_series(ct: Volume, out_dir, *, when: dt.datetime, ids: dict | None = None, prefix: str = "CT") -> list[Path]:
    """Write a HU volume as a CT series (unsigned storage, RescaleIntercept -1024)."""
    ids = ids or default_ids(ct.meta.get("patient_id", "PHANTOM"))
    series_uid = _uid(ids["study_uid"], prefix)
    out = Path(out_dir)
    paths = []
    for k in range(ct.shape[2]):
        ds = _base_dataset(ct, k, sop_class=CT_SOP_CLASS, modality="CT", ids=ids, series_uid=series_uid, number=1, when=when)
        ds.SeriesDate, ds.SeriesTime = _da(when), _tm(when)
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
        ds.KVP = "120"
        stored = np.clip(np.rint(ct.array[:, :, k].astype(np.float64)) + 1024, 0, 65535).astype(np.uint16)
        path = out / f"{prefix}_{k + 1:04d}.dcm"
        _save(ds, stored, path)
        paths.append(path)
    return paths


def default_ids(patient_id: str) -> dict:
    """Deterministic study/frame UIDs for a patient id (the same phantom always gets the same UIDs)."""
    return {"patient_id": patient_id, "study_uid": _uid(patient_id, "study"), "frame_uid": _uid(patient_id, "frame")}


def write_phantom_dicom(study, study_dir) -> None:
    """PET (BQML, decay-corrected to scan start) in ``PET/`` and CT in ``CT/`` of one study, sharing study UIDs."""
    meta = study.meta
    ids = default_ids(study.study_id)
    start = dt.datetime.fromisoformat(meta["scan_start"])
    write_pet_series(study.pet, Path(study_dir) / "PET", weight_kg=meta["weight_kg"], dose_bq=meta["dose_bq"],
                     injection_time=dt.datetime.fromisoformat(meta["injection_time"]), scan_start=start,
                     half_life_s=meta["half_life_s"], ids=ids)
    write_ct_series(study.ct, Path(study_dir) / "CT", when=start - dt.timedelta(minutes=2), ids=ids)
