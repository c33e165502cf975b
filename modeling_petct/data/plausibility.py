"""Is this really a PET in SUV and a CT in HU of the same body? Checked from the voxels, before any work is done.

Headers cannot tell: a NIfTI carries no units, and a PET in Bq/ml, a PET/CT pair passed the wrong way round or an
all-zero export all read without error and give absurd results (SUVmax 173,219; a total TLG of -10.6 million). The
facts used are robust across scanners and fields of view (whole body or a cropped limb):

- PET, sampled in the body (where the CT at the same world position is above -500 HU): its median is 0.1-30 SUV
  (Bq/ml is thousands) and its 99.9th percentile above 0.2 (uptake somewhere); it is not mostly negative (a CT is).
- CT: HU spread over air (-1000), fat (-100), soft tissue (0-100) or bone (> 300); a volume living inside
  -50..150 with no air, fat or bone is a PET (SUV), not a CT. Its air / soft-tissue / bone modes are reported.
- A volume: a PET of one or a few slices (a 2-D image in a 3-D header) is refused.
- Overlap: the CT covers a real part of the PET's field of view (an organ map likewise, `check_overlap`); the body
  crop comes from the CT, so PET uptake outside the CT is never segmented: refused when it is most of the PET's
  uptake, else a warning says how much lies outside.

Every refusal is one line saying what was found and what to do.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from ..errors import PetCtInputError, PetCtWarning
from .conventions import F18_HALF_LIFE_S
from .volume import Volume

SAMPLES = 200_000  # voxels looked at per volume: percentiles are stable, the cost is milliseconds
BODY_HU = -500.0
SUV_BODY_MEDIAN_RANGE = (0.02, 30.0)
SUV_P999_RANGE = (0.2, 1000.0)
MIN_OVERLAP = 0.10  # fraction of the PET field of view inside the CT's
MIN_PET_SLICES = 4  # voxels along each axis: fewer is an image or a slab, not a PET volume
UPTAKE_SUV = 0.3  # above the background of air: where the body is, for the coverage check
UPTAKE_OUTSIDE_CT = (0.02, 0.5)  # fraction of the PET's uptake outside the CT: warned above the first, refused above
FLOAT16_MAX = 65504.0
CT_MODE_RANGES = {"air": (-1100.0, -800.0), "soft tissue": (-150.0, 150.0), "bone": (200.0, 2000.0)}
CONVERSION_HINT = ("convert it to SUV first, or give petct segment --weight-kg, --dose-mbq, --injection-time and "
                   "--scan-time to convert it")


def check_pet_ct(pet: Volume, ct: Volume) -> None:
    """Refuse a PET that is not SUV or a CT that is not HU (see the module docstring); cheap (a voxel subsample)."""
    from .harmonize import check_pair

    check_pair(pet, ct)  # headers first: different patients, fields of view that do not touch
    thin = [n for n in pet.shape if n < MIN_PET_SLICES]
    if thin:
        raise PetCtInputError(pet.source, f"PET of shape {tuple(pet.shape)}: {min(thin)} slice(s) along an axis is an "
                                          "image or a slab, not a PET volume; give the whole PET series")
    pet_values, ct_values = _sample(pet), _sample(ct)
    _check_finite(pet, pet_values, "PET")
    _check_finite(ct, ct_values, "CT")
    _check_pet_is_pet(pet, pet_values)
    _check_ct_is_ct(ct, ct_values)
    in_ct, ct_at_pet = check_overlap(pet, ct, "CT")
    body = ct_at_pet > BODY_HU
    values = pet_values[in_ct][body] if body.any() else pet_values[pet_values > 0]
    _check_suv_scale(pet, values)
    _check_uptake_inside_ct(pet, ct, pet_values)


def check_overlap(pet: Volume, other: Volume, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Refuse ``other`` (the CT, an organ map) when it covers under MIN_OVERLAP of the PET's field of view; returns
    (sampled PET voxels inside it, its nearest value there)."""
    inside, values = _ct_at_pet_voxels(pet, other)
    overlap = float(inside.mean())
    if overlap < MIN_OVERLAP:
        found = f"PET and {name} fields of view do not overlap" if overlap == 0 else \
            f"the {name} covers only {overlap:.0%} of the PET's field of view"
        raise PetCtInputError(f"{pet.source} + {other.source}",
                              f"{found}: PET and {name} of different studies or regions?")
    return inside, values


