"""`petct finetune`: lesion-segmentation fine-tuning or linear probing, the same as `train_seg.py`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune or linearly probe a lesion segmenter (= train_seg.py)",
                       add_help=False, prefix_chars="+")  # every flag goes on to the dataclass parser
    p.add_argument("options", nargs="*", help="train_seg.py flags or a YAML/JSON file first (see `petct finetune --help`)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..training.segmentation import main

    return main(args.options, prog="petct finetune")
