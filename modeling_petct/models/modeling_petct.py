"""petct-fm models: the backbone (PetCtModel), the masked autoencoder and the segmentation model.

Layout of every checkpoint: petct.backbone.* (the MONAI / nnU-Net network without its output conv, see
backbones.py) plus one task head, the final 1x1x1 convolution: reconstruction_head or segmentation_head.
Shipped flat as Hub remote code: relative imports among the four model files only.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .backbones import backbone_features, build_backbone, output_channels
from .configuration_petct import PetCtConfig
from .masking import impute, random_block_mask, weighted_reconstruction_loss

logger = logging.get_logger(__name__)

GUIDANCE_FIELDS = ("guidance_channels", "guidance_encoding", "guidance_size")  # PetCtConfig's click-guidance fields


@dataclass
class PetCtModelOutput(ModelOutput):
    """last_hidden_state: final decoder feature map (B, F, D, H, W), the input of the output conv.
    encoder_hidden_states: encoder feature maps from full resolution down to the bottleneck."""

    last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class PetCtMaskedImageModelingOutput(ModelOutput):
    """loss: weighted masked/visible MSE. reconstruction: (B, C, D, H, W). mask: (B, C, D, H, W), 1 = masked."""

    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass
class PetCtSegmentationOutput(ModelOutput):
    """loss: lesion DiceCE (+ organ_loss_weight x organ DiceCE when organ labels were given). logits: lesion classes
    (B, num_labels, D, H, W). organ_logits: (B, 1 + len(config.organ_labels), D, H, W), class 0 = other tissue, for
    organ-aware models only. lesion_loss / organ_loss: the two terms, for logging."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    organ_logits: torch.Tensor | None = None
    lesion_loss: torch.Tensor | None = None
    organ_loss: torch.Tensor | None = None


class PetCtOutputConv(nn.Conv3d):
    """The final 1x1x1 convolution of a task head (the only trainable part when the backbone is frozen)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)


class PetCtPreTrainedModel(PreTrainedModel):
    config_class = PetCtConfig
    base_model_prefix = "petct"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise only what petct-fm adds; the MONAI / nnU-Net backbone keeps its library's own init.

        The output conv follows its backbone's original init: PyTorch's default (MONAI) or He (nnU-Net)."""
        if isinstance(module, PetCtOutputConv):
            if self.config.is_swin:
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                bound = 1 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)
            else:
                init.kaiming_normal_(module.weight, a=1e-2)
                init.zeros_(module.bias)

    # Every Auto class that loads this class's checkpoints, {auto class: "module.Class"}: set by petct-fm's
    # registration (models/registry.auto_map); register_for_auto_class alone writes one entry.
    hub_auto_map: dict[str, str] | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained, plus config.json's auto_map completed from ``hub_auto_map`` (so
        ``AutoModel`` loads the backbone of a task checkpoint), and the weights given the mode the umask gives any
        new file (safetensors creates them 0600). A re-save of a remote-code model keeps the auto_map it loaded."""
        if self.hub_auto_map and self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self.hub_auto_map}
        super().save_pretrained(save_directory, *args, **kwargs)
        umask = os.umask(0)
        os.umask(umask)
        for weights in Path(save_directory).glob("*.safetensors"):
            weights.chmod(0o666 & ~umask)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=checkpoint, **kwargs):
        """transformers' switch (used around the nnU-Net stages) plus MONAI's own inside the Swin blocks."""
        super()._set_gradient_checkpointing(enable, gradient_checkpointing_func, **kwargs)
        for module in self.modules():
            if hasattr(module, "use_checkpoint"):
                module.use_checkpoint = enable

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' from_pretrained, also logging which weights were freshly initialised (e.g. a segmentation
        head on top of an MAE backbone) and applying config.freeze_backbone to segmentation models. Guidance fields
        among the overrides (``guidance_channels=2``, ...) go through ``with_guidance``, so a checkpoint without
        click inputs loads into a model with them."""
        want_info = kwargs.pop("output_loading_info", False)
        guidance = {name: kwargs.pop(name) for name in GUIDANCE_FIELDS if name in kwargs}
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if info["missing_keys"]:
            logger.info("%s: newly initialised (not in the checkpoint): %s", cls.__name__, sorted(info["missing_keys"]))
        if guidance:
            model = model.with_guidance(**guidance)
        if model.config.freeze_backbone and hasattr(model, "freeze_backbone"):
            model.freeze_backbone()  # loading re-creates the parameters, trainable
        return (model, info) if want_info else model

    def with_guidance(self, guidance_channels: int = 2, guidance_encoding: str | None = None,
                      guidance_size: float | None = None) -> "PetCtPreTrainedModel":
        """This model taking ``guidance_channels`` click maps after its image channels.

        A model without click inputs gets new input weights of zero for them: every weight is kept, so at zero clicks
        (all-zero maps) it predicts what it predicted before, and training moves the new weights from there. With
        the same number of channels only the encoding fields change."""
        config = copy.deepcopy(self.config)
        config.guidance_channels = guidance_channels
        config.guidance_encoding = guidance_encoding or config.guidance_encoding
        config.guidance_size = guidance_size or config.guidance_size
        config.validate()
        if guidance_channels == self.config.guidance_channels:
            self.config = config
            return self
        if self.config.guidance_channels:
            raise ValueError(f"this model already takes {self.config.guidance_channels} guidance channels; it cannot "
                             f"be changed to {guidance_channels}")
        model = type(self)(config)
        model.load_state_dict(_widened_inputs(self.state_dict(), model.state_dict(), self.config.in_channels))
        return model.to(device=self.device, dtype=self.dtype).train(self.training)


