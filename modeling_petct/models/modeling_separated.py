"""Separated-modality linear probe (METHOD.md): a PET-only and a CT-only MAE backbone, frozen, their final decoder
feature maps concatenated, and only a fresh 1x1x1 output convolution trained.

It is the separated counterpart of `PetCtForSegmentation` with `freeze_backbone()`: same input (channel 0 PET,
channel 1 CT), same output, same DiceCE loss, so data, training and inference code treat both alike. Its config,
`PetCtSeparatedConfig` (configuration_petct.py), is a `PetCtConfig` (the PET backbone's fields, modalities
("PET", "CT")) holding both backbones' configs as plain dicts: one config.json and one model.safetensors, and every
reader of crop_size / target_spacing / normalization / modalities works unchanged. Shipped flat with the other model
files: relative imports among model files only.
"""

from __future__ import annotations

import torch

from .backbones import output_channels
from .configuration_petct import PetCtSeparatedConfig
from .modeling_petct import PetCtForSegmentation, PetCtModel, PetCtModelOutput, PetCtPreTrainedModel


class PetCtSeparatedModel(PetCtPreTrainedModel):
    """The two backbones: channel 0 -> the PET backbone, channel 1 -> the CT backbone; decoder features concatenated
    (PET first). What ``AutoModel`` returns for a separated probe's checkpoint (its ``petct``)."""

    config_class = PetCtSeparatedConfig
    _keys_to_ignore_on_load_unexpected = [r"^(segmentation|organ)_head\."]

    def __init__(self, config: PetCtSeparatedConfig):
        super().__init__(config)
        self.pet = PetCtModel(config.pet_backbone_config)
        self.ct = PetCtModel(config.ct_backbone_config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> PetCtModelOutput:
        if pixel_values.ndim != 5 or pixel_values.shape[1] != 2:
            raise ValueError(f"pixel_values must be (B, 2, D, H, W), channel 0 PET and 1 CT, got {tuple(pixel_values.shape)}")
        pet = self.pet(pixel_values[:, :1]).last_hidden_state
        ct = self.ct(pixel_values[:, 1:]).last_hidden_state
        return PetCtModelOutput(last_hidden_state=torch.cat([pet, ct.to(pet.dtype)], dim=1))


class PetCtForSeparatedModalityProbe(PetCtForSegmentation):
    """Linear probe on two frozen single-modality backbones; forward, loss, freezing and eval-mode backbone are
    PetCtForSegmentation's own (its `petct` here is the pair of backbones)."""

    config_class = PetCtSeparatedConfig

    def __init__(self, config: PetCtSeparatedConfig):
        if config.pet_config is None or config.ct_config is None:
            raise ValueError("PetCtSeparatedConfig needs pet_config and ct_config (see from_pretrained_pair)")
        PetCtPreTrainedModel.__init__(self, config)  # not PetCtForSegmentation's: no joint backbone here
        self.petct = PetCtSeparatedModel(config)
        channels = output_channels(config.pet_backbone_config) + output_channels(config.ct_backbone_config)
        self._build_heads(channels)  # PetCtForSegmentation's heads and losses (the organ head when organ-aware)
        self.post_init()
        self.freeze_backbone()

    @classmethod
    def from_pretrained_pair(cls, pet_dir, ct_dir, **config_overrides) -> PetCtForSeparatedModalityProbe:
        """The probe on a PET-only and a CT-only checkpoint (MAE or backbone folders); the head is freshly initialised."""
        pet, ct = PetCtModel.from_pretrained(pet_dir), PetCtModel.from_pretrained(ct_dir)
        for path, model, modality in ((pet_dir, pet, "PET"), (ct_dir, ct, "CT")):
            if tuple(model.config.modalities) != (modality,):
                raise ValueError(f"{path}: expected a {modality}-only model (modalities ('{modality}',)), "
                                 f"got {model.config.modalities}")
        config = PetCtSeparatedConfig.from_backbone_configs(pet.config, ct.config, **config_overrides)
        probe = cls(config)
        probe.petct.pet.load_state_dict(pet.state_dict())
        probe.petct.ct.load_state_dict(ct.state_dict())
        return probe


__all__ = ["PetCtSeparatedConfig", "PetCtSeparatedModel", "PetCtForSeparatedModalityProbe"]
