"""Import an nnU-Net v2 results folder (``dataset.json``, ``plans.json``, ``fold_k/checkpoint_final.pth``) as a
petct-fm segmentation model folder that runs without nnunetv2.

What nnU-Net's predictor needs is read from the plans and written into ``config.nnunet`` (see PetCtConfig): the
network (PlainConvUNet or ResidualEncoderUNet from dynamic_network_architectures, the package's own backbones), the
input channels and which is PET and which CT, each channel's normalisation with the plans' statistics, target
spacing, patch size, resampling orders and the checkpoint's mirror axes; several folds become one ensemble model
whose members' logits are averaged. ``inference/nnunet.py`` then predicts as nnU-Net does.

Checkpoints are read with ``torch.load(weights_only=True)``; nnU-Net stores numpy scalars (its training log) beside
the weights, so numpy's scalar and dtype reconstructors, and nothing else, are allowed while loading. Whatever this
module cannot reproduce (2-D or cascade configurations, region-based or ignore labels, unknown trainers or network
options, masked normalisation) is refused with one line naming it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..atomic import file_sha256
from ..errors import PetCtInputError
from .nnunet_card import IMPORT_SOURCE

NETWORKS = {"PlainConvUNet": "plain-conv-unet", "ResidualEncoderUNet": "residual-encoder-unet"}
SCHEMES = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization")
READERS = {"SimpleITKIO": "sitk", "NibabelIO": "nibabel"}  # array axes each reader gives nnU-Net
# Trainers whose network is the plans' own (variants of nnUNetTrainer change training, not the network; the key
# check below catches any that do) and LesionTracer's, which adds an organ head (autoPET III, Rokuss et al. 2024).
ORGAN_TRAINERS = ("autoPET3_Trainer",)
ORGAN_PREFIX = "decoder.organ_seg_layers."
# The network options the package's backbones build (backbones.build_backbone); any other value is refused.
_FIXED = {"conv_op": "torch.nn.modules.conv.Conv3d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
          "dropout_op": None, "nonlin": "torch.nn.LeakyReLU", "conv_bias": True}
_KNOWN_KWARGS = {"n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage",
                 "n_conv_per_stage_decoder", "norm_op_kwargs", "dropout_op_kwargs", "nonlin_kwargs", *_FIXED}
ROLE_NAMES = {**dict.fromkeys(("pet", "suv", "fdg", "pt"), "PET"), **dict.fromkeys(("ct", "ctres"), "CT"),
              **dict.fromkeys(("fg", "foreground", "tumor", "lesion"), "foreground"),
              **dict.fromkeys(("bg", "background"), "background")}
GUIDANCE = ["foreground", "background"]  # click maps after the images, in this order (PetCtConfig.guidance_channels)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise PetCtInputError(path, "missing: an nnU-Net v2 results folder holds dataset.json, plans.json and fold_k/")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise PetCtInputError(path, f"not valid JSON ({err})") from None


def load_checkpoint(path: Path) -> dict:
    """An nnU-Net checkpoint dict, loaded without running code (numpy scalars allowed, nothing else)."""
    import torch

    numpy_scalars = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64)),
                     (getattr(np, "_core", None) or np.core).multiarray.scalar]  # numpy 2 or 1.26
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:200]
        raise PetCtInputError(path, f"refused: holds objects other than tensors and numbers ({first})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise PetCtInputError(path, f"not a readable PyTorch checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise PetCtInputError(path, "not an nnU-Net v2 checkpoint (no network_weights)")
    return checkpoint


def _fold_paths(folder: Path, folds, checkpoint: str) -> list[tuple[str, Path]]:
    name = f"checkpoint_{checkpoint}.pth"
    available = sorted((p.name.removeprefix("fold_"), p / name) for p in folder.glob("fold_*") if (p / name).is_file())
    if folds:
        chosen = [(str(f), folder / f"fold_{f}" / name) for f in folds]
        for fold, path in chosen:
            if not path.is_file():
                raise PetCtInputError(path, f"missing: fold {fold} has no {name}")
        return chosen
    if not available:
        raise PetCtInputError(folder, f"no fold_*/{name}: not an nnU-Net v2 results folder, or not trained to the end "
                                      "(try --checkpoint best)")
    return available


def _check_labels(dataset: dict, path: Path) -> dict[int, str]:
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise PetCtInputError(path, "no 'labels' in dataset.json")
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise PetCtInputError(path, "region-based labels (lists of label values) are not supported: only one class "
                                    "per voxel (softmax) models can be imported")
    if "ignore" in labels:
        raise PetCtInputError(path, "an 'ignore' label is not supported")
    id2label = {int(v): str(k) for k, v in labels.items()}
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise PetCtInputError(path, f"labels must be 0..n-1 with background 0, got {labels}")
    return id2label


def channel_roles(names: list[str], given: list[str] | None, source: Path) -> tuple[list[str], str]:
    """(role of each channel: "PET", "CT", "foreground" or "background" (click maps), how it was established).

    nnU-Net channels have free names; the DKFZ autoPET models call PET "CT" too. Names that identify one PET and
    one CT decide; otherwise a two-channel model follows the autoPET convention (CT first, then PET); anything else
    must be given (``channels``). The package's models take the images first, then foreground and background clicks
    (PetCtConfig.guidance_channels): other orders are refused."""
    if given:
        if len(given) != len(names):
            raise PetCtInputError("--channels", f"{len(given)} roles for {len(names)} channels {names}")
        roles, how = [ROLE_NAMES.get(r.lower(), r) for r in given], "given"
    else:
        roles = [ROLE_NAMES.get(n.lower(), n) for n in names]
        how = "channel names in dataset.json"
        if not (roles.count("PET") == 1 and roles.count("CT") == 1) and len(names) == 2:
            roles, how = ["CT", "PET"], f"autoPET convention (channel 0 CT, channel 1 PET; dataset.json: {names})"
    images = [r for r in roles if r in ("PET", "CT")]
    if sorted(images) not in (["CT", "PET"], ["PET"], ["CT"]) or roles[len(images):] not in ([], GUIDANCE) or \
            roles[:len(images)] != images:
        raise PetCtInputError(source, f"channels {names} read as {roles}: expected PET and/or CT, then optionally "
                                      "the foreground and background click maps; pass --channels, e.g. CT,PET,FG,BG")
    return roles, how


def _network_fields(arch: dict, plans_path: Path) -> dict:
    """PetCtConfig backbone fields of the plans' architecture block, or a refusal naming what differs."""
    name = str(arch.get("network_class_name", "")).rsplit(".", 1)[-1]
    if name not in NETWORKS:
        raise PetCtInputError(plans_path, f"network {arch.get('network_class_name')!r} is not supported "
                                          f"(only {', '.join(NETWORKS)})")
    kwargs = arch.get("arch_kwargs", {})
    unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
    wrong = [f"{k}={kwargs.get(k)!r}" for k, v in _FIXED.items() if kwargs.get(k, v) != v]
    norm = kwargs.get("norm_op_kwargs") or {}
    if norm.get("eps", 1e-5) != 1e-5 or not norm.get("affine", False):
        wrong.append(f"norm_op_kwargs={norm}")
    if (kwargs.get("nonlin_kwargs") or {}).get("negative_slope", 1e-2) != 1e-2:
        wrong.append(f"nonlin_kwargs={kwargs['nonlin_kwargs']}")
    if unknown or wrong:
        raise PetCtInputError(plans_path, f"network options this package does not build: {', '.join(unknown + wrong)}")
    blocks = kwargs.get("n_conv_per_stage") if name == "PlainConvUNet" else kwargs.get("n_blocks_per_stage")
    return {"backbone": NETWORKS[name], "features_per_stage": kwargs["features_per_stage"],
            "strides": [list(s) for s in kwargs["strides"]], "kernel_size": [list(k) for k in kwargs["kernel_sizes"]],
            "blocks_per_stage": blocks, "decoder_convs_per_stage": kwargs["n_conv_per_stage_decoder"]}


