"""Downstream lesion segmentation (`train_seg.py`): fine-tuning or k-shot linear probing at any label fraction.

Selection uses the validation split only (mean autoPET Dice over lesion-positive validation studies), scored on the
harmonised grid of the cache (cheap, and only compared with itself). The test split is scored once, at the end, with
the selected model, the way autoPET scores it: the prediction is mapped back to the native PET grid (as `petct segment`
does) and compared with the study's own label file, voxel volume from its header. A test study whose label file is
not recorded in the cache, or is not on the PET grid, is scored on the harmonised grid instead, and its "grid" key
says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from ..atomic import atomic_path
from .args import DataArguments, ModelArguments, SegArguments, TrainArguments, default_learning_rate, read_id_file
from .loop import Selection, fit, make_accelerator
from .mae import subjects_of
from .splits import Split, label_subset, paper_split, random_split

PROBE_LR_FACTOR = 10  # a lone 1x1x1 conv learns slowly at the backbone's fine-tuning lr (our choice; paper silent)


def resolve_model_dir(path: str) -> str:
    """A training run directory means its selected model (`best/`, else `last/`); anything else is used as given."""
    p = Path(path)
    if p.is_dir() and not (p / "config.json").exists():
        for sub in ("best", "last"):
            if (p / sub / "config.json").exists():
                return str(p / sub)
    return path


def build_segmenter(model_args: ModelArguments, crop_size, linear_probe: bool):
    from .. import PetCtConfig, PetCtForSegmentation, PetCtForSeparatedModalityProbe

    if model_args.separated_pretrained:
        if len(model_args.separated_pretrained) != 2 or model_args.pretrained or not linear_probe:
            raise ValueError("--separated_pretrained takes two dirs (PET-only MAE, CT-only MAE), with --linear_probe "
                             "and without --pretrained")
        pet_dir, ct_dir = (resolve_model_dir(p) for p in model_args.separated_pretrained)
        return PetCtForSeparatedModalityProbe.from_pretrained_pair(pet_dir, ct_dir, num_labels=2,
                                                                   **model_args.overrides())
    if model_args.pretrained:
        model = PetCtForSegmentation.from_pretrained(resolve_model_dir(model_args.pretrained), num_labels=2,
                                                     **model_args.overrides())
    else:
        config = PetCtConfig.from_preset(model_args.preset,
                                         **{"crop_size": tuple(crop_size), "num_labels": 2, **model_args.overrides()})
        model = PetCtForSegmentation(config)
    if linear_probe:
        model.freeze_backbone()
    return model


def make_split(cache, data_args: DataArguments, seg_args: SegArguments) -> Split:
    """Train (labelled subset) / validation / test study ids; see SegArguments for the options."""
    n_scans = seg_args.k_shot or seg_args.num_train_scans
    fraction = None if n_scans else seg_args.label_fraction
    labelled = [i for i in cache.ids() if cache.info(i).get("has_label")]
    if seg_args.split_csv:
        split, _ = paper_split(seg_args.split_csv, labelled, fraction=fraction or 1.0, seed=seg_args.split_seed,
                               n_scans=n_scans)
        return split
    subject_of = subjects_of(cache, labelled)
    train, val, test = (read_id_file(p) for p in (data_args.train_ids, data_args.val_ids, seg_args.test_ids))
    if train is not None:
        split = Split(train=train, val=val or [], test=test or [], pool=train)
    else:
        split = random_split(labelled, subject_of, seed=seg_args.split_seed)
    return label_subset(split, subject_of, seed=seg_args.split_seed, fraction=fraction, n_scans=n_scans)


def score_studies(accelerator, model, cache, ids: list[str], seg_args: SegArguments, *, native: bool = False
                  ) -> dict[str, dict]:
    """Per-study autoPET metrics (harmonised grid, or the native PET grid where the label file allows); studies are
    shared out over the ranks and gathered."""
    from accelerate.utils import gather_object

    from ..inference import InferenceSettings, predict_probabilities, to_native_mask
    from ..evaluation import case_metrics

    settings = InferenceSettings(overlap=seg_args.sw_overlap, sw_batch_size=seg_args.sw_batch_size,
                                 precision="bf16" if accelerator.mixed_precision == "bf16" else "fp32")
    mine = {}
    for study_id in ids[accelerator.process_index :: accelerator.num_processes]:
        study = cache.load(study_id)
        probs = predict_probabilities(model, study.image, settings, device=accelerator.device)
        label = native_label(study) if native else None
        if label is None:
            voxel_ml = float(np.prod(study.spacing)) / 1000.0
            mine[study_id] = {**case_metrics(probs.argmax(0), np.asarray(study.label), voxel_ml), "grid": "harmonised"}
        else:
            mine[study_id] = {**case_metrics(to_native_mask(study, probs), label.array, label.voxel_volume_ml),
                              "grid": "native"}
    merged = {}
    for part in gather_object([mine]):
        merged.update(part)
    return dict(sorted(merged.items()))


def native_label(study):
    """The study's label Volume on its native PET grid, from the file recorded at harmonisation; None when there is
    none or it lies on another grid (then only the harmonised label can be scored)."""
    from ..data.geometry import same_grid
    from ..data.io import read_volume

    path = study.meta.get("label_path")
    if not path or not Path(path).exists():
        return None
    label = read_volume(path, modality="SEG")
    return label if same_grid(label.shape, label.affine, study.pet_shape, study.pet_affine) else None


def summarize(per_case: dict[str, dict], prefix: str) -> dict:
    """Mean Dice (lesion-positive studies), FPV and FNV; NaN-free keys so trackers accept them."""
    out = {}
    for key in ("dice", "fpv_ml", "fnv_ml"):
        values = [c[key] for c in per_case.values() if not math.isnan(c[key])]
        out[f"{prefix}_{key}"] = float(np.mean(values)) if values else float("nan")
    return out


def finetune(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments,
             seg_args: SegArguments) -> dict:
    """Train, select on validation, score the test split once; returns (and writes) `results.json`."""
    from ..data.cache import StudyCache
    from ..data.transforms import SegCropDataset

    if not train_args.output_dir:
        raise ValueError("--output_dir is required")
    if seg_args.schedule not in ("epochs", "equal_steps"):
        raise ValueError(f"--schedule must be epochs or equal_steps, got {seg_args.schedule!r}")
    accelerator = make_accelerator(train_args)
    cache = StudyCache(data_args.cache_dir)
    split = make_split(cache, data_args, seg_args)
    model = build_segmenter(model_args, data_args.crop_size, seg_args.linear_probe)
    lr = train_args.learning_rate or default_learning_rate(model.config.backbone) * (
        PROBE_LR_FACTOR if seg_args.linear_probe else 1)
    train_set = SegCropDataset(cache, split.train, crop_size=tuple(data_args.crop_size), augment=True,
                               fg_prob=seg_args.fg_prob, seed=train_args.seed)
    total_steps = seg_args.equal_steps if seg_args.schedule == "equal_steps" else None
    evaluate = None
    if split.val:
        def evaluate(unwrapped):
            return summarize(score_studies(accelerator, unwrapped, cache, split.val, seg_args), "val")

    accelerator.print(f"segmentation: {len(split.train)} labelled train / {len(split.val)} val / {len(split.test)} test "
                      f"studies, lr {lr:g}, {'linear probe' if seg_args.linear_probe else 'fine-tune'}")
    result = fit(accelerator, train_args, model, train_set, learning_rate=lr, evaluate=evaluate,
                 selection=Selection("val_dice", greater_is_better=True), total_steps=total_steps,
                 num_workers=data_args.num_workers)

    selected = type(model).from_pretrained(result.model_dir).to(accelerator.device).eval()
    test_cases = score_studies(accelerator, selected, cache, split.test, seg_args, native=True) if split.test else {}
    results = {
        "pretrained": model_args.pretrained or model_args.separated_pretrained or None,
        "preset": getattr(model.config, "preset", None),
        "backbone": model.config.backbone, "backbone_name": getattr(model.config, "preset", None) or model.config.backbone,
        "linear_probe": seg_args.linear_probe, "schedule": seg_args.schedule, "k_shot": seg_args.k_shot,
        "label_fraction": seg_args.label_fraction, "n_train": len(split.train), "seed": train_args.seed,
        "split_seed": seg_args.split_seed, "steps": result.state.step, "learning_rate": lr,
        "selected_model": str(result.model_dir), "selected_step": result.state.best_step,
        "best_val_dice": result.state.best_metric, "history": result.state.history, "split": split.to_dict(),
        "test": summarize(test_cases, "test") if test_cases else {}, "test_cases": test_cases,
    }
    if accelerator.is_main_process:
        with atomic_path(Path(train_args.output_dir) / "results.json") as tmp:
            tmp.write_text(json.dumps(results, indent=1, default=_json_default))
    accelerator.wait_for_everyone()
    return results


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    from .args import parse

    model_args, data_args, train_args, seg_args = parse((ModelArguments, DataArguments, TrainArguments, SegArguments), argv)
    results = finetune(model_args, data_args, train_args, seg_args)
    test = results["test"]
    print(f"results: {Path(train_args.output_dir) / 'results.json'}"
          + (f" (test Dice {test['test_dice']:.3f}, FPV {test['test_fpv_ml']:.2f} ml, FNV {test['test_fnv_ml']:.2f} ml)" if test else ""))
    return 0
