"""PetCtConfig: everything needed to rebuild a petct-fm model (backbone, input, masking, loss, task).

Shipped flat as Hub remote code: imports only transformers (and its huggingface_hub). Strict like ViTMAEConfig:
`@strict` (huggingface_hub.dataclasses, what transformers 5's PreTrainedConfig is built on) refuses a value of the
wrong type at construction and on assignment, naming the field (StrictDataclassFieldValidationError); the value rules
are the `validate_*` methods, which `config.validate()` runs (strict collects every public `validate_*` method, the
base class's included). At construction they also run once directly, so a wrong value is a ValueError
"PetCtConfig.<field>: <problem>" rather than strict's wrapper around it.

No `from __future__ import annotations` here: strict checks types from the real annotations.
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

BACKBONES = ("swinunetr-v2", "plain-conv-unet", "residual-encoder-unet")
MODALITIES = ("PET", "CT")  # also the harmonised cache's channel order: channel 0 PET, channel 1 CT
IMPUTATIONS = ("zero", "token")
# MONAI's SwinUNETR patch merging: the authors' notebooks use "mergingv2"; MONAI's default "merging" has the very same
# parameters (names and shapes) but concatenates the 2x2x2 neighbours in another order, so outputs differ.
SWIN_DOWNSAMPLES = ("mergingv2", "merging")
LESION_CLASSES = ("background", "lesion")  # id2label of the lesion head
NORMALIZATIONS = ("zscore", "clinical", "none")
GUIDANCE_ENCODINGS = ("gaussian", "ball")  # click maps (data/clicks.py): Gaussian, or distance-transform ball
GUIDANCE_CHANNELS = (0, 2)  # none, or foreground + background click maps

_SWIN = {"backbone": "swinunetr-v2", "num_heads": (3, 6, 12, 24), "window_size": 7, "drop_path_rate": 0.05}
_CNN_6 = {"features_per_stage": (32, 64, 128, 256, 320, 320), "strides": (1, 2, 2, 2, 2, 2), "kernel_size": 3}

# The paper's networks (METHOD.md) and nnU-Net's ResEnc-L, plus tiny variants for tests and CPU smoke runs.
PRESETS: dict[str, dict] = {
    "swinunetr-v2-small": {**_SWIN, "feature_size": 24, "depths": (2, 2, 2, 2)},
    "swinunetr-v2-base": {**_SWIN, "feature_size": 48, "depths": (2, 2, 6, 2)},
    "swinunetr-v2-large": {**_SWIN, "feature_size": 96, "depths": (2, 2, 18, 2)},
    "nnunet-v2-3d": {
        "backbone": "plain-conv-unet", **_CNN_6,
        "blocks_per_stage": (2, 2, 2, 2, 2, 2), "decoder_convs_per_stage": (2, 2, 2, 2, 2),
    },
    # nnU-Net ResEnc-L 3d_fullres plan for ~96-128 voxel patches.
    "resenc-l": {
        "backbone": "residual-encoder-unet", **_CNN_6,
        "blocks_per_stage": (1, 3, 4, 6, 6, 6), "decoder_convs_per_stage": (1, 1, 1, 1, 1),
    },
    # Swin always downsamples by 32: 64^3 (or 32x64x64) is the smallest input.
    "tiny-swin": {
        **_SWIN, "feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 4), "window_size": 4,
        "drop_path_rate": 0.0, "crop_size": (64, 64, 64), "mask_cell_size": (8, 8, 8),
    },
    "tiny-unet": {
        "backbone": "plain-conv-unet", "features_per_stage": (8, 16, 32, 32), "strides": (1, 2, 2, 2),
        "kernel_size": 3, "blocks_per_stage": (1, 1, 1, 1), "decoder_convs_per_stage": (1, 1, 1),
        "crop_size": (32, 32, 32), "mask_cell_size": (8, 8, 8),
    },
    "tiny-resenc": {
        "backbone": "residual-encoder-unet", "features_per_stage": (8, 16, 32, 32), "strides": (1, 2, 2, 2),
        "kernel_size": 3, "blocks_per_stage": (1, 1, 1, 1), "decoder_convs_per_stage": (1, 1, 1),
        "crop_size": (32, 32, 32), "mask_cell_size": (8, 8, 8),
    },
}

_TRIPLES = ("crop_size", "target_spacing", "mask_cell_size")
_TUPLES = ("modalities", "depths", "num_heads", "features_per_stage", "blocks_per_stage",
           "decoder_convs_per_stage", "organ_labels") + _TRIPLES
_PER_STAGE = ("strides", "kernel_size")


def _flat(entry) -> tuple[int, ...]:
    return (entry,) if isinstance(entry, int) else tuple(entry)


def _fail(field: str, problem: str, owner: str = "PetCtConfig"):
    raise ValueError(f"{owner}.{field}: {problem}")


@strict
class PetCtConfig(PreTrainedConfig):
    r"""Configuration of a petct-fm model (the fields are checked when the config is made).

    Args:
        backbone: "swinunetr-v2" (MONAI SwinUNETR, use_v2=True), "plain-conv-unet" (nnU-Net PlainConvUNet) or
            "residual-encoder-unet" (nnU-Net ResEnc). Swin uses feature_size/depths/num_heads/window_size/drop_path_rate
            and swin_downsample ("mergingv2", the authors'; "merging" only for checkpoints built with MONAI's default);
            the CNNs use features_per_stage/strides/kernel_size/blocks_per_stage (convs per stage for the plain net,
            residual blocks for ResEnc)/decoder_convs_per_stage. strides: one entry per stage; kernel_size: one size or
            one entry per stage; an entry is one value for all axes or a (z, y, x) triple (nnU-Net's anisotropic plans).
        modalities: the images among the input channels, in their order: ("PET", "CT") by default; ("PET",) or ("CT",)
            for separated-modality MAEs; ("CT", "PET") for nnU-Net models trained on autoPET (CT is its channel 0).
        crop_size, target_spacing, normalization: the (z, y, x) training crop, voxel spacing in mm and intensity scheme the
            weights were trained with (read by data and inference code).
        mask_cell_size, mask_ratio, independent_channel_masks, imputation, masked_loss_weight, visible_loss_weight: the
            masked-autoencoder objective (METHOD.md); visible_loss_weight=0 gives a masked-only loss.
        freeze_backbone: segmentation models train only the final 1x1x1 output convolution (linear probing).
        batch_dice: the segmentation loss's Dice term is computed over the whole batch and over the lesion class only
            (nnU-Net's choice); False is the authors' MONAI DiceCELoss default (per crop, background included), under
            which a crop without lesions rewards predicting nothing.
        organ_labels: organ names (e.g. data.organs.ORGANS) the model also segments, from automatic TotalSegmentator
            labels, with a second output head (see PetCtForSegmentation); () = lesion-only, the default and the paper's
            protocol. organ_loss_weight: weight of the organ DiceCE added to the unchanged lesion loss.
        min_lesion_ml: predicted lesion components smaller than this volume (ml, on the native PET grid) are dropped from
            every mask the model makes (nnU-Net-style post-processing; train_seg.py's ``--min-lesion-ml auto`` chooses it
            on validation); 0 keeps every component, the paper's protocol. min_lesion_confidence: likewise, components
            whose peak lesion probability is below this are dropped (``--min-lesion-confidence auto``); 0 keeps all.
        guidance_channels: click-guidance input channels after the image channels: 0 (none, the default) or 2 (a map of
            foreground clicks, then one of background clicks; the input is PET, CT, foreground, background).
            guidance_encoding: how a click is drawn on the model grid, "gaussian" (the autoPET IV baseline) or "ball" (a
            distance-transform ball, LesionLocator's); guidance_size: its sigma or radius, in voxels of the model grid.
            Maps are never normalised: a click's voxel holds 1. A model without guidance loads into one with zero
            guidance weights (PetCtPreTrainedModel.with_guidance), so at zero clicks it predicts exactly as before.
        preset: name of the preset the config was built from (informational).
        nnunet: for a network imported from an nnU-Net v2 results folder (hub/nnunet_import.py), how nnU-Net prepares
            its inputs and combines its outputs, which inference/nnunet.py reproduces: per-channel "normalization"
            (scheme and the plans' statistics; nnU-Net normalises guidance maps too), "resampling" orders, "mirror_axes",
            the reader's "array_order", the plans' "transpose_forward" and dataset.json's "channel_names";
            target_spacing and crop_size then hold the plans' spacing and patch size. None for every other model.

    Example::

        >>> from modeling_petct import PetCtConfig, PetCtForSegmentation
        >>> config = PetCtConfig.from_preset("tiny-unet", target_spacing=(4.0, 4.0, 4.0), min_lesion_ml=0.5)
        >>> config.input_channels, config.crop_size
        ([0, 1], (32, 32, 32))
        >>> model = PetCtForSegmentation(config)  # a bad value (PetCtConfig(backbone="unet")) raises, naming the field
    """

    model_type = "petct"

    backbone: str = "swinunetr-v2"
    feature_size: int = 24
    depths: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    drop_path_rate: float | int = 0.05
    swin_downsample: str = "mergingv2"
    features_per_stage: list[int] | tuple[int, ...] = (32, 64, 128, 256, 320, 320)
    strides: list[int | list[int]] | tuple[int | tuple[int, ...], ...] = (1, 2, 2, 2, 2, 2)
    kernel_size: int | list[int | list[int]] | tuple[int | tuple[int, ...], ...] = 3
    blocks_per_stage: list[int] | tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    decoder_convs_per_stage: list[int] | tuple[int, ...] = (2, 2, 2, 2, 2)
    modalities: list[str] | tuple[str, ...] = ("PET", "CT")
    crop_size: list[int] | tuple[int, ...] = (96, 128, 128)
    target_spacing: list[float | int] | tuple[float | int, ...] = (3.0, 2.0, 2.0)
    normalization: str = "zscore"
    mask_cell_size: list[int] | tuple[int, ...] = (12, 16, 16)
    mask_ratio: float | int = 0.5
    independent_channel_masks: bool = True
    imputation: str = "zero"
    masked_loss_weight: float | int = 1.0
    visible_loss_weight: float | int = 0.2
    freeze_backbone: bool = False
    batch_dice: bool = False
    organ_labels: list[str] | tuple[str, ...] = ()
    organ_loss_weight: float | int = 1.0
    min_lesion_ml: float | int = 0.0
    min_lesion_confidence: float | int = 0.0
    guidance_channels: int = 0
    guidance_encoding: str = "gaussian"
    guidance_size: float | int = 3.0
    preset: str | None = None
    nnunet: dict | None = None

    def __post_init__(self, **kwargs):
        for name in _TUPLES:  # JSON gives lists back; tuples keep configs comparable and hashable
            setattr(self, name, tuple(getattr(self, name)))
        for name in _PER_STAGE:  # an entry per stage: one value for every axis, or a (z, y, x) triple
            value = getattr(self, name)
            setattr(self, name, tuple(v if isinstance(v, int) else tuple(v) for v in value)
                    if isinstance(value, (list, tuple)) else value)
        super().__post_init__(**kwargs)
        self._name_labels()
        self._check()

    def _name_labels(self) -> None:
        """Name the classes in id2label where transformers left its LABEL_i placeholders (names given are kept):
        background, lesion, then config.organ_labels when the labels include them."""
        if any(v != f"LABEL_{k}" for k, v in self.id2label.items()):
            return
        with_organs = (*LESION_CLASSES, *getattr(self, "organ_labels", ()))
        names = with_organs if self.num_labels == len(with_organs) else LESION_CLASSES
        if self.num_labels == len(names):
            self.id2label = dict(enumerate(names))
            self.label2id = {name: i for i, name in self.id2label.items()}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PetCtConfig":
        """A config for one of PRESETS, with any field overridden (e.g. modalities=("PET",), num_labels=3)."""
        if name not in PRESETS:
            raise ValueError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    @property
    def num_channels(self) -> int:
        return len(self.modalities)

    @property
    def in_channels(self) -> int:
        """Channels the network takes: the image modalities, then the guidance (click) maps."""
        return self.num_channels + self.guidance_channels

    @property
    def input_channels(self) -> list[int]:
        """Channels of a harmonised (PET, CT) image this model takes, in its order: the one place they are chosen."""
        return [MODALITIES.index(m) for m in self.modalities]

    @property
    def is_swin(self) -> bool:
        return self.backbone == "swinunetr-v2"

    @property
    def size_divisors(self) -> tuple[int, int, int]:
        """Each (z, y, x) input size must be a multiple of its entry (32 for Swin: patch 2 and four mergings)."""
        if self.is_swin:
            return (32, 32, 32)
        per_axis = [(s, s, s) if isinstance(s, int) else tuple(s) for s in self.strides]
        return tuple(math.prod(axis) for axis in zip(*per_axis))

    @property
    def size_divisor(self) -> int:
        """A size that is a multiple of every entry of ``size_divisors`` (their largest for the usual plans)."""
        return math.lcm(*self.size_divisors)

    @property
    def min_input_size(self) -> int:
        """Smallest cube edge that runs: the bottleneck needs more than one voxel for InstanceNorm.

        Non-cubes also run when at least one axis is 2 x size_divisor (e.g. 32x64x64 for Swin)."""
        return 2 * self.size_divisor

    def _check(self) -> None:
        """Run every `validate_*` rule now, so a wrong value raises its own ValueError naming the field."""
        for rule in type(self).__class_validators__:
            rule(self)

    def validate_backbone(self) -> None:
        if self.backbone not in BACKBONES:
            _fail("backbone", f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")

    def validate_axes(self) -> None:
        for name in _TRIPLES:
            value = getattr(self, name)
            if len(value) != 3 or any(v <= 0 for v in value):
                _fail(name, f"needs three positive (z, y, x) values, got {value}")

    def validate_modalities(self) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities) or \
                any(m not in MODALITIES for m in self.modalities):
            _fail("modalities", f"must be distinct entries of {MODALITIES}, got {self.modalities}")

    def validate_masking(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            _fail("mask_ratio", f"must lie strictly between 0 and 1, got {self.mask_ratio}")
        if self.imputation not in IMPUTATIONS:
            _fail("imputation", f"must be one of {IMPUTATIONS}, got {self.imputation!r}")
        if self.masked_loss_weight < 0 or self.visible_loss_weight < 0 or \
                self.masked_loss_weight + self.visible_loss_weight == 0:
            _fail("masked_loss_weight", "loss weights must be >= 0 and not both 0")

    def validate_normalization(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            _fail("normalization", f"must be one of {NORMALIZATIONS}, got {self.normalization!r}")

    def validate_labels(self) -> None:
        if len(set(self.organ_labels)) != len(self.organ_labels) or "other" in self.organ_labels or \
                not all(isinstance(o, str) and o for o in self.organ_labels):
            _fail("organ_labels", f"must be distinct organ names (not 'other'), got {self.organ_labels}")
        if self.organ_loss_weight < 0:
            _fail("organ_loss_weight", f"must be >= 0, got {self.organ_loss_weight}")
        if not 0 <= self.min_lesion_ml < math.inf:
            _fail("min_lesion_ml", f"must be a finite volume >= 0 ml, got {self.min_lesion_ml}")
        if not 0 <= self.min_lesion_confidence <= 1:
            _fail("min_lesion_confidence", f"must be a probability in [0, 1], got {self.min_lesion_confidence}")
        if self.num_labels < 2:
            _fail("num_labels", f"segmentation needs at least 2 labels (background + lesion), got {self.num_labels}")

    def validate_guidance(self) -> None:
        if self.guidance_channels not in GUIDANCE_CHANNELS:
            _fail("guidance_channels", f"must be 0 (no clicks) or 2 (foreground, background click maps), got "
                                       f"{self.guidance_channels}")
        if self.guidance_encoding not in GUIDANCE_ENCODINGS:
            _fail("guidance_encoding", f"must be one of {GUIDANCE_ENCODINGS}, got {self.guidance_encoding!r}")
        if not 0 < self.guidance_size < math.inf:
            _fail("guidance_size", f"must be a finite size > 0 voxels, got {self.guidance_size}")

    def validate_network(self) -> None:
        """The backbone's own shape rules: Swin stages and heads, or one CNN entry per stage."""
        if self.is_swin:
            if self.swin_downsample not in SWIN_DOWNSAMPLES:
                _fail("swin_downsample", f"must be one of {SWIN_DOWNSAMPLES}, got {self.swin_downsample!r}")
            if self.feature_size % 12:
                _fail("feature_size", f"SwinUNETR needs a multiple of 12, got {self.feature_size}")
            if len(self.depths) != 4 or len(self.num_heads) != 4:
                _fail("depths", "SwinUNETR needs four stages in depths and num_heads")
            for i, heads in enumerate(self.num_heads):
                if (self.feature_size * 2**i) % heads:
                    _fail("num_heads", f"stage {i} width {self.feature_size * 2**i} is not divisible by {heads} heads")
            return
        n = len(self.features_per_stage)
        if len(self.strides) != n or len(self.blocks_per_stage) != n:
            _fail("strides", f"features_per_stage, strides and blocks_per_stage need {n} entries each")
        if not isinstance(self.kernel_size, int) and len(self.kernel_size) != n:
            _fail("kernel_size", f"needs one size for every stage or {n} entries (one per stage)")
        for name in _PER_STAGE:
            value = getattr(self, name)
            for entry in value if isinstance(value, tuple) else (value,):
                if not (isinstance(entry, int) or len(entry) == 3) or min(_flat(entry)) < 1:
                    _fail(name, f"entries must be positive integers or (z, y, x) triples, got {value}")
        if len(self.decoder_convs_per_stage) != n - 1:
            _fail("decoder_convs_per_stage", f"needs {n - 1} entries (one per decoder stage)")

    def validate_crop_size(self) -> None:
        """The crop must pass the network (size divisor, more than a 1-voxel bottleneck) and tile into mask cells."""
        for crop, cell, divisor in zip(self.crop_size, self.mask_cell_size, self.size_divisors):
            if crop % divisor:
                _fail("crop_size", f"{self.crop_size} must be divisible by {self.size_divisors} for {self.backbone}")
            if crop % cell:
                _fail("crop_size", f"{self.crop_size} must be divisible by mask_cell_size {self.mask_cell_size}")
        if math.prod(c // d for c, d in zip(self.crop_size, self.size_divisors)) < 2:
            _fail("crop_size", f"{self.crop_size} leaves a 1-voxel bottleneck; use at least {self.min_input_size} "
                               "along one axis")


__all__ = ["PetCtConfig", "PRESETS"]


_BACKBONE_ONLY_KEYS = ("model_type", "transformers_version", "architectures", "pet_config", "ct_config")


@strict
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
    def from_backbone_configs(cls, pet: PetCtConfig, ct: PetCtConfig, **overrides) -> "PetCtSeparatedConfig":
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

    def validate_separated(self) -> None:
        owner = "PetCtSeparatedConfig"
        if not self.freeze_backbone:
            _fail("freeze_backbone", "the separated-modality model is a linear probe; it must stay True", owner)
        if tuple(self.modalities) != ("PET", "CT"):
            _fail("modalities", f"must be ('PET', 'CT'), got {self.modalities}", owner)
        if self.guidance_channels:
            _fail("guidance_channels", "the separated-modality probe takes no click guidance", owner)
        for name, modality in (("pet_config", "PET"), ("ct_config", "CT")):
            sub = getattr(self, name)
            if sub is not None and tuple(sub.get("modalities", ())) != (modality,):
                _fail(name, f"needs a {modality}-only backbone (modalities ('{modality}',)), got "
                            f"{sub.get('modalities')}", owner)


@strict
class PetCtEnsembleConfig(PetCtConfig):
    r"""PetCtConfig of an ensemble of ``ensemble_size`` segmentation networks of one architecture (e.g. the folds of
    an nnU-Net model) whose logits are averaged. Every other field describes each member."""

    model_type = "petct-ensemble"

    ensemble_size: int = 2

    def validate_ensemble(self) -> None:
        if self.ensemble_size < 2:
            _fail("ensemble_size", f"an ensemble needs at least 2 members, got {self.ensemble_size}",
                  "PetCtEnsembleConfig")
