"""`petct evaluate`: autoPET Dice / FPV / FNV per case and aggregated, lesion-wise detection, bootstrap 95% CIs."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score predicted lesion masks against ground truth (autoPET metrics)",
        description="autoPET metrics per case: Dice, false-positive volume (FPV) and false-negative volume (FNV) in "
                    "ml, as autoPET III's evaluation_metrics.py computes them. On a lesion-free case Dice and FNV are "
                    "undefined: NaN there too (null in --json), and left out of the aggregate means. Predictions must "
                    "be integer label maps (0 background, 1 lesion); labels > 1 are scored as lesion, with a warning.")
    p.add_argument("--pred", required=True, help="predicted mask file, or folder of masks / per-study folders")
    p.add_argument("--gt", required=True, help="ground-truth mask file or folder, matched to --pred by case name")
    p.add_argument("--json", metavar="OUT", help="write {case: {dice, fpv_ml, fnv_ml, ...}, ..., aggregate: {...}}")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% CIs (default 2000)")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    from ..atomic import atomic_path
    from ..errors import PetCtInputError
    from ..evaluation import evaluate_cases, match_cases
    from .checks import check_inputs_exist, check_output_file

    check_inputs_exist(args.pred, args.gt)
    check_output_file(args.json, suffixes=(".json",), inputs=(args.pred, args.gt), what="--json output")
    if args.bootstrap < 0:
        raise PetCtInputError("--bootstrap", f"must be 0 or more, got {args.bootstrap}")
    results = evaluate_cases(match_cases(args.pred, args.gt), n_boot=args.bootstrap)
    agg = results["aggregate"]
    for name, m in results.items():
        if name != "aggregate":
            print(f"{name}: dice {m['dice']:.4f}  fpv {m['fpv_ml']:.2f} ml  fnv {m['fnv_ml']:.2f} ml")
    lo, hi = agg["dice_ci95"]
    print(
        f"aggregate ({agg['n_cases']} cases, {agg['n_lesion_positive']} with lesions): dice {agg['dice']:.4f} "
        f"[{lo:.4f}, {hi:.4f}]  fpv {agg['fpv_ml']:.2f} ml  fnv {agg['fnv_ml']:.2f} ml  "
        f"lesion sensitivity {agg['lesion_sensitivity']:.3f}  FP/case {agg['fp_per_case']:.2f}"
    )
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(_nan_to_null(results), indent=2))
    return 0


def _nan_to_null(value):
    """Strict JSON: undefined metrics (autoPET's NaN, e.g. Dice on a lesion-free case) become null."""
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return None if isinstance(value, float) and value != value else value
