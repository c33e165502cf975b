"""Geometry in one place: DICOM/ITK LPS <-> NIfTI RAS, same-grid checks, and header facts read before any voxel.

Every Volume carries a RAS affine (nibabel's convention); DICOM and SimpleITK speak LPS. The two differ by the sign of
the first two axes, and that flip is its own inverse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PetCtInputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # also RAS -> LPS
GRID_ATOL_MM = 1e-3  # affines closer than this describe the same grid
# Lesions are 18-connected components (the official autoPET metric code), in metrics and lesion tables alike.
LESION_CONNECTIVITY = 18


def label_lesions(mask) -> tuple[np.ndarray, int]:
    """(the lesions of a mask array (> 0 = lesion) labelled 1..n as LESION_CONNECTIVITY-connected components, n)."""
    import cc3d

    binary = (np.asarray(mask) > 0).astype(np.uint8)
    return cc3d.connected_components(binary, connectivity=LESION_CONNECTIVITY, return_N=True)


def same_grid(shape_a, affine_a, shape_b, affine_b, atol_mm: float = GRID_ATOL_MM) -> bool:
    """Whether two images share one voxel grid (shape and affine)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol_mm, rtol=0)


def in_voxel_order_of(volume, reference, atol_mm: float = GRID_ATOL_MM):
    """``volume`` in ``reference``'s voxel order when it is the same grid stored in another order (axes permuted or
    flipped, as some tools save a mask: the same voxels, no resampling); otherwise ``volume`` unchanged."""
    from nibabel import orientations as ornt

    if same_grid(volume.shape, volume.affine, reference.shape, reference.affine, atol_mm):
        return volume
    transform = ornt.ornt_transform(ornt.io_orientation(volume.affine), ornt.io_orientation(reference.affine))
    array = ornt.apply_orientation(np.asarray(volume.array), transform)
    affine = volume.affine @ ornt.inv_ornt_aff(transform, volume.shape)
    if not same_grid(array.shape, affine, reference.shape, reference.affine, atol_mm):
        return volume
    from .volume import Volume

    return Volume(np.ascontiguousarray(array), reference.affine.copy(), volume.source, reference.header,
                  dict(volume.meta))


def check_same_grid(volume, reference, *, reference_name: str = "the reference", atol_mm: float = GRID_ATOL_MM) -> None:
    """Refuse a volume that is not voxel-aligned with ``reference`` (a mask with its PET, a prediction with its truth)."""
    if tuple(volume.shape) != tuple(reference.shape):
        raise PetCtInputError(volume.source, f"shape {volume.shape} differs from {reference_name} grid "
                                             f"{reference.shape} ({reference.source})")
    if not same_grid(volume.shape, volume.affine, reference.shape, reference.affine, atol_mm):
        raise PetCtInputError(
            volume.source,
            f"affine differs from {reference_name} grid ({reference.source}) by up to "
            f"{np.abs(volume.affine - reference.affine).max():.4g} mm: not on the same grid",
        )


def peek_grid(source) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """(shape, RAS affine) of a Volume, or of an image file from its header alone; None when not cheaply known
    (DICOM folders: their slices are counted by the reader)."""
    from .volume import Volume

    if isinstance(source, Volume):
        return source.shape, source.affine
    name = Path(source).name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            img = nib.load(str(source))
            if len(img.shape) < 3:
                return None  # 2-D: the reader refuses it, with its own message
            return tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, float)
        if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(source))
            reader.ReadImageInformation()
            if reader.GetDimension() < 3:
                return None
            affine = np.eye(4)
            direction = np.asarray(reader.GetDirection(), float).reshape(reader.GetDimension(), -1)[:3, :3]
            affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(reader.GetSpacing()[:3])
            affine[:3, 3] = LPS_TO_RAS @ np.asarray(reader.GetOrigin()[:3], float)
            return tuple(int(n) for n in reader.GetSize()[:3]), affine
    except Exception:  # unreadable headers are reported by the reader itself, with its own message
        return None
    return None
