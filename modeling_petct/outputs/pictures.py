"""Pictures of a PET/CT study and its lesion mask, as RGB arrays (for the demo, reports, notebooks).

Views follow the radiological convention whatever the file's voxel order: volumes are first reoriented (flips and
axis swaps only, no resampling) to the closest RAS+ voxel order, then shown with the patient's right on the viewer's
left, superior (coronal) or anterior (axial) at the top, and stretched so that a pixel is square in millimetres.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from matplotlib import colormaps
from scipy import ndimage

from ..data.volume import Volume

PLANES = ("axial", "coronal")
_VIEW_AXIS = {"axial": 2, "coronal": 1}  # the RAS+ voxel axis a view looks along
CT_WINDOW = (-160.0, 240.0)  # soft tissue: level 40 HU, width 400 HU
OUTLINE_MIP = (220, 20, 60)
OUTLINE_FUSED = (0, 255, 0)


def to_ras(volume: Volume) -> Volume:
    """The same image, voxel axes flipped/permuted to the closest RAS+ order (affine updated, values untouched)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    array = nib.orientations.apply_orientation(np.asarray(volume.array), ornt)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape)
    return Volume(np.ascontiguousarray(array), affine, volume.source, None, dict(volume.meta))


def resample_like(moving: Volume, reference: Volume, *, fill: float, nearest: bool = False) -> Volume:
    """``moving`` resampled (SimpleITK, world coordinates) onto ``reference``'s grid, e.g. a CT onto its PET grid."""
    import SimpleITK as sitk

    from ..data.io import sitk_to_volume, volume_to_sitk

    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    moving_img = volume_to_sitk(moving, np.asarray(moving.array, dtype=np.uint8 if nearest else np.float32))
    out = sitk.Resample(moving_img, volume_to_sitk(reference), sitk.Transform(), interp, float(fill))
    resampled = sitk_to_volume(out, moving.source)
    return reference.with_array(resampled.array, **moving.meta)


def _view(array_ras: np.ndarray) -> np.ndarray:
    """A 2-D (right-left, x, inferior-superior or posterior-anterior) slab -> screen rows/columns (radiological)."""
    return array_ras[::-1, ::-1].T


def _square_pixels(image: np.ndarray, spacing_rc: tuple[float, float], height: int, order: int) -> np.ndarray:
    """Resize so a pixel is square in mm and the picture is about ``height`` rows tall."""
    rows_mm = image.shape[0] * spacing_rc[0]
    scale = height / rows_mm
    zoom = (spacing_rc[0] * scale, spacing_rc[1] * scale)
    return ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)


def _outline(mask2d: np.ndarray) -> np.ndarray:
    """Pixels just outside the mask (so the outline never hides the lesion itself)."""
    return ndimage.binary_dilation(mask2d, iterations=2) & ~mask2d


def _rgb(gray01: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(gray01, 0.0, 1.0) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def pet_mip_overlay(suv: Volume, mask: Volume | None = None, *, suv_max: float = 10.0, height: int = 480) -> np.ndarray:
    """Coronal maximum-intensity projection of the PET (inverted grey, 0..``suv_max`` SUV) with lesions outlined.

    Returns uint8 RGB (height, width, 3). ``mask`` must be on the PET grid (as segmentation outputs are).
    """
    _check_grid(suv, mask)
    pet = to_ras(suv)
    spacing = pet.spacing
    rc = (spacing[2], spacing[0])
    mip = _view(np.asarray(pet.array, dtype=np.float32).max(axis=1))
    image = _rgb(1.0 - _square_pixels(mip, rc, height, order=1) / suv_max)
    if mask is not None:
        projected = _view((np.asarray(to_ras(mask).array) > 0).any(axis=1).astype(np.uint8))
        image[_outline(_square_pixels(projected, rc, height, order=0) > 0)] = OUTLINE_MIP
    return image


def slice_count(volume: Volume, plane: str) -> int:
    """How many ``plane`` slices ``volume`` has (the range of ``fused_slice``'s index)."""
    return to_ras(volume).shape[_VIEW_AXIS[_plane(plane)]]


def fused_slice(
    suv: Volume,
    ct: Volume,
    mask: Volume | None = None,
    *,
    plane: str = "axial",
    index: int | None = None,
    suv_max: float = 10.0,
    height: int = 400,
) -> np.ndarray:
    """One axial or coronal PET-over-CT slice (CT grey, soft-tissue window; PET "hot", more opaque where hotter)
    with the lesion mask outlined in green. ``ct`` and ``mask`` must be on the PET grid (see ``resample_like``);
    ``index`` counts slices in RAS+ order (inferior->superior, posterior->anterior), default the middle one."""
    _check_grid(suv, ct)
    _check_grid(suv, mask)
    axis = _VIEW_AXIS[_plane(plane)]
    pet = to_ras(suv)
    n = pet.shape[axis]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise IndexError(f"{plane} slice {index} is outside 0..{n - 1}")
    spacing = pet.spacing
    rc = (spacing[2] if plane == "coronal" else spacing[1], spacing[0])

    def take(vol: Volume, order: int) -> np.ndarray:
        plane_array = np.take(np.asarray(to_ras(vol).array, dtype=np.float32), index, axis=axis)
        return _square_pixels(_view(plane_array), rc, height, order)

    lo, hi = CT_WINDOW
    ct_gray = (take(ct, 1) - lo) / (hi - lo)
    heat = np.clip(take(suv, 1) / suv_max, 0.0, 1.0)
    alpha = (0.8 * np.sqrt(heat))[..., None]
    colour = colormaps["hot"](heat)[..., :3]
    blended = (1 - alpha) * np.clip(ct_gray, 0.0, 1.0)[..., None] + alpha * colour
    image = (blended * 255).astype(np.uint8)
    if mask is not None:
        image[_outline(take(mask, 0) > 0)] = OUTLINE_FUSED
    return image


def _plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
    return plane


def _check_grid(reference: Volume, other: Volume | None) -> None:
    if other is None:
        return
    if other.shape != reference.shape or not np.allclose(other.affine, reference.affine, atol=1e-3):
        raise ValueError(f"{other.source} (grid {other.shape}) is not on the PET grid {reference.shape}: resample it")