def _check_uptake_inside_ct(pet: Volume, ct: Volume, values: np.ndarray) -> None:
    """The body crop comes from the CT: PET uptake outside the CT is never segmented (the mask is 0 there). A PET
    voxel within one PET voxel of the CT's edge counts as inside (coarse PET voxels straddle it)."""
    import warnings

    index = _index_of_pet_voxels(pet, ct)
    margin = np.abs(np.linalg.inv(ct.affine)[:3, :3] @ pet.affine[:3, :3]).sum(axis=1)  # one PET voxel, CT units
    near_ct = np.all((index >= -0.5 - margin) & (index <= np.asarray(ct.shape) - 0.5 + margin), axis=1)
    uptake = values > UPTAKE_SUV
    outside = float((uptake & ~near_ct).sum() / max(1, uptake.sum()))
    found = f"{outside:.0%} of the PET's uptake lies outside the CT's field of view"
    if outside > UPTAKE_OUTSIDE_CT[1]:
        raise PetCtInputError(f"{pet.source} + {ct.source}", f"{found}: only what the CT covers is segmented; give "
                                                             "the CT of the whole PET field of view")
    if outside > UPTAKE_OUTSIDE_CT[0]:
        warnings.warn(f"{pet.source}: {found}; lesions there are not segmented (the mask is 0 outside the CT)",
                      PetCtWarning, stacklevel=3)


def ct_modes(values: np.ndarray) -> dict:
    """Histogram peak (10 HU bins) of each tissue range that holds at least 1% of the voxels; None otherwise."""
    modes = {}
    for name, (lo, hi) in CT_MODE_RANGES.items():
        inside = values[(values >= lo) & (values < hi)]
        if inside.size < 0.01 * values.size:
            modes[name] = None
            continue
        counts, edges = np.histogram(inside, bins=max(1, int((hi - lo) / 10)), range=(lo, hi))
        modes[name] = float(edges[int(np.argmax(counts))] + 5.0)
    return modes


def check_label(label: Volume | None, pet: Volume) -> None:
    """A lesion mask must lie on the PET's own grid (autoPET's convention): same shape, placed within half a voxel.
    Harmonisation would otherwise resample any label silently onto the PET, wherever it lies."""
    from .geometry import check_same_grid, in_voxel_order_of

    if label is not None:  # harmonisation resamples by world position: another voxel order of the PET grid is fine
        check_same_grid(in_voxel_order_of(label, pet, 0.5 * min(pet.spacing)), pet, reference_name="the PET's", atol_mm=0.5 * min(pet.spacing))
        check_label_map(label, what="lesion mask")


def check_label_map(volume: Volume, *, what: str = "label map") -> None:
    """Integer labels >= 0 (probability maps, PET images, -1 labels are refused); labels > 1 only warn (binarised)."""
    import warnings

    values = np.asarray(volume.array)  # all of it: a probability map may be fractional in a few voxels only
    if values.dtype.kind == "f" and (not np.isfinite(values).all() or not np.array_equal(values, np.rint(values))):
        odd = values[~np.isfinite(values) | (values != np.rint(values))].flat[0]
        raise PetCtInputError(volume.source, f"not an integer {what} (holds {odd:g}): a probability map or an image? "
                                             "threshold it into 0/1 labels first")
    low, high = float(np.min(volume.array)), float(np.max(volume.array))
    if low < 0:
        raise PetCtInputError(volume.source, f"{what} holds negative labels (min {low:g}): labels are 0 (background) "
                                             "and 1 (lesion)")
    if high > 1:
        warnings.warn(f"{volume.source}: labels up to {high:g}; every label > 0 is taken as lesion", PetCtWarning,
                      stacklevel=2)


