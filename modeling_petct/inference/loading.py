"""Load a petct segmentation model from a local folder (a model or a train_seg.py run) or a Hub id in the local cache."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PetCtInputError

# No default public checkpoint is published yet: --model must be given (a local folder or a Hub id in the local cache).
MODEL_HELP = (
    "pass --model with a local folder holding config.json + model.safetensors (e.g. the output of `petct quickstart` "
    "or of train_seg.py), or a Hugging Face Hub id already in the local cache (download it where there is network "
    "with `hf download ID`, then run with HF_HUB_OFFLINE=1)"
)


def resolve_model_dir(path: str | os.PathLike) -> str:
    """A training run folder (train_seg.py / train_mae.py output) means its selected model: ``best/``, else ``last/``;
    anything else (a model folder, a Hub id) is returned as given."""
    p = Path(path).expanduser()
    if p.is_dir() and not (p / "config.json").exists():
        for sub in ("best", "last"):
            if (p / sub / "config.json").exists():
                return str(p / sub)
    return str(path)


def load_segmentation_model(source: str | os.PathLike | None, device: str = "cpu"):
    """A petct segmentation model (``PetCtForSegmentation`` or the separated-modality probe, by its config) in eval
    mode on ``device`` from a local folder or a Hub id (cache only when offline).

    Original ``.pth`` checkpoints are converted to a folder first (hub_scripts), then loaded like any folder.
    """
    from transformers import AutoModelForSemanticSegmentation

    if source is None or str(source).strip() == "":
        raise PetCtInputError("--model", f"no model given: {MODEL_HELP}")
    path = Path(resolve_model_dir(source)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            pth = sorted(p.name for p in path.glob("*.pth")) + sorted(p.name for p in path.glob("*.pt"))
            hint = f" it holds {', '.join(pth[:3])}: convert the original checkpoint first (python hub_scripts/convert_original_checkpoint.py);" if pth else ""
            raise PetCtInputError(path, f"not a model folder (no config.json);{hint} {MODEL_HELP}")
        folder = path
    elif path.exists() or str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise PetCtInputError(source, f"no such model folder; {MODEL_HELP}")
    else:
        folder = _hub_snapshot(str(source))
    model = AutoModelForSemanticSegmentation.from_pretrained(folder)
    return model.to(device).eval()


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.py", "*.md"]))
    except Exception as err:  # offline, not cached, unknown repo, no network: all end in the same advice
        raise PetCtInputError(
            repo_id, f"no local folder of that name and the Hub model could not be loaded ({type(err).__name__}); {MODEL_HELP}"
        ) from None
