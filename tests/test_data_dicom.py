"""DICOM series reading and SUVbw conversion: real GE headers, and synthetic series for every unit/decay/time rule."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pydicom
import pytest

from modeling_petct.data.synthetic.dicom_writer import write_ct_series, write_pet_series
from modeling_petct.data.io import read_ct, read_pet, read_volume
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError

WEIGHT, DOSE = 82.5, 3.1e8
INJECTED = dt.datetime(2026, 3, 14, 9, 12, 30)
START = INJECTED + dt.timedelta(minutes=63, seconds=17)


@pytest.fixture(scope="module")
def suv() -> Volume:
    """A small SUV volume (range 0-25, one hot voxel per slice) on an oblique-free, permuted, anisotropic grid."""
    rng = np.random.default_rng(7)
    array = rng.gamma(2.0, 1.0, size=(12, 10, 6)).astype(np.float32)
    array[3, 4, :] = np.linspace(5, 25, 6)
    affine = np.array([[0, 2.5, 0, 40.0], [-3.0, 0, 0, 12.0], [0, 0, 4.0, -300.0], [0, 0, 0, 1]])
    return Volume(array, affine, meta={"patient_id": "SYN_1"})


def _write(suv, folder, **kw):
    args = {"weight_kg": WEIGHT, "dose_bq": DOSE, "injection_time": INJECTED, "scan_start": START} | kw
    write_pet_series(suv, folder, **args)
    return folder


def _assert_recovers(vol: Volume, suv: Volume):
    np.testing.assert_allclose(vol.affine, suv.affine, atol=1e-5)
    err = np.abs(vol.array - suv.array)
    assert err.max() <= 1e-4 * suv.array.max(), err.max()  # 16-bit quantisation only; a 1-min clock error is 0.6 %


CASES = {
    "BQML-START-datetime": ({}, "converted-from-BQML", "SeriesDateTime", "RadiopharmaceuticalStartDateTime"),
    "BQML-ADMIN": ({"decay_correction": "ADMIN"}, "converted-from-BQML", None, None),
    "GML": ({"units": "GML"}, "GML-as-is", None, None),
    "CNTS-philips": ({"units": "CNTS", "philips_factor": 3.7e-4}, "converted-from-CNTS-philips", None, None),
    "injection-time-only": ({"injection_as": "time"}, "converted-from-BQML", "SeriesDateTime", "RadiopharmaceuticalStartTime"),
    # Series time re-stamped after reconstruction: GE's private scan start wins over the (later) acquisition time.
    "GE-private-scan-start": ({"series_time": START + dt.timedelta(hours=3), "acquisition_time": START + dt.timedelta(minutes=2),
                               "ge_scan_start": START}, "converted-from-BQML", "GE private (0009,100D)", None),
    "acquisition-before-series": ({"series_time": START + dt.timedelta(hours=1), "acquisition_time": START},
                                  "converted-from-BQML", "earliest AcquisitionDateTime", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_synthetic_series_round_trip_recovers_suv(suv, tmp_path, case):
    kw, status, start_rule, inj_rule = CASES[case]
    vol = read_pet(_write(suv, tmp_path / "pet", **kw))
    _assert_recovers(vol, suv)
    assert vol.meta["suv_status"] == status
    if start_rule:
        assert vol.meta["scan_start_rule"] == start_rule
        assert vol.meta["decay_time_s"] == pytest.approx((START - INJECTED).total_seconds(), abs=1e-3)
    if inj_rule:
        assert vol.meta["injection_rule"] == inj_rule
    if status == "converted-from-BQML":
        assert vol.meta["weight_kg"] == WEIGHT and vol.meta["dose_bq"] == DOSE


def test_injection_before_midnight_scan_after(suv, tmp_path):
    injected = dt.datetime(2026, 3, 14, 23, 40)
    start = dt.datetime(2026, 3, 15, 0, 47, 10)
    vol = read_pet(_write(suv, tmp_path / "pet", injection_time=injected, scan_start=start, injection_as="time"))
    _assert_recovers(vol, suv)
    assert vol.meta["injection_rule"] == "RadiopharmaceuticalStartTime (previous day)"
    assert vol.meta["decay_time_s"] == pytest.approx((start - injected).total_seconds())


@pytest.mark.parametrize("injection_as", ["datetime", "time"])
def test_anonymised_series_without_dates_keeps_its_times(suv, tmp_path, injection_as):
    """Anonymisation removed every date but kept the times: the decay is the times' difference, not a refusal."""
    folder = _write(suv, tmp_path / "pet", injection_as=injection_as)

    def undate(ds):
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if keyword in ds:
                delattr(ds, keyword)
    _edit(folder, undate)
    vol = read_pet(folder)
    _assert_recovers(vol, suv)
    assert vol.meta["decay_time_s"] == pytest.approx((START - INJECTED).total_seconds(), abs=1e-3)


