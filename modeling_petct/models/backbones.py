"""The paper's backbones, built by MONAI and dynamic_network_architectures (never re-typed), minus their output conv.

Each backbone is kept as the library module, so an original checkpoint converts by a prefix rename:
    original key                                   petct-fm key
    <k>  (SwinUNETR, PlainConvUNet, ResEnc)        petct.backbone.<k>
    SwinUNETR  out.conv.conv.{weight,bias}         <head>.{weight,bias}
    PlainConvUNet / ResEnc
        decoder.seg_layers.<last>.{weight,bias}    <head>.{weight,bias}
        decoder.seg_layers.<other>.*               dropped (deep-supervision outputs, unused without it)
        decoder.encoder.*                          dropped (an alias of encoder.*)
        *.all_modules.<i>.*                        dropped (aliases of the same block's conv/norm)
where <head> is reconstruction_head (masked autoencoder) or segmentation_head (segmentation).
The output conv lives in the task head so that an MAE checkpoint never leaks its reconstruction conv into a
segmentation model (the authors' code did).

Each backbone library is imported only by the backbone that needs it (MONAI's SwinUNETR + einops for Swin,
dynamic_network_architectures for the CNNs; MONAI itself every model needs, for the loss), through `require`, so a Hub user installs only what the model's card
says and a missing package fails when the model is built (at load), with the exact install line. The imports go
through importlib inside a try: transformers' remote-code check would otherwise demand every library of every
backbone, and suggest `pip install dynamic_network_architectures`, whose timm/torchvision pins replace a CPU torch
with a 5 GB CUDA build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from .configuration_petct import PetCtConfig

# Every model: torch, transformers and MONAI (the segmentation loss, modeling_petct.py). Each backbone adds
# (module, pip requirement, install with --no-deps).
MONAI_REQUIREMENT = "monai>=1.5,<1.7"
DNA_REQUIREMENT = "dynamic-network-architectures==0.4.4"
BASE_REQUIREMENTS = ("torch>=2.4", "transformers>=5.0,<6", MONAI_REQUIREMENT)
BACKBONE_PACKAGES = {
    "swinunetr-v2": (("monai", MONAI_REQUIREMENT, False), ("einops", "einops>=0.7", False)),
    "plain-conv-unet": (("dynamic_network_architectures", DNA_REQUIREMENT, True),),
    "residual-encoder-unet": (("dynamic_network_architectures", DNA_REQUIREMENT, True),),
}


def install_lines(backbones) -> list[str]:
    """The pip commands that give a clean environment everything these backbones need (the model card shows them).

    dynamic-network-architectures goes in with --no-deps: its timm/torchvision pins would replace a CPU torch."""
    packages = [p for b in dict.fromkeys(backbones) for p in BACKBONE_PACKAGES[b]]
    plain = list(dict.fromkeys([*BASE_REQUIREMENTS, *(req for _, req, no_deps in packages if not no_deps)]))
    no_deps = list(dict.fromkeys(req for _, req, no_deps in packages if no_deps))
    lines = ["pip install " + " ".join(f'"{r}"' if set(r) & set("<>") else r for r in plain)]
    return lines + ([f"pip install --no-deps {' '.join(no_deps)}"] if no_deps else [])


def require(backbone: str, module: str):
    """Import one library of a backbone, or an ImportError with the install line for that backbone."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = err.name or module
        lines = " && ".join(install_lines([backbone]))
        raise ImportError(f"the {backbone} backbone needs {missing}, which is not installed; install what this model "
                          f"needs with: {lines}") from None


def _require_all(backbone: str) -> None:
    for module, _, _ in BACKBONE_PACKAGES[backbone]:
        require(backbone, module)

# Original state-dict keys of the final 1x1x1 output convolution, by backbone (see the module docstring).
ORIGINAL_OUTPUT_CONV = {
    "swinunetr-v2": "out.conv.conv",
    "plain-conv-unet": "decoder.seg_layers.{last}",
    "residual-encoder-unet": "decoder.seg_layers.{last}",
}
_ORIGINAL_ALIASES = ("decoder.encoder.", "decoder.seg_layers.")


def convert_original_state_dict(state_dict: dict, config: PetCtConfig, head: str) -> dict:
    """Keys of an original MONAI / nnU-Net network (optionally DataParallel's "module." prefix) -> petct-fm keys,
    with the output conv moved to `head` ("reconstruction_head" or "segmentation_head")."""
    output_conv = ORIGINAL_OUTPUT_CONV[config.backbone].format(last=len(config.features_per_stage) - 2) + "."
    converted = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(output_conv):
            converted[head + "." + key[len(output_conv):]] = tensor
        elif not (key.startswith(_ORIGINAL_ALIASES) or ".all_modules." in key):
            converted["petct.backbone." + key] = tensor
    return converted


