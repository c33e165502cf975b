"""`petct evaluate`: autoPET Dice / FPV / FNV per case and aggregated, lesion-wise detection, bootstrap 95% CIs; with
--baseline, classical threshold baselines on the same studies (experiments/evaluation_baselines.py); with --model, the
interactive protocols of a click-guided model on harmonised studies (evaluation/interactive.py)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score predicted lesion masks against ground truth (autoPET metrics)",
        description="autoPET metrics per case: Dice, false-positive volume (FPV) and false-negative volume (FNV) in "
                    "ml, as autoPET III's evaluation_metrics.py computes them. On a lesion-free case Dice and FNV are "
                    "undefined: NaN there too (null in --json), and left out of the aggregate means. Predictions must "
                    "be integer label maps (0 background, 1 lesion); labels > 1 are scored as lesion, with a warning.")
    p.add_argument("--pred", help="predicted mask file, or folder of masks / per-study folders")
    p.add_argument("--gt", help="ground-truth mask file or folder, matched to --pred by case name")
    p.add_argument("--json", metavar="OUT", help="write {case: {dice, fpv_ml, fnv_ml, ...}, ..., aggregate: {...}}")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% CIs (default 2000)")
    base = p.add_argument_group(
        "threshold baselines (beside --pred/--gt)",
        "Classical threshold segmentations scored on the same studies against the same ground truth, each with its "
        "threshold t and minimum volume either given or chosen on other labelled studies, never on the scored ones. "
        "Methods: suv (SUV >= t), suv-organs (the same outside brain, bladder, kidneys and heart of the study's organ "
        "map), suvmax41 (41% of SUVmax in each hot region), percist (1.5 x liver mean + 2 SD; t unused). A rule "
        "some study cannot be read by (no organ map) is reported as not scored, with the reason.")
    base.add_argument("--baseline", nargs="+", metavar="RULE",
                      help="METHOD:T:MIN_ML to score that rule (e.g. suv:4:3, the TMTV benchmark's; suv-organs:3.5:2), "
                           "or METHOD / all to choose t and the minimum volume on --baseline-val")
    base.add_argument("--baseline-val", metavar="DIR",
                      help="labelled studies to choose the rules on: a folder of study folders (PET/SUV, CT, SEG, "
                           "organs.nii.gz), as `petct phantom` writes them; none of them may be a scored study")
    base.add_argument("--studies", metavar="DIR",
                      help="the scored studies' images: a folder of study folders named like the cases, holding the "
                           "PET in SUV, the CT and an organ map where there is one (default: --gt)")
    clicks = p.add_argument_group(
        "interactive protocols (instead of --pred/--gt)",
        "A click-guided model on harmonised studies with labels, step by step: Dice, FPV, FNV and lesion F1 (IoU >= "
        "0.1) after the last step, their area under the curve over the steps, and a Dice-vs-clicks plot.")
    clicks.add_argument("--model", help="click-guided model folder, training run or Hub id")
    clicks.add_argument("--cache-dir", help="harmonised studies with labels (`petct harmonize`)")
    clicks.add_argument("--ids", help="text file of study ids to score (default: every labelled study)")
    clicks.add_argument("--protocol", nargs="+", default=["autopet-iv", "error-driven"],
                        help="autopet-iv (step s: s foreground and s background clicks simulated from the ground "
                             "truth) and/or error-driven (each step one click on the largest remaining miss or false "
                             "positive); default both")
    clicks.add_argument("--steps", type=int, default=11, help="steps, the first without clicks (default 11: 0..10)")
    clicks.add_argument("--space-edits", action="store_true",
                        help="also score each protocol on the mask the demo shows: where the model leaves the "
                             "lesion under a foreground click empty, the 41%%-of-SUVmax region under it is added; a "
                             "background click removes the component under it")
    clicks.add_argument("--out", help="folder for interactive.json and dice_vs_clicks.png")
    clicks.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import PetCtInputError

    if args.model:
        return run_interactive(args)
    if not (args.pred and args.gt):
        raise PetCtInputError("--pred/--gt", "both are needed to score masks (or --model and --cache-dir for the "
                                             "interactive protocols)")
    return run_masks(args)


def run_interactive(args) -> int:
    import json
    from pathlib import Path

    from ..atomic import atomic_path
    from ..data.cache import open_cache
    from ..errors import PetCtInputError
    from ..evaluation.interactive import PROTOCOLS, evaluate_interactive, plot_dice_vs_clicks
    from ..inference import load_segmentation_model
    from ..training.args import read_id_file
    from .checks import check_output_folder, resolve_device

    unknown = [p for p in args.protocol if p not in PROTOCOLS]
    if unknown or args.steps < 1 or not (args.cache_dir and args.out):
        raise PetCtInputError("--protocol/--steps/--cache-dir/--out", f"protocols among {', '.join(PROTOCOLS)} "
                              f"(got {' '.join(args.protocol)}), steps >= 1, and --cache-dir and --out are needed")
    check_output_folder(args.out, inputs=(args.cache_dir,))
    device = resolve_device(args.device)
    cache = open_cache(args.cache_dir, labelled=True)
    ids = read_id_file(args.ids) or [i for i in cache.ids() if cache.info(i).get("has_label")]
    model = load_segmentation_model(args.model, device)
    if not model.config.guidance_channels:
        raise PetCtInputError(args.model, "takes no clicks (config.guidance_channels is 0): train one with "
                                          "train_seg.py --interactive")
    results = evaluate_interactive(model, cache, ids, args.protocol, args.steps, device=device,
                                   space_edits=args.space_edits, progress=print)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "interactive.json") as tmp:
        tmp.write_text(json.dumps(_nan_to_null(results), indent=1))
    with atomic_path(out / "dice_vs_clicks.png") as tmp:
        plot_dice_vs_clicks(results, tmp)
    for protocol, result in results.items():
        s = result["summary"]
        final = s["final"]
        print(f"{protocol} ({s['n_cases']} studies, {args.steps} steps): after the last step Dice {final['dice']:.4f}  "
              f"FPV {final['fpv_ml']:.2f} ml  FNV {final['fnv_ml']:.2f} ml  lesion F1 {final['lesion_f1']:.3f};  AUC "
              f"Dice {s['auc_dice']:.2f}  FPV {s['auc_fpv_ml']:.2f}  FNV {s['auc_fnv_ml']:.2f}")
    return 0


def run_masks(args) -> int:
    import json

    from ..atomic import atomic_path
    from ..errors import PetCtInputError
    from ..evaluation import evaluate_cases, match_cases
    from ..experiments.evaluation_baselines import plan_baselines, score_baselines
    from .checks import check_inputs_exist, check_output_file

    check_inputs_exist(args.pred, args.gt)
    check_output_file(args.json, suffixes=(".json",), inputs=(args.pred, args.gt), what="--json output")
    if args.bootstrap < 0:
        raise PetCtInputError("--bootstrap", f"must be 0 or more, got {args.bootstrap}")
    if (args.baseline_val or args.studies) and not args.baseline:
        raise PetCtInputError("--baseline-val/--studies", "only read with --baseline")
    pairs = match_cases(args.pred, args.gt)
    plan = plan_baselines(args.baseline, args.baseline_val, args.studies or args.gt, pairs) if args.baseline else None
    results = evaluate_cases(pairs, n_boot=args.bootstrap)
    agg = results["aggregate"]
    for name, m in results.items():
        if name != "aggregate":
            print(f"{name}: dice {m['dice']:.4f}  fpv {m['fpv_ml']:.2f} ml  fnv {m['fnv_ml']:.2f} ml")
    print(f"aggregate ({agg['n_cases']} cases, {agg['n_lesion_positive']} with lesions): {_summary(agg)}")
    if plan is not None:
        cases = {name: m for name, m in results.items() if name != "aggregate"}
        results["baselines"] = score_baselines(plan, pairs, cases, n_boot=args.bootstrap)
        for method, b in results["baselines"].items():
            print(_baseline_line(method, b))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(_nan_to_null(results), indent=2))
    return 0


def _summary(agg: dict) -> str:
    lo, hi = agg["dice_ci95"]
    return (f"dice {agg['dice']:.4f} [{lo:.4f}, {hi:.4f}]  fpv {agg['fpv_ml']:.2f} ml  fnv {agg['fnv_ml']:.2f} ml  "
            f"lesion sensitivity {agg['lesion_sensitivity']:.3f}  FP/case {agg['fp_per_case']:.2f}")


def _baseline_line(method: str, b: dict) -> str:
    """One baseline: its rule and how it was chosen, its aggregate, the predictions' paired Dice difference from it."""
    from ..experiments.baselines_report import difference_text

    if "skipped" in b:
        return f"baseline {method}: not scored ({b['skipped']})"
    versus = b["predictions_minus_baseline"]
    return (f"baseline {method}: {b['label']} ({b['chosen']}): {_summary(b['aggregate'])};  predictions minus "
            f"baseline: {difference_text(versus) if versus['n'] else 'no case with lesions to pair'}")


def _nan_to_null(value):
    """Strict JSON: undefined metrics (autoPET's NaN, e.g. Dice on a lesion-free case) become null."""
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return None if isinstance(value, float) and value != value else value
