"""convert_original_checkpoint.py against the authors' exact networks (METHOD.md), built with MONAI / nnU-Net's
dynamic_network_architectures, random weights, saved the ways their code may have saved them.

Every backbone is compared at its real size; inputs are 32x32x64 (the smallest a 1/32-downsampling net accepts) to
keep the 319M-parameter SwinUNETR-v2-large affordable on CPU.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from local_hub import load_hub_script
from torch import nn

from conftest import original_network
from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling
from modeling_petct.errors import PetCtInputError
from modeling_petct.hub.convert import convert_checkpoint

def authors_network(preset: str, downsample: str = "mergingv2") -> nn.Module:
    """The authors' definitions (METHOD.md; their notebooks build downsample='mergingv2'), out_channels=2: the MAE
    reconstructs both channels. downsample="merging" is MONAI's default, the variant a converter must not confuse."""
    return original_network(PetCtConfig.from_preset(preset), downsample=downsample)


# the ways a training script saves: bare, DataParallel, nested with training state
def bare(sd):
    return sd


def data_parallel(sd):
    return {f"module.{k}": v for k, v in sd.items()}


def nested(sd):
    return {"epoch": 199, "best_dice": 0.61, "state_dict": {f"module.{k}": v for k, v in sd.items()}}


def as_model_key(sd):
    return {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}


def authors_checkpoint(wrapper: str):
    """What the authors' MAE notebooks save: DataParallel over MultiModal_SwinUNETR_MAE (encoder_decoder) or
    MultiModal_nnUNetV2_MIM (nnunet), with the training state beside the weights."""
    def wrap(sd):
        return {"epoch": 200, "model_state_dict": {f"module.{wrapper}.{k}": v for k, v in sd.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-6}]},
                "scaler_state_dict": {"scale": 65536.0}, "scheduler_state_dict": {"T_max": 200}, "best_loss": 0.1}
    wrap.__name__ = f"authors_{wrapper}"
    return wrap


def _reconstruct(model, x):
    with torch.no_grad():
        return model(x, mask=torch.zeros_like(x)).reconstruction