def test_series_metadata_and_sorted_files(suv, tmp_path):
    folder = _write(suv, tmp_path / "pet")
    vol = read_pet(folder)
    files = sorted(str(p) for p in folder.iterdir())
    assert vol.meta["dicom_files"] == files
    assert vol.meta["patient_id"] == "SYN_1" and vol.meta["modality"] == "PT" and vol.meta["units"] == "SUV"
    ds = pydicom.dcmread(files[0])
    assert vol.meta["study_uid"] == ds.StudyInstanceUID and vol.meta["series_uid"] == ds.SeriesInstanceUID
    assert len({pydicom.dcmread(f).RescaleSlope for f in files}) == suv.shape[2]  # every slice rescaled differently


def _edit(folder, change):
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


REFUSALS = {
    "weight": (lambda ds: delattr(ds, "PatientWeight"), "PatientWeight (0010,1030)"),
    "dose": (lambda ds: delattr(ds.RadiopharmaceuticalInformationSequence[0], "RadionuclideTotalDose"), "RadionuclideTotalDose (0018,1074)"),
    "units": (lambda ds: setattr(ds, "Units", "PROPCNTS"), "Units (0054,1001) 'PROPCNTS' unknown"),
    "decay-none": (lambda ds: setattr(ds, "DecayCorrection", "NONE"), "DecayCorrection (0054,1102)"),
    "not-attenuation-corrected": (lambda ds: setattr(ds, "CorrectedImage", ["DECY", "NORM"]), "CorrectedImage (0028,0051) lacks ATTN"),
    "injected-after-scan": (lambda ds: setattr(ds.RadiopharmaceuticalInformationSequence[0], "RadiopharmaceuticalStartDateTime",
                                               START.strftime("%Y%m%d") + "235900"), "negative decay time"),
    "no-injection-time": (lambda ds: [delattr(ds.RadiopharmaceuticalInformationSequence[0], t) for t in
                                      ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime")], "(0018,1072)"),
    "no-half-life": (lambda ds: delattr(ds.RadiopharmaceuticalInformationSequence[0], "RadionuclideHalfLife"), "(0018,1075)"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_untrustworthy_headers_are_refused_naming_file_and_tag(suv, tmp_path, case):
    change, message = REFUSALS[case]
    folder = _write(suv, tmp_path / "pet")
    _edit(folder, change)
    with pytest.raises(PetCtInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_pet(folder)
    assert str(folder) in err.value.source


def test_cnts_without_philips_factor_is_refused(suv, tmp_path):
    folder = _write(suv, tmp_path / "pet", units="CNTS")
    _edit(folder, lambda ds: [ds.__delitem__(t) for t in [(0x7053, 0x0010), (0x7053, 0x1000)]])
    with pytest.raises(PetCtInputError, match=r"\(7053,1000\)"):
        read_pet(folder)


def test_mixed_folder_picks_series_by_modality(suv, tmp_path, real_sts):
    folder = tmp_path / "mixed"
    _write(suv, folder)
    ct = Volume(np.full((6, 5, 4), 40, np.int16), np.diag([-1.0, -1.0, 2.0, 1.0]), meta={"patient_id": "SYN_1"})
    write_ct_series(ct, folder, when=START)
    write_pet_series(suv, folder, weight_kg=WEIGHT, dose_bq=DOSE, injection_time=INJECTED, scan_start=START,
                     corrected_image=("DECY", "NORM"), prefix="NAC")  # non-attenuation-corrected PET beside the real one
    shutil.copy(real_sts / "STS_001/PET/dicom/mask/RS.dcm", folder / "RS.dcm")
    (folder / "README.txt").write_text("not dicom")
    pet = read_pet(folder)
    _assert_recovers(pet, suv)
    assert all("NAC" not in f for f in pet.meta["dicom_files"])
    ct_back = read_ct(folder)
    np.testing.assert_array_equal(ct_back.array, ct.array.astype(np.float32))
    np.testing.assert_allclose(ct_back.affine, ct.affine)
    with pytest.raises(PetCtInputError, match="several image series"):
        read_volume(folder)


def test_ct_folder_is_refused_as_pet(tmp_path):
    ct = Volume(np.zeros((4, 4, 3), np.int16), np.eye(4))
    paths = write_ct_series(ct, tmp_path / "ct", when=START)
    with pytest.raises(PetCtInputError, match=r"Modality \(0008,0060\) is 'CT'") as err:
        read_pet(tmp_path / "ct")
    assert err.value.source == str(paths[0])


def test_broken_series_are_refused(suv, tmp_path):
    folder = _write(suv, tmp_path / "truncated")
    victim = sorted(folder.iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:-300])
    with pytest.raises(PetCtInputError, match="pixel data") as err:
        read_pet(folder)
    assert err.value.source == str(victim)

    dynamic = _write(suv, tmp_path / "dynamic")
    _write(suv, dynamic, prefix="PT2")
    _edit(dynamic, lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4"))  # two frames at every position
    with pytest.raises(PetCtInputError, match="same slice position"):
        read_pet(dynamic)

    gap = _write(suv, tmp_path / "gap")
    sorted(gap.iterdir())[3].unlink()
    with pytest.raises(PetCtInputError, match="not uniform"):
        read_pet(gap)

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(PetCtInputError, match="no DICOM image series"):
        read_pet(tmp_path / "empty")


@pytest.mark.parametrize("patient", ["STS_001", "STS_002"])
def test_real_ge_pet_matches_the_nifti_beside_it(real_sts, patient):
    """GE Discovery ST, Units GML, per-slice RescaleSlope: our DICOM SUV equals MIRP's NIfTI SUV."""
    dcm = read_pet(real_sts / patient / "PET/dicom/image")
    nii = read_pet(real_sts / patient / "PET/nifti/image/image.nii.gz")
    assert dcm.shape == nii.shape
    np.testing.assert_allclose(dcm.affine, nii.affine, atol=1e-4)  # NIfTI stores float32 geometry
    np.testing.assert_allclose(dcm.array, nii.array, atol=1e-5)  # the NIfTI holds float32 SUV
    mask = read_volume(real_sts / patient / "PET/nifti/mask/mask.nii.gz").array > 0
    assert dcm.array[mask].max() == pytest.approx({"STS_001": 7.91, "STS_002": 21.68}[patient], abs=0.005)
    assert dcm.meta["suv_status"] == "GML-as-is" and dcm.meta["patient_id"] == patient
    assert len(dcm.meta["dicom_files"]) == dcm.shape[2]


@pytest.mark.parametrize("patient", ["STS_001", "STS_002"])
def test_real_ct_matches_the_nifti_beside_it(real_sts, patient):
    dcm = read_ct(real_sts / patient / "CT/dicom/image")
    nii = read_ct(real_sts / patient / "CT/nifti/image/image.nii.gz")
    np.testing.assert_allclose(dcm.affine, nii.affine, atol=1e-4)
    np.testing.assert_array_equal(dcm.array, nii.array)
    assert dcm.meta["units"] == "HU" and dcm.array.min() >= -1024


def test_each_slice_keeps_its_own_rescale(suv, tmp_path):
    """Slice 0 stored with slope 1 (integers), the others with fractional slopes and per-slice intercepts.

    SimpleITK 2.5's series reader takes the pixel type from the first slice (int16 here) and truncates the rest
    (errors up to 1 SUV, checked by hand); reading slice by slice with pydicom keeps every slice's rescale.
    """
    folder = _write(suv, tmp_path / "pet", units="GML")
    expected = suv.array.astype(np.float64).copy()
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        if k == 0:
            stored = np.rint(expected[:, :, 0]).astype(np.int16)
            ds.RescaleSlope, ds.PixelData = "1", stored.T.tobytes()
            expected[:, :, 0] = stored
        else:
            ds.RescaleIntercept = f"{0.25 * k}"
            expected[:, :, k] += 0.25 * k
        ds.save_as(path)
    ours = read_pet(folder).array
    assert np.abs(ours - expected).max() <= 1e-4 * expected.max()


@pytest.mark.filterwarnings("ignore:Invalid value for VR DT")
def test_unparseable_injection_time_is_refused(suv, tmp_path):
    folder = _write(suv, tmp_path / "pet")
    _edit(folder, lambda ds: setattr(ds.RadiopharmaceuticalInformationSequence[0], "RadiopharmaceuticalStartDateTime", "2026-13-45 nonsense"))
    with pytest.raises(PetCtInputError, match="unreadable scan or injection date/time"):
        read_pet(folder)


def test_slices_stored_against_the_normal_read_back_in_the_same_world_positions(suv, tmp_path):
    """k runs opposite to row x column: the reader sorts along the normal, so k flips but no voxel moves."""
    flipped = Volume(suv.array, suv.affine @ np.diag([1.0, 1.0, -1.0, 1.0]), meta=suv.meta)
    back = read_pet(_write(flipped, tmp_path / "pet"))
    n = suv.shape[2]
    np.testing.assert_allclose(back.array[:, :, ::-1], flipped.array, atol=1e-4 * suv.array.max())
    for ijk in [(0, 0, 0), (3, 4, 1), (11, 9, n - 1)]:
        ours = back.affine @ [ijk[0], ijk[1], n - 1 - ijk[2], 1]
        np.testing.assert_allclose(ours, flipped.affine @ [*ijk, 1], atol=1e-4)
