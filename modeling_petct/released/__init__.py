"""The phantom models released with the package: one Hub-format folder each (config.json, model.safetensors, a model
card README.md, release.json: how it was built), made by `petct release` (experiments/release.py). Trained on
synthetic phantoms only."""

from __future__ import annotations

from pathlib import Path

RELEASED_DIR = Path(__file__).resolve().parent
RECORD = "release.json"


def released_models(root: Path = RELEASED_DIR) -> dict[str, Path]:
    """Name -> folder of every released model (those with a release.json)."""
    return {p.parent.name: p.parent for p in sorted(Path(root).glob(f"*/{RECORD}"))}
