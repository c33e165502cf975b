"""`petct` command line: a thin dispatcher; each sub-command lives in its own module of this package.

Sub-command modules expose ``register(subparsers)`` (cheap: argparse only) and ``run(args) -> int`` (imports the
heavy libraries lazily, so `petct --help` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PetCtInputError

# sub-commands, each a module of this package with the same name
COMMANDS = ("phantom", "harmonize", "segment", "evaluate", "pretrain", "finetune", "study", "quickstart", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petct", description="Whole-body FDG PET/CT foundation models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(f".{module}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except PetCtInputError as err:
        print(f"petct {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
