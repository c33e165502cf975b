"""Separated-modality linear probe (METHOD.md): a PET-only and a CT-only MAE backbone, frozen, their final decoder
feature maps concatenated, and only a fresh 1x1x1 output convolution trained.

It is the separated counterpart of `PetCtForSegmentation` with `freeze_backbone()`: same input (channel 0 PET,
channel 1 CT), same output, same DiceCE loss, so data, training and inference code treat both alike. The config is a
`PetCtConfig` (the PET backbone's fields, modalities ("PET", "CT")) holding both backbones' configs as plain dicts:
one config.json and one model.safetensors, and every reader of crop_size / target_spacing / normalization /
modalities works unchanged. Shipped flat like the four model files: relative imports among model files only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .backbones import output_channels
from .configuration_petct import PetCtConfig
from .modeling_petct import PetCtForSegmentation, PetCtModel, PetCtModelOutput, PetCtOutputConv, PetCtPreTrainedModel

_BACKBONE_ONLY_KEYS = ("model_type", "transformers_version", "architectures", "pet_config", "ct_config")


class PetCtSeparatedConfig(PetCtConfig):
    r"""PetCtConfig of a separated-modality probe.

    pet_config, ct_config: the PET-only and CT-only backbones' PetCtConfig as dicts (modalities ("PET",) and ("CT",)).
    The top-level backbone fields repeat the PET backbone's; modalities is ("PET", "CT"), the harmonised input order.
    freeze_backbone is always True: only the output convolution is ever trained.
    """

    model_type = "petct-separated"

    pet_config: dict | None = None
    ct_config: dict | None = None
    freeze_backbone: bool = True

    @classmethod
    def from_backbone_configs(cls, pet: PetCtConfig, ct: PetCtConfig, **overrides) -> PetCtSeparatedConfig:
        pet_dict, ct_dict = pet.to_dict(), ct.to_dict()
        shared = {k: v for k, v in pet_dict.items() if k not in _BACKBONE_ONLY_KEYS}
        return cls(**{**shared, "modalities": ("PET", "CT"), "freeze_backbone": True,
                      "pet_config": pet_dict, "ct_config": ct_dict, **overrides})

    @property
    def pet_backbone_config(self) -> PetCtConfig:
        return PetCtConfig.from_dict(self.pet_config)

    @property
    def ct_backbone_config(self) -> PetCtConfig:
        return PetCtConfig.from_dict(self.ct_config)

    @property
    def size_divisor(self) -> int:
        """Inputs go through both backbones, so they must suit both."""
        if self.pet_config is None or self.ct_config is None:
            return super().size_divisor
        return math.lcm(self.pet_backbone_config.size_divisor, self.ct_backbone_config.size_divisor)

    def _check(self) -> None:
        super()._check()
        if not self.freeze_backbone:
            raise ValueError("PetCtSeparatedConfig.freeze_backbone: the separated-modality model is a linear probe; "
                             "it must stay True")
        if tuple(self.modalities) != ("PET", "CT"):
            raise ValueError(f"PetCtSeparatedConfig.modalities: must be ('PET', 'CT'), got {self.modalities}")
        for name, modality in (("pet_config", "PET"), ("ct_config", "CT")):
            sub = getattr(self, name)
            if sub is not None and tuple(sub.get("modalities", ())) != (modality,):
                raise ValueError(f"PetCtSeparatedConfig.{name}: needs a {modality}-only backbone (modalities "
                                 f"('{modality}',)), got {sub.get('modalities')}")


class SeparatedBackbones(nn.Module):
    """Channel 0 -> the PET backbone, channel 1 -> the CT backbone; decoder features concatenated (PET first)."""

    def __init__(self, config: PetCtSeparatedConfig):
        super().__init__()
        self.pet = PetCtModel(config.pet_backbone_config)
        self.ct = PetCtModel(config.ct_backbone_config)

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
        self.petct = SeparatedBackbones(config)
        channels = output_channels(config.pet_backbone_config) + output_channels(config.ct_backbone_config)
        self.segmentation_head = PetCtOutputConv(channels, config.num_labels)
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


__all__ = ["PetCtSeparatedConfig", "PetCtForSeparatedModalityProbe"]