class PetCtModel(PetCtPreTrainedModel):
    """The backbone alone: multi-scale encoder features and the final decoder feature map."""

    _keys_to_ignore_on_load_unexpected = [r"^(reconstruction|segmentation|organ)_head\.", r"^mask_token$"]

    def __init__(self, config: PetCtConfig):
        super().__init__(config)
        self.backbone = build_backbone(config)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> PetCtModelOutput:
        if pixel_values.ndim != 5 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(f"pixel_values must be (B, {self.config.in_channels}, D, H, W) for modalities "
                             f"{self.config.modalities} and {self.config.guidance_channels} guidance channels, got "
                             f"{tuple(pixel_values.shape)}")
        spatial, divisors = tuple(pixel_values.shape[2:]), self.config.size_divisors
        if any(s % d for s, d in zip(spatial, divisors)) or math.prod(s // d for s, d in zip(spatial, divisors)) < 2:
            raise ValueError(f"spatial size {spatial} must be divisible by config.size_divisors={divisors} and leave "
                             f"more than one bottleneck voxel (e.g. {self.config.min_input_size} along one axis)")
        if not torch.is_autocast_enabled(pixel_values.device.type):
            pixel_values = pixel_values.to(self.dtype)
        checkpoint_fn = self._gradient_checkpointing_func if self.gradient_checkpointing and self.training else None
        encoder_states, decoded = backbone_features(self.config, self.backbone, pixel_values, checkpoint_fn)
        return PetCtModelOutput(last_hidden_state=decoded, encoder_hidden_states=encoder_states)


class PetCtForMaskedImageModeling(PetCtPreTrainedModel):
    """Masked autoencoder (METHOD.md): block-masked input, the whole UNet reconstructs every channel."""

    _keys_to_ignore_on_load_unexpected = [r"^(segmentation|organ)_head\."]

    def __init__(self, config: PetCtConfig):
        if config.guidance_channels:
            raise ValueError("PetCtConfig.guidance_channels: a masked autoencoder reconstructs images; it takes no "
                             "click guidance")
        super().__init__(config)
        self.petct = PetCtModel(config)
        self.reconstruction_head = PetCtOutputConv(output_channels(config), config.num_channels)
        token_shape = (1, config.num_channels, 1, 1, 1)
        self.mask_token = nn.Parameter(torch.zeros(token_shape)) if config.imputation == "token" else None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The shared heads' init, and the learnable mask token, which starts as the paper's zero imputation."""
        super()._init_weights(module)
        if module is self and self.mask_token is not None:
            init.zeros_(self.mask_token)

    def forward(
        self,
        pixel_values: torch.Tensor,
        mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        **kwargs,
    ) -> PetCtMaskedImageModelingOutput:
        """mask (B, C, D, H, W), 1 = masked, or noise (see masking.random_block_mask) make the masking deterministic."""
        cfg = self.config
        if mask is None:
            mask = random_block_mask(
                pixel_values.shape, cfg.mask_cell_size, cfg.mask_ratio,
                independent_channels=cfg.independent_channel_masks, noise=noise, device=pixel_values.device,
            )
        mask = mask.to(device=pixel_values.device, dtype=torch.float32)
        masked_input = impute(pixel_values, mask, self.mask_token)
        hidden = self.petct(masked_input).last_hidden_state
        reconstruction = self.reconstruction_head(hidden)
        loss = weighted_reconstruction_loss(
            reconstruction, pixel_values, mask, cfg.masked_loss_weight, cfg.visible_loss_weight
        )
        return PetCtMaskedImageModelingOutput(loss=loss, reconstruction=reconstruction, mask=mask)


class PetCtForSegmentation(PetCtPreTrainedModel):
    """Lesion segmentation: backbone + a fresh 1x1x1 segmentation head, DiceCE loss (softmax, one-hot labels).

    Organ-aware models (``config.organ_labels`` non-empty) get a second 1x1x1 head on the same decoder features,
    ``organ_head`` (other tissue + one class per organ), trained with its own DiceCE added to the lesion loss with
    weight ``config.organ_loss_weight``. Why a second head rather than one multi-class output (autoPET II's winner
    BAMF added 8 organ classes to nnU-Net's single softmax): lesions lie inside organs (liver, bone, lung
    metastases), so one softmax forces "lesion or liver" per voxel and changes the lesion probability the paper's
    protocol thresholds; autoPET III's winner LesionTracer treats organ supervision as a separate task (multitask).
    A second head keeps the lesion head, its loss, its logits and its checkpoint keys exactly those of the
    lesion-only model (which stays the default), and lets organ and lesion overlap. The organ DiceCE is computed
    over the batch and without the "other" class (nnU-Net's batch Dice), so crops missing an organ do not dominate.
    """

    _keys_to_ignore_on_load_unexpected = [r"^reconstruction_head\.", r"^mask_token$"]

    def __init__(self, config: PetCtConfig):
        super().__init__(config)
        self.petct = PetCtModel(config)
        self._build_heads(output_channels(config))
        self.post_init()
        if config.freeze_backbone:
            self.freeze_backbone()

    def _build_heads(self, channels: int) -> None:
        """The output convolution(s) and their losses, built once (not per forward)."""
        config = self.config
        self.segmentation_head = PetCtOutputConv(channels, config.num_labels)
        self.lesion_loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=not config.batch_dice,
                                         batch=config.batch_dice)
        organs = tuple(getattr(config, "organ_labels", ()) or ())
        self.organ_head = PetCtOutputConv(channels, 1 + len(organs)) if organs else None
        self.organ_loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False,
                                        batch=True) if organs else None

    def freeze_backbone(self) -> None:
        """Freeze everything but the output heads (segmentation_head, and organ_head when present), the final 1x1x1
        convs (k-shot linear probing). The frozen backbone also stays in eval mode (no stochastic depth), so the
        probe sees fixed features."""
        for name, param in self.named_parameters():
            param.requires_grad = name.startswith(("segmentation_head.", "organ_head."))
        self._backbone_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_backbone_frozen", False):
            self.petct.eval()
        return self

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
        organ_labels: torch.Tensor | None = None, **kwargs
    ) -> PetCtSegmentationOutput:
        """labels: lesion class map (B, D, H, W) or (B, 1, D, H, W). organ_labels: organ map of the same shape, values
        0..len(config.organ_labels) in that order (organ-aware models; adds the organ term to the loss)."""
        hidden = self.petct(pixel_values).last_hidden_state
        logits = self.segmentation_head(hidden)
        organ_logits = self.organ_head(hidden) if self.organ_head is not None else None
        lesion_loss = organ_loss = None
        if labels is not None:
            lesion_loss = self.lesion_loss_fn(logits.float(), _channel_labels(labels, logits))
        if organ_labels is not None:
            if organ_logits is None:
                raise ValueError("organ_labels given, but this model has no organ head (config.organ_labels is empty)")
            organ_loss = self.organ_loss_fn(organ_logits.float(), _channel_labels(organ_labels, organ_logits))
        terms = [t for t in (lesion_loss, None if organ_loss is None else self.config.organ_loss_weight * organ_loss)
                 if t is not None]
        return PetCtSegmentationOutput(loss=sum(terms) if terms else None, logits=logits, organ_logits=organ_logits,
                                       lesion_loss=lesion_loss, organ_loss=organ_loss)


def _widened_inputs(source: dict, target: dict, source_channels: int) -> dict:
    """``source`` weights in the shapes of ``target``: an input-layer weight with more input channels in ``target``
    keeps its first ``source_channels`` and gets zeros for the rest; every other tensor must match exactly."""
    out = {}
    for key, tensor in target.items():
        old = source[key]
        if old.shape != tensor.shape:
            if old.shape[1] != source_channels or old.shape[:1] + old.shape[2:] != tensor.shape[:1] + tensor.shape[2:]:
                raise ValueError(f"{key}: shape {tuple(old.shape)} cannot become {tuple(tensor.shape)}")
            old = torch.cat([old, old.new_zeros((old.shape[0], tensor.shape[1] - old.shape[1], *old.shape[2:]))], 1)
        out[key] = old
    return out


def _channel_labels(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A (B, D, H, W) or (B, 1, D, H, W) class map as (B, 1, D, H, W) on the logits' device."""
    return (labels.unsqueeze(1) if labels.ndim == 4 else labels).to(logits.device)


__all__ = [
    "PetCtPreTrainedModel", "PetCtModel", "PetCtForMaskedImageModeling", "PetCtForSegmentation",
    "PetCtModelOutput", "PetCtMaskedImageModelingOutput", "PetCtSegmentationOutput",
]