def _normalization(plans: dict, config: dict, n_channels: int, plans_path: Path) -> list[dict]:
    schemes, masked = config["normalization_schemes"], config.get("use_mask_for_norm") or [False] * n_channels
    stats = plans.get("foreground_intensity_properties_per_channel", {})
    out = []
    for c, scheme in enumerate(schemes):
        if scheme not in SCHEMES:
            raise PetCtInputError(plans_path, f"channel {c}: normalization {scheme!r} is not supported ({SCHEMES})")
        if masked[c]:
            raise PetCtInputError(plans_path, f"channel {c}: use_mask_for_norm is not supported")
        entry = {"scheme": scheme}
        if scheme == "CTNormalization":
            s = stats.get(str(c)) or {}
            entry.update(mean=float(s["mean"]), std=float(s["std"]), lower=float(s["percentile_00_5"]),
                         upper=float(s["percentile_99_5"]))
        out.append(entry)
    return out


def _configuration(plans: dict, name: str, plans_path: Path) -> dict:
    configs = plans.get("configurations", {})
    if name not in configs:
        raise PetCtInputError(plans_path, f"configuration {name!r} (named by the checkpoint) is not in the plans")
    config = dict(configs[name])
    while "inherits_from" in config:  # nnU-Net's plans inheritance: the parent's entries, overridden
        parent = configs[config.pop("inherits_from")]
        config = {**parent, **config}
    if config.get("previous_stage") or "cascade" in name:
        raise PetCtInputError(plans_path, f"configuration {name!r} is a cascade stage (it needs the previous "
                                          "stage's segmentation): not supported")
    if len(config.get("patch_size", ())) != 3:
        raise PetCtInputError(plans_path, f"configuration {name!r} is not 3-D: only 3d_fullres/3d_lowres models")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key) != "resample_data_or_seg_to_shape":
            raise PetCtInputError(plans_path, f"{key} {config.get(key)!r} is not nnU-Net's default resampling")
    return config


