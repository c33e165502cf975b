"""Interactive segmentation on phantoms: a network trained with simulated clicks vs the same network without click
inputs, and the classical 41%-SUVmax tool, under the same simulated clicks on held-out test phantoms.

Both networks are a tiny-unet trained from scratch by train_seg.py's own code (training.segmentation.finetune) on the
same studies, seeds and optimizer steps; the interactive arm only adds ``--interactive`` (click maps after PET and CT,
0-10 simulated clicks of each kind per crop, corrective clicks on its own errors). Each run's last model (equal
steps, no selection) is scored on the harmonised test grids, step by step (evaluation/interactive.py):
- interactive: the model re-run with the clicks (autoPET IV protocol, and error-driven);
- plain + 41% edits: the network without click inputs, then each click edited in by the classical tool
  (inference/isocontour.py: a foreground click adds the 41%-of-SUVmax region under it, a background click removes
  the component under it), what the Space offers for models without guidance;
- 41% only: the classical tool from an empty mask.
Per-study values are averaged over seeds; arms are compared after 10 clicks with a paired Wilcoxon test.

    nice -n 10 python benchmarks/interactive_phantoms.py --root /tmp/interactive_bench --steps 800 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ARMS = ("interactive", "plain+41%", "41% only")


def train(cohort, out: Path, *, interactive: bool, seed: int, steps: int, crop) -> Path:
    from modeling_petct.training.args import DataArguments, ModelArguments, SegArguments, TrainArguments
    from modeling_petct.training.segmentation import finetune

    finetune(ModelArguments(preset="tiny-unet", config_overrides=json.dumps({"batch_dice": True})),
             DataArguments(cache_dir=str(cohort.cache.root), train_ids=str(cohort.id_files["train"]),
                           val_ids=str(cohort.id_files["val"]), crop_size=list(crop), num_workers=0),
             TrainArguments(output_dir=str(out), seed=seed, per_device_batch_size=2, report_to="none", cpu=True,
                            progress_bar=False, eval_steps=steps, checkpointing_steps=10 * steps,
                            logging_steps=max(1, steps // 4), learning_rate=1e-3),
             SegArguments(schedule="equal_steps", equal_steps=steps, split_seed=seed, interactive=interactive,
                          guidance_encoding="ball", guidance_size=2.0))
    return out / "last"


def suv_of(study) -> np.ndarray:
    """The harmonised PET in SUV (the cache holds it z-scored; its mean and SD are recorded)."""
    stats = study.norm_stats["pet"]
    return np.asarray(study.image[0], np.float32) * np.float32(stats["sd"]) + np.float32(stats["mean"])


def score(model_dirs: dict[str, Path], cache, test_ids: list[str]) -> dict:
    """{arm: {protocol: {study: curve}}} for one seed."""
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.evaluation.interactive import run_protocol
    from modeling_petct.inference import InferenceSettings, predict_probabilities
    from modeling_petct.inference.interactive import ClickPredictor
    from modeling_petct.inference.isocontour import isocontour_edit

    settings = InferenceSettings(overlap=0.25, precision="fp32", backend="torch")
    guided = PetCtForSegmentation.from_pretrained(model_dirs["interactive"]).eval()
    plain = PetCtForSegmentation.from_pretrained(model_dirs["plain"]).eval()
    out = {arm: {"autopet-iv": {}, "error-driven": {}} for arm in ARMS}
    for sid in test_ids:
        study = cache.load(sid)
        image, label, suv = np.asarray(study.image), np.asarray(study.label), suv_of(study)
        voxel_ml, spacing = float(np.prod(study.spacing)) / 1000.0, study.spacing
        predictor = ClickPredictor(guided, image, settings)
        first = predict_probabilities(plain, image, settings).argmax(0).astype(np.uint8)
        mask_for = {"interactive": lambda c: predictor.mask(c, voxel_ml),
                    "plain+41%": lambda c: isocontour_edit(first, suv, c, spacing),
                    "41% only": lambda c: isocontour_edit(np.zeros_like(first), suv, c, spacing)}
        for arm, fn in mask_for.items():
            for protocol in ("autopet-iv", "error-driven"):
                out[arm][protocol][sid] = run_protocol(fn, label, image[0], voxel_ml, protocol)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--train", type=int, default=32)
    p.add_argument("--val", type=int, default=6)
    p.add_argument("--test", type=int, default=12)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--crop", type=int, nargs=3, default=[32, 64, 64])
    args = p.parse_args(argv)
    from modeling_petct.evaluation.interactive import summarize
    from modeling_petct.evaluation.statistics import paired_wilcoxon
    from modeling_petct.experiments.cohort import CohortPlan, build_cohort

    t0 = time.perf_counter()
    plan = CohortPlan(train=args.train, val=args.val, test=args.test, held_out_test=0, unlabelled=())
    cohort = build_cohort(args.root / "data", plan, seed=11, spacing=(4.0, 4.0, 4.0))
    test_ids = cohort.roles["test"]
    runs = []
    for seed in args.seeds:
        scores = args.root / f"scores_seed{seed}.json"
        if not scores.exists():
            dirs = {arm: train(cohort, args.root / "runs" / f"{arm}_seed{seed}", interactive=arm == "interactive",
                               seed=seed, steps=args.steps, crop=args.crop) for arm in ("plain", "interactive")}
            scores.write_text(json.dumps(score(dirs, cohort.cache, test_ids), default=float))
        runs.append(json.loads(scores.read_text()))
    summary = {"train": args.train, "test_studies": len(test_ids), "steps": args.steps, "seeds": args.seeds,
               "crop": args.crop, "network": "tiny-unet from scratch (batch Dice), 4 mm phantoms",
               "minutes": (time.perf_counter() - t0) / 60}
    final = {}
    for arm in ARMS:
        for protocol in ("autopet-iv", "error-driven"):
            per_seed = [summarize(run[arm][protocol]) for run in runs]
            summary[f"{arm} / {protocol}"] = {
                "dice_0_clicks": float(np.mean([s["steps"][0]["dice"] for s in per_seed])),
                **{f"{k}_last": float(np.mean([s["final"][k] for s in per_seed]))
                   for k in ("dice", "fpv_ml", "fnv_ml", "lesion_f1")},
                "fpv_0_clicks": float(np.mean([s["steps"][0]["fpv_ml"] for s in per_seed])),
                "auc_dice": float(np.mean([s["auc_dice"] for s in per_seed])),
                "dice_by_step": [float(np.mean([s["steps"][k]["dice"] for s in per_seed]))
                                 for k in range(len(per_seed[0]["steps"]))]}
            final[(arm, protocol)] = [float(np.nanmean([run[arm][protocol][sid][-1]["dice"] for run in runs]))
                                      for sid in test_ids]
    for other in ARMS[1:]:
        summary[f"interactive vs {other} (autopet-iv, Dice after 10 clicks)"] = paired_wilcoxon(
            final[("interactive", "autopet-iv")], final[(other, "autopet-iv")])
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
