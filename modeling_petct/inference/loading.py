"""Load a petct segmentation model from a local folder (a model or a train_seg.py run) or a Hub id in the local cache."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PetCtInputError

# No default public checkpoint is published yet: --model must be given (a local folder or a Hub id in the local cache).
MODEL_HELP = (
    "pass --model with a local folder holding config.json + model.safetensors (e.g. the output of `petct quickstart` "
    "or of train_seg.py), a Hugging Face Hub id already in the local cache (download it where there is network "
    "with `hf download ID`, then run with HF_HUB_OFFLINE=1), or petct-phantom-segmenter (released with the package, "
    "trained on synthetic phantoms only: a demonstration, not for patient data)"
)


def resolve_model_dir(path: str | os.PathLike) -> str:
    """A training run folder (train_seg.py / train_mae.py output) means its selected model: ``best/``, else ``last/``;
    the name of a model released with the package (``petct-phantom-segmenter``) its folder; anything else (a model
    folder, a Hub id) is returned as given."""
    from ..released import released_models

    p = Path(path).expanduser()
    if not p.exists() and str(path) in released_models():
        return str(released_models()[str(path)])
    if p.is_dir() and not (p / "config.json").exists():
        for sub in ("best", "last"):
            if (p / sub / "config.json").exists():
                return str(p / sub)
    return str(path)


def load_segmentation_model(source: str | os.PathLike | None, device: str = "cpu"):
    """A petct segmentation model (``PetCtForSegmentation`` or the separated-modality probe, by its config) in eval
    mode on ``device`` from a local folder or a Hub id (cache only when offline).

    Original ``.pth`` checkpoints are converted to a folder first (hub_scripts), then loaded like any folder. A model
    whose weights do not all come from the checkpoint (an MAE checkpoint, weights of another architecture) is refused:
    transformers would fill the gaps with random numbers and the mask would look like a result.
    """
    folder = model_folder(source)
    model = _from_pretrained(folder)
    return model.to(device).eval()


def model_folder(source: str | os.PathLike | None) -> Path:
    """The checked model folder behind ``source`` (a folder, a training run, a cached Hub id); no weights read yet."""
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
    _check_config(folder)
    return folder


def _check_config(folder: Path) -> None:
    """config.json must be JSON naming a petct segmentation architecture, with its weights beside it."""
    import json

    from ..models.registry import CONFIG_CLASSES, segmentation_architectures

    try:
        config = json.loads((folder / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise PetCtInputError(folder / "config.json", f"not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("model_type") not in CONFIG_CLASSES.values():
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise PetCtInputError(folder / "config.json", f"model_type {found!r} is not a petct-fm model "
                                                      f"({', '.join(CONFIG_CLASSES.values())})")
    architectures = set(config.get("architectures") or ())
    if not architectures & segmentation_architectures():
        kind = "a pretraining (MAE) checkpoint" if "PetCtForMaskedImageModeling" in architectures else "not a segmentation model"
        raise PetCtInputError(folder, f"{kind} ({', '.join(sorted(architectures)) or 'no architectures'}): fine-tune "
                                      "it first (train_seg.py / `petct quickstart`) and pass the fine-tuned folder")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise PetCtInputError(folder, "no weights (model.safetensors) beside config.json")


def _from_pretrained(folder: Path):
    from transformers import AutoModelForSemanticSegmentation

    try:
        # the installed petct-fm classes, never code shipped inside a (downloaded) model folder
        model, info = AutoModelForSemanticSegmentation.from_pretrained(folder, output_loading_info=True,
                                                                       trust_remote_code=False)
    except Exception as err:  # corrupt/truncated safetensors, size mismatches, broken config fields: one line each
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise PetCtInputError(folder, f"cannot load the model ({type(err).__name__}: {first})") from None
    missing = list(info.get("missing_keys") or []) + [str(k[0] if isinstance(k, tuple) else k)
                                                      for k in info.get("mismatched_keys") or []]
    if missing:
        raise PetCtInputError(
            folder, f"{len(missing)} weight(s) missing or of another shape in the checkpoint (e.g. {', '.join(missing[:3])}): "
                    "these weights belong to another model or architecture; they would run with random values"
        )
    return model


def model_label(source) -> str:
    """The model's name for outputs (DICOM SEG AlgorithmName, LO <= 64 chars): a Hub id, or a local folder's own
    name (a training run's name for its best/last) - never a local path."""
    path = Path(str(source)).expanduser()
    if path.exists():
        parts = path.resolve().parts
        name = "/".join(parts[-2:]) if parts[-1] in ("best", "last") and len(parts) > 1 else parts[-1]
    else:
        name = str(source)
    return name[-64:] or "petct-fm"


def weights_checksum(model) -> str:
    """sha256 over the model's parameters and buffers (names, dtypes, shapes, bytes) in state-dict order: the same
    number for the same weights wherever they were loaded from."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.py", "*.md"]))
    except Exception as err:  # offline, not cached, unknown repo, no network: all end in the same advice
        raise PetCtInputError(
            repo_id, f"no local folder of that name and the Hub model could not be loaded ({type(err).__name__}); {MODEL_HELP}"
        ) from None
