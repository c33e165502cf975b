"""Accepting strangers' files (the public demo): size caps, safe zip extraction, and image-type checks.

Why a module of its own: a Space reads files from anyone. Before any image library touches an upload we check its
size, recognise its format from its bytes (not its name), cap the voxel count its header declares (a 1 MB .nii.gz
can declare gigabytes), refuse MHA headers that point at other files on the server, and unpack zips only when no
member escapes the target folder and the archive cannot expand into a bomb. Every refusal is a ``PetCtInputError``
naming the upload, which the UI shows as a message. The zip rules live in data/archives.py (``petct segment`` reads
zipped DICOM series with the same guards).
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from ..data.archives import ACCEPTED, UploadLimits, dicom_series_folder, safe_extract_zip
from ..errors import PetCtInputError

_SUFFIX = {"nifti": ".nii", "nifti-gz": ".nii.gz", "mha": ".mha"}
UPLOAD_SUFFIXES = (*_SUFFIX.values(), ".zip")  # what an upload's name ends with: the study's name is the rest


def check_file_size(path: str | Path, limits: UploadLimits) -> None:
    size = Path(path).stat().st_size
    if size > limits.max_file_bytes:
        raise PetCtInputError(path, too_large(f"{size / 2**20:.0f}", limits))
    if size == 0:
        raise PetCtInputError(path, "file is empty")


def too_large(mib: str, limits: UploadLimits) -> str:
    """The refusal of a file of ``mib`` MiB (text: the page's script fills it in before sending the file)."""
    return f"file is {mib} MiB; the limit is {limits.max_file_bytes / 2**20:.0f} MiB"


def sniff_kind(path: str | Path) -> str:
    """The upload's format from its first bytes: "zip", "nifti", "nifti-gz" or "mha"; anything else is refused."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[128:132] == b"DICM":
        raise PetCtInputError(path, "one DICOM file is one slice: zip the whole series folder and upload the .zip")
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as gz:
                inner = gz.read(544)
        except (OSError, EOFError) as err:
            raise PetCtInputError(path, f"broken gzip data ({err})") from None
        if _is_nifti(inner):
            return "nifti-gz"
    elif _is_nifti(head):
        return "nifti"
    elif _mha_fields(head).get("ObjectType", "").lower() == "image":
        return "mha"
    raise PetCtInputError(path, f"not an image this demo reads: upload {ACCEPTED}")


def _is_nifti(head: bytes) -> bool:
    """Single-file NIfTI-1 or -2 (a "ni1" header/image pair cannot come as one upload)."""
    return head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00"


def _mha_fields(head: bytes) -> dict[str, str]:
    """Key = value lines of a MetaImage header (they precede the binary data, ElementDataFile last)."""
    fields = {}
    for line in head.split(b"\n"):
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            break
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    return fields


def check_declared_voxels(path: str | Path, kind: str, limits: UploadLimits) -> None:
    """Refuse headers that declare more voxels than the cap, before any voxel is decompressed or allocated."""
    if kind in ("nifti", "nifti-gz"):
        with (gzip.open if kind == "nifti-gz" else open)(path, "rb") as fh:
            head = fh.read(544)
        header_class = nib.Nifti2Header if head[4:8] == b"n+2\x00" else nib.Nifti1Header
        try:
            shape = header_class.from_fileobj(io.BytesIO(head)).get_data_shape()
        except Exception as err:  # nibabel raises several types for corrupt headers
            raise PetCtInputError(path, f"unreadable NIfTI header ({err})") from None
    else:  # mha
        with open(path, "rb") as fh:
            fields = _mha_fields(fh.read(4096))
        if fields.get("ElementDataFile", "").upper() != "LOCAL":
            raise PetCtInputError(
                path, "MHA header must hold its voxels (ElementDataFile = LOCAL); .mhd/.raw pairs are refused"
            )
        try:
            shape = tuple(int(v) for v in fields["DimSize"].split())
        except (KeyError, ValueError):
            raise PetCtInputError(path, "MHA header has no valid DimSize") from None
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > limits.max_voxels:
        raise PetCtInputError(
            path, f"image declares {voxels:,} voxels {tuple(shape)}; the limit is {limits.max_voxels:,}"
        )


def prepare_upload(path: str | Path, workdir: str | Path, limits: UploadLimits = UploadLimits()) -> Path:
    """Check one uploaded file and return what ``read_volume`` should read: the file itself, a copy named after its
    real format, or the DICOM folder unpacked from a zip under ``workdir``."""
    path = Path(path)
    check_file_size(path, limits)
    kind = sniff_kind(path)
    if kind == "zip":
        unpacked = safe_extract_zip(path, Path(workdir) / f"{path.name}.unzipped", limits)
        return dicom_series_folder(unpacked, path, limits)
    check_declared_voxels(path, kind, limits)
    if path.name.lower().endswith(_SUFFIX[kind]):
        return path
    renamed = Path(workdir) / (path.name.split(".")[0] + _SUFFIX[kind])  # readers pick the format from the suffix
    renamed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, renamed)
    return renamed
