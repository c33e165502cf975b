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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from monai.networks.nets import SwinUNETR
from torch import nn

from .configuration_petct import PetCtConfig

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
    if config.is_swin:
        net = SwinUNETR(
            in_channels=config.num_channels, out_channels=config.num_channels, feature_size=config.feature_size,
            depths=config.depths, num_heads=config.num_heads, window_size=config.window_size, norm_name="instance",
            downsample="mergingv2", use_v2=True, dropout_path_rate=config.drop_path_rate, normalize=True,
        )
        net.out = nn.Identity()  # so net(x) still runs and returns the decoder feature map
        return net
    common = dict(
        input_channels=config.num_channels, n_stages=len(config.features_per_stage),
        features_per_stage=config.features_per_stage, conv_op=nn.Conv3d, kernel_sizes=config.kernel_size,
        strides=config.strides, num_classes=config.num_channels,
        n_conv_per_stage_decoder=config.decoder_convs_per_stage, conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"negative_slope": 1e-2, "inplace": True}, deep_supervision=False,
    )
    if config.backbone == "plain-conv-unet":
        net = PlainConvUNet(n_conv_per_stage=config.blocks_per_stage, **common)
    else:
        net = ResidualEncoderUNet(n_blocks_per_stage=config.blocks_per_stage, **common)
    net.apply(net.initialize)  # nnU-Net's own He init, as its get_network_from_plans applies it
    net.decoder.seg_layers = nn.ModuleList()  # output convs: the last one moves to the task head
    _register_each_module_once(net)
    return net


def _register_each_module_once(net: nn.Module) -> None:
    """nnU-Net registers some modules twice (decoder.encoder is encoder; each conv block's all_modules holds its
    conv/norm/nonlin). Shared tensors break safetensors round trips, so the aliases stay plain attributes: forward
    still uses them, the state dict names every tensor once."""
    aliases = [(block, "all_modules") for block in net.modules() if isinstance(block, ConvDropoutNormReLU)]
    for module, name in aliases + [(net.decoder, "encoder")]:
        object.__setattr__(module, name, module._modules.pop(name))


def output_channels(config: PetCtConfig) -> int:
    """Channels of the final decoder feature map (input of the 1x1x1 output conv)."""
    return config.feature_size if config.is_swin else config.features_per_stage[0]


def _call(module: nn.Module, x: torch.Tensor, checkpoint_fn: Callable | None) -> torch.Tensor:
    return module(x) if checkpoint_fn is None else checkpoint_fn(module, x)


def swin_features(net: SwinUNETR, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
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
