#!/usr/bin/env python
"""Write a Hub-ready folder for a petct-fm model (weights, config with auto_map, remote code, model card) and upload it.

    python hub_scripts/push_model.py runs/seg/best --repo-id you/petct-swin-small-autopet \\
        --training-config recipe.yaml --eval eval_test.json --eval-dataset "AutoPET FDG (paper test split)" --dry-run

The card is generated from the run's own record (results.json beside the model folder, or --results), its
config.json and the given files; --dry-run writes and validates the folder without uploading, and the real push
afterwards replaces that folder (any other existing --out-dir needs --overwrite).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modeling_petct.hub.scripts import add_hub_arguments, run_script


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="push_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a saved petct-fm model folder (save_pretrained / converted)")
    add_hub_arguments(parser)
    parser.add_argument("--results", type=Path, default=None,
                        help="the run record (default: results.json in the model folder or its parent)")
    parser.add_argument("--training-config", type=Path, default=None,
                        help="training options file (JSON/YAML) to show in the card")
    parser.add_argument("--eval", type=Path, action="append", default=[],
                        help="evaluation JSON of `petct evaluate` / `petct study` (repeatable)")
    parser.add_argument("--eval-dataset", action="append", default=[],
                        help="name of the data each --eval was computed on (one for all, or one per --eval)")
    parser.add_argument("--eval-split", default="test", help="split name for the model-index (default: test)")
    parser.add_argument("--license", default=None,
                        help="Hub licence id of the weights (default: apache-2.0; converted weights: other, the data "
                             "providers' terms)")
    parser.add_argument("--license-name", default=None, help="name shown with --license other")
    parser.add_argument("--license-file", type=Path, default=None,
                        help="with --license other: the licence text, shipped as LICENSE.md and linked from the card")
    parser.add_argument("--base-model", default=None,
                        help="Hub id of the model this one was fine-tuned from (default: the run record's, when it is "
                             "a Hub id)")
    return parser


def run(args) -> int:
    from modeling_petct.errors import PetCtInputError
    from modeling_petct.hub.card import CardInputs, EvalSource
    from modeling_petct.hub.export import export_model_folder
    from modeling_petct.hub.upload import push_folder

    names = args.eval_dataset or ["unspecified data"]
    if args.eval and len(names) not in (1, len(args.eval)):
        raise PetCtInputError("--eval-dataset", f"give one name, or one per --eval ({len(args.eval)})")
    names = names * len(args.eval) if len(names) == 1 else names
    evals = [EvalSource(path, name, split=args.eval_split) for path, name in zip(args.eval, names)]
    inputs = CardInputs(repo_id=args.repo_id, model_dir=Path(args.model_dir), training_config=args.training_config,
                        evals=evals, license=args.license, license_name=args.license_name,
                        license_file=args.license_file, base_model=args.base_model, results=args.results)
    out = Path(args.out_dir or Path("hub_export") / args.repo_id.split("/")[-1])
    export_model_folder(args.model_dir, out, inputs, overwrite=args.overwrite)
    print(f"wrote {out}")
    if args.dry_run:
        return 0
    info = push_folder(out, args.repo_id, endpoint=args.endpoint, token=args.token, private=args.private or None,
                       commit_message="Upload petct-fm model")
    print(f"pushed {args.repo_id}: {info.commit_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