def build_config(dataset: dict, plans: dict, first: dict, n_folds: int, *, folder: Path, channels=None,
                 organ_classes: int = 0) -> tuple:
    """(PetCtConfig or PetCtEnsembleConfig, how the channel roles were established) from the results folder's files
    and the first fold's checkpoint."""
    from ..models.configuration_petct import PetCtConfig, PetCtEnsembleConfig

    plans_path, dataset_path = folder / "plans.json", folder / "dataset.json"
    id2label = _check_labels(dataset, dataset_path)
    names = [str(dataset["channel_names"][k]) for k in sorted(dataset.get("channel_names", {}), key=int)]
    roles, how = channel_roles(names, channels, dataset_path)
    config = _configuration(plans, first["init_args"]["configuration"], plans_path)
    reader = READERS.get(plans.get("image_reader_writer", "SimpleITKIO"))
    if reader is None:
        raise PetCtInputError(plans_path, f"image reader {plans['image_reader_writer']!r} is not supported "
                                          f"({', '.join(READERS)})")
    network = _network_fields(config["architecture"], plans_path)
    data_kw, prob_kw = config["resampling_fn_data_kwargs"], config["resampling_fn_probabilities_kwargs"]
    mirror = first.get("inference_allowed_mirroring_axes")
    recipe = {
        "normalization": _normalization(plans, config, len(names), plans_path),
        "resampling": {"order": int(data_kw.get("order", 3)), "order_z": int(data_kw.get("order_z", 0)),
                       "force_separate_z": data_kw.get("force_separate_z"),
                       "probabilities_order": int(prob_kw.get("order", 1)),
                       "probabilities_order_z": int(prob_kw.get("order_z", 0))},
        "mirror_axes": [int(a) for a in mirror] if mirror else [],
        "array_order": reader, "transpose_forward": [int(a) for a in plans.get("transpose_forward", (0, 1, 2))],
        "channel_names": names,
    }
    probe = PetCtConfig(**network)
    organs = tuple(f"organ_{i}" for i in range(1, organ_classes))
    fields = dict(
        **network, modalities=tuple(r for r in roles if r in ("PET", "CT")),
        guidance_channels=sum(r in GUIDANCE for r in roles),
        crop_size=tuple(config["patch_size"]), target_spacing=tuple(float(s) for s in config["spacing"]),
        normalization="none", mask_cell_size=probe.size_divisors, num_labels=len(id2label),
        id2label=id2label, label2id={v: k for k, v in id2label.items()}, organ_labels=organs, nnunet=recipe)
    if n_folds > 1:
        return PetCtEnsembleConfig(ensemble_size=n_folds, **fields), how
    return PetCtConfig(**fields), how


def _last_layer(weights: dict, prefix: str) -> int:
    return max(int(k[len(prefix):].split(".")[0]) for k in weights if k.startswith(prefix))


def member_state_dict(weights: dict, config, trainer: str, path: Path) -> dict:
    """One fold's nnU-Net weights as PetCtForSegmentation keys (the organ head's last layer -> organ_head)."""
    from ..models.backbones import convert_original_state_dict

    organ = {k: v for k, v in weights.items() if k.startswith(ORGAN_PREFIX)}
    if organ and trainer not in ORGAN_TRAINERS:
        raise PetCtInputError(path, f"trainer {trainer!r} adds {ORGAN_PREFIX}* layers this importer does not know")
    last = f"{ORGAN_PREFIX}{_last_layer(organ, ORGAN_PREFIX)}." if organ else None
    state = convert_original_state_dict({k: v for k, v in weights.items() if k not in organ}, config,
                                        "segmentation_head")
    state.update({"organ_head." + k[len(last):]: v for k, v in organ.items() if k.startswith(last)} if organ else {})
    return state


