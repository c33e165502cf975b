"""Each safety rule for strangers' uploads (modeling_petct.web.uploads), one test per rule."""

from __future__ import annotations

import gzip
import io
import stat
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from modeling_petct.errors import PetCtInputError
from modeling_petct.web.uploads import UploadLimits, prepare_upload, safe_extract_zip, sniff_kind


def _nifti(path, shape=(4, 5, 6)):
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return path


def _fake_dicom(tag: bytes = b"") -> bytes:
    return b"\0" * 128 + b"DICM" + tag


def _zip(path, members: dict[str, bytes], symlinks=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_size_limit_refuses_large_file(tmp_path):
    path = _nifti(tmp_path / "pet.nii")
    with pytest.raises(PetCtInputError, match="limit"):
        prepare_upload(path, tmp_path / "work", UploadLimits(max_file_bytes=100))
    assert prepare_upload(path, tmp_path / "work") == path


@pytest.mark.parametrize(
    "name", ["/abs/evil.dcm", "../evil.dcm", "series/../../evil.dcm", "C:/evil.dcm", "..\\evil.dcm"]
)
def test_zip_member_escaping_the_folder_is_refused(tmp_path, name):
    archive = _zip(tmp_path / "s.zip", {"ok.dcm": _fake_dicom(), name: _fake_dicom()})
    with pytest.raises(PetCtInputError, match="absolute or '..' path"):
        safe_extract_zip(archive, tmp_path / "out", UploadLimits())
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.dcm").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = _zip(tmp_path / "s.zip", {"ok.dcm": _fake_dicom()}, symlinks=["link.dcm"])
    with pytest.raises(PetCtInputError, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "out", UploadLimits())


def test_zip_bomb_refused_by_ratio(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"zeros.dcm": bytes(5_000_000)})  # ~1000:1
    with pytest.raises(PetCtInputError, match="expands"):
        safe_extract_zip(archive, tmp_path / "out", UploadLimits())


def test_zip_bomb_of_many_small_members_refused_before_unpacking(tmp_path):
    """Members of exactly 1 MiB of zeros each pass the per-member ratio rule; the archive's total expansion does not."""
    archive = _zip(tmp_path / "bomb.zip", {f"s/{i}.dcm": bytes(2**20) for i in range(300)})
    with pytest.raises(PetCtInputError, match="expands 1[0-9]{3}-fold in all"):
        prepare_upload(archive, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_zip_refused_by_total_uncompressed_size(tmp_path):
    rng = np.random.default_rng(0)
    members = {f"s/{i}.dcm": rng.bytes(50_000) for i in range(4)}  # incompressible: ratio ~1
    archive = _zip(tmp_path / "big.zip", members)
    with pytest.raises(PetCtInputError, match="unpacks to .* MiB"):
        safe_extract_zip(archive, tmp_path / "out", UploadLimits(max_unzipped_bytes=150_000))
    assert len(list(safe_extract_zip(archive, tmp_path / "out", UploadLimits()).rglob("*.dcm"))) == 4


def test_zip_refused_by_member_count(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"{i}.dcm": _fake_dicom() for i in range(6)})
    with pytest.raises(PetCtInputError, match="holds 6 files"):
        safe_extract_zip(archive, tmp_path / "out", UploadLimits(max_zip_members=5))


def test_zip_without_dicom_is_refused(tmp_path):
    archive = _zip(tmp_path / "notes.zip", {"readme.txt": b"hello " * 10})
    with pytest.raises(PetCtInputError, match="no DICOM files"):
        prepare_upload(archive, tmp_path / "work")


@pytest.mark.parametrize(
    "content",
    [b"just some text\n" * 40, b"\x89PNG\r\n\x1a\n" + bytes(600), gzip.compress(b"not nifti" * 100)],
    ids=["text", "png", "gzip-of-text"],
)
def test_non_image_files_are_refused(tmp_path, content):
    path = tmp_path / "pet.nii.gz"  # a trusted-looking name does not help
    path.write_bytes(content)
    with pytest.raises(PetCtInputError, match="not an image this demo reads"):
        prepare_upload(path, tmp_path / "work")


def test_nifti_declaring_too_many_voxels_is_refused_before_decompressing(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))  # 8e9 voxels declared by a file of a few hundred bytes
    header.set_data_dtype(np.float32)
    buf = io.BytesIO()
    header.write_to(buf)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(buf.getvalue() + b"\0" * 4))
    with pytest.raises(PetCtInputError, match="declares 8,000,000,000 voxels"):
        prepare_upload(path, tmp_path / "work")


def test_mha_pointing_at_another_file_is_refused(tmp_path):
    path = tmp_path / "ct.mha"
    header = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = /etc/shadow\n"
    path.write_bytes(header.encode())
    with pytest.raises(PetCtInputError, match="ElementDataFile = LOCAL"):
        prepare_upload(path, tmp_path / "work")


def test_format_is_recognised_from_bytes_and_renamed_for_the_reader(tmp_path):
    gz = tmp_path / "upload"  # no suffix at all
    gz.write_bytes(gzip.compress(_nifti(tmp_path / "x.nii").read_bytes()))
    assert sniff_kind(gz) == "nifti-gz"
    ready = prepare_upload(gz, tmp_path / "work")
    assert ready.name == "upload.nii.gz" and nib.load(str(ready)).shape == (4, 5, 6)


def test_zip_of_one_dicom_series_gives_its_folder(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    members = {}
    for i in range(3):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Rows, ds.Columns = 8, 8
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        members[f"study/series/{i}.dcm"] = buf.getvalue()
    archive = _zip(tmp_path / "series.zip", members)
    folder = prepare_upload(archive, tmp_path / "work")
    assert folder.name == "series" and len(list(folder.glob("*.dcm"))) == 3
    with pytest.raises(PetCtInputError, match="declares 192 voxels"):
        prepare_upload(archive, tmp_path / "work2", UploadLimits(max_voxels=100))


def test_zipped_dicom_pet_series_reads_as_suv(tmp_path):
    """A real DICOM PET series (BQML, from the phantom's DICOM writer) zipped as a user would, then read as SUV."""
    from modeling_petct.data.io import read_pet
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    study = make_phantom(1, size="small", shape=(24, 24, 16), n_lesions=1)
    folder = write_study(study, tmp_path / "study", fmt="dicom")
    archive = tmp_path / "pet.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((folder / "PET").rglob("*")):
            zf.write(path, Path("exported") / path.relative_to(folder))
    pet = read_pet(prepare_upload(archive, tmp_path / "work"))
    assert pet.shape == study.pet.shape
    assert np.allclose(pet.array, study.pet.array, atol=0.01 * float(study.pet.array.max()))


def test_small_highly_compressible_members_are_fine(tmp_path):
    """Empty PET edge slices compress several hundred-fold: only big members are judged by their ratio."""
    archive = _zip(tmp_path / "edges.zip", {f"s/{i}.dcm": _fake_dicom(bytes(200_000)) for i in range(3)})
    assert len(list(safe_extract_zip(archive, tmp_path / "out", UploadLimits()).rglob("*.dcm"))) == 3


def test_a_single_dicom_file_is_told_to_zip_its_series(tmp_path):
    path = tmp_path / "IM0001.dcm"
    path.write_bytes(_fake_dicom(bytes(600)))
    with pytest.raises(PetCtInputError, match="one DICOM file is one slice: zip the whole series folder"):
        prepare_upload(path, tmp_path / "work")
