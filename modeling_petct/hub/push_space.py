"""Build the Gradio Space folder (app, petct-fm source, pinned requirements, README front matter) from the installed
petct-fm and upload it.

    python -m modeling_petct.hub.push_space --repo-id you/petct-demo --model you/petct-swin-small-autopet --dry-run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .scripts import add_hub_arguments, run_script


def build_parser(prog: str = "push_space.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_hub_arguments(parser)
    parser.add_argument("--model", action="append", default=[],
                        help="Hub id of a segmentation model the Space offers (repeatable)")
    parser.add_argument("--title", default="petct-fm lesion segmentation")
    return parser


def run(args) -> int:
    from .space import build_space_folder, push_space

    out = Path(args.out_dir or Path("hub_export") / args.repo_id.split("/")[-1])
    build_space_folder(out, title=args.title, models=args.model, overwrite=args.overwrite)
    print(f"wrote {out}")
    if args.dry_run:
        return 0
    info = push_space(out, args.repo_id, models=args.model, endpoint=args.endpoint, token=args.token,
                      private=args.private or None)
    print(f"pushed Space {args.repo_id}: {info.commit_url}")
    return 0


def main(argv: list[str] | None = None, prog: str = "push_space.py") -> int:
    return run_script(build_parser(prog), run, argv)


if __name__ == "__main__":
    sys.exit(main(prog="python -m modeling_petct.hub.push_space"))
