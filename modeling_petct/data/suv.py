"""Body-weight SUV from PET DICOM headers, following the QIBA/UPICT vendor-neutral rules (see METHOD.md).

SUVbw = activity concentration (Bq/ml, each slice's rescale applied) x weight (g) / injected dose decayed to scan start.
Every header we depend on is checked; what cannot be trusted is refused naming the file and the tag, because a wrong
time or unit silently shifts every SUV (30% for one hour of clock error).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np

from ..errors import PetCtInputError

GE_PRIVATE_CREATOR = "GEMS_PETD_01"  # (0009,100D): GE's scan start date-time
PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"  # (7053,1000): SUV scale factor for Units CNTS
DT_PATTERN = re.compile(r"^\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?$")


def _dicom_datetime(date: str | None, time: str | None) -> dt.datetime | None:
    from pydicom.valuerep import DA, TM

    if not date or not time:
        return None
    return dt.datetime.combine(DA(str(date).strip()), TM(str(time).strip()))


def _parse_dt(value) -> dt.datetime | None:
    from pydicom.valuerep import DT

    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    value = str(value or "").strip().strip("\x00")
    if not value:
        return None
    if not DT_PATTERN.match(value):  # pydicom accepts some malformed DT strings without parsing them
        raise ValueError(f"DT value {value!r} is not YYYYMMDDHHMMSS.FFFFFF")
    stamp = DT(value)
    return stamp.replace(tzinfo=None)  # acquisition times carry no zone: compare wall clocks


def _private(ds, group: int, creator: str, element: int):
    """Value of a private tag found through its creator block (falls back to the conventional 0x10 block)."""
    try:
        return ds.private_block(group, creator)[element].value
    except KeyError:
        tag = (group, 0x1000 | element)
        return ds[tag].value if tag in ds else None


def _positive(value, path: Path, tag: str, why: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number <= 0:
        raise PetCtInputError(path, f"{tag} is missing or not positive ({value!r}): {why}")
    return number


UNDATED = "19000101"  # anonymisation often removes every date but keeps the times: decay needs only their difference


def scan_start(headers, path: Path) -> tuple[dt.datetime, str]:
    """Scan start: Series date-time unless later than the earliest acquisition (then GE's private tag, else that
    acquisition). Without any date (anonymised), the times are taken as of one day (UNDATED)."""
    ref = headers[0]
    day = ref.get("SeriesDate") or next((ds.get("AcquisitionDate") for ds in headers if ds.get("AcquisitionDate")), None)
    series = _dicom_datetime(ref.get("SeriesDate") or day or UNDATED, ref.get("SeriesTime"))
    acquisitions = [
        _dicom_datetime(ds.get("AcquisitionDate") or day or UNDATED, ds.get("AcquisitionTime")) for ds in headers
    ]
    acquisitions = [a for a in acquisitions if a is not None]
    earliest = min(acquisitions) if acquisitions else None
    if series is None and earliest is None:
        raise PetCtInputError(path, "SeriesDate/SeriesTime (0008,0021/0031) and AcquisitionTime (0008,0032) missing: no scan start")
    if earliest is None or (series is not None and series <= earliest):
        return series, "SeriesDateTime"
    ge = _parse_dt(_private(ref, 0x0009, GE_PRIVATE_CREATOR, 0x0D))
    if ge is not None and (day or ge.year == int(UNDATED[:4])):
        return ge, "GE private (0009,100D)"
    return earliest, "earliest AcquisitionDateTime"


def injection_time(ref, start: dt.datetime, path: Path) -> tuple[dt.datetime, str]:
    """RadiopharmaceuticalStartDateTime, else StartTime on the scan date (the day before if that is after the scan)."""
    info = ref.RadiopharmaceuticalInformationSequence[0]
    full = _parse_dt(info.get("RadiopharmaceuticalStartDateTime"))
    if full is not None and start.strftime("%Y%m%d") != UNDATED:
        return full, "RadiopharmaceuticalStartDateTime"
    time = info.get("RadiopharmaceuticalStartTime") or (full.strftime("%H%M%S.%f") if full is not None else None)
    if not time:
        raise PetCtInputError(path, "RadiopharmaceuticalStartDateTime (0018,1078) and StartTime (0018,1072) missing: no injection time")
    injected = _dicom_datetime(start.strftime("%Y%m%d"), time)
    if injected > start:  # injected before midnight, scanned after it
        return injected - dt.timedelta(days=1), "RadiopharmaceuticalStartTime (previous day)"
    return injected, "RadiopharmaceuticalStartTime"


def _philips_factor(ds, path: Path) -> float:
    value = _private(ds, 0x7053, PHILIPS_PRIVATE_CREATOR, 0x00)
    if isinstance(value, bytes):  # implicit VR: the private VR is unknown, the value is a DS string
        value = value.decode("ascii", "ignore").strip("\x00 ")
    return _positive(value, path, "Philips SUV scale factor (7053,1000)", "Units CNTS cannot be converted without it")


def suv_scale(headers, files) -> tuple[np.ndarray, dict]:
    """Per-slice factors turning rescaled pixels into SUVbw, and what was used (for Volume.meta)."""
    ref, path = headers[0], Path(files[0])
    units = str(ref.get("Units", "")).upper()
    for ds, f in zip(headers, files):
        if str(ds.get("Units", "")).upper() != units:
            raise PetCtInputError(f, f"Units (0054,1001) {ds.get('Units')!r} differs from {units!r} in {path.name}")
    corrected = {str(v).upper() for v in np.atleast_1d(ref.get("CorrectedImage", []))}
    missing = {"ATTN", "DECY"} - corrected
    if missing:
        raise PetCtInputError(path, f"CorrectedImage (0028,0051) lacks {'/'.join(sorted(missing))}: not a quantitative PET image")
    info = {"suv_units": units, "decay_correction": str(ref.get("DecayCorrection", "")).upper()}
    n = len(headers)
    if units == "GML":
        suv_type = str(ref.get("SUVType", "BW") or "BW").upper()
        if suv_type != "BW":
            raise PetCtInputError(path, f"Units GML with SUVType (0054,1006) {suv_type!r}: only body-weight SUV is supported")
        return np.ones(n), {**info, "suv_status": "GML-as-is", "suv_factor": 1.0}
    if units == "CNTS":
        factors = np.array([_philips_factor(ds, Path(f)) for ds, f in zip(headers, files)])
        return factors, {**info, "suv_status": "converted-from-CNTS-philips", "suv_factor": float(np.median(factors))}
    if units != "BQML":
        raise PetCtInputError(path, f"Units (0054,1001) {units!r} unknown: expected BQML, GML or CNTS")

    weight_kg = _positive(ref.get("PatientWeight"), path, "PatientWeight (0010,1030)", "SUVbw needs the body weight")
    if "RadiopharmaceuticalInformationSequence" not in ref or not len(ref.RadiopharmaceuticalInformationSequence):
        raise PetCtInputError(path, "RadiopharmaceuticalInformationSequence (0054,0016) missing: no injected dose")
    radio = ref.RadiopharmaceuticalInformationSequence[0]
    dose = _positive(radio.get("RadionuclideTotalDose"), path, "RadionuclideTotalDose (0018,1074)", "SUV needs the injected dose")
    decay = info["decay_correction"]
    if decay == "ADMIN":
        effective, details = dose, {}
    elif decay == "START":
        half_life = _positive(radio.get("RadionuclideHalfLife"), path, "RadionuclideHalfLife (0018,1075)", "needed to decay the dose")
        try:
            start, start_rule = scan_start(headers, path)
            injected, inj_rule = injection_time(ref, start, path)
        except PetCtInputError:
            raise
        except (ValueError, TypeError) as err:  # a DA/TM/DT value pydicom cannot parse
            raise PetCtInputError(path, f"unreadable scan or injection date/time: {err}") from err
        seconds = (start - injected).total_seconds()
        if seconds < 0:
            raise PetCtInputError(path, f"negative decay time: injection {injected} is after scan start {start} ({inj_rule}, {start_rule})")
        effective = dose * 2.0 ** (-seconds / half_life)
        details = {
            "scan_start": start.isoformat(),
            "scan_start_rule": start_rule,
            "injection_time": injected.isoformat(),
            "injection_rule": inj_rule,
            "decay_time_s": seconds,
            "half_life_s": half_life,
        }
    else:
        raise PetCtInputError(path, f"DecayCorrection (0054,1102) {decay!r}: only START and ADMIN are supported")
    factor = weight_kg * 1000.0 / effective
    if not np.isfinite(factor) or factor <= 0:
        raise PetCtInputError(path, f"SUV factor {factor!r} is not a positive number (weight {weight_kg} kg, dose {dose} Bq)")
    return np.full(n, factor), {
        **info,
        **details,
        "suv_status": "converted-from-BQML",
        "suv_factor": factor,
        "weight_kg": weight_kg,
        "dose_bq": dose,
    }
