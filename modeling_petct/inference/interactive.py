"""A guidance model on one harmonised study: clicks on its grid in, lesion probabilities and mask on that grid out.

The image stays as harmonised; only the click maps change from one call to the next (data.clicks.encode_voxels, the
encoding the model was trained with, read from its config). ``ClickPredictor`` re-runs the whole study (the
benchmarks' reference); ``ClickRefiner`` (the Space) re-runs only the windows a change of clicks touches
(window_update.py). The model's LesionFilter (chosen without clicks, on
validation) never drops a component the user clicked as a lesion: the user's word is final.
"""

from __future__ import annotations

import numpy as np

from ..data.clicks import encode_voxels
from .segment import LesionFilter, native_lesion_mask, to_native_mask
from .sliding_window import InferenceSettings, predict_probabilities
from .window_update import influence_margin, update_probabilities

BATCH_VOXELS, MAX_BATCH = 2**20, 8  # a click's windows go through the network in batches of about a million voxels
# (8 windows of a tiny-unet, 1 of a 96x128x128 nnU-Net): 8 tiny-unet windows at once ran 2.5x faster than one by one


class ClickPredictor:
    """``predictor.mask(clicks)``: the model's lesion mask (uint8, harmonised grid) for clicks given as
    (channel, (z, y, x)) on that grid (channel 0 foreground, 1 background); the model's LesionFilter applies."""

    def __init__(self, model, image: np.ndarray, settings: InferenceSettings = InferenceSettings(), device="cpu"):
        if not model.config.guidance_channels:
            raise ValueError("this model takes no click guidance (config.guidance_channels is 0)")
        self.model, self.image, self.settings, self.device = model, image, settings, device
        self.lesion_filter = LesionFilter.of(model.config)

    def probabilities(self, clicks) -> np.ndarray:
        config = self.model.config
        maps = encode_voxels(clicks, self.image.shape[1:], config.guidance_encoding, config.guidance_size,
                             config.guidance_channels)
        return predict_probabilities(self.model, self.image, self.settings, device=self.device, guidance=maps)

    def mask(self, clicks, voxel_ml: float) -> np.ndarray:
        probs = self.probabilities(clicks)
        raw = probs.argmax(0).astype(np.uint8)
        return keep_clicked(self.lesion_filter.apply(raw, 1.0 - probs[0], voxel_ml), raw, clicks)


def keep_clicked(filtered: np.ndarray, raw: np.ndarray, clicks) -> np.ndarray:
    """``filtered`` plus every component of ``raw`` (the mask before the LesionFilter) under a foreground click."""
    lost = [zyx for channel, zyx in clicks if channel == 0 and raw[zyx] and not filtered[zyx]]
    if not lost:
        return filtered
    import cc3d

    from ..data.geometry import LESION_CONNECTIVITY

    labels = cc3d.connected_components((raw > 0).astype(np.uint8), connectivity=LESION_CONNECTIVITY)
    return np.where(np.isin(labels, [labels[zyx] for zyx in lost]), 1, filtered).astype(filtered.dtype)


class ClickRefiner:
    """A click-guided ``Segmenter`` on one harmonised study: ``refiner(clicks)`` (data.clicks.Click, world mm) gives
    its lesion mask on the native PET grid. Each call re-runs only the windows around the clicks that changed since
    the previous call (added or undone), starting from the probabilities without clicks; the click's reach
    (window_update.influence_margin) is measured once, here, so that no click waits for it."""

    def __init__(self, segmenter, study, probabilities: np.ndarray):
        from dataclasses import replace

        self.segmenter, self.study, self.probabilities = segmenter, study, probabilities
        self.maps = segmenter.guidance_maps(study, [])
        roi = segmenter.settings.roi_size or segmenter.model.config.crop_size
        batch = min(MAX_BATCH, max(segmenter.settings.sw_batch_size, BATCH_VOXELS // int(np.prod(roi))))
        self.settings = replace(segmenter.settings, sw_batch_size=batch)  # the few windows of a click: one pass
        self.margin = influence_margin(segmenter.model, study.image, self.settings, segmenter.device)
        self.region = None  # the harmonised-grid region the last call updated (None: nothing changed)
        self.lesion = None  # lesion probability on the PET grid, kept between clicks

    def __call__(self, clicks) -> np.ndarray:
        segmenter, study = self.segmenter, self.study
        maps = segmenter.guidance_maps(study, list(clicks))
        self.probabilities, self.region = update_probabilities(segmenter.model, study.image, self.probabilities,
                                                               self.maps, maps, self.margin, self.settings,
                                                               segmenter.device)
        self.maps = maps
        if self.probabilities.shape[0] != 2:
            return to_native_mask(study, self.probabilities, segmenter.lesion_filter)
        if self.lesion is None:  # the lesion probability on the PET grid, then only where a click changed it
            self.lesion = study.to_native(self.probabilities[1], order="linear", fill=0.0)
        elif self.region is not None:
            box = study.native_box(self.region)
            self.lesion[box] = study.to_native(self.probabilities[1], order="linear", fill=0.0, box=box)
        return native_lesion_mask(self.lesion, segmenter.lesion_filter, study.pet_affine)
