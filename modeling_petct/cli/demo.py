"""`petct demo`: serve the Gradio demo locally (the same app as the Space)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

QUICKSTART_OUTPUT = Path("petct-quickstart")  # `petct quickstart`'s default output folder


def register(sub) -> None:
    p = sub.add_parser("demo", help="serve the web demo: upload PET/CT, segment, see and download the lesions")
    p.add_argument(
        "--model",
        action="append",
        metavar="DIR_OR_HUB_ID",
        help="segmentation model folder (save_pretrained) or Hub id; repeat to offer several. Default: "
        "$PETCT_DEMO_MODELS, else the models `petct quickstart` trained in ./petct-quickstart followed by the "
        "segmenter released with the package (petct-phantom-segmenter: trained on synthetic phantoms only)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve your network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", choices=("no", "yes"), default="no", help="open a public gradio.live tunnel")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..web.service import ModelShelf
    from ..errors import PetCtInputError
    from ..web.app import build_demo, launch, models_from_env

    models = model_labels(args.model) if args.model else models_from_env() or {**quickstart_models(), **released_segmenters()}
    shelf = ModelShelf(models, device=args.device)
    if models:  # load the default choice now: a wrong --model fails here, not on a visitor's first click
        first = next(iter(models))
        try:
            shelf.get(first)
        except OSError as err:
            raise PetCtInputError(models[first], f"cannot load the model ({err})") from None
        print(shelf.describe(first).replace("**", "").replace("`", ""))
    try:
        launch(build_demo(shelf), server_name=args.host, server_port=args.port, share=args.share == "yes")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (launch turns it into one): a requested stop, not a failure
        print("petct demo: stopped; the demo's files were removed", file=sys.stderr)
    return 0


def released_segmenters() -> dict[str, str]:
    """The segmenters released with the package (what a fresh install offers), labelled as synthetic-only."""
    from ..models.registry import segmentation_architectures
    from ..released import released_models

    found = {}
    for name, folder in released_models().items():
        architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
        if segmentation_architectures() & set(architectures):
            found[f"{name} · released · trained on synthetic phantoms only"] = str(folder)
    return found


def quickstart_models(root: Path = QUICKSTART_OUTPUT) -> dict[str, str]:
    """The models a quickstart selected, one per fine-tuning run, best validation Dice first; without its
    study/results.json (or when those folders moved), every segmentation model folder under ``root``."""
    from ..models.registry import segmentation_architectures

    results = root / "study" / "results.json"
    if results.is_file():
        from ..training.results import cells_by_validation

        ranked = {_run_label(c): c["selected_model"] for c in cells_by_validation(results)}
        ranked = {label: path for label, path in ranked.items() if Path(path).is_dir()}
        if ranked:
            return ranked
    found = {}
    for config in sorted(root.glob("**/config.json")):
        try:
            architectures = json.loads(config.read_text()).get("architectures") or []
        except (OSError, ValueError):
            continue
        if segmentation_architectures() & set(architectures):
            found[f"{config.parent.relative_to(root)} · synthetic data (quickstart)"] = str(config.parent)
    return found


def _run_label(cell: dict) -> str:
    """A model-list entry a clinician can read: how it was trained, its validation score named as what it is, and
    that the data was synthetic."""
    from ..training.results import recorded_score, selection_name

    arm = {"pretrained": "MAE-pretrained", "scratch": "no pretraining"}.get(cell["arm"], cell["arm"])
    labels = "k-shot labels" if cell.get("label_fraction") is None else f"{cell['label_fraction']:.0%} of labels"
    score = recorded_score(cell)
    shown = "n/a" if score is None else f"{score:.2f}"
    return f"{arm}, {labels} · {selection_name(cell, short=True)} {shown} · synthetic data"


def model_labels(models: list[str]) -> dict[str, str]:
    """label -> folder or Hub id for the model list: each folder's shortest trailing path no other given folder
    shares (quickstart folders are all named best: ``seed0/best`` beside ``seed1/best``); one entry per folder."""
    unique = list(dict.fromkeys(str(Path(m).resolve()) if Path(m).is_dir() else m for m in models))
    parts = [Path(m).parts if Path(m).is_dir() else (m,) for m in unique]
    for k in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-max(k, 2 if p[-1] in ("best", "last") else 1):]) for p in parts]
        if len(set(labels)) == len(labels):
            return dict(zip(labels, unique))
    return dict(zip(unique, unique))
