"""Pictures of a PET/CT study and its lesion mask, as RGB arrays (for the demo, reports, notebooks).

Views follow the radiological convention whatever the file's voxel order: volumes are first reoriented (flips and
axis swaps only, no resampling) to the closest RAS+ voxel order, then shown with the patient's right on the viewer's
left, superior (coronal) or anterior (axial) at the top, and stretched so that a pixel is square in millimetres.
With ``annotate=True`` (the demo) a picture also carries what a reader needs to trust it: lesion numbers beside the
outlines (the ids of the lesion table), R/L and head/foot (or anterior/posterior) markers, the slice position in DICOM
patient millimetres and an SUV colour bar for the display window.
"""

from __future__ import annotations

from functools import lru_cache

import nibabel as nib
import numpy as np
from matplotlib import colormaps
from scipy import ndimage

from ..data.volume import Volume

PLANES = ("axial", "coronal")
_VIEW_AXIS = {"axial": 2, "coronal": 1}  # the RAS+ voxel axis a view looks along
CT_WINDOW = (-160.0, 240.0)  # soft tissue: level 40 HU, width 400 HU
OUTLINE = (0, 150, 255)  # one outline colour on every view: reads on the white MIP, grey CT and hot PET alike
_TEXT, _HALO = (255, 255, 255), (0, 0, 0)
_BAR_ROWS = 30
_SIDES = {"axial": ("A", "P"), "coronal": ("H", "F")}  # top, bottom of the picture


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


def pet_mip_overlay(
    suv: Volume, mask: Volume | None = None, *, suv_max: float = 10.0, height: int = 480, annotate: bool = False
) -> np.ndarray:
    """Coronal maximum-intensity projection of the PET (inverted grey, 0..``suv_max`` SUV) with lesions outlined.

    Returns uint8 RGB (height, width, 3), plus a colour bar strip below when ``annotate``. ``mask`` must be on the PET
    grid (as segmentation outputs are); a label image (lesion ids) is numbered when ``annotate``.
    """
    _check_grid(suv, mask)
    pet = to_ras(suv)
    spacing = pet.spacing
    rc = (spacing[2], spacing[0])
    mip = _view(np.asarray(pet.array, dtype=np.float32).max(axis=1))
    image = _rgb(1.0 - _square_pixels(mip, rc, height, order=1) / suv_max)
    labels = None
    if mask is not None:
        projected = _view(np.asarray(to_ras(mask).array).astype(np.int32).max(axis=1))
        labels = _square_pixels(projected, rc, height, order=0)
        image[_outline(labels > 0)] = OUTLINE
    if not annotate:
        return image
    bar = 1.0 - np.linspace(0.0, 1.0, 256)
    return _annotated(image, labels, "coronal", "PET MIP", _rgb(bar)[None], suv_max)


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
    annotate: bool = False,
) -> np.ndarray:
    """One axial or coronal PET-over-CT slice (CT grey, soft-tissue window; PET "hot", more opaque where hotter)
    with the lesion mask outlined (``OUTLINE``). ``ct`` and ``mask`` must be on the PET grid (see ``resample_like``);
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
    image = _fuse(np.clip((take(ct, 1) - lo) / (hi - lo), 0.0, 1.0), np.clip(take(suv, 1) / suv_max, 0.0, 1.0))
    labels = None
    if mask is not None:
        labels = np.rint(take(mask, 0)).astype(np.int32)
        image[_outline(labels > 0)] = OUTLINE
    if not annotate:
        return image
    bar = _fuse(np.full(256, 0.5), np.linspace(0.0, 1.0, 256))[None]  # PET hues over mid-grey CT, as on the slice
    return _annotated(image, labels, plane, slice_position(pet, plane, index), bar, suv_max)


def slice_voxel(volume: Volume, plane: str, index: int, x: float, y: float, height: int = 400):
    """The voxel (i, j, k of ``volume``'s own array) under pixel (``x`` column, ``y`` row) of ``fused_slice(volume,
    ..., plane=plane, index=index, height=height)``; None on the colour bar or outside the picture. The inverse of
    that picture's layout: RAS+ reorientation, radiological view, square-pixel zoom."""
    ras = to_ras(volume)
    axis = _VIEW_AXIS[_plane(plane)]
    in_plane = [a for a in range(3) if a != axis]  # (left-right, the other) axes of the slab, RAS order
    n_rows, n_cols = ras.shape[in_plane[1]], ras.shape[in_plane[0]]
    spacing = ras.spacing
    zoom_r = height / n_rows
    zoom_c = spacing[0] * height / (n_rows * (spacing[2] if plane == "coronal" else spacing[1]))
    out_rows, out_cols = round(n_rows * zoom_r), round(n_cols * zoom_c)
    if not (0 <= x < out_cols and 0 <= y < out_rows):
        return None
    row = min(n_rows - 1, int((y + 0.5) * n_rows / out_rows))
    col = min(n_cols - 1, int((x + 0.5) * n_cols / out_cols))
    voxel = [0, 0, 0]
    voxel[axis], voxel[in_plane[0]], voxel[in_plane[1]] = int(index), n_cols - 1 - col, n_rows - 1 - row
    world = ras.affine[:3, :3] @ voxel + ras.affine[:3, 3]
    native = np.linalg.solve(volume.affine[:3, :3], world - volume.affine[:3, 3])
    return tuple(int(v) for v in np.clip(np.rint(native), 0, np.asarray(volume.shape) - 1))


