"""Convert the authors' released ``.pth`` checkpoints into petct-fm ``PetCtForMaskedImageModeling`` folders.

The authors saved plain state dicts of MONAI ``SwinUNETR`` (out_channels=2) or nnU-Net ``PlainConvUNet``, possibly
wrapped by DataParallel (``module.`` prefix), torch.compile (``_orig_mod.``) or nested under a key such as
``state_dict``. The renaming is the one documented in backbones.py: every key moves under ``petct.backbone.``, the
final output conv becomes ``reconstruction_head``, deep-supervision outputs and nnU-Net's aliases (the decoder's
``encoder``, each conv block's ``all_modules``) are dropped. Files are read with ``torch.load(weights_only=True)``
only: a checkpoint never runs code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import torch

from ..errors import PetCtInputError
from ..atomic import atomic_folder

NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SWIN_PATCH = "swinViT.patch_embed.proj.weight"


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's state dict from an original checkpoint, unwrapped and with wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise PetCtInputError(path, "checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise PetCtInputError(path, f"refused: not loadable with torch.load(weights_only=True) ({err})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise PetCtInputError(path, f"not a readable PyTorch checkpoint ({err})") from None
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = next((obj[k] for k in NESTING_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            raise PetCtInputError(path, f"no state dict found (top-level keys: {sorted(map(str, obj))[:12]})")
        obj = nested
    if not isinstance(obj, dict) or not obj:
        raise PetCtInputError(path, "checkpoint holds no tensors")
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def _stage_count(keys, pattern: str) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for key in keys:
        match = re.match(pattern, key)
        if match:
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return found


def detect_preset(state_dict: dict[str, torch.Tensor], source: str | Path) -> str:
    """The PetCtConfig preset whose network has this checkpoint's architecture (Swin width/depths, CNN widths)."""
    from ..models.configuration_petct import PRESETS

    if _SWIN_PATCH in state_dict:
        blocks = _stage_count(state_dict, r"swinViT\.layers(\d)\.0\.blocks\.(\d+)\.")
        found = {"backbone": "swinunetr-v2", "feature_size": state_dict[_SWIN_PATCH].shape[0],
                 "depths": tuple(len(blocks.get(i, ())) for i in range(1, 5))}
    elif any(k.startswith("encoder.stages.") for k in state_dict):
        stages = sorted(_stage_count(state_dict, r"encoder\.stages\.(\d+)\.(\d+)\."))
        widths = []
        for s in stages:
            conv = next(k for k in state_dict if k.startswith(f"encoder.stages.{s}.") and k.endswith("conv.weight"))
            widths.append(state_dict[conv].shape[0])
        found = {"backbone": "residual-encoder-unet" if any(k.startswith("encoder.stem.") for k in state_dict)
                 else "plain-conv-unet", "features_per_stage": tuple(widths)}
    else:
        raise PetCtInputError(source, "neither a SwinUNETR nor an nnU-Net UNet state dict "
                                      f"(first keys: {list(state_dict)[:5]})")
    for name, preset in PRESETS.items():
        values = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in preset.items()}
        if all(values.get(k) == v for k, v in found.items()):
            return name
    raise PetCtInputError(source, f"architecture {found} matches no preset; pass --preset")


def to_petct_keys(state_dict: dict[str, torch.Tensor], config) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(renamed state dict for PetCtForMaskedImageModeling, dropped original keys), by the model's own key mapping."""
    from ..models.backbones import convert_original_state_dict

    renamed = convert_original_state_dict(state_dict, config, "reconstruction_head")
    dropped = [key for key, tensor in state_dict.items()
               if not convert_original_state_dict({key: tensor}, config, "reconstruction_head")]
    return renamed, dropped


def _original_name(key: str) -> str:
    return key.removeprefix("petct.backbone.")


def convert_checkpoint(path: str | Path, preset: str | None = None):
    """(PetCtForMaskedImageModeling with the checkpoint's weights, provenance dict). Any key the two models do not
    share, or any shape that differs, is a PetCtInputError naming the file."""
    from ..models.configuration_petct import PetCtConfig
    from ..models.modeling_petct import PetCtForMaskedImageModeling

    state_dict = load_original_state_dict(path)
    preset = preset or detect_preset(state_dict, path)
    config = PetCtConfig.from_preset(preset)
    renamed, dropped = to_petct_keys(state_dict, config)
    model = PetCtForMaskedImageModeling(config)
    expected = model.state_dict()
    missing = sorted(_original_name(k) for k in expected.keys() - renamed.keys())
    unexpected = sorted(_original_name(k) for k in renamed.keys() - expected.keys())
    wrong = sorted(f"{_original_name(k)} {tuple(renamed[k].shape)} != {tuple(expected[k].shape)}"
                   for k in expected.keys() & renamed.keys() if renamed[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        def head(items):
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
        problems = [f"{name} keys: {head(items)}" for name, items in
                    (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", wrong)) if items]
        raise PetCtInputError(path, f"does not fit preset {preset!r}: " + "; ".join(problems))
    model.load_state_dict(renamed, strict=True)
    model.eval()
    provenance = {"source": Path(path).name, "sha256": _sha256(path), "preset": preset, "dropped_keys": dropped}
    return model, provenance


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_to_folder(path: str | Path, out_dir: str | Path, *, preset: str | None = None,
                      overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically) as a save_pretrained folder plus conversion.json (source hash, preset)."""
    model, provenance = convert_checkpoint(path, preset)
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out_dir)