def check_storable(image: np.ndarray, dtype, source) -> None:
    """float16 stores at most 65504: larger values would become Inf in the cache."""
    if np.dtype(dtype) == np.float16:
        peak = float(np.max(np.abs(image))) if image.size else 0.0
        if peak > FLOAT16_MAX:
            raise PetCtInputError(source, f"values up to {peak:.4g} overflow float16 (max 65504): use --dtype float32 "
                                          "or a normalisation (zscore, clinical)")


def parse_clock(value: str, flag: str) -> tuple[dt.datetime, bool]:
    """(the time, whether it has a date): HH:MM[:SS] (on 1900-01-01) or an ISO date-time, which keeps its UTC offset
    when it has one."""
    for fmt in ("%H:%M:%S", "%H:%M"):
        try:
            return dt.datetime.strptime(value, fmt), False
        except ValueError:
            pass
    try:
        return dt.datetime.fromisoformat(value), True
    except ValueError:
        raise PetCtInputError(flag, f"{value!r} is not a time (HH:MM[:SS] or YYYY-MM-DDTHH:MM[:SS][+HH:MM])") from None


def uptake_seconds(injection_time: str, scan_time: str) -> float:
    """Seconds from injection to scan start. Refused rather than guessed: a clock time beside a date-time, a UTC
    offset on one only, a scan before the injection (across midnight: dates fix it) or more than 12 h after."""
    (injected, dated), (scanned, scan_dated) = (parse_clock(injection_time, "--injection-time"),
                                                parse_clock(scan_time, "--scan-time"))
    given = f"--injection-time {injection_time} and --scan-time {scan_time}"
    if dated != scan_dated:
        raise PetCtInputError(given, "give both as clock times (HH:MM[:SS]) or both as date-times "
                                     "(YYYY-MM-DDTHH:MM[:SS]), not one of each")
    if (injected.tzinfo is None) != (scanned.tzinfo is None):
        raise PetCtInputError(given, "only one carries a UTC offset: give the offset on both or on neither")
    elapsed = (scanned - injected).total_seconds()
    if elapsed < 0 and not dated:
        raise PetCtInputError(given, f"the scan is {-elapsed / 60:.0f} min before the injection: across midnight, "
                                     "give both as date-times (YYYY-MM-DDTHH:MM)")
    if not 0 <= elapsed <= 12 * 3600:
        raise PetCtInputError(given, f"the scan is {elapsed / 60:.0f} min after the injection: expected 0-12 h")
    return elapsed


def suv_from_bq_ml(pet: Volume, *, weight_kg: float, dose_mbq: float, injection_time: str, scan_time: str,
                   half_life_s: float = F18_HALF_LIFE_S) -> Volume:
    """A Bq/ml PET as SUVbw: activity x weight (g) / dose decayed from injection to the scan start (QIBA), with the
    conversion recorded in ``meta["suv_conversion"]`` for the outputs."""
    for value, flag in ((weight_kg, "--weight-kg"), (dose_mbq, "--dose-mbq")):
        if not (math.isfinite(value) and value > 0):
            raise PetCtInputError(flag, f"must be positive and finite, got {value:g}")
    elapsed = uptake_seconds(injection_time, scan_time)
    decayed_bq = dose_mbq * 1e6 * 2.0 ** (-elapsed / half_life_s)
    factor = weight_kg * 1000.0 / decayed_bq
    record = {"from": "Bq/ml", "weight_kg": weight_kg, "dose_mbq": dose_mbq, "injection_time": injection_time,
              "scan_time": scan_time, "minutes_after_injection": round(elapsed / 60, 2), "half_life_s": half_life_s,
              "suv_factor": factor}
    array = (np.asarray(pet.array, np.float32) * np.float32(factor)).astype(np.float32)
    converted = pet.with_array(array, suv_status="converted-from-Bq/ml", suv_conversion=record, units="SUV")
    if hasattr(converted.header, "get_best_affine"):  # NIfTI: masks written on this grid say where their SUV came from
        converted.header = converted.header.copy()
        converted.header["descrip"] = f"SUVbw from Bq/ml x{factor:.4g} ({elapsed / 60:.0f} min p.i.)".encode()[:79]
    return converted


