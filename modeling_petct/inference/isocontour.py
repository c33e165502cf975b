"""The classical interactive tool, for models without click inputs and as the interactive baseline: a foreground click
adds the hot region under it, cut at 41% of its SUVmax (the EANM isocontour for FDG tumour volumes); a background
click removes the lesion component under it.

Works on any grid given its voxel size per array axis (the native PET grid in the Space, the harmonised grid in
benchmarks); clicks are (channel, voxel index) with channel 0 foreground, 1 background.
"""

from __future__ import annotations

import numpy as np

ISOCONTOUR_FRACTION = 0.41
SEARCH_MM = 8.0  # the peak is the hottest voxel this close to the click (a click on a lesion's rim still finds it)
REACH_MM = 60.0  # the region stops this far from its peak, so a hot organ beside a lesion does not join it


def _box(centre, radius_mm: float, spacing, shape) -> tuple[slice, ...]:
    reach = [int(np.ceil(radius_mm / s)) for s in spacing]
    return tuple(slice(max(0, c - r), min(n, c + r + 1)) for c, r, n in zip(centre, reach, shape))


def isocontour_region(suv: np.ndarray, voxel, spacing, fraction: float = ISOCONTOUR_FRACTION) -> np.ndarray:
    """Boolean mask of the connected region >= ``fraction`` x the peak SUV near ``voxel`` that holds the peak."""
    from scipy import ndimage

    search = _box(voxel, SEARCH_MM, spacing, suv.shape)
    local = np.unravel_index(np.argmax(suv[search]), suv[search].shape)
    peak = tuple(int(i + s.start) for i, s in zip(local, search))
    box = _box(peak, REACH_MM, spacing, suv.shape)
    parts, _ = ndimage.label(suv[box] >= fraction * suv[peak], structure=np.ones((3, 3, 3)))
    region = np.zeros(suv.shape, bool)
    region[box] = parts == parts[tuple(p - s.start for p, s in zip(peak, box))]
    return region


def remove_component(mask: np.ndarray, voxel) -> np.ndarray:
    """``mask`` without the 18-connected lesion component at ``voxel`` (unchanged where ``voxel`` is background)."""
    import cc3d

    from ..data.geometry import LESION_CONNECTIVITY

    if not mask[tuple(voxel)]:
        return mask
    labels = cc3d.connected_components((mask > 0).astype(np.uint8), connectivity=LESION_CONNECTIVITY)
    return np.where(labels == labels[tuple(voxel)], 0, mask).astype(mask.dtype)


def isocontour_edit(mask: np.ndarray, suv: np.ndarray, clicks, spacing, *, where_missed: bool = False) -> np.ndarray:
    """``mask`` after the clicks in order: a foreground click adds its isocontour region, a background click removes
    the component under it. ``where_missed`` (the Space's rule after a click-guided model): a foreground click adds
    the region only where the mask holds none of it, so a lesion the model found keeps the model's outline (a click
    on its rim growing it by 41% of SUVmax into the hot tissue beside it cost Dice, measured) and a lesion it missed
    is still added."""
    out = np.asarray(mask, np.uint8).copy()
    for channel, voxel in clicks:
        if channel == 0:
            region = isocontour_region(suv, voxel, spacing)
            if not (where_missed and out[region].any()):
                out[region] = 1
        else:
            out = remove_component(out, voxel)
    return out
