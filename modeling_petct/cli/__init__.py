"""`petct` command line: a thin dispatcher; each sub-command lives in its own module of this package.

Sub-command modules expose ``register(subparsers)`` (cheap: argparse only) and ``run(args) -> int`` (imports the
heavy libraries lazily, so `petct --help` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys


# sub-commands, each a module of this package with the same name
COMMANDS = ("phantom", "harmonize", "segment", "evaluate", "pretrain", "finetune", "study", "quickstart", "release", "demo",
            "import_nnunet")


class _OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line naming the command, the flag and the problem (exit 2); --help shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _OneLineErrors(prog="petct", description="Whole-body FDG PET/CT foundation models.")
    parser.add_argument("--version", action="version", version=f"petct-fm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(f".{module}", __name__).register(sub)
    for command in sub.choices.values():  # every command takes them, after its name as users type them
        if command.prefix_chars != "-":  # `study` hands every flag on to the training parser
            continue
        talk = command.add_mutually_exclusive_group()
        talk.add_argument("-q", "--quiet", action="store_true", help="print errors only")
        talk.add_argument("-v", "--verbose", action="store_true", help="also print library logs (model load report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checks import run_guarded, verbosity

    args = build_parser().parse_args(argv)
    with verbosity(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False)):
        return run_guarded(f"petct {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
