"""Classical threshold baselines beside the networks: each rule's threshold and minimum volume chosen on training or
validation studies by the networks' own selection score (training.segmentation.summarize, `val_dice_fp`), then
scored once on the test studies with the package's autoPET metrics, on the native PET grid.

A study is its PET (SUV), its label on the PET grid and its organ map (TotalSegmentator ids, any grid): a folder as
`petct phantom` and the quickstart cohort write it (``load_study``), or a harmonised study read back through the files
recorded in the cache (``cached_study``). Studies are read one at a time (a lazy iterable keeps one in memory), and a
rule that some study cannot be read by (no organ map, no mapped liver for PERCIST) is skipped, with the reason, rather
than scored on a subset.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..inference.threshold import METHODS, NEEDS_ORGANS, ThresholdRule, physiological

# The grid each rule is chosen from: SUV thresholds t (percist: its own liver threshold) x minimum volumes (ml).
T_GRID = {"suv": (2.5, 3.0, 3.5, 4.0, 5.0, 6.0), "suv-organs": (2.5, 3.0, 3.5, 4.0, 5.0, 6.0),
          "suvmax41": (2.5, 3.0, 4.0, 5.0), "percist": (0.0,)}
MIN_ML_GRID = (0.0, 0.5, 1.0, 2.0, 3.0)
SELECTION = "val_dice_fp"
REFERENCES = ("suv-organs", "suv")  # the baseline a network is judged against: the first one scored


@dataclass
class Study:
    """What a threshold rule reads and is scored against, on the native PET grid."""

    study_id: str
    suv: np.ndarray
    label: np.ndarray
    voxel_ml: float
    organs: np.ndarray | None
    organ_names: tuple[str, ...]
    excluded: np.ndarray | None = None  # inference.threshold.physiological(organs), computed once

    def __post_init__(self):
        if self.organs is not None and self.excluded is None:
            self.excluded = physiological(self.organs, self.organ_names)

    def mask(self, rule: ThresholdRule) -> np.ndarray:
        return rule.mask(self.suv, self.voxel_ml, self.organs, self.organ_names, excluded=self.excluded)

    def missing(self, method: str) -> str | None:
        """Why ``method`` cannot read this study (None when it can)."""
        from ..data.organs import organ_names

        if method not in NEEDS_ORGANS:
            return None
        if self.organs is None:
            return "no organ map"
        names = organ_names(self.organ_names)
        if method == "percist" and not ("liver" in names and np.any(self.organs == names.index("liver") + 1)):
            return "no liver in the organ map"
        return None


def study_of(study_id: str, pet, label, organ_path=None) -> Study:
    """A Study from the PET Volume (SUV), its label Volume (on the PET grid, in any voxel order) and an organ map file
    (resampled onto the PET grid; None or a missing file: no organ map)."""
    from ..data.geometry import check_same_grid, in_voxel_order_of
    from ..data.organs import ORGANS, organ_map_on, read_organ_map
    from ..evaluation import header_voxel_volume_ml

    aligned = in_voxel_order_of(label, pet)
    check_same_grid(aligned, pet, reference_name="the PET's")
    organs = None
    if organ_path and Path(organ_path).exists():
        organs = np.asarray(organ_map_on(read_organ_map(organ_path), pet).array)
    return Study(study_id, np.asarray(pet.array, np.float32), np.asarray(aligned.array) > 0,
                 header_voxel_volume_ml(label), organs, ORGANS)


def load_study(folder: str | Path) -> Study:
    """PET, label and organ map of one study folder (PET.nii.gz, SEG.nii.gz, organs.nii.gz)."""
    from ..data.io import read_pet, read_volume

    folder = Path(folder)
    return study_of(folder.name, read_pet(folder / "PET.nii.gz"), read_volume(folder / "SEG.nii.gz", modality="SEG"),
                    folder / "organs.nii.gz")


def cached_study(cache, study_id: str) -> Study | None:
    """A harmonised study on its native PET grid, read from the PET, label and organ files recorded at harmonisation;
    None when they are gone or the label is not on the PET grid (the networks are then scored on the harmonised grid,
    where no SUV is stored)."""
    from ..data.io import read_pet
    from ..training.segmentation import native_label

    harmonised = cache.load(study_id)
    label, pet_path = native_label(harmonised), harmonised.meta.get("pet_source")
    if label is None or not pet_path or not Path(pet_path).exists():
        return None
    return study_of(study_id, read_pet(pet_path), label, harmonised.meta.get("organ_path"))


def _why_skipped(missing: dict[str, Counter], n: int, where: str) -> dict[str, str]:
    """method -> the reason it is skipped, for each method some study could not be read by (or no study at all)."""
    if n == 0:
        return {method: f"no {where}" for method in missing}
    return {method: "; ".join(f"{k} of {n} {where} have {why}" for why, k in counts.items())
            for method, counts in missing.items() if counts}


def grid_scores(methods, studies, where: str = "studies") -> tuple[dict, dict]:
    """({method: {rule: {study id: metrics}}} over T_GRID x MIN_ML_GRID, {method: why skipped}). Each threshold's
    mask is labelled once per study and every minimum volume scored from its components (evaluation.ComponentScorer)."""
    from ..evaluation import ComponentScorer
    from ..inference import LesionFilter

    scores = {m: {} for m in methods}
    missing, n = {m: Counter() for m in methods}, 0
    for s in studies:
        n += 1
        for method in methods:
            if why := s.missing(method):
                missing[method][why] += 1
                continue
            for t in T_GRID[method]:
                scorer = ComponentScorer(s.mask(ThresholdRule(method, t, 0.0)), s.label, s.voxel_ml)
                for v in MIN_ML_GRID:
                    kept = LesionFilter(v).keeps(scorer.sizes, np.full(scorer.sizes.shape, np.inf), s.voxel_ml)
                    scores[method].setdefault(ThresholdRule(method, t, v), {})[s.study_id] = scorer.metrics(kept)
    return scores, _why_skipped(missing, n, where)


def selection_score(per_case: dict[str, dict]) -> float:
    from ..training.segmentation import summarize

    return summarize(per_case, "val")[SELECTION] if per_case else -math.inf


def choose_rules(methods, studies, where: str = "studies chosen on") -> tuple[dict, dict]:
    """({method: (the rule scoring best on ``studies``, its selection score)}, {method: why skipped}); ties go to the
    first rule in grid order."""
    scores, skipped = grid_scores(methods, studies, where)
    chosen = {}
    for method in (m for m in methods if m not in skipped):
        ranked = [(selection_score(cases), -i, rule) for i, (rule, cases) in enumerate(scores[method].items())]
        score, _, rule = max(ranked, key=lambda item: item[:2])
        chosen[method] = (rule, score)
    return chosen, skipped


def score_rules(rules: dict[str, ThresholdRule], studies, where: str = "scored studies") -> tuple[dict, dict]:
    """({method: {study id: autoPET metrics}}, {method: why skipped}) of each rule on ``studies``."""
    from ..evaluation import case_metrics

    per_case, missing, n = {m: {} for m in rules}, {m: Counter() for m in rules}, 0
    for s in studies:
        n += 1
        for method, rule in rules.items():
            if why := s.missing(method):
                missing[method][why] += 1
            else:
                per_case[method][s.study_id] = case_metrics(s.mask(rule), s.label, s.voxel_ml)
    return per_case, _why_skipped(missing, n, where)


def chosen_and_scored(choose_on, score_on, methods=METHODS) -> dict[str, dict]:
    """Each method: chosen on ``choose_on`` (validation studies), scored on ``score_on`` (test studies): {"rule" (a
    ThresholdRule), "selection_score", "per_case"}, or {"skipped": why}."""
    chosen, skipped = choose_rules(methods, choose_on, "validation studies")
    per_case, more = score_rules({m: rule for m, (rule, _) in chosen.items()}, score_on, "test studies")
    skipped = {**skipped, **more}
    return {m: {"skipped": skipped[m]} if m in skipped else
            {"rule": chosen[m][0], "selection_score": chosen[m][1], "per_case": per_case[m]} for m in methods}


def entry(rule: ThresholdRule, per_case: dict, *, n_boot: int = 2000, seed: int = 0, **how) -> dict:
    """One baseline's record: {"rule" (a dict), "label", **how, "per_case", "aggregate"} (plain values for JSON)."""
    from ..evaluation import aggregate

    return {"rule": asdict(rule), "label": rule.label, **how, "per_case": per_case,
            "aggregate": aggregate(per_case, n_boot=n_boot, seed=seed)}


