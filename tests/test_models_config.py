"""PetCtConfig: presets, validation, serialisation, and the presets' exact parameter counts."""

from __future__ import annotations

import pytest
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from monai.networks.nets import SwinUNETR
from torch import nn
from transformers import AutoConfig
from transformers.initialization import no_init_weights

from conftest import original_network
from modeling_petct import PRESETS, PetCtConfig, PetCtForMaskedImageModeling
from modeling_petct.models.backbones import convert_original_state_dict

PAPER_PARAMS_M = {"swinunetr-v2-small": 18.35, "swinunetr-v2-base": 74.65, "swinunetr-v2-large": 319.21}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_swin_presets_have_the_paper_parameter_counts(name):
    with no_init_weights():  # allocation without initialisation: fast even for 319M parameters
        model = PetCtForMaskedImageModeling(PetCtConfig.from_preset(name))
    assert round(count(model) / 1e6, 2) == PAPER_PARAMS_M[name]
    assert type(model.petct.backbone) is SwinUNETR and model.petct.backbone.swinViT.use_v2


@pytest.mark.parametrize("name, cls, millions", [("nnunet-v2-3d", PlainConvUNet, 31.20),
                                                  ("resenc-l", ResidualEncoderUNet, 102.35)])
def test_cnn_presets_are_the_original_network_minus_unused_outputs(name, cls, millions):
    with no_init_weights():
        net = original_network(PetCtConfig.from_preset(name))
    assert type(net) is cls
    assert round(count(net) / 1e6, 2) == millions  # the paper's 31.20M counts all five seg layers
    with no_init_weights():
        model = PetCtForMaskedImageModeling(PetCtConfig.from_preset(name))
    dropped = sum(layer.weight.numel() + layer.bias.numel() for layer in net.decoder.seg_layers[:-1])
    assert count(model) == count(net) - dropped
    converted = convert_original_state_dict(net.state_dict(), model.config, "reconstruction_head")
    assert sorted(converted) == sorted(model.state_dict())
    assert all(converted[k].shape == v.shape for k, v in model.state_dict().items())


def test_tiny_presets_and_divisors():
    assert PetCtConfig.from_preset("tiny-unet").size_divisor == 8
    assert PetCtConfig.from_preset("tiny-unet").min_input_size == 16
    swin = PetCtConfig.from_preset("tiny-swin")
    assert (swin.size_divisor, swin.min_input_size) == (32, 64)
    assert PetCtConfig.from_preset("nnunet-v2-3d").size_divisor == 32
    default = PetCtConfig()
    assert default.crop_size == (96, 128, 128) and default.mask_cell_size == (12, 16, 16)
    assert default.num_channels == 2 and default.modalities == ("PET", "CT")
    assert PetCtConfig.from_preset("tiny-unet", modalities=("PET",)).num_channels == 1
    for name in PRESETS:  # every preset is valid with its own defaults
        assert PetCtConfig.from_preset(name).preset == name


@pytest.mark.parametrize("overrides, field", [
    ({"backbone": "vit"}, "backbone"),
    ({"mask_ratio": 0.0}, "mask_ratio"),
    ({"mask_ratio": 1.2}, "mask_ratio"),
    ({"crop_size": (96, 128, 120)}, "crop_size"),  # not divisible by 32 for Swin
    ({"crop_size": (96, 128, 128), "mask_cell_size": (10, 16, 16)}, "crop_size"),  # not divisible by the cell
    ({"modalities": ("PET", "MR")}, "modalities"),
    ({"imputation": "mean"}, "imputation"),
    ({"feature_size": 16}, "feature_size"),
    ({"masked_loss_weight": 0.0, "visible_loss_weight": 0.0}, "masked_loss_weight"),
])
def test_invalid_configs_fail_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"PetCtConfig\.{field}"):
        PetCtConfig(**overrides)


def test_unknown_preset_and_tiny_crop_fail():
    with pytest.raises(ValueError, match="preset"):
        PetCtConfig.from_preset("unet-xxl")
    with pytest.raises(ValueError, match="crop_size"):
        PetCtConfig.from_preset("tiny-swin", crop_size=(32, 32, 32))  # 1-voxel bottleneck


def test_config_round_trips_through_json(tmp_path):
    cfg = PetCtConfig.from_preset("tiny-unet", modalities=("CT",), num_labels=3, imputation="token",
                                  visible_loss_weight=0.0)
    cfg.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is PetCtConfig
    for field in ("backbone", "features_per_stage", "modalities", "crop_size", "target_spacing", "mask_cell_size",
                  "imputation", "visible_loss_weight", "num_labels", "preset"):
        assert getattr(loaded, field) == getattr(cfg, field), field
    assert loaded.num_channels == 1


@pytest.mark.parametrize("overrides, field", [
    ({"mask_ratio": "0.5"}, "mask_ratio"),
    ({"crop_size": (96, "128", 128)}, "crop_size"),
    ({"freeze_backbone": "yes"}, "freeze_backbone"),
    ({"backbone": 3}, "backbone"),
    ({"imputation": 0}, "imputation"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(overrides, field):
    """ViTMAEConfig-style strictness (huggingface_hub's @strict): types are checked at construction."""
    from huggingface_hub.errors import StrictDataclassFieldValidationError

    with pytest.raises(StrictDataclassFieldValidationError, match=rf"field '{field}'"):
        PetCtConfig(**overrides)


def test_validate_runs_the_rules_after_an_assignment():
    from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError

    config = PetCtConfig.from_preset("tiny-unet", target_spacing=(4, 4, 4), mask_ratio=0.6)  # ints pass as floats
    config.validate()
    assert {"validate_masking", "validate_crop_size", "validate_network"} <= {
        rule.__name__ for rule in type(config).__class_validators__}
    with pytest.raises(StrictDataclassFieldValidationError, match="mask_ratio"):
        config.mask_ratio = "high"  # checked on assignment too
    config.mask_ratio = 1.5
    with pytest.raises(StrictDataclassClassValidationError, match=r"PetCtConfig\.mask_ratio"):
        config.validate()


def test_the_config_repeats_the_data_conventions_exactly():
    """Remote code cannot import the package's data module, so the config keeps its own copy: it must agree."""
    from modeling_petct.data import conventions
    from modeling_petct.models import configuration_petct

    assert configuration_petct.NORMALIZATIONS == conventions.NORMALIZATIONS
    assert PetCtConfig().target_spacing == conventions.HARMONISED_SPACING_MM
    assert PetCtConfig().normalization == conventions.DEFAULT_NORMALIZATION
