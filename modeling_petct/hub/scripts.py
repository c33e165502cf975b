"""What the Hub command lines share (hub_scripts/ and ``python -m modeling_petct.hub.push_space``). Argparse only at
import, so `--help` answers without loading torch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def run_script(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
               argv: list[str] | None = None) -> int:
    """Parse and run; a bad input (PetCtInputError) is one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    from ..errors import PetCtInputError

    try:
        return int(run(args) or 0)
    except PetCtInputError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """--repo-id, --endpoint, --token, --private, --out-dir, --dry-run, --overwrite (model and Space scripts)."""
    parser.add_argument("--repo-id", required=True, help="target repo, e.g. your-name/petct-swin-small")
    parser.add_argument("--endpoint", default=None,
                        help="Hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--token", default=None, help="Hub token (default: $HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--out-dir", default=None, help="where to write the folder (default: hub_export/<repo name>)")
    parser.add_argument("--dry-run", action="store_true", help="write and validate the folder, upload nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out-dir")
