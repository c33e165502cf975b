"""A guidance model on one harmonised study: clicks on its grid in, lesion probabilities and mask on that grid out.

The image stays as harmonised; only the click maps change from one call to the next (data.clicks.encode_voxels, the
encoding the model was trained with, read from its config).
"""

from __future__ import annotations

import numpy as np

from ..data.clicks import encode_voxels
from .segment import LesionFilter
from .sliding_window import InferenceSettings, predict_probabilities


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
        return self.lesion_filter.apply(probs.argmax(0).astype(np.uint8), 1.0 - probs[0], voxel_ml)
