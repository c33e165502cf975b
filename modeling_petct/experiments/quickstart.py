"""`petct quickstart`: the whole method, end to end, offline, on 2 CPU cores in a few minutes.

synthetic cohort (NIfTI) -> harmonise -> MAE pretraining (test studies excluded) -> fine-tuning with 10/30/100% of
the labels, from the MAE and from scratch (equal steps) -> autoPET metrics on held-out test studies -> segment one
held-out study from its files -> report.md with every figure computed in this run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = ".petct-quickstart"


@dataclass(frozen=True)
class Budget:
    """Sized for <= 10 minutes on 2 CPU cores: a tiny-unet step of 2 crops takes ~0.17 s, a fine-tuning run ~65 s.

    Measured on the dev box (one fine-tuning run, all labels, 43 training / 13 test phantoms, native-grid test Dice):
    160 steps reach ~0.2, 320 steps 0.34, 640 steps 0.40; nnU-Net's batch Dice (foreground only) gave the same test
    Dice with less than half the false-positive volume of the per-crop DiceCE default (6 vs 15 ml), hence
    ``batch_dice``. More studies mainly make the test figures less noisy (13 test studies instead of 6).
    """

    n_studies: int = 64
    preset: str = "tiny-unet"
    spacing: tuple = (4.0, 4.0, 4.0)  # the phantom PET's own voxel size: whole-body context in small crops
    crop_size: tuple = (32, 32, 48)
    batch_size: int = 2
    mae_steps: int = 150
    finetune_steps: int = 320
    fractions: tuple = (0.1, 0.3, 1.0)
    learning_rate: float = 5e-3
    eval_every: int = 80
    batch_dice: bool = True
    val_crops: int = 12


TINY = Budget(n_studies=6, crop_size=(32, 32, 32), mae_steps=2, finetune_steps=2, fractions=(1.0,), eval_every=2, val_crops=2)


def run_quickstart(out_dir: str | os.PathLike = "petct-quickstart", *, tiny: bool = False, seed: int = 0,
                   log=print) -> Path:
    """Run the pipeline into `out_dir` (replacing an earlier quickstart there); returns the report path."""
    import torch

    budget = TINY if tiny else Budget()
    out = _fresh_dir(Path(out_dir))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    _quiet_libraries()
    t0 = time.perf_counter()
    timings = {}

    def stage(name):
        timings[name] = time.perf_counter() - sum(timings.values()) - t0
        log(f"[{time.perf_counter() - t0:5.0f} s] {name} done")

    from .cohort import phantom_cache
    from ..training.mae import subjects_of
    from ..training.splits import random_split

    log(f"1/6 synthetic cohort: {budget.n_studies} PET/CT studies (NIfTI) -> harmonised cache")
    cache, study_dirs = phantom_cache(out / "data", budget.n_studies, seed, spacing=budget.spacing)
    labelled = cache.ids()
    split = random_split(labelled, subjects_of(cache, labelled), seed=seed)
    stage("cohort")

    log(f"2/6 MAE pretraining ({budget.preset}, {budget.mae_steps} steps; test studies excluded)")
    mae = _pretrain(out, cache, split, budget, seed)
    stage("pretraining")

    log(f"3/6 fine-tuning at label fractions {list(budget.fractions)}, from the MAE and from scratch "
        f"({budget.finetune_steps} steps each)")
    study = _label_efficiency(out, cache, mae.model_dir, budget, seed, log)
    stage("fine-tuning + evaluation")

    log("4/6 segmenting a held-out test study from its NIfTI files")
    case = _segment_held_out(out, split, study, study_dirs)
    stage("segmentation")

    log("5/6 writing the report")
    from .quickstart_report import write_report

    report = write_report(out, budget=budget, split=split, mae=mae, study=study, case=case, timings=timings,
                          total_s=time.perf_counter() - t0)
    stage("report")
    log(f"6/6 done in {time.perf_counter() - t0:.0f} s. Report: {report}")
    return report


def _fresh_dir(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            from ..errors import PetCtInputError

            raise PetCtInputError(out, "exists and is not an earlier quickstart output; choose another -o")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by petct quickstart; the folder is replaced on the next run\n")
    return out


def _quiet_libraries() -> None:
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pretrain(out: Path, cache, split, budget: Budget, seed: int):
    from ..training.args import DataArguments, ModelArguments, TrainArguments
    from ..training.mae import pretrain

    ids = out / "splits"
    ids.mkdir(exist_ok=True)
    (ids / "mae_train.txt").write_text("\n".join(split.pool) + "\n")
    (ids / "mae_val.txt").write_text("\n".join(split.val) + "\n")
    return pretrain(
        ModelArguments(preset=budget.preset, config_overrides=_overrides(budget)),
        DataArguments(cache_dir=str(cache.root), train_ids=str(ids / "mae_train.txt"), val_ids=str(ids / "mae_val.txt"),
                      crop_size=list(budget.crop_size), num_workers=0, val_crops_per_study=budget.val_crops),
        TrainArguments(output_dir=str(out / "mae"), seed=seed, max_steps=budget.mae_steps,
                       per_device_batch_size=budget.batch_size, learning_rate=budget.learning_rate,
                       eval_steps=budget.mae_steps // 2 or 1, checkpointing_steps=budget.mae_steps,
                       checkpoints_total_limit=1, logging_steps=10, report_to="tensorboard", progress_bar=False),
    )


def _label_efficiency(out: Path, cache, mae_dir: Path, budget: Budget, seed: int, log) -> dict:
    from .study import StudyArguments, run_study

    args = StudyArguments(
        cache_dir=str(cache.root), output_dir=str(out / "study"), backbones=[budget.preset], pretrained=[str(mae_dir)],
        config_overrides=_overrides(budget, batch_dice=budget.batch_dice),
        fractions=list(budget.fractions), seeds=[seed], probe_k=0, schedule="equal_steps",
        equal_steps=budget.finetune_steps, per_device_batch_size=budget.batch_size, learning_rate=budget.learning_rate,
        crop_size=list(budget.crop_size), eval_steps=budget.eval_every, checkpointing_steps=budget.finetune_steps,
        num_workers=0, fg_prob=0.5, sw_overlap=0.0, progress_bar=False)
    return run_study(args, log=lambda msg: log("    " + msg))


def _overrides(budget: Budget, **segmentation) -> str:
    return json.dumps({"target_spacing": list(budget.spacing), **segmentation})


def _segment_held_out(out: Path, split, study: dict, study_dirs: list[Path]) -> dict:
    """Segment the first lesion-positive test study with the model of best validation Dice (never chosen on test)."""
    import numpy as np

    from ..data.io import read_volume
    from ..inference import InferenceSettings, load_segmentation_model, segment_study
    from ..evaluation import case_metrics
    from ..outputs.lesions import lesion_table
    from ..outputs.pictures import pet_mip_overlay

    by_id = {p.name: p for p in study_dirs}
    best = cells_by_validation(Path(study["json"]))[0]
    gt_of = {sid: read_volume(by_id[sid] / "SEG.nii.gz", modality="SEG") for sid in split.test}
    study_id = next((s for s in split.test if np.asarray(gt_of[s].array).any()), split.test[0])
    model = load_segmentation_model(best["selected_model"], device="cpu")
    folder = by_id[study_id]
    # fp32: bf16 autocast is slower than fp32 for a network this small on CPU
    result = segment_study(folder / "PET.nii.gz", folder / "CT.nii.gz", model, device="cpu",
                           settings=InferenceSettings(precision="fp32"))
    gt = gt_of[study_id]
    metrics = case_metrics(result.mask.array, gt.array, gt.voxel_volume_ml)
    rows, totals = lesion_table(result.mask, result.pet)
    figures = out / "report"
    figures.mkdir(exist_ok=True)
    _save_rgb(np.concatenate([pet_mip_overlay(result.pet, gt), pet_mip_overlay(result.pet, result.mask)], axis=1),
              figures / "held_out_mip.png")
    from ..data.io import write_volume

    write_volume(result.mask, figures / f"{study_id}_lesions.nii.gz", like=result.pet)
    return {"study_id": study_id, "model": best["selected_model"], "arm": best["arm"], "fraction": best["label_fraction"],
            "val_dice": best["best_val_dice"], "metrics": metrics, "lesions": rows,
            "totals": totals, "timings": result.timings, "mip": figures / "held_out_mip.png",
            "mask": figures / f"{study_id}_lesions.nii.gz", "true_lesions": metrics["gt_lesions"]}


def cells_by_validation(results_json: Path) -> list[dict]:
    """The fine-tuning runs of a study's results.json, best validation Dice first (runs without one last)."""

    def validation_dice(cell: dict) -> float:
        value = cell.get("best_val_dice")
        return -math.inf if value is None or math.isnan(value) else value

    return sorted(json.loads(Path(results_json).read_text())["cells"], key=validation_dice, reverse=True)


def _save_rgb(rgb, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        plt.imsave(tmp, rgb, format="png")