def build_backbone(config: PetCtConfig) -> nn.Module:
    """The configured network with its own initialisation, with the final output conv removed."""
    _require_all(config.backbone)  # all of them now: einops, say, is otherwise first needed in forward
    if config.is_swin:
        net = require(config.backbone, "monai.networks.nets").SwinUNETR(
            in_channels=config.in_channels, out_channels=config.num_channels, feature_size=config.feature_size,
            depths=config.depths, num_heads=config.num_heads, window_size=config.window_size, norm_name="instance",
            downsample=config.swin_downsample, use_v2=True, dropout_path_rate=config.drop_path_rate, normalize=True,
        )
        net.out = nn.Identity()  # so net(x) still runs and returns the decoder feature map
        return net
    common = dict(
        input_channels=config.in_channels, n_stages=len(config.features_per_stage),
        features_per_stage=config.features_per_stage, conv_op=nn.Conv3d, kernel_sizes=config.kernel_size,
        strides=config.strides, num_classes=config.num_channels,
        n_conv_per_stage_decoder=config.decoder_convs_per_stage, conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"negative_slope": 1e-2, "inplace": True}, deep_supervision=False,
    )
    unet = require(config.backbone, "dynamic_network_architectures.architectures.unet")
    if config.backbone == "plain-conv-unet":
        net = unet.PlainConvUNet(n_conv_per_stage=config.blocks_per_stage, **common)
    else:
        net = unet.ResidualEncoderUNet(n_blocks_per_stage=config.blocks_per_stage, **common)
    net.apply(net.initialize)  # nnU-Net's own He init, as its get_network_from_plans applies it
    net.decoder.seg_layers = nn.ModuleList()  # output convs: the last one moves to the task head
    _register_each_module_once(net, config.backbone)
    return net


def _register_each_module_once(net: nn.Module, backbone: str) -> None:
    """nnU-Net registers some modules twice (decoder.encoder is encoder; each conv block's all_modules holds its
    conv/norm/nonlin). Shared tensors break safetensors round trips, so the aliases stay plain attributes: forward
    still uses them, the state dict names every tensor once."""
    blocks = require(backbone, "dynamic_network_architectures.building_blocks.simple_conv_blocks")
    aliases = [(block, "all_modules") for block in net.modules() if isinstance(block, blocks.ConvDropoutNormReLU)]
    for module, name in aliases + [(net.decoder, "encoder")]:
        object.__setattr__(module, name, module._modules.pop(name))


def output_channels(config: PetCtConfig) -> int:
    """Channels of the final decoder feature map (input of the 1x1x1 output conv)."""
    return config.feature_size if config.is_swin else config.features_per_stage[0]


def _call(module: nn.Module, x: torch.Tensor, checkpoint_fn: Callable | None) -> torch.Tensor:
    return module(x) if checkpoint_fn is None else checkpoint_fn(module, x)


def swin_features(net: nn.Module, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """SwinUNETR.forward's wiring, also returning the encoder features (full resolution down to 1/32).

    Gradient checkpointing here is MONAI's own (the blocks' use_checkpoint flag). Input sizes are checked by the
    caller (PetCtModel)."""
    hidden = net.swinViT(x, net.normalize)
    enc0 = net.encoder1(x)
    enc1 = net.encoder2(hidden[0])
    enc2 = net.encoder3(hidden[1])
    enc3 = net.encoder4(hidden[2])
    dec4 = net.encoder10(hidden[4])
    dec3 = net.decoder5(dec4, hidden[3])
    dec2 = net.decoder4(dec3, enc3)
    dec1 = net.decoder3(dec2, enc2)
    dec0 = net.decoder2(dec1, enc1)
    out = net.decoder1(dec0, enc0)
    return (enc0, enc1, enc2, enc3, hidden[3], dec4), out


def unet_features(net: nn.Module, x: torch.Tensor, checkpoint_fn: Callable | None = None):
    """The nnU-Net encoder/decoder forward without output convs, returning the skips and the last decoder map.

    With a checkpoint_fn (torch.utils.checkpoint.checkpoint-like) every encoder and decoder stage recomputes its
    activations in the backward pass."""
    encoder, decoder = net.encoder, net.decoder
    if getattr(encoder, "stem", None) is not None:
        x = _call(encoder.stem, x, checkpoint_fn)
    skips = []
    for stage in encoder.stages:
        x = _call(stage, x, checkpoint_fn)
        skips.append(x)
    x = skips[-1]
    for s, (up, stage) in enumerate(zip(decoder.transpconvs, decoder.stages)):
        x = torch.cat((up(x), skips[-(s + 2)]), 1)
        x = _call(stage, x, checkpoint_fn)
    return tuple(skips), x


def backbone_features(config: PetCtConfig, net: nn.Module, x: torch.Tensor, checkpoint_fn: Callable | None = None):
    """(encoder feature maps from fine to coarse, final decoder feature map)."""
    return swin_features(net, x) if config.is_swin else unet_features(net, x, checkpoint_fn)