def _fuse(ct_gray01: np.ndarray, heat01: np.ndarray) -> np.ndarray:
    """PET "hot" over grey CT, more opaque where hotter; uint8 RGB."""
    alpha = (0.8 * np.sqrt(heat01))[..., None]
    blended = (1 - alpha) * ct_gray01[..., None] + alpha * colormaps["hot"](heat01)[..., :3]
    return (blended * 255).astype(np.uint8)


def slice_position(volume_ras: Volume, plane: str, index: int) -> str:
    """Where a slice lies, in DICOM patient millimetres (what a PET/CT viewer shows): "z 830 mm", "A 12 mm"."""
    axis = _VIEW_AXIS[_plane(plane)]
    ijk = (np.array(volume_ras.shape[:3], dtype=float) - 1) / 2
    ijk[axis] = index
    world_ras = volume_ras.affine[:3, :3] @ ijk + volume_ras.affine[:3, 3]
    if plane == "axial":
        return f"z {world_ras[2]:.0f} mm"
    return f"{'A' if world_ras[1] >= 0 else 'P'} {abs(world_ras[1]):.0f} mm"


@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _annotated(image, labels, plane: str, corner: str, bar_rgb: np.ndarray, suv_max: float) -> np.ndarray:
    """``image`` with lesion numbers, orientation markers, ``corner`` text and an SUV colour bar strip below."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    canvas = Image.new("RGB", (w, h + _BAR_ROWS), (0, 0, 0))
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font, small, number = _font(max(12, h // 28)), _font(max(11, h // 34)), _font(max(16, h // 22))

    def text(xy, value, fill=_TEXT, anchor="la", f=font, stroke=2):
        draw.text(xy, value, fill=fill, font=f, anchor=anchor, stroke_width=stroke, stroke_fill=_HALO)

    if labels is not None:
        for lesion_id, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:  # beside the outline's top-right corner, kept inside the picture
                x = min(box[1].stop + 3, w - 4)
                y = max(box[0].start - 2, 2)
                text((x, y), str(lesion_id), fill=OUTLINE, anchor="ra" if x >= w - 20 else "la", f=number, stroke=1)
    top, bottom = _SIDES[plane]
    text((4, h // 2), "R", anchor="lm")
    text((w - 4, h // 2), "L", anchor="rm")
    text((w // 2, 3), top, anchor="ma")
    text((w // 2, h - 3), bottom, anchor="md")
    text((4, 3), corner, f=small)
    left, right = 34, w - 64
    strip = np.asarray(Image.fromarray(bar_rgb).resize((max(right - left, 8), 10)))
    canvas.paste(Image.fromarray(strip), (left, h + 4))
    text((left - 4, h + 9), "0", anchor="rm", f=small)
    text((right + 4, h + 9), f"{suv_max:g} SUV", anchor="lm", f=small)
    text(((left + right) // 2, h + _BAR_ROWS - 1), f"{suv_max / 2:g}", anchor="md", f=small)
    return np.asarray(canvas)


def _plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
    return plane


def _check_grid(reference: Volume, other: Volume | None) -> None:
    if other is None:
        return
    from ..data.geometry import same_grid

    if not same_grid(other.shape, other.affine, reference.shape, reference.affine):
        raise ValueError(f"{other.source} (grid {other.shape}) is not on the PET grid {reference.shape}: resample it")