def _check_fit(model, state: dict, trainer: str, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problems = [f"{n}: {', '.join(items[:4])}" + (f" (+{len(items) - 4})" if len(items) > 4 else "")
                    for n, items in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong)) if items]
        raise PetCtInputError(path, f"weights of trainer {trainer!r} do not fit the plans' network ("
                                    + "; ".join(problems) + "): a custom trainer this importer does not know")


def import_results_folder(folder, *, folds=None, checkpoint: str = "final", channels=None):
    """(model in eval mode, provenance dict) from an nnU-Net v2 results folder; nothing is written."""
    import torch

    from ..models.modeling_ensemble import PetCtEnsembleForSegmentation
    from ..models.modeling_petct import PetCtForSegmentation

    folder = Path(folder)
    if not folder.is_dir():
        raise PetCtInputError(folder, "no such results folder")
    if checkpoint not in ("final", "best"):
        raise PetCtInputError("--checkpoint", f"'final' or 'best', got {checkpoint!r}")
    dataset, plans = _read_json(folder / "dataset.json"), _read_json(folder / "plans.json")
    paths = _fold_paths(folder, folds, checkpoint)
    checkpoints = [load_checkpoint(p) for _, p in paths]
    first = checkpoints[0]
    trainer = str(first.get("trainer_name", ""))
    if not (trainer.startswith("nnUNetTrainer") or trainer in ORGAN_TRAINERS):
        raise PetCtInputError(paths[0][1], f"trainer {trainer!r} is unknown: only nnU-Net's own trainers and "
                                           f"{', '.join(ORGAN_TRAINERS)} are imported")
    for (_, path), other in zip(paths[1:], checkpoints[1:]):
        if other.get("trainer_name") != trainer or \
                other["init_args"]["configuration"] != first["init_args"]["configuration"]:
            raise PetCtInputError(path, "folds of different trainers or configurations cannot form one ensemble")
    organ_key = next((k for k in first["network_weights"] if k.startswith(ORGAN_PREFIX) and k.endswith(".weight")),
                     None)
    organ_classes = int(first["network_weights"][organ_key].shape[0]) if organ_key else 0
    config, how = build_config(dataset, plans, first, len(paths), folder=folder, channels=channels,
                               organ_classes=organ_classes)
    model = (PetCtEnsembleForSegmentation if len(paths) > 1 else PetCtForSegmentation)(config)
    members = getattr(model, "members", [model])
    for member, (_, path), ckpt in zip(members, paths, checkpoints):
        state = member_state_dict(ckpt["network_weights"], config, trainer, path)
        _check_fit(member, state, trainer, path)
        with torch.no_grad():
            member.load_state_dict(state, strict=True)
    provenance = {
        "source": IMPORT_SOURCE, "folder": folder.name, "dataset": plans.get("dataset_name"),
        "plans": plans.get("plans_name"), "configuration": first["init_args"]["configuration"], "trainer": trainer,
        "folds": [f for f, _ in paths], "checkpoint": f"checkpoint_{checkpoint}.pth",
        "sha256": {f"fold_{f}": file_sha256(p) for f, p in paths}, "channel_roles": how,
        "dataset_licence": dataset.get("licence") or dataset.get("license"),
        "organ_head": f"{ORGAN_PREFIX}* ({organ_classes} classes, names not in the checkpoint)" if organ_key else None,
    }
    return model.eval(), provenance


def import_to_folder(folder, out_dir, *, folds=None, checkpoint: str = "final", channels=None,
                     weights_licence: str | None = None, source_url: str | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically): save_pretrained (weights, config.json, remote code), conversion.json (the
    provenance) and README.md (the card)."""
    from ..atomic import atomic_folder
    from .card import LICENSE_FILE
    from .nnunet_card import import_licence_file, render_import_card

    model, provenance = import_results_folder(folder, folds=folds, checkpoint=checkpoint, channels=channels)
    provenance.update(weights_licence=weights_licence or "unknown", source_url=source_url)
    out_dir = Path(out_dir)
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")
        config = json.loads((tmp / "config.json").read_text())
        (tmp / "README.md").write_text(str(render_import_card(out_dir.name, config, provenance)))
        terms = import_licence_file(provenance)
        if terms is not None:
            (tmp / LICENSE_FILE).write_text(terms)
    return out_dir
