"""`petct pretrain`: masked-autoencoder pretraining, the same as `train_mae.py` (its options, its defaults)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="masked-autoencoder pretraining on a harmonised cache (= train_mae.py)",
                       add_help=False, prefix_chars="+")  # every flag goes on to the dataclass parser
    p.add_argument("options", nargs="*", help="train_mae.py flags or a YAML/JSON file first (see `petct pretrain --help`)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..training.mae import main

    return main(args.options, prog="petct pretrain")
