"""Zipped DICOM series, unpacked safely: no member escapes the target folder, no archive expands into a bomb, and the
voxel count a series declares is capped before any pixel is read. Used by the demo's uploads and by ``petct
segment`` for a .zip given as --pet/--ct.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import PetCtInputError

ACCEPTED = "a NIfTI (.nii/.nii.gz), an MHA (.mha) or a .zip of one DICOM series"
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