def _sample(volume: Volume) -> np.ndarray:
    """About SAMPLES voxels on a regular stride (float64): cheap, and the same every run."""
    array = np.asarray(volume.array)
    step = max(1, math.ceil((array.size / SAMPLES) ** (1 / 3)))
    return np.asarray(array[::step, ::step, ::step], np.float64).ravel()


def _index_of_pet_voxels(pet: Volume, other: Volume) -> np.ndarray:
    """(N, 3) fractional voxel index in ``other`` of the sampled PET voxels (the order of `_sample`)."""
    step = max(1, math.ceil((int(np.prod(pet.shape)) / SAMPLES) ** (1 / 3)))
    axes = [np.arange(0, n, step) for n in pet.shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)
    world = ijk @ pet.affine[:3, :3].T + pet.affine[:3, 3]
    inverse = np.linalg.inv(other.affine)
    return world @ inverse[:3, :3].T + inverse[:3, 3]


def _ct_at_pet_voxels(pet: Volume, ct: Volume) -> tuple[np.ndarray, np.ndarray]:
    """For the sampled PET voxels: whether each lies inside the CT grid, and the CT (nearest voxel) where it does."""
    index = np.rint(_index_of_pet_voxels(pet, ct)).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.asarray(ct.shape)), axis=1)
    values = np.asarray(ct.array)[tuple(index[inside].T)].astype(np.float64)
    return inside, values


def _check_finite(volume: Volume, values: np.ndarray, name: str) -> None:
    array = np.asarray(volume.array)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise PetCtInputError(volume.source, f"{name} has {bad} NaN or infinite voxel(s): fix or re-export the image")


def _check_pet_is_pet(pet: Volume, values: np.ndarray) -> None:
    top = float(np.max(pet.array))
    if top <= 0:
        kind = "all zero" if top == 0 and float(np.min(pet.array)) == 0 else f"all negative or zero (max {top:g})"
        raise PetCtInputError(pet.source, f"PET is {kind}: nothing to segment; is this the PET, exported correctly?")
    low = float(np.percentile(values, 1))
    if low < -100:
        raise PetCtInputError(pet.source, f"PET has 1% of its voxels below {low:.0f} (CT-like HU values, air -1000): "
                                          "PET and CT swapped? pass the PET as --pet and the CT as --ct")


def _check_ct_is_ct(ct: Volume, values: np.ndarray) -> None:
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if lo > -50 and hi < 150:
        modes = ", ".join(f"{k} {'none' if v is None else f'{v:.0f}'}" for k, v in ct_modes(values).items())
        raise PetCtInputError(ct.source, f"CT values lie within {lo:.3g}..{hi:.3g} (modes: {modes}): no air "
                                         "(-1000 HU), fat (-100) or bone (> 300); this looks like a PET (SUV), not a "
                                         "CT in HU: PET and CT swapped?")


def _check_suv_scale(pet: Volume, body: np.ndarray) -> None:
    if body.size == 0:
        return
    median, p999 = float(np.median(body)), float(np.percentile(body, 99.9))
    found = f"body median {median:.4g}, 99.9th percentile {p999:.4g}, max {float(np.max(pet.array)):.4g}"
    if median > SUV_BODY_MEDIAN_RANGE[1] or p999 > SUV_P999_RANGE[1]:
        raise PetCtInputError(pet.source, f"PET is not in SUV ({found}; SUV is about 0.5-3 in the body): it looks like "
                                          f"Bq/ml or counts; {CONVERSION_HINT}")
    if p999 < SUV_P999_RANGE[0]:
        raise PetCtInputError(pet.source, f"PET values are implausibly low for SUV ({found}): scaled twice, or "
                                          "SUV/1000? export the PET in SUV (body-weight)")
