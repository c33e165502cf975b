"""Read and write PET/CT volumes without ever losing or changing their geometry.

NIfTI goes through nibabel and keeps its header (so a mask written ``like=`` an input carries that input's sform and
qform bit for bit). MetaImage/NRRD go through SimpleITK and are converted from ITK's (k, j, i) array + LPS geometry to
the package's (i, j, k) array + RAS affine. DICOM folders go through :mod:`.dicom` (series discovery, SUV).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import PetCtInputError
from .geometry import LPS_TO_RAS, same_grid
from .volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
# RAS <-> LPS: flip the first two world axes.


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume(path: str | os.PathLike, *, modality: str | None = None) -> Volume:
    """Read a 3-D volume from NIfTI, MetaImage/NRRD or a DICOM folder; refuse what cannot be trusted.

    ``modality`` ("PT" or "CT") picks the series in a mixed DICOM folder; a PET DICOM series comes back in SUVbw.
    """
    path = Path(path)
    if not path.exists():
        raise PetCtInputError(path, "no such file or folder")
    if path.is_dir():
        from .dicom import read_dicom_series

        vol = read_dicom_series(path, modality=modality)
    else:
        suffix = _suffix(path)
        if suffix in NIFTI_SUFFIXES:
            vol = _read_nifti(path)
        elif suffix in ITK_SUFFIXES:
            vol = _read_itk(path)
        elif suffix == ".dcm":
            raise PetCtInputError(path, "a single DICOM file: pass the folder that holds the whole series")
        else:
            raise PetCtInputError(path, f"unknown image format {suffix!r} (expected .nii, .nii.gz, .mha, .nrrd or a DICOM folder)")
        if modality:
            vol.meta.setdefault("modality", modality)
    _check_finite(vol)
    return vol


def read_pet(path: str | os.PathLike) -> Volume:
    """PET in SUVbw: DICOM is converted from its tags; NIfTI/MHA are taken to hold SUV already (recorded in meta)."""
    vol = read_volume(path, modality="PT")
    if "suv_status" not in vol.meta:  # data/plausibility.check_pet_ct refuses what is not SUV, from the voxels
        vol.meta["suv_status"] = "assumed-SUV-nifti" if _suffix(Path(path)) in NIFTI_SUFFIXES else "assumed-SUV-file"
    vol.meta.update(modality="PT", units="SUV")
    return vol


def read_ct(path: str | os.PathLike) -> Volume:
    """CT in Hounsfield units."""
    vol = read_volume(path, modality="CT")
    vol.meta.update(modality="CT", units="HU")
    return vol


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise PetCtInputError(path, f"expected a 3-D volume, got shape {tuple(array.shape)} (4-D/dynamic or 2-D images are not supported)")
    return array


def _check_finite(vol: Volume) -> None:
    arr = vol.array
    if min(arr.shape) < 1:
        raise PetCtInputError(vol.source, f"empty volume of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise PetCtInputError(vol.source, f"{bad} voxels are NaN or infinite")
    if not np.isfinite(vol.affine).all() or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-12:
        raise PetCtInputError(vol.source, "the voxel-to-world affine is singular or not finite")


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise PetCtInputError(path, f"not a NIfTI image ({type(img).__name__})")
        _check_declared_bytes(path, img)
        array = np.asanyarray(img.dataobj)
    except PetCtInputError:
        raise
    except Exception as err:  # nibabel raises many types for truncated/corrupt files (EOFError, zlib.error, ...)
        raise PetCtInputError(path, f"cannot read NIfTI ({type(err).__name__}: {err})") from err
    array = _squeeze_to_3d(array, path)
    if array.dtype == np.float64 and img.get_data_dtype() != np.float64:
        array = array.astype(np.float32)  # scaled integers (scl_slope) come back as float64: halve the memory
    return Volume(array, img.affine.astype(np.float64), str(path), img.header, {"format": "nifti"})


MAX_DEFLATE_RATIO = 1032  # deflate's ceiling: a gzip stream never inflates more than ~1032-fold


def _check_declared_bytes(path: Path, img) -> None:
    """Refuse a header that declares more voxels than the file holds, before they are allocated (a 127-byte file can
    declare 700^3 float32 voxels). Plain files are measured; a gzip file holds at most MAX_DEFLATE_RATIO times its
    size, and its trailer gives the inflated size (mod 4 GiB, so exact below 4 GiB)."""
    header = img.header
    need = int(header["vox_offset"]) + int(np.prod(img.shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    have = path.stat().st_size
    if str(path).lower().endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            trailer = int.from_bytes(fh.read(4), "little")
        have = trailer if need < 2**32 else MAX_DEFLATE_RATIO * have
    if have < need:
        raise PetCtInputError(path, f"header declares {'x'.join(map(str, img.shape))} voxels ({need / 2**20:.1f} MiB) "
                                    f"but the file holds {have / 2**20:.3g} MiB: truncated or corrupt")


def sitk_to_volume(img, source: str = "<memory>") -> Volume:
    """Convert a SimpleITK image (array (k, j, i), LPS geometry) to a Volume ((i, j, k), RAS affine), exactly."""
    import SimpleITK as sitk

    if img.GetNumberOfComponentsPerPixel() != 1:
        raise PetCtInputError(source, f"vector image with {img.GetNumberOfComponentsPerPixel()} components per voxel")
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise PetCtInputError(source, f"expected a 3-D volume, got a {img.GetDimension()}-D image of size {img.GetSize()}")
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.array(img.GetOrigin(), dtype=np.float64)
    return Volume(np.ascontiguousarray(array), affine, str(source), None, {})


def volume_to_sitk(vol: Volume, array: np.ndarray | None = None):
    """Convert a Volume (or another array on its grid) to a SimpleITK image with the same geometry."""
    import SimpleITK as sitk

    array = vol.array if array is None else array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing = np.linalg.norm(vol.affine[:3, :3], axis=0)
    direction = LPS_TO_RAS @ vol.affine[:3, :3] / spacing
    img.SetSpacing(spacing.tolist())
    img.SetDirection(direction.ravel().tolist())
    img.SetOrigin((LPS_TO_RAS @ vol.affine[:3, 3]).tolist())
    return img


def resample_sitk(img, affine: np.ndarray, size, interp, fill):
    """Resample onto the grid (RAS ``affine`` over SimpleITK's index order, ``size``); float32 out unless nearest.

    The target geometry is taken from a one-voxel image built by ``volume_to_sitk``, so there is one RAS->LPS
    conversion in the package, and no full-size reference.
    """
    import SimpleITK as sitk

    g = volume_to_sitk(Volume(np.zeros((1, 1, 1), np.uint8), np.asarray(affine, float)))
    pixel = img.GetPixelID() if interp == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    return sitk.Resample(img, [int(n) for n in size], sitk.Transform(), interp, g.GetOrigin(), g.GetSpacing(),
                        g.GetDirection(), float(fill), pixel)


def _read_itk(path: Path) -> Volume:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise PetCtInputError(path, f"cannot read image ({str(err).strip().splitlines()[-1]})") from err
    vol = sitk_to_volume(img, str(path))
    vol.meta["format"] = _suffix(path).lstrip(".")
    return vol


def write_volume(array_or_volume, path: str | os.PathLike, like: Volume | None = None) -> Path:
    """Write atomically to .nii/.nii.gz (nibabel) or .mha/.nrrd (SimpleITK).

    Geometry comes from ``like`` when given (its NIfTI header is reused, so sform/qform are bit-exact), else from the
    Volume itself. Boolean arrays are stored as uint8.
    """
    path = Path(path)
    if isinstance(array_or_volume, Volume):
        grid = like or array_or_volume
        array = array_or_volume.array
        if not same_grid(grid.shape, grid.affine, array_or_volume.shape, array_or_volume.affine):
            raise ValueError("the volume's shape or affine differs from like's: resample it onto that grid first")
    else:
        if like is None:
            raise ValueError("write_volume needs like=<Volume> to place a bare array in the world")
        grid, array = like, np.asarray(array_or_volume)
    if array.shape != grid.shape:
        raise ValueError(f"array shape {array.shape} does not match the grid {grid.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    suffix = _suffix(path)
    with atomic_path(path) as tmp:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(array, grid, tmp)
        elif suffix in (".mha", ".nrrd"):
            import SimpleITK as sitk

            sitk.WriteImage(volume_to_sitk(grid, array), str(tmp), useCompression=True)
        else:
            raise ValueError(f"cannot write {suffix!r}: use .nii.gz, .nii, .mha or .nrrd")
    return path


def _write_nifti(array: np.ndarray, grid: Volume, tmp: Path) -> None:
    import nibabel as nib

    header = grid.header
    reuse = isinstance(header, (nib.Nifti1Header, nib.Nifti2Header)) and np.array_equal(header.get_best_affine(), grid.affine)
    if reuse:
        header = header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(None, None)  # the new voxels are stored unscaled
        header["cal_min"] = header["cal_max"] = 0  # the input's display window does not fit other voxels (a mask)
        klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        img = klass(array, None, header)  # affine=None: sform/qform taken from the header unchanged
    else:
        img = nib.Nifti1Image(array, grid.affine)
        img.set_sform(grid.affine, code=1)
        img.set_qform(grid.affine, code=1)
    img.to_filename(str(tmp))
