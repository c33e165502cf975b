"""An ensemble of segmentation networks of one architecture whose logits are averaged (nnU-Net's fold ensemble).

One config.json (PetCtEnsembleConfig: the members' shared PetCtConfig plus ``ensemble_size``) and one
model.safetensors (``members.<i>.*``, each a PetCtForSegmentation). For inference only: training a member is
training a PetCtForSegmentation. Shipped flat with the other model files: relative imports among model files only.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_petct import PetCtEnsembleConfig
from .modeling_petct import PetCtForSegmentation, PetCtPreTrainedModel, PetCtSegmentationOutput


class PetCtEnsembleForSegmentation(PetCtPreTrainedModel):
    """``ensemble_size`` PetCtForSegmentation members; logits (and organ logits) are their mean."""

    config_class = PetCtEnsembleConfig

    def __init__(self, config: PetCtEnsembleConfig):
        super().__init__(config)
        self.members = nn.ModuleList(PetCtForSegmentation(config) for _ in range(config.ensemble_size))
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels=None, organ_labels=None, **kwargs) -> PetCtSegmentationOutput:
        if labels is not None or organ_labels is not None:
            raise ValueError("an ensemble is for inference: train its members (PetCtForSegmentation) one by one")
        outputs = [member(pixel_values) for member in self.members]
        organs = [o.organ_logits for o in outputs if o.organ_logits is not None]
        return PetCtSegmentationOutput(logits=torch.stack([o.logits for o in outputs]).mean(0),
                                       organ_logits=torch.stack(organs).mean(0) if organs else None)


__all__ = ["PetCtEnsembleConfig", "PetCtEnsembleForSegmentation"]
