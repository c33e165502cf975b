"""After a click, re-run only the sliding windows around it and paste them into the previous probabilities.

A click changes the guidance maps in a small box; the network's output moves around it, within its receptive field.
The updated region is that box grown by the click's reach: measured once per study (``influence_margin``: a click at
the hottest voxel of the study's central window, run with and without it), and grown per click while the lesion
probability on the region's faces still moves by more than ``MARGIN_TOLERANCE`` (a click that finds a large lesion
reaches further). Every window of the full run (MONAI's grid, ``window_starts``) that overlaps the region is re-run,
on the crop those windows span, by the same MONAI sliding window: its windows are exactly those of the full run
there, so inside the region every voxel gets the same windows, weights and blending as a full re-run (equal up to
float summation order). Outside it the previous probabilities are kept; a full re-run would differ there only by
the small window-wide shifts of normalisation layers (statistics over a whole window).
"""

from __future__ import annotations

import numpy as np

from .sliding_window import InferenceSettings, predict_probabilities

MARGIN_TOLERANCE = 0.02  # a lesion probability moving by less than this is outside a click's reach: at 1e-3 the
# normalisation layers' window-wide shift alone took the reach to a whole window (AutoPET-size phantom, measured)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """The start of each window along one axis, as MONAI's sliding-window inferer places them."""
    from monai.data.utils import dense_patch_slices

    size, roi = int(size), int(roi)
    if size <= roi:
        return [0]  # MONAI pads the image up to the roi: one window
    interval = max(1, int(roi * (1 - overlap)))
    return [s[0].start for s in dense_patch_slices([size], [roi], [interval])]


def changed_box(old: np.ndarray, new: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box (Z, Y, X) of the voxels where two sets of guidance maps (C, Z, Y, X) differ; None if equal."""
    where = np.argwhere(np.any(old != new, axis=0))
    if not len(where):
        return None
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0)))


def influence_margin(model, image: np.ndarray, settings: InferenceSettings = InferenceSettings(), device="cpu",
                     tolerance: float = MARGIN_TOLERANCE) -> tuple[int, int, int]:
    """How far (voxels per axis) beyond a click's guidance the lesion probability moves by more than ``tolerance``:
    a foreground and a background click of the model's encoding at the hottest voxel of the study's central window,
    each run against none (the larger reach of the two)."""
    from dataclasses import replace

    from ..data.clicks import encode_voxels

    config = model.config
    roi = [int(r) for r in (settings.roi_size or config.crop_size)]
    box = tuple(slice(max(0, (n - r) // 2), max(0, (n - r) // 2) + min(r, n)) for r, n in zip(roi, image.shape[1:]))
    window = image[(slice(None), *box)]  # one window of the study (MONAI pads it up to the roi where it is smaller)
    hot = tuple(int(i) for i in np.unravel_index(np.argmax(window[0]), window.shape[1:]))
    quiet = replace(settings, roi_size=tuple(roi), tta=False)
    before = predict_probabilities(model, window, quiet, device=device)[1]
    margin = np.zeros(3, int)
    for channel in range(config.guidance_channels):
        clicked = encode_voxels([(channel, hot)], window.shape[1:], config.guidance_encoding, config.guidance_size,
                                config.guidance_channels)
        after = predict_probabilities(model, window, quiet, device=device, guidance=clicked)[1]
        moved = np.argwhere(np.abs(after - before) > tolerance)
        if len(moved):
            stamped = changed_box(np.zeros_like(clicked), clicked)
            beyond = [max(span.start - moved[:, a].min(), moved[:, a].max() - (span.stop - 1))
                      for a, span in enumerate(stamped)]
            margin = np.maximum(margin, beyond)
    return tuple(int(m) for m in margin)


def update_probabilities(model, image: np.ndarray, previous: np.ndarray, old_maps: np.ndarray, new_maps: np.ndarray,
                         margin, settings: InferenceSettings = InferenceSettings(), device="cpu",
                         tolerance: float = MARGIN_TOLERANCE) -> tuple[np.ndarray, tuple[slice, ...] | None]:
    """(probabilities with ``new_maps``, the updated region): ``previous`` (those with ``old_maps``) with the
    windows around the changed guidance re-run and pasted in; the region is None when the maps did not change.

    The region is the changed box grown by ``margin`` voxels per axis; while the lesion probability on its faces
    (inside the image) still moved by more than ``tolerance``, the click reaches further (a large lesion found by
    it): the margin doubles and the windows are re-run."""
    changed = changed_box(old_maps, new_maps)
    if changed is None:
        return previous, None
    shape, margin = image.shape[1:], np.asarray(margin, int)
    while True:
        region = tuple(slice(int(max(0, c.start - m)), int(min(n, c.stop + m))) for c, m, n in zip(changed, margin, shape))
        probs = _rerun(model, image, new_maps, region, settings, device)
        if _faces_moved(probs[1], previous[1][region], region, shape) <= tolerance:
            break
        margin = 2 * margin + 2
    out = previous.copy()
    out[(slice(None), *region)] = probs
    return out, region


def _rerun(model, image: np.ndarray, maps: np.ndarray, region: tuple[slice, ...], settings: InferenceSettings,
           device) -> np.ndarray:
    """Probabilities inside ``region`` from every window of the full run's grid that overlaps it (the crop they
    span, by the same sliding window: the same windows, weights and blending there)."""
    roi = [int(r) for r in (settings.roi_size or model.config.crop_size)]
    crop = []
    for r, size, reg in zip(roi, image.shape[1:], region):
        starts = [s for s in window_starts(size, r, settings.overlap) if s < reg.stop and s + r > reg.start]
        crop.append(slice(starts[0], min(size, starts[-1] + r)))
    probs = predict_probabilities(model, image[(slice(None), *crop)], settings, device=device,
                                  guidance=maps[(slice(None), *crop)])
    inner = tuple(slice(reg.start - c.start, reg.stop - c.start) for reg, c in zip(region, crop))
    return probs[(slice(None), *inner)]


def _faces_moved(new: np.ndarray, old: np.ndarray, region: tuple[slice, ...], shape) -> float:
    """The largest change on the faces of ``region`` that lie inside the image (0 when it is the whole image)."""
    moved = 0.0
    for axis, (reg, n) in enumerate(zip(region, shape)):
        for face, inside in ((0, reg.start > 0), (-1, reg.stop < n)):
            if inside:
                moved = max(moved, float(np.abs(np.take(new, face, axis) - np.take(old, face, axis)).max()))
    return moved
