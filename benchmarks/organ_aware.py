"""Organ-aware arm vs lesion-only at equal steps on the phantom cohort.

Both arms train the same network from scratch with train_seg.py's own code (training.segmentation.finetune), the same
studies, crops, seeds and optimizer steps; the organ-aware arm only adds `organ_labels` (the default PET vocabulary)
and the organ DiceCE. Each run's last model (equal steps, no selection) segments the held-out test studies on the
harmonised grid, where the cache holds the exact phantom organ maps. Per test study:
- FPV in physiological organs: volume (ml) of predicted components touching no true lesion (autoPET's FPV rule),
  counted over their voxels inside brain, urinary bladder, kidneys or heart (data.organs.PHYSIOLOGICAL_UPTAKE);
- lesion Dice (lesion-positive studies) and total FPV.
Per-study values are averaged over seeds and the arms compared with a paired Wilcoxon test over test studies.

    nice -n 10 python benchmarks/organ_aware.py --root /tmp/organ_bench --studies 40 --steps 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def build_cache(root: Path, n: int, seed: int):
    from modeling_petct.data.cache import StudyCache, harmonize_many
    from modeling_petct.data.manifest import build_manifest
    from modeling_petct.data.synthetic.phantom import write_phantom_cohort

    studies = root / "studies"
    if not studies.is_dir():
        write_phantom_cohort(studies, n, seed, size="small", lesion_free_fraction=0.25)
    summary = harmonize_many(build_manifest(("folder", studies)), root / "cache", progress=False)
    assert not summary.failed, summary.report()
    cache = StudyCache(root / "cache")
    assert all(cache.info(i)["has_organs"] for i in cache.ids())
    return cache


def split_ids(cache, root: Path, n_val: int, n_test: int) -> dict[str, Path]:
    ids = cache.ids()
    parts = {"test": ids[:n_test], "val": ids[n_test:n_test + n_val], "train": ids[n_test + n_val:]}
    files = {}
    for name, part in parts.items():
        files[name] = root / f"{name}_ids.txt"
        files[name].write_text("\n".join(part) + "\n")
    return files


def train(cache_root: Path, out: Path, ids: dict, *, organ_aware: bool, seed: int, steps: int, crop) -> Path:
    from modeling_petct.data.organs import organ_aware_overrides
    from modeling_petct.training.args import DataArguments, ModelArguments, SegArguments, TrainArguments
    from modeling_petct.training.segmentation import finetune

    overrides = {"batch_dice": True, **(organ_aware_overrides() if organ_aware else {})}
    finetune(ModelArguments(preset="tiny-unet", config_overrides=json.dumps(overrides)),
             DataArguments(cache_dir=str(cache_root), train_ids=str(ids["train"]), val_ids=str(ids["val"]),
                           crop_size=list(crop), num_workers=0),
             TrainArguments(output_dir=str(out), seed=seed, per_device_batch_size=2, report_to="none", cpu=True,
                            progress_bar=False, eval_steps=steps, checkpointing_steps=10 * steps,
                            logging_steps=max(1, steps // 4)),
             SegArguments(schedule="equal_steps", equal_steps=steps, split_seed=seed))
    return out / "last"


def score(model_dir: Path, cache, test_ids: list[str]) -> dict[str, dict]:
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.data.organs import organ_names
    from modeling_petct.evaluation import case_metrics, physiological_fpv_ml
    from modeling_petct.inference import InferenceSettings, predict_probabilities

    model = PetCtForSegmentation.from_pretrained(model_dir).eval()
    out = {}
    for sid in test_ids:
        study = cache.load(sid)
        pred = predict_probabilities(model, study.image, InferenceSettings(overlap=0.25)).argmax(0).astype(np.uint8)
        voxel_ml = float(np.prod(study.spacing)) / 1000.0
        out[sid] = {**case_metrics(pred, study.label, voxel_ml),
                    "fpv_physiological_ml": physiological_fpv_ml(pred, study.label, study.organs,
                                                                 organ_names(study.organ_names), voxel_ml)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--test", type=int, default=12)
    p.add_argument("--val", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--crop", type=int, nargs=3, default=[32, 64, 64])
    args = p.parse_args(argv)
    from modeling_petct.evaluation.statistics import paired_wilcoxon

    t0 = time.perf_counter()
    cache = build_cache(args.root, args.studies, 7)
    ids = split_ids(cache, args.root, args.val, args.test)
    test_ids = ids["test"].read_text().split()
    per_arm = {}
    for arm in ("lesion_only", "organ_aware"):
        runs = []
        for seed in args.seeds:
            run = args.root / "runs" / f"{arm}_seed{seed}"
            if not (run / "scores.json").exists():
                last = train(args.root / "cache", run, ids, organ_aware=arm == "organ_aware", seed=seed,
                             steps=args.steps, crop=args.crop)
                (run / "scores.json").write_text(json.dumps(score(last, cache, test_ids), indent=1))
            runs.append(json.loads((run / "scores.json").read_text()))
        per_arm[arm] = {sid: {k: float(np.nanmean([r[sid][k] for r in runs])) if any(np.isfinite(r[sid][k]) for r in runs)
                              else float("nan") for k in ("dice", "fpv_ml", "fpv_physiological_ml")}
                        for sid in test_ids}
    summary = {"studies": args.studies, "test_studies": len(test_ids), "steps": args.steps, "seeds": args.seeds,
               "crop": args.crop, "network": "tiny-unet (batch Dice)", "minutes": (time.perf_counter() - t0) / 60}
    for key in ("dice", "fpv_ml", "fpv_physiological_ml"):
        a = [per_arm["organ_aware"][s][key] for s in test_ids]
        b = [per_arm["lesion_only"][s][key] for s in test_ids]
        summary[key] = {"organ_aware_mean": float(np.nanmean(a)), "lesion_only_mean": float(np.nanmean(b)),
                        "paired_wilcoxon": paired_wilcoxon(a, b)}
    fa, fb = summary["fpv_physiological_ml"]["organ_aware_mean"], summary["fpv_physiological_ml"]["lesion_only_mean"]
    summary["fpv_physiological_reduction_x"] = fb / fa if fa > 0 else float("inf")
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
