"""What the quickstart's networks are measured against: the classical threshold baselines (each rule's threshold and
minimum volume chosen on the validation studies, scored once on the test studies, native PET grid) and the released
phantom segmenter (trained on other cohort seeds, scored on the same test studies)."""

from __future__ import annotations

import math

import numpy as np

from .report import format_value

REFERENCE = "suv-organs"  # the baseline the best arm must beat: what a reader would use first
MARGIN = {"best arm": 0.05, "released segmenter": 0.10}  # Dice above the reference the project asks of each


def threshold_results(cohort) -> dict:
    """experiments.baselines.threshold_baselines chosen on the cohort's validation studies, scored on its test ones."""
    from .baselines import load_study, threshold_baselines

    val, test = ([load_study(cohort.dirs[i]) for i in cohort.roles[role]] for role in ("val", "test"))
    return threshold_baselines(val, test, n_boot=500)


def released_segmenter_result(out, cohort, budget) -> dict | None:
    """The released phantom segmenter on the test studies (per case and aggregate), scored as the cells' test split;
    None when the package ships none."""
    from .. import PetCtForSegmentation
    from ..evaluation import aggregate
    from ..training.args import SegArguments, TrainArguments
    from ..training.loop import make_accelerator
    from ..training.segmentation import score_studies
    from .release import SEGMENTER, released_models

    folder = released_models().get(SEGMENTER)
    if folder is None:
        return None
    accelerator = make_accelerator(TrainArguments(output_dir=str(out / "released_segmenter"), report_to="none",
                                                  mixed_precision=budget.mixed_precision))
    model = PetCtForSegmentation.from_pretrained(folder).eval()
    cases = score_studies(accelerator, model, cohort.cache, cohort.roles["test"], SegArguments(sw_overlap=0.0),
                          native=True)
    return {"folder": folder, "per_case": cases, "aggregate": aggregate(cases, n_boot=500)}


def versus_reference(per_case: dict, reference: dict) -> dict:
    """Dice of ``per_case`` (study -> metrics, or (seed, study) -> metrics pooled over seeds) minus the reference
    baseline's on the same studies: mean difference, bootstrap 95% CI, Wilcoxon p."""
    from ..evaluation import bootstrap_ci, paired_wilcoxon

    base = reference["per_case"]
    pairs = [(m["dice"], base[key[-1] if isinstance(key, tuple) else key]["dice"]) for key, m in per_case.items()]
    pairs = np.array([p for p in pairs if not (math.isnan(p[0]) or math.isnan(p[1]))]).reshape(-1, 2)
    if not len(pairs):
        return {"n": 0}
    diff = pairs[:, 0] - pairs[:, 1]
    return {"n": len(diff), "diff": float(diff.mean()), "ci": bootstrap_ci(diff, np.mean, n_boot=1000),
            "p": paired_wilcoxon(pairs[:, 0], pairs[:, 1])["pvalue"]}


def pooled_cases(cells) -> dict:
    """(grid seed, study) -> test metrics of every cell of a group."""
    return {(c.split_seed, sid): m for c in cells for sid, m in c.test_cases.items()}


def done_when(summary: dict, reference: dict, margin: float) -> bool:
    """Dice >= the reference's + margin, lesion sensitivity >= the reference's, <= 1 false-positive lesion a study."""
    ref = reference["aggregate"]
    return (summary["dice"] >= ref["dice"] + margin and summary["lesion_sensitivity"] >= ref["lesion_sensitivity"]
            and summary["fp_per_case"] <= 1.0)


def report_lines(baselines: dict, best: dict | None, released: dict | None) -> list[str]:
    """The baselines' table, then the best arm and the released segmenter each against the reference baseline."""
    from .baselines import MIN_ML_GRID

    lines = ["Each rule's SUV threshold t and minimum lesion volume chosen on the validation studies (grid in "
             f"`experiments.baselines`; minimum volumes {', '.join(f'{v:g}' for v in MIN_ML_GRID)} ml) by the networks' "
             "own selection score, then scored once on the test studies, native PET grid, same metrics as the networks. "
             "Organs come from each study's organ map.", "",
             "| method | chosen rule | Dice [95% CI] | lesion sensitivity | FP lesions / case | FPV ml | FNV ml |",
             "|---|---|---|---|---|---|---|"]
    rows = [(name, b["label"], b["aggregate"]) for name, b in baselines.items()]
    if released is not None:
        rows.append(("released segmenter", f"`{released['folder'].name}` (released weights, not trained in this run; "
                                           "synthetic phantoms only)", released["aggregate"]))
    for name, label, a in rows:
        lines.append(f"| {name} | {label} | {format_value(a['dice'], a['dice_ci95'])} | "
                     f"{format_value(a['lesion_sensitivity'], digits=2)} | {format_value(a['fp_per_case'], digits=2)} | "
                     f"{format_value(a['fpv_ml'], digits=2)} | {format_value(a['fnv_ml'], digits=2)} |")
    reference = baselines.get(REFERENCE)
    if reference is None:
        return lines
    lines += ["", f"Against the organ-excluded threshold ({reference['label']}), paired by test study:", ""]
    judged = ([("best arm", best, pooled_cases(best["cells"]))] if best else []) + (
        [("released segmenter", released["aggregate"], released["per_case"])] if released else [])
    for name, summary, cases in judged:
        t = versus_reference(cases, reference)
        if not t["n"]:
            continue
        met = done_when(summary, reference, MARGIN[name])
        lines.append(f"- {name}: Dice {format_value(t['diff'], t['ci'])} above the baseline (p = {format_value(t['p'])}, "
                     f"{t['n']} pairs); the target (>= {MARGIN[name]:.2f} Dice above it, sensitivity at least its "
                     f"{format_value(reference['aggregate']['lesion_sensitivity'], digits=2)}, <= 1 FP lesion a study) "
                     f"is **{'met' if met else 'not met'}**.")
    return lines
