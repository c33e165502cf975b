#!/usr/bin/env python
"""Build the Gradio Space folder (demo app, petct-fm source, requirements, README front matter) and upload it.

    python hub_scripts/push_space.py --repo-id you/petct-demo --model you/petct-swin-small-autopet --dry-run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub_cli import add_hub_arguments, run_script

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="push_space.py", description=__doc__.split("\n\n")[0])
    add_hub_arguments(parser)
    parser.add_argument("--model", action="append", default=[],
                        help="Hub id of a segmentation model the Space offers (repeatable)")
    parser.add_argument("--demo-dir", type=Path, default=DEMO_DIR, help="folder with app.py and requirements.txt")
    parser.add_argument("--title", default="petct-fm lesion segmentation")
    return parser


def run(args) -> int:
    from modeling_petct.hub.space import build_space_folder, push_space

    out = Path(args.out_dir or Path("hub_export") / args.repo_id.split("/")[-1])
    build_space_folder(args.demo_dir, out, title=args.title, models=args.model, overwrite=args.overwrite)
    print(f"wrote {out}")
    if args.dry_run:
        return 0
    info = push_space(out, args.repo_id, models=args.model, endpoint=args.endpoint, token=args.token,
                      private=args.private or None)
    print(f"pushed Space {args.repo_id}: {info.commit_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
