"""`petct import-nnunet`: an nnU-Net v2 results folder -> a petct-fm model folder (runs without nnunetv2)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("import-nnunet", help="import an nnU-Net v2 results folder (dataset.json, plans.json, "
                                             "fold_k/checkpoint_final.pth) as a model folder")
    p.add_argument("results_folder", help="the trainer folder, e.g. .../Dataset221_X/nnUNetTrainer__nnUNetPlans__3d_fullres")
    p.add_argument("-o", "--output", required=True, help="model folder to write (config.json, model.safetensors, card)")
    p.add_argument("--folds", nargs="+", default=None, help="folds to ensemble (default: every fold with a checkpoint)")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final",
                   help="checkpoint_final.pth (default) or checkpoint_best.pth")
    p.add_argument("--channels", default=None,
                   help="role of each input channel, comma-separated: PET, CT or guidance:<name> (default: from the "
                        "channel names; two ambiguous channels follow autoPET's CT,PET)")
    p.add_argument("--license", dest="weights_licence", default=None,
                   help="the weights' licence as their authors state it (Hub id such as cc-by-4.0, or its name); "
                        "default: unknown")
    p.add_argument("--source-url", default=None, help="where the weights were downloaded from (for the card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..hub.nnunet_import import import_to_folder
    from .checks import check_inputs_exist, check_output_folder

    check_inputs_exist(args.results_folder)
    check_output_folder(args.output, inputs=[args.results_folder])
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    out = import_to_folder(args.results_folder, args.output, folds=args.folds, checkpoint=args.checkpoint,
                           channels=channels, weights_licence=args.weights_licence, source_url=args.source_url,
                           overwrite=args.overwrite)
    print(f"imported {args.results_folder} -> {out}")
    return 0
