"""petct-fm models on tiny presets: faithfulness to the original networks, heads, transformers conventions."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoModelForMaskedImageModeling, AutoModelForSemanticSegmentation

from conftest import original_network
from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling, PetCtForSegmentation, PetCtModel
from modeling_petct.models.backbones import convert_original_state_dict

# preset -> smallest input used in tests (Swin divides by 32 and needs > 1 bottleneck voxel)
SHAPES = {"tiny-unet": (32, 32, 32), "tiny-resenc": (32, 32, 32), "tiny-swin": (32, 64, 64)}


def tiny(name: str, **overrides) -> PetCtConfig:
    return PetCtConfig.from_preset(name, **overrides)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_backbone_keeps_library_init_and_converted_original_weights_reproduce_its_output(name):
    config = tiny(name)
    torch.manual_seed(0)
    original = original_network(config, initialize=True).eval()
    torch.manual_seed(0)
    model = PetCtForMaskedImageModeling(config).eval()
    converted = convert_original_state_dict(original.state_dict(), config, "reconstruction_head")
    ours = model.state_dict()
    backbone_keys = [k for k in ours if k.startswith("petct.backbone.")]
    # post_init left MONAI's / nnU-Net's own initialisation alone
    assert all(torch.equal(ours[k], converted[k]) for k in backbone_keys)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 2, *SHAPES[name])
    with torch.no_grad():
        expected = original(x)
        out = model(x, mask=torch.zeros_like(x))  # nothing masked: the plain network
    torch.testing.assert_close(out.reconstruction, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-unet", "tiny-swin"])
def test_forward_shapes_of_all_heads(name):
    config = tiny(name, num_labels=3)
    shape = SHAPES[name]
    x = torch.randn(1, 2, *shape)
    torch.manual_seed(0)
    seg = PetCtForSegmentation(config).eval()
    labels = torch.randint(0, 3, (1, *shape))
    with torch.no_grad():
        features = seg.petct(x)
        out = seg(x, labels=labels[:, None] if config.is_swin else labels)  # (B, 1, D, H, W) labels work too
    assert features.last_hidden_state.shape == (1, seg.segmentation_head.in_channels, *shape)
    encoder = features.encoder_hidden_states
    assert encoder[0].shape[2:] == shape and all(a.shape[-1] > b.shape[-1] for a, b in zip(encoder, encoder[1:]))
    assert out.logits.shape == (1, 3, *shape) and out.loss.ndim == 0
    torch.testing.assert_close(out.logits, seg.segmentation_head(features.last_hidden_state))


def test_mae_masks_the_network_input_and_its_loss_is_the_weighted_mse():
    torch.manual_seed(0)
    model = PetCtForMaskedImageModeling(tiny("tiny-unet"))
    x = torch.randn(2, 2, 32, 32, 32)
    seen = {}
    model.petct.register_forward_pre_hook(lambda module, args: seen.update(input=args[0].clone()))
    noise = torch.rand(2, 2, 4, 4, 4)
    out = model(x, noise=noise)
    assert out.mask.shape == x.shape
    assert torch.equal(out.mask[:, :, ::8, ::8, ::8], (noise < 0.5).float())
    masked = out.mask.bool()
    assert torch.all(seen["input"][masked] == 0) and torch.equal(seen["input"][~masked], x[~masked])
    squared = (out.reconstruction - x) ** 2
    expected = squared[masked].mean() + 0.2 * squared[~masked].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(model(x, noise=noise).mask, out.mask)  # deterministic given the noise


def test_batch_dice_scores_only_lesions_over_the_whole_batch():
    """Predicting nothing on a batch where one crop has a lesion: the per-crop default averages in two near-perfect
    background Dice terms (Dice loss 0.5); batch Dice over the lesion class calls it a total miss (1.0). The
    cross-entropy term is the same in both."""
    labels = torch.zeros(2, 32, 32, 32, dtype=torch.long)
    labels[0, 10:20, 10:20, 10:20] = 1
    losses = {}
    for batch_dice in (False, True):
        model = PetCtForSegmentation(tiny("tiny-unet", batch_dice=batch_dice)).eval()
        with torch.no_grad():
            model.segmentation_head.weight.zero_()
            model.segmentation_head.bias.copy_(torch.tensor([8.0, -8.0]))
            losses[batch_dice] = model(torch.randn(2, 2, 32, 32, 32), labels=labels).loss.item()
    assert losses[True] - losses[False] == pytest.approx(0.5, abs=0.01)


def test_token_imputation_is_learnable():
    model = PetCtForMaskedImageModeling(tiny("tiny-unet", imputation="token"))
    assert model.mask_token.shape == (1, 2, 1, 1, 1) and torch.all(model.mask_token == 0)
    model(torch.randn(1, 2, 32, 32, 32)).loss.backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert PetCtForMaskedImageModeling(tiny("tiny-unet")).mask_token is None


def test_single_modality_models_take_one_channel():
    model = PetCtForMaskedImageModeling(tiny("tiny-unet", modalities=("PET",)))
    assert model(torch.randn(1, 1, 32, 32, 32)).reconstruction.shape == (1, 1, 32, 32, 32)
    with pytest.raises(ValueError, match="pixel_values must be"):
        model.petct(torch.randn(1, 2, 32, 32, 32))
    with pytest.raises(ValueError, match="size_divisor"):
        model.petct(torch.randn(1, 1, 32, 32, 36))


@pytest.mark.parametrize("name", ["tiny-unet", "tiny-resenc"])
def test_save_load_round_trip_is_bit_exact(tmp_path, name):
    torch.manual_seed(0)
    model = PetCtForMaskedImageModeling(tiny(name, imputation="token"))
    with torch.no_grad():
        model.mask_token.fill_(0.5)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "mask_token" in saved and "reconstruction_head.weight" in saved
    assert not any(".all_modules." in k or "decoder.encoder." in k for k in saved)  # no duplicated tensors
    loaded = PetCtForMaskedImageModeling.from_pretrained(tmp_path)
    reference = model.state_dict()
    assert loaded.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())


def test_mae_checkpoint_gives_segmentation_a_fresh_head(tmp_path):
    torch.manual_seed(0)
    mae = PetCtForMaskedImageModeling(tiny("tiny-swin"))
    mae.save_pretrained(tmp_path)
    seg = PetCtForSegmentation.from_pretrained(tmp_path, num_labels=2)
    backbone = mae.petct.state_dict()
    assert all(torch.equal(v, backbone[k]) for k, v in seg.petct.state_dict().items())
    assert seg.segmentation_head.weight.shape == mae.reconstruction_head.weight.shape
    assert not torch.equal(seg.segmentation_head.weight, mae.reconstruction_head.weight)
    assert torch.isfinite(seg.segmentation_head.weight).all()
    assert type(AutoModel.from_pretrained(tmp_path)) is PetCtModel
    assert type(AutoModelForMaskedImageModeling.from_pretrained(tmp_path)) is PetCtForMaskedImageModeling
    assert type(AutoModelForSemanticSegmentation.from_pretrained(tmp_path)) is PetCtForSegmentation


def test_loading_reports_the_new_head_and_takes_a_new_label_count(tmp_path, caplog):
    PetCtForMaskedImageModeling(tiny("tiny-unet")).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="modeling_petct.models.modeling_petct"):
        seg, info = PetCtForSegmentation.from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
    assert "newly initialised" in caplog.text and "segmentation_head.weight" in caplog.text
    assert set(info["missing_keys"]) == {"segmentation_head.weight", "segmentation_head.bias"}
    assert seg.config.num_labels == 3 and seg.segmentation_head.out_channels == 3


def test_freeze_backbone_leaves_only_the_output_conv_trainable(tmp_path):
    seg = PetCtForSegmentation(tiny("tiny-unet"))
    seg.freeze_backbone()
    trainable = {n for n, p in seg.named_parameters() if p.requires_grad}
    assert trainable == {"segmentation_head.weight", "segmentation_head.bias"}
    seg.train()
    assert seg.training and not seg.petct.training  # fixed features: no stochastic depth in a frozen backbone
    seg.save_pretrained(tmp_path)
    frozen = PetCtForSegmentation.from_pretrained(tmp_path, freeze_backbone=True)
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == trainable
    assert {n for n, p in PetCtForSegmentation(tiny("tiny-unet", freeze_backbone=True)).named_parameters()
            if p.requires_grad} == trainable


def test_bfloat16_loading_and_channels_last_autocast(tmp_path):
    # 16^3 (the tiny-unet minimum): bf16 conv3d is very slow on CPUs without AVX-512
    PetCtForSegmentation(tiny("tiny-unet")).save_pretrained(tmp_path)
    model = PetCtForSegmentation.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert model(x).logits.dtype == torch.bfloat16
    fp32 = PetCtForSegmentation.from_pretrained(tmp_path).to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fp32(x.to(memory_format=torch.channels_last_3d), labels=torch.zeros(1, 16, 16, 16, dtype=torch.long))
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert fp32.segmentation_head.weight.grad is not None


def _count_calls(module: nn.Module) -> list:
    calls, forward = [], module.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    module.forward = counted
    return calls


def _gradients(model, name):
    x, labels = torch.randn(1, 2, *SHAPES[name]), torch.randint(0, 2, (1, *SHAPES[name]))
    model.zero_grad()
    model(x, labels=labels).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"unused parameters would need DDP's find_unused_parameters: {unused}"
    return [p.grad.clone() for p in model.parameters()]


def test_gradient_checkpointing_recomputes_cnn_stages_and_keeps_gradients():
    torch.manual_seed(0)
    model = PetCtForSegmentation(tiny("tiny-unet")).train()
    calls = _count_calls(model.petct.backbone.encoder.stages[1])
    torch.manual_seed(1)
    plain = _gradients(model, "tiny-unet")
    assert len(calls) == 1
    model.activation_checkpointing_enable()
    torch.manual_seed(1)
    checkpointed = _gradients(model, "tiny-unet")
    assert len(calls) == 3  # the stage ran once more during backward
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)
    model.activation_checkpointing_disable()
    _gradients(model, "tiny-unet")
    assert len(calls) == 4


def test_gradient_checkpointing_switches_monai_checkpointing_in_swin():
    model = PetCtForSegmentation(tiny("tiny-swin", drop_path_rate=0.0)).train()
    calls = _count_calls(model.petct.backbone.swinViT.layers1[0].blocks[0].attn)
    model.activation_checkpointing_enable()
    _gradients(model, "tiny-swin")
    assert len(calls) == 2  # MONAI's use_checkpoint re-ran the attention in backward
    model.activation_checkpointing_disable()
    assert not any(getattr(m, "use_checkpoint", False) for m in model.modules())


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_weights_get_the_mode_the_umask_gives_every_other_file(tmp_path, umask):
    """safetensors creates its file 0600; the save hook gives it the mode config.json gets."""
    import os
    import stat

    model = PetCtForSegmentation(tiny("tiny-unet"))
    old = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "model")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~umask, modes


def test_a_task_checkpoint_names_automodel_and_loads_its_backbone(tmp_path):
    torch.manual_seed(0)
    model = PetCtForMaskedImageModeling(tiny("tiny-unet")).eval()
    model.save_pretrained(tmp_path)
    import json

    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_petct.PetCtConfig", "AutoModel": "modeling_petct.PetCtModel",
        "AutoModelForMaskedImageModeling": "modeling_petct.PetCtForMaskedImageModeling"}
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone(x).last_hidden_state, model.petct(x).last_hidden_state)
