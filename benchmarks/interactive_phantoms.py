"""Interactive segmentation on phantoms: a released model fine-tuned with simulated clicks vs the same network
fine-tuned without click inputs (alone and with the classical 41%-SUVmax edits), and the 41% tool alone, under the
same simulated clicks on held-out test phantoms.

Both networks start from ``--start``: the released petct-phantom-segmenter (all labels: a strong automatic pass) or
the released joint foundation model petct-phantom-fm (with ``--label-fraction 0.1``: few labels, an automatic pass
that leaves room for clicks). They are trained by train_seg.py's own code (training.segmentation.finetune) on the same
studies, seeds and optimizer steps; the interactive arm only adds ``--interactive`` (zero-initialised click-map
inputs after PET and CT, 0-10 simulated clicks of each kind per crop, corrective clicks on its own errors). The click
encoding is chosen on validation (seed 0, autoPET IV protocol, AUC of Dice over the lesion-positive validation
studies, where Dice is defined) among ``--encodings``; test is scored once, per seed, step by step
(evaluation/interactive.py):
- interactive: the model re-run with the clicks (autoPET IV protocol, and error-driven);
- interactive + Space edits: its masks as the Space shows them (a foreground click it leaves empty gets the 41%
  region, a background click removes the component under it);
- plain + 41% edits: the network without click inputs, then each click edited in by the classical tool
  (inference/isocontour.py: a foreground click adds the 41%-of-SUVmax region under it, a background click removes
  the component under it), what the Space offers for models without guidance;
- 41% only: the classical tool from an empty mask.
Per-study values are averaged over seeds; means get bootstrap 95% CIs over studies, and the interactive arm is
compared after 10 clicks with the others (paired Wilcoxon) and with its own 0-click Dice. A lesion-level oracle
bounds what clicks could give: the 0-click mask with every missed lesion added exactly and every false-positive
component removed.

    python benchmarks/interactive_phantoms.py --root /tmp/interactive_all --encodings ball:2
    python benchmarks/interactive_phantoms.py --root /tmp/interactive_few --start petct-phantom-fm \
        --label-fraction 0.1 --encodings ball:2 ball:3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ARMS = ("interactive", "interactive + Space edits", "plain+41%", "41% only")
STARTS = ("petct-phantom-segmenter", "petct-phantom-fm")  # released model names (modeling_petct/released)


def train(cohort, out: Path, *, encoding: tuple[str, float] | None, seed: int, args) -> Path:
    """Fine-tune ``args.start`` (with click inputs when ``encoding`` is given) on ``args.label_fraction`` of the
    training studies; returns the selected model."""
    from modeling_petct.data.organs import organ_aware_overrides
    from modeling_petct.released import released_models
    from modeling_petct.training.args import DataArguments, ModelArguments, SegArguments, TrainArguments
    from modeling_petct.training.segmentation import finetune

    if not (out / "results.json").exists():
        start = released_models()[args.start]
        config = json.loads((start / "config.json").read_text())
        organs = {} if config.get("organ_labels") else organ_aware_overrides()  # the segmenter's organ-aware recipe
        guidance = {"interactive": True, "guidance_encoding": encoding[0], "guidance_size": encoding[1]} \
            if encoding else {}
        finetune(ModelArguments(pretrained=str(start), config_overrides=json.dumps(organs) if organs else None),
                 DataArguments(cache_dir=str(cohort.cache.root), train_ids=str(cohort.id_files["train"]),
                               val_ids=str(cohort.id_files["val"]), crop_size=list(config["crop_size"]), num_workers=0),
                 TrainArguments(output_dir=str(out), seed=seed, per_device_batch_size=2, report_to="none", cpu=True,
                                progress_bar=False, eval_steps=args.steps, checkpointing_steps=10 * args.steps,
                                logging_steps=max(1, args.steps // 4), learning_rate=args.lr, warmup_steps=20),
                 SegArguments(schedule="equal_steps", equal_steps=args.steps, split_seed=seed, sw_overlap=0.25,
                              label_fraction=args.label_fraction,
                              selection_metric="val_dice_fp", min_lesion_ml="auto", min_lesion_confidence="auto",
                              **guidance))
    return next(d for d in (out / "best", out / "last") if d.exists())  # best: selected on validation


SETTINGS = {"overlap": 0.25, "precision": "fp32", "backend": "torch", "sw_batch_size": 8}  # 8: ~2.5x 1 on one core


def score_guided(model_dir: Path, cache, ids: list[str], protocols) -> dict:
    """{protocol: {study: curve}} of a click-guided model, and {protocol + EDITED: ...} of its masks as the Space
    shows them (a click it leaves unanswered gets the classical edit)."""
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.evaluation.interactive import evaluate_interactive
    from modeling_petct.inference import InferenceSettings

    guided = PetCtForSegmentation.from_pretrained(model_dir).eval()
    scores = evaluate_interactive(guided, cache, ids, protocols, settings=InferenceSettings(**SETTINGS),
                                  space_edits=True)
    return {variant: result["cases"] for variant, result in scores.items()}


def score_classical(plain_dir: Path, cache, ids: list[str]) -> dict:
    """{arm: {protocol: {study: curve}}} of the network without click inputs + 41% edits, and the 41% tool alone."""
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.evaluation.interactive import PROTOCOLS, evaluate_isocontour_tool, run_protocol
    from modeling_petct.inference import InferenceSettings, predict_probabilities
    from modeling_petct.inference.isocontour import isocontour_edit
    from modeling_petct.inference.segment import LesionFilter

    plain = PetCtForSegmentation.from_pretrained(plain_dir).eval()
    lesion_filter = LesionFilter.of(plain.config)
    out = {"plain+41%": {protocol: {} for protocol in PROTOCOLS}}
    for sid in ids:
        study = cache.load(sid)
        image, label, suv = np.asarray(study.image), np.asarray(study.label), study.pet_suv()
        voxel_ml = float(np.prod(study.spacing)) / 1000.0
        probs = predict_probabilities(plain, image, InferenceSettings(**SETTINGS))
        first = lesion_filter.apply(probs.argmax(0).astype(np.uint8), 1.0 - probs[0], voxel_ml)
        for protocol in PROTOCOLS:
            out["plain+41%"][protocol][sid] = run_protocol(lambda c: isocontour_edit(first, suv, c, study.spacing),
                                                           label, image[0], voxel_ml, protocol)
    tool = evaluate_isocontour_tool(cache, ids, PROTOCOLS)
    out["41% only"] = {protocol: tool[protocol]["cases"] for protocol in PROTOCOLS}
    return out


def lesion_oracle(model_dir: Path, cache, ids: list[str]) -> dict:
    """{study: Dice} of the click-guided model's 0-click mask on the lesion-positive studies, and of the same mask
    with every missed lesion added exactly and then every false-positive component removed: the most that clicks
    which fix whole lesions could give (the rest is outline)."""
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.data.simulated_clicks import components
    from modeling_petct.evaluation.metrics import case_metrics
    from modeling_petct.inference import InferenceSettings
    from modeling_petct.inference.interactive import ClickPredictor

    model = PetCtForSegmentation.from_pretrained(model_dir).eval()
    out = {}
    for sid in ids:
        study = cache.load(sid)
        label = np.asarray(study.label) > 0
        if not label.any():
            continue
        voxel_ml = float(np.prod(study.spacing)) / 1000.0
        first = ClickPredictor(model, np.asarray(study.image), InferenceSettings(**SETTINGS)).mask([], voxel_ml) > 0
        added = first.copy()
        for box, inside in components(label):
            if not (first[box] & inside).any():
                added[box] |= inside
        cleaned = added.copy()
        for box, inside in components(first):
            if not (label[box] & inside).any():
                cleaned[box] &= ~inside
        out[sid] = {name: case_metrics(m.astype(np.uint8), label.astype(np.uint8), voxel_ml)["dice"]
                    for name, m in (("dice_0", first), ("missed_added", added), ("and_fp_removed", cleaned))}
    return out


def choose_encoding(args, cohort) -> tuple[str, float]:
    """The encoding whose seed-0 model has the best AUC of Dice on the lesion-positive validation studies (autoPET IV
    protocol)."""
    from modeling_petct.evaluation.interactive import summarize

    record = args.root / "encoding_choice.json"
    if not record.exists():
        scores = {}
        for name, size in args.encodings:
            run = args.root / "runs" / f"interactive_{name}{size:g}_seed{args.seeds[0]}"
            model = train(cohort, run, encoding=(name, size), seed=args.seeds[0], args=args)
            positive = [sid for sid in cohort.roles["val"] if np.asarray(cohort.cache.load(sid).label).any()]
            curves = score_guided(model, cohort.cache, positive, ["autopet-iv"])["autopet-iv"]  # Dice: these only
            summary = summarize(curves)
            scores[f"{name}:{size:g}"] = {"val_auc_dice": summary["auc_dice"], "val_dice_0": summary["steps"][0]["dice"],
                                          "val_dice_last": summary["final"]["dice"], "run": str(run)}
        best = max(scores, key=lambda k: scores[k]["val_auc_dice"])
        record.write_text(json.dumps({"chosen": best, "candidates": scores}, indent=1))
    name, size = json.loads(record.read_text())["chosen"].split(":")
    return name, float(size)


def mean_ci(values) -> dict:
    from modeling_petct.evaluation.statistics import bootstrap_ci

    values = np.asarray(values, float)
    return {"mean": float(np.nanmean(values)), "ci95": list(bootstrap_ci(values))}


def arm_summary(runs: list[dict], arm: str, protocol: str, ids: list[str]) -> dict:
    """Per-study values averaged over seeds, then means with CIs over studies: step 0 and the last step, and AUCs."""
    def per_study(step, key):
        return [float(np.nanmean([run[arm][protocol][sid][step][key] for run in runs])) for sid in ids]

    def auc(key):
        return [float(np.nanmean([np.trapezoid([s[key] for s in run[arm][protocol][sid]]) for run in runs]))
                for sid in ids]

    steps = len(runs[0][arm][protocol][ids[0]])
    return {"dice_0": mean_ci(per_study(0, "dice")), "dice_last": mean_ci(per_study(-1, "dice")),
            "dice_gain": mean_ci(np.subtract(per_study(-1, "dice"), per_study(0, "dice"))),
            "fpv_ml_0": mean_ci(per_study(0, "fpv_ml")), "fpv_ml_last": mean_ci(per_study(-1, "fpv_ml")),
            "fnv_ml_last": mean_ci(per_study(-1, "fnv_ml")), "lesion_f1_last": mean_ci(per_study(-1, "lesion_f1")),
            "auc_dice": mean_ci(auc("dice")), "auc_fpv_ml": mean_ci(auc("fpv_ml")),
            "dice_by_step": [float(np.nanmean(per_study(k, "dice"))) for k in range(steps)],
            "fpv_by_step": [float(np.nanmean(per_study(k, "fpv_ml"))) for k in range(steps)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--train", type=int, default=48)
    p.add_argument("--val", type=int, default=12)
    p.add_argument("--test", type=int, default=24)
    p.add_argument("--start", choices=STARTS, default=STARTS[0], help="the released model both networks start from")
    p.add_argument("--label-fraction", type=float, default=None,
                   help="fine-tune on this fraction of the training studies (drawn by seed), all by default")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=5e-3, help="the released segmenter's own fine-tuning lr (1e-3 left "
                   "the click weights near 0 after 500 steps: the clicks were ignored, measured)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--encodings", nargs="+", default=[("ball", 2.0), ("gaussian", 1.5)],
                   type=lambda s: (s.split(":")[0], float(s.split(":")[1])),
                   help="candidates name:size (size in voxels of the 4 mm grid), chosen on validation")
    args = p.parse_args(argv)
    from modeling_petct.evaluation.interactive import EDITED, PROTOCOLS
    from modeling_petct.evaluation.statistics import paired_wilcoxon
    from modeling_petct.experiments.cohort import CohortPlan, build_cohort

    t0 = time.perf_counter()
    plan = CohortPlan(train=args.train, val=args.val, test=args.test, held_out_test=0, unlabelled=())
    cohort = build_cohort(args.root / "data", plan, seed=11, spacing=(4.0, 4.0, 4.0))
    test_ids = cohort.roles["test"]
    encoding = choose_encoding(args, cohort)
    runs, oracles = [], []
    for seed in args.seeds:
        scores = args.root / f"scores_seed{seed}.json"
        guided = train(cohort, args.root / "runs" / f"interactive_{encoding[0]}{encoding[1]:g}_seed{seed}",
                       encoding=encoding, seed=seed, args=args)  # a finished run is only looked up
        if not scores.exists():
            plain = train(cohort, args.root / "runs" / f"plain_seed{seed}", encoding=None, seed=seed, args=args)
            guided_scores = score_guided(guided, cohort.cache, test_ids, PROTOCOLS)
            result = {"interactive": {p: guided_scores[p] for p in PROTOCOLS},
                      "interactive + Space edits": {p: guided_scores[p + EDITED] for p in PROTOCOLS},
                      **score_classical(plain, cohort.cache, test_ids)}
            scores.write_text(json.dumps(result, default=float))
        runs.append(json.loads(scores.read_text()))
        oracle = args.root / f"oracle_seed{seed}.json"
        if not oracle.exists():
            oracle.write_text(json.dumps(lesion_oracle(guided, cohort.cache, test_ids)))
        oracles.append(json.loads(oracle.read_text()))
    summary = {"start": args.start, "train": args.train, "label_fraction": args.label_fraction, "test_studies": len(test_ids), "steps": args.steps,
               "lr": args.lr, "seeds": args.seeds, "encoding": f"{encoding[0]}:{encoding[1]:g}",
               "encoding_choice": json.loads((args.root / "encoding_choice.json").read_text())}
    for arm in ARMS:
        for protocol in PROTOCOLS:
            summary[f"{arm} / {protocol}"] = arm_summary(runs, arm, protocol, test_ids)

    def last_dice(arm, protocol, step=-1):
        return [float(np.nanmean([run[arm][protocol][sid][step]["dice"] for run in runs])) for sid in test_ids]

    for protocol in PROTOCOLS:
        for guided in ARMS[:2]:
            summary[f"tests / {guided} / {protocol}"] = {
                "last vs its 0 clicks": paired_wilcoxon(last_dice(guided, protocol), last_dice(guided, protocol, 0)),
                "last vs plain network (0 clicks)": paired_wilcoxon(last_dice(guided, protocol),
                                                                    last_dice("plain+41%", protocol, 0)),
                **{f"last vs {other} last": paired_wilcoxon(last_dice(guided, protocol), last_dice(other, protocol))
                   for other in ARMS[2:]}}
    summary["lesion-level oracle"] = {key: mean_ci([np.mean([o[sid][key] for o in oracles]) for sid in oracles[0]])
                                      for key in ("dice_0", "missed_added", "and_fp_removed")}
    summary["minutes"] = (time.perf_counter() - t0) / 60
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