def threshold_baselines(choose_on, score_on, methods=METHODS, *, n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Each method: chosen on ``choose_on``, scored on ``score_on``: an ``entry`` with its "selection_score", or
    {"skipped": why}."""
    return {m: b if "skipped" in b else entry(b["rule"], b["per_case"], n_boot=n_boot, seed=seed,
                                              selection_score=b["selection_score"])
            for m, b in chosen_and_scored(choose_on, score_on, methods).items()}


def reference_of(baselines: dict) -> str | None:
    """The baseline a network is judged against: the organ-excluded threshold, else the plain one (when scored)."""
    return next((m for m in REFERENCES if "aggregate" in baselines.get(m, {})), None)


def paired_difference(cases: dict, reference_cases: dict) -> dict:
    """Dice of ``cases`` minus ``reference_cases`` on their common keys: mean difference, bootstrap 95% CI,
    two-sided Wilcoxon p ({"n": 0} when no pair has both Dice defined)."""
    from ..evaluation import bootstrap_ci, paired_wilcoxon

    pairs = np.array([(cases[k]["dice"], reference_cases[k]["dice"]) for k in cases if k in reference_cases],
                     dtype=float).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    if not len(pairs):
        return {"n": 0}
    diff = pairs[:, 0] - pairs[:, 1]
    return {"n": len(diff), "diff": float(diff.mean()), "ci": bootstrap_ci(diff, np.mean, n_boot=1000),
            "p": paired_wilcoxon(pairs[:, 0], pairs[:, 1])["pvalue"]}
