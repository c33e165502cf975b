"""Accepting strangers' files (the public demo): size caps, safe zip extraction, and image-type checks.

Why a module of its own: a Space reads files from anyone. Before any image library touches an upload we check its
size, recognise its format from its bytes (not its name), cap the voxel count its header declares (a 1 MB .nii.gz
can declare gigabytes), refuse MHA headers that point at other files on the server, and unpack zips only when no
member escapes the target folder and the archive cannot expand into a bomb. Every refusal is a ``PetCtInputError``
naming the upload, which the UI shows as a message.
"""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import nibabel as nib
import numpy as np

from ..errors import PetCtInputError

ACCEPTED = "a NIfTI (.nii/.nii.gz), an MHA (.mha) or a .zip of one DICOM series"
_SUFFIX = {"nifti": ".nii", "nifti-gz": ".nii.gz", "mha": ".mha"}
_CHUNK = 1 << 20
_RATIO_MIN_BYTES = 1 << 20  # an empty PET edge slice compresses 500-fold too; only big members can be bombs


@dataclass(frozen=True)
class UploadLimits:
    """Caps for one uploaded file; the defaults fit a whole-body PET/CT (CT 512x512x600) with room to spare."""

    max_file_bytes: int = 512 * 2**20
    max_unzipped_bytes: int = 2 * 2**30
    max_zip_ratio: float = 200.0  # uncompressed / compressed size of one member over 1 MiB; zeros give ~1000:1
    max_zip_members: int = 5000
    max_voxels: int = 200_000_000


def check_file_size(path: str | Path, limits: UploadLimits) -> None:
    size = Path(path).stat().st_size
    if size > limits.max_file_bytes:
        limit = limits.max_file_bytes / 2**20
        raise PetCtInputError(path, f"file is {size / 2**20:.0f} MiB; the limit is {limit:.0f} MiB")
    if size == 0:
        raise PetCtInputError(path, "file is empty")


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


def safe_extract_zip(zip_path: str | Path, dest: str | Path, limits: UploadLimits) -> Path:
    """Unpack ``zip_path`` into ``dest`` after checking every member; nothing is written if the listing is refused.

    Refused: absolute paths, ``..`` components, drive letters, symlinks, more than ``max_zip_members`` members, a total
    declared size over ``max_unzipped_bytes``, a member over 1 MiB whose compression ratio exceeds ``max_zip_ratio``.
    While writing, bytes are counted again: a member that inflates beyond its declared size is cut off and refused.
    """
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise PetCtInputError(zip_path, f"not a readable zip ({err})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > limits.max_zip_members:
            raise PetCtInputError(zip_path, f"zip holds {len(members)} files; the limit is {limits.max_zip_members}")
        for member in members:
            _check_member(zip_path, member, limits)
        _check_totals(zip_path, members, limits)
        dest.mkdir(parents=True, exist_ok=True)
        for member in members:
            target = dest.joinpath(*PurePosixPath(member.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with archive.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > member.file_size:
                            problem = f"zip member {_short(member.filename)} unpacks beyond its declared size"
                            raise PetCtInputError(zip_path, problem)
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise PetCtInputError(zip_path, f"zip member {_short(member.filename)} is corrupt ({err})") from None
            except OSError as err:  # a name too long for this file system, a full disk
                raise PetCtInputError(zip_path, f"zip member {_short(member.filename)} cannot be unpacked "
                                                f"({err.strerror or err})") from None
    return dest


def _check_totals(zip_path, members: list[zipfile.ZipInfo], limits: UploadLimits) -> None:
    """The whole archive's declared size and expansion: many small members of zeros pass every per-member check."""
    total, packed = sum(m.file_size for m in members), sum(m.compress_size for m in members)
    if total > limits.max_unzipped_bytes:
        limit = limits.max_unzipped_bytes / 2**20
        raise PetCtInputError(zip_path, f"zip unpacks to {total / 2**20:.0f} MiB; the limit is {limit:.0f} MiB")
    if total > _RATIO_MIN_BYTES and total / max(packed, 1) > limits.max_zip_ratio:
        raise PetCtInputError(zip_path, f"zip expands {total / max(packed, 1):.0f}-fold in all, to "
                                        f"{total / 2**20:.0f} MiB (zip bomb?); the limit is {limits.max_zip_ratio:.0f}")


def _short(name: str, keep: int = 80) -> str:
    """A member name for a one-line message (a hostile zip can carry names of thousands of characters)."""
    return repr(name) if len(name) <= keep else repr(name[:keep]) + f"... ({len(name)} characters)"


def _check_member(zip_path, member: zipfile.ZipInfo, limits: UploadLimits) -> None:
    name = member.filename
    posix, windows = PurePosixPath(name.replace("\\", "/")), PureWindowsPath(name)
    if posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts:
        raise PetCtInputError(zip_path, f"zip member {_short(name)} has an absolute or '..' path")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise PetCtInputError(zip_path, f"zip member {_short(name)} is a symbolic link")
    ratio = member.file_size / max(member.compress_size, 1)
    if member.file_size > _RATIO_MIN_BYTES and ratio > limits.max_zip_ratio:
        raise PetCtInputError(zip_path, f"zip member {_short(name)} expands {ratio:.0f}-fold (zip bomb?)")


def dicom_series_folder(folder: str | Path, source: str | Path, limits: UploadLimits) -> Path:
    """The single folder of an unpacked zip that holds DICOM files (``DICM`` at byte 128); its voxel count is capped."""
    import pydicom

    dicom_files = [p for p in sorted(Path(folder).rglob("*")) if p.is_file() and _has_dicm(p)]
    if not dicom_files:
        raise PetCtInputError(source, f"zip holds no DICOM files: upload {ACCEPTED}")
    folders = {p.parent for p in dicom_files}
    if len(folders) > 1:
        raise PetCtInputError(source, f"zip holds DICOM files in {len(folders)} folders: zip one series per upload")
    first = pydicom.dcmread(dicom_files[0], stop_before_pixels=True)
    voxels = int(getattr(first, "Rows", 0)) * int(getattr(first, "Columns", 0)) * len(dicom_files)
    voxels *= int(getattr(first, "NumberOfFrames", 1) or 1)
    if voxels > limits.max_voxels:
        raise PetCtInputError(source, f"DICOM series declares {voxels:,} voxels; the limit is {limits.max_voxels:,}")
    return folders.pop()


def _has_dicm(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


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
