"""`petct study`: the label-efficiency grid {backbone} x {pretrained, scratch} x {fraction} x {seed} (+ k-shot probe)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("study", help="Run (or finish) the label-efficiency study; writes table.md, label_efficiency.png, results.json.",
                       add_help=False, prefix_chars="+")  # every flag goes on to the dataclass parser
    p.add_argument("options", nargs="*", help="StudyArguments flags or a YAML/JSON file first (see `petct study --help`)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.study import main

    return main(args.options, prog="petct study")
