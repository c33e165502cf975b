#!/usr/bin/env python
"""Convert one of the authors' released .pth checkpoints into a petct-fm model folder (save_pretrained).

    python hub_scripts/convert_original_checkpoint.py swinunetr_v2_small.pth converted/swin-small

The architecture (SwinUNETR-v2 small/base/large or PlainConvUNet) is read from the weights; --preset forces one.
SwinUNETR's patch merging is not in the weights: a checkpoint of the authors' MAE (keys module.encoder_decoder.*) is
their mergingv2; any other Swin checkpoint needs --swin-downsample (mergingv2, or merging for MONAI's default).
The file is loaded with torch.load(weights_only=True): a checkpoint cannot run code.
"""

from __future__ import annotations

import argparse
import sys

from modeling_petct.hub.scripts import run_script


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convert_original_checkpoint.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the authors' .pth file (state dict, optionally nested / DataParallel)")
    parser.add_argument("out_dir", help="output model folder (config.json, model.safetensors, conversion.json)")
    parser.add_argument("--preset", default=None, help="PetCtConfig preset (default: detected from the weights)")
    parser.add_argument("--swin-downsample", choices=("mergingv2", "merging"), default=None,
                        help="SwinUNETR patch merging the checkpoint was built with (default: established from the "
                             "checkpoint, else refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def run(args) -> int:
    from modeling_petct.hub.convert import convert_to_folder

    out = convert_to_folder(args.checkpoint, args.out_dir, preset=args.preset,
                            swin_downsample_variant=args.swin_downsample, overwrite=args.overwrite)
    print(f"converted {args.checkpoint} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