@pytest.mark.parametrize("preset, wrap, flag", [
    ("swinunetr-v2-small", authors_checkpoint("encoder_decoder"), []),  # their format: mergingv2 established
    ("swinunetr-v2-base", nested, ["--swin-downsample", "mergingv2"]),
    ("nnunet-v2-3d", authors_checkpoint("nnunet"), []),
    ("swinunetr-v2-large", data_parallel, "mergingv2"),
])
def test_converted_model_reproduces_the_authors_network(preset, wrap, flag, tmp_path):
    torch.manual_seed(0)
    net = authors_network(preset).eval()
    x = torch.randn(1, 2, 32, 32, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
    checkpoint = tmp_path / f"{preset}.pth"
    torch.save(wrap(net.state_dict()), checkpoint)
    del net
    if preset == "swinunetr-v2-large":  # 1.3 GB: convert in memory; the folder path is the same code as below
        model, provenance = convert_checkpoint(checkpoint, swin_downsample_variant=flag)
    else:
        out = tmp_path / "converted"
        assert load_hub_script("convert_original_checkpoint").main([str(checkpoint), str(out), *flag]) == 0
        provenance = json.loads((out / "conversion.json").read_text())
        model = PetCtForMaskedImageModeling.from_pretrained(out).eval()
    assert provenance["preset"] == preset
    assert model.config.preset == preset
    if preset.startswith("swin"):
        assert provenance["swin_downsample"] == model.config.swin_downsample == "mergingv2"
    assert (_reconstruct(model, x) - expected).abs().max().item() <= 1e-5


def _tiny_swin_checkpoint(tmp_path, downsample, wrap=bare):
    torch.manual_seed(0)
    net = authors_network("tiny-swin", downsample).eval()
    x = torch.randn(1, 2, 32, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
    path = tmp_path / f"tiny-{downsample}-{wrap.__name__}.pth"
    torch.save(wrap(net.state_dict()), path)
    return path, x, expected


def test_swin_patch_merging_is_established_or_refused_never_guessed(tmp_path):
    """MONAI's default "merging" and the authors' "mergingv2" share every key and shape; only the outputs differ."""
    path, x, expected = _tiny_swin_checkpoint(tmp_path, "merging")
    with pytest.raises(PetCtInputError, match=r"tiny-merging-bare\.pth: .*identical weights.*--swin-downsample"):
        convert_checkpoint(path)
    right, provenance = convert_checkpoint(path, swin_downsample_variant="merging")
    assert provenance["swin_downsample"] == "merging" and provenance["swin_downsample_from"].startswith("given")
    assert (_reconstruct(right, x) - expected).abs().max().item() <= 1e-5
    wrong, _ = convert_checkpoint(path, swin_downsample_variant="mergingv2")  # loads without a single key error
    assert (_reconstruct(wrong, x) - expected).abs().max().item() > 1e-2  # ... and computes something else

    def with_config(sd):
        return {"state_dict": sd, "config": {"downsample": "merging", "feature_size": 12}}
    saved, x, expected = _tiny_swin_checkpoint(tmp_path, "merging", with_config)
    model, provenance = convert_checkpoint(saved)
    assert provenance["swin_downsample_from"] == "saved in the checkpoint"
    assert (_reconstruct(model, x) - expected).abs().max().item() <= 1e-5
    with pytest.raises(PetCtInputError, match="contradicts the checkpoint's saved 'merging'"):
        convert_checkpoint(saved, swin_downsample_variant="mergingv2")


def test_the_authors_mae_checkpoint_is_mergingv2_without_a_flag(tmp_path):
    path, x, expected = _tiny_swin_checkpoint(tmp_path, "mergingv2", authors_checkpoint("encoder_decoder"))
    model, provenance = convert_checkpoint(path)
    assert provenance["swin_downsample"] == "mergingv2" and "authors' MAE wrapper" in provenance["swin_downsample_from"]
    assert provenance["wrapper_prefixes"] == ["module.", "encoder_decoder."]
    assert (_reconstruct(model, x) - expected).abs().max().item() <= 1e-5


@pytest.fixture(scope="module")
def tiny_state_dict():
    torch.manual_seed(0)
    return authors_network("tiny-swin").state_dict()


def test_mismatched_keys_name_the_file_and_the_keys(tiny_state_dict, tmp_path):
    extra = tmp_path / "extra.pth"
    torch.save({**tiny_state_dict, "projection_head.weight": torch.zeros(3)}, extra)
    with pytest.raises(PetCtInputError, match=r"extra\.pth.*unexpected keys: projection_head\.weight"):
        convert_checkpoint(extra, swin_downsample_variant="mergingv2")
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in tiny_state_dict.items() if not k.startswith("encoder1.")}, missing)
    with pytest.raises(PetCtInputError, match=r"missing\.pth.*missing keys: encoder1\."):
        convert_checkpoint(missing, swin_downsample_variant="mergingv2")
    wrong_preset = tmp_path / "tiny.pth"
    torch.save(tiny_state_dict, wrong_preset)
    with pytest.raises(PetCtInputError, match=r"tiny\.pth.*does not fit preset 'swinunetr-v2-small'"):
        convert_checkpoint(wrong_preset, preset="swinunetr-v2-small", swin_downsample_variant="mergingv2")
    assert convert_checkpoint(wrong_preset, swin_downsample_variant="mergingv2")[1]["preset"] == "tiny-swin"


def test_only_weights_are_unpickled(tiny_state_dict, tmp_path, capsys):
    with_code = tmp_path / "with_namespace.pth"
    torch.save({"state_dict": tiny_state_dict, "args": argparse.Namespace(lr=1e-4)}, with_code)
    convert = load_hub_script("convert_original_checkpoint")
    assert convert.main([str(with_code), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "with_namespace.pth" in err and "weights_only=True" in err and not (tmp_path / "out").exists()
    no_weights = tmp_path / "no_weights.pth"
    torch.save({"epoch": 3, "config": {"lr": 1e-4}}, no_weights)
    with pytest.raises(PetCtInputError, match="no state dict found"):
        convert_checkpoint(no_weights)
