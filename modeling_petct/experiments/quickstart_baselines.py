"""What the quickstart's networks are measured against: the classical threshold baselines (each rule's threshold and
minimum volume chosen on the validation studies, scored once on the test studies, native PET grid) and the released
phantom segmenter (trained on other cohort seeds, scored on the same test studies)."""

from __future__ import annotations

from .report import format_value

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


def on_studies_of(cases: dict, reference_cases: dict) -> dict:
    """The reference's metrics under each key of ``cases`` (a study, or (grid seed, study)): one fixed test set."""
    study = {key: key[-1] if isinstance(key, tuple) else key for key in cases}
    return {key: reference_cases[sid] for key, sid in study.items() if sid in reference_cases}


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
    from .baselines import MIN_ML_GRID, paired_difference, reference_of
    from .baselines_report import REFERENCE_TEXT, baseline_table, difference_text

    lines = ["Each rule's SUV threshold t and minimum lesion volume chosen on the validation studies (grid in "
             f"`experiments.baselines`; minimum volumes {', '.join(f'{v:g}' for v in MIN_ML_GRID)} ml) by the networks' "
             "own selection score, then scored once on the test studies, native PET grid, same metrics as the networks. "
             "Organs come from each study's organ map.", ""]
    released_row = [("released segmenter", f"`{released['folder'].name}` (released weights, not trained in this run; "
                                           "synthetic phantoms only)", released["aggregate"])] if released else []
    lines += baseline_table(baselines, released_row)
    name = reference_of(baselines)
    if name is None:
        return lines
    reference = baselines[name]
    base = reference["per_case"]
    lines += ["", f"Against the {REFERENCE_TEXT[name]} ({reference['label']}), paired by test study:", ""]
    judged = ([("best arm", best, pooled_cases(best["cells"]))] if best else []) + (
        [("released segmenter", released["aggregate"], released["per_case"])] if released else [])
    for arm, summary, cases in judged:
        t = paired_difference(cases, on_studies_of(cases, base))
        if not t["n"]:
            continue
        met = done_when(summary, reference, MARGIN[arm])
        lines.append(f"- {arm}: {difference_text(t)} above the baseline; the target (>= {MARGIN[arm]:.2f} Dice above "
                     f"it, sensitivity at least its {format_value(reference['aggregate']['lesion_sensitivity'], digits=2)}, "
                     f"<= 1 FP lesion a study) is **{'met' if met else 'not met'}**.")
    return lines
