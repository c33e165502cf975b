"""The Segmenter of a model imported from nnU-Net (config.nnunet): nnU-Net's own preprocessing and predictor on the
PET grid (inference/nnunet.py) in place of petct-fm's harmonised grid; reading, checks, lesion filter, organs and
outputs are every Segmenter's.

``Segmenter(model, settings, device)`` returns one for such a model. The settings pick the recipe: no window overlap
(``InferenceSettings.fast()``, ``petct segment --fast``) runs the approximate ``NnUNetRecipe.fast()``; anything else
runs nnU-Net's own (``NnUNetRecipe.parity()``: step 0.5, the checkpoint's mirroring). ``tta`` and the CPU backend do
not apply: nnU-Net's mirroring is part of its recipe.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from .nnunet import NnUNetRecipe, predict
from .segmenter import Segmenter


class NnUNetSegmenter(Segmenter):
    """A Segmenter that predicts as nnU-Net's predictor does (see the module docstring)."""

    def __init__(self, model, settings=None, device="cpu", *, name: str | None = None):
        super().__init__(model, settings, device, name=name)
        self.recipe = NnUNetRecipe.fast() if self.settings.overlap == 0 else NnUNetRecipe.parity()

    def predict_on_pet_grid(self, pet, ct, clicks, report, clock):
        """(mask, organ labels or None, None: no harmonised study, class probabilities (C, i, j, k) on the PET grid)."""
        label = "approximate nnU-Net recipe" if self.recipe.approximate else "nnU-Net's recipe"
        report(0.1, f"inference ({label})")
        probs, organs = predict(self.model, pet, ct, self.recipe, guidance=self._pet_grid_guidance(pet, clicks),
                                device=self.device,
                                on_window=lambda done, total: report(0.1 + 0.8 * done / total, f"window {done}/{total}"))
        clock.lap("inference_s")
        mask = self.lesion_filter.apply(np.argmax(probs, axis=0).astype(np.uint8), 1.0 - probs[0], pet.voxel_volume_ml)
        return pet.with_array(mask, modality="SEG", units="label"), organs, None, probs

    def _pet_grid_guidance(self, pet, clicks) -> np.ndarray | None:
        """Click maps on the PET grid (nnU-Net then normalises and resamples them like the images); None: no clicks."""
        if clicks is None:
            return None
        from ..data.clicks import encode_clicks

        config = self.model.config
        return encode_clicks(clicks, pet.affine, pet.shape, config.guidance_encoding, config.guidance_size)

    def provenance(self) -> dict:
        return {**super().provenance(), "method": "network (nnU-Net's predictor)", "nnunet_recipe": asdict(self.recipe)}
