"""Sub-commands that hand every flag on to a training entry point's own dataclass parser (HfArgumentParser):
`petct pretrain` (= train_mae.py), `petct finetune` (= train_seg.py) and `petct study`. Their options, defaults and
`--help` are the scripts' own; argparse here only routes."""

from __future__ import annotations

import importlib


def add_forwarding_command(sub, name: str, help: str, entry: str) -> None:
    """Register `petct NAME ...` to call ``entry`` ("module:function" of this package) with the raw flags."""
    p = sub.add_parser(name, help=help, add_help=False, prefix_chars="+")  # every flag goes on to the entry point
    p.add_argument("options", nargs="*", help=f"flags or a YAML/JSON file first (see `petct {name} --help`)")
    p.set_defaults(run=lambda args: _call(entry, args.options, f"petct {name}"))


def _call(entry: str, options: list[str], prog: str) -> int:
    module, function = entry.split(":")
    return getattr(importlib.import_module(module, "modeling_petct"), function)(options, prog=prog)
