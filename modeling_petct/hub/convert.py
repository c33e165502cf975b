"""Convert the authors' released ``.pth`` checkpoints into petct-fm ``PetCtForMaskedImageModeling`` folders.

The authors' notebooks (github.com/liu-xiaofeng/MAE-for-PET-CT, swinv2*/MAEv2.ipynb, nnunetv2/nnunetv2MAE.ipynb)
save ``{"epoch", "model_state_dict", "optimizer_state_dict", ...}`` of a DataParallel-wrapped MAE module that holds
MONAI ``SwinUNETR`` (out_channels=2) as ``encoder_decoder`` or nnU-Net ``PlainConvUNet`` as ``nnunet``: keys
``module.encoder_decoder.*`` / ``module.nnunet.*``. Plain state dicts, torch.compile's ``_orig_mod.`` and other
nesting keys such as ``state_dict`` are read too.

SwinUNETR's patch merging cannot be read from the weights: MONAI's ``downsample="merging"`` (its default) and
``"mergingv2"`` have the same parameter names and shapes but order the 2x2x2 neighbours differently (outputs differ
by up to ~0.3). Every one of the authors' Swin notebooks builds ``downsample='mergingv2'``, so a checkpoint with their
MAE wrapper's ``encoder_decoder.`` keys is theirs; a ``downsample`` entry saved in the checkpoint also decides;
anything else must be told (``swin_downsample``), never guessed.
 The renaming is the one documented in backbones.py: every key moves under ``petct.backbone.``, the
final output conv becomes ``reconstruction_head``, deep-supervision outputs and nnU-Net's aliases (the decoder's
``encoder``, each conv block's ``all_modules``) are dropped. Files are read with ``torch.load(weights_only=True)``
only: a checkpoint never runs code.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from ..errors import PetCtInputError
from ..atomic import atomic_folder, file_sha256

NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights")
AUTHORS_SWIN_WRAPPER = "encoder_decoder."  # MultiModal_SwinUNETR_MAE.encoder_decoder (the authors' MAE notebooks)
WRAPPER_PREFIXES = ("module.", "_orig_mod.", AUTHORS_SWIN_WRAPPER, "nnunet.")  # nnunet.: MultiModal_nnUNetV2_MIM
_SWIN_PATCH = "swinViT.patch_embed.proj.weight"
SWIN_DOWNSAMPLES = ("mergingv2", "merging")


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's state dict from an original checkpoint, unwrapped and with wrapper prefixes removed."""
    return _load_checkpoint(path)[0]


def _load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(network state dict without wrapper prefixes, facts: the prefixes removed and the saved non-tensor entries)."""
    path = Path(path)
    if not path.is_file():
        raise PetCtInputError(path, "checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise PetCtInputError(path, f"refused: not loadable with torch.load(weights_only=True) ({err})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise PetCtInputError(path, f"not a readable PyTorch checkpoint ({err})") from None
    saved = {}
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = next((obj[k] for k in NESTING_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            raise PetCtInputError(path, f"no state dict found (top-level keys: {sorted(map(str, obj))[:12]})")
        saved.update({k: v for k, v in obj.items() if v is not nested})
        obj = nested
    if not isinstance(obj, dict) or not obj:
        raise PetCtInputError(path, "checkpoint holds no tensors")
    removed = []
    while prefix := next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in obj)), None):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
        removed.append(prefix)
    return obj, {"prefixes": removed, "saved": saved}


def _saved_downsample(node) -> str | None:
    """A ``downsample`` value saved beside the weights (e.g. {"config": {"downsample": "merging"}})."""
    if isinstance(node, dict):
        value = node.get("downsample")
        if isinstance(value, str):
            return value
        return next((v for v in map(_saved_downsample, node.values()) if v is not None), None)
    return None


def swin_downsample(path, facts: dict, given: str | None) -> tuple[str, str]:
    """(SwinUNETR patch merging of this checkpoint, how it was established); a PetCtInputError when nothing says."""
    saved = _saved_downsample(facts["saved"])
    for value, how in ((given, "given (--swin-downsample)"), (saved, "saved in the checkpoint")):
        if value is not None and value not in SWIN_DOWNSAMPLES:
            raise PetCtInputError(path, f"SwinUNETR downsample {value!r} ({how}) is not one of {SWIN_DOWNSAMPLES}")
    if given and saved and given != saved:
        raise PetCtInputError(path, f"--swin-downsample {given} contradicts the checkpoint's saved {saved!r}")
    if given or saved:
        return given or saved, "given (--swin-downsample)" if given else "saved in the checkpoint"
    if AUTHORS_SWIN_WRAPPER in facts["prefixes"]:
        return "mergingv2", "the authors' MAE wrapper (encoder_decoder.*), whose notebooks all build mergingv2"
    raise PetCtInputError(path, "SwinUNETR checkpoint without the authors' MAE wrapper keys (encoder_decoder.*) or a "
                                "saved 'downsample': MONAI's downsample='merging' (its default) and 'mergingv2' (the "
                                "authors') have identical weights but different outputs, so the variant cannot be "
                                "read from them; pass --swin-downsample mergingv2 (the authors' networks) or merging")


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


def convert_checkpoint(path: str | Path, preset: str | None = None, swin_downsample_variant: str | None = None):
    """(PetCtForMaskedImageModeling with the checkpoint's weights, provenance dict). Any key the two models do not
    share, or any shape that differs, is a PetCtInputError naming the file; so is a Swin checkpoint whose patch
    merging nothing establishes (see the module docstring)."""
    from ..models.configuration_petct import PetCtConfig
    from ..models.modeling_petct import PetCtForMaskedImageModeling

    state_dict, facts = _load_checkpoint(path)
    preset = preset or detect_preset(state_dict, path)
    merging = {}
    if PetCtConfig.from_preset(preset).is_swin:
        variant, how = swin_downsample(path, facts, swin_downsample_variant)
        merging = {"swin_downsample": variant, "swin_downsample_from": how}
    config = PetCtConfig.from_preset(preset, **{k: v for k, v in merging.items() if k == "swin_downsample"})
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
    provenance = {"source": Path(path).name, "sha256": file_sha256(path), "preset": preset, **merging,
                  "wrapper_prefixes": facts["prefixes"], "dropped_keys": dropped}
    return model, provenance


def convert_to_folder(path: str | Path, out_dir: str | Path, *, preset: str | None = None,
                      swin_downsample_variant: str | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically) as a save_pretrained folder plus conversion.json (source hash, preset, merging)."""
    model, provenance = convert_checkpoint(path, preset, swin_downsample_variant)
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out_dir)
