"""Classical threshold baselines beside the networks: each rule's threshold and minimum volume chosen on training or
validation studies by the networks' own selection score (training.segmentation.summarize, `val_dice_fp`), then
scored once on the test studies with the package's autoPET metrics, on the native PET grid.

A study is a folder with PET.nii.gz (SUV), SEG.nii.gz and organs.nii.gz (TotalSegmentator ids, any grid; the phantom
writes them on the CT grid), as `petct phantom` and the quickstart cohort write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inference.threshold import METHODS, ThresholdRule, physiological

# The grid each rule is chosen from: SUV thresholds t (percist: its own liver threshold) x minimum volumes (ml).
T_GRID = {"suv": (2.5, 3.0, 3.5, 4.0, 5.0, 6.0), "suv-organs": (2.5, 3.0, 3.5, 4.0, 5.0, 6.0),
          "suvmax41": (2.5, 3.0, 4.0, 5.0), "percist": (0.0,)}
MIN_ML_GRID = (0.0, 0.5, 1.0, 2.0, 3.0)
SELECTION = "val_dice_fp"


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


def load_study(folder: str | Path) -> Study:
    """PET, label and organ map (resampled onto the PET grid, default vocabulary) of one study folder."""
    from ..data.io import read_pet, read_volume
    from ..data.organs import ORGANS, organ_map_on, read_organ_map
    from ..evaluation import header_voxel_volume_ml

    folder = Path(folder)
    pet = read_pet(folder / "PET.nii.gz")
    label = read_volume(folder / "SEG.nii.gz", modality="SEG")
    organ_file = folder / "organs.nii.gz"
    organs = np.asarray(organ_map_on(read_organ_map(organ_file), pet).array) if organ_file.exists() else None
    return Study(folder.name, np.asarray(pet.array, np.float32), np.asarray(label.array) > 0,
                 header_voxel_volume_ml(label), organs, ORGANS)


def score_rule(rule: ThresholdRule, studies: list[Study]) -> dict[str, dict]:
    """Per-study autoPET metrics of ``rule`` (studies the rule cannot read, e.g. no organ map, are left out)."""
    from ..evaluation import case_metrics

    return {s.study_id: case_metrics(s.mask(rule), s.label, s.voxel_ml)
            for s in studies if s.organs is not None or rule.method == "suv"}


def selection_score(per_case: dict[str, dict]) -> float:
    from ..training.segmentation import summarize

    return summarize(per_case, "val")[SELECTION] if per_case else -math.inf


def choose_rule(method: str, studies: list[Study]) -> tuple[ThresholdRule, float]:
    """The (t, min_ml) of ``method`` scoring best on ``studies``; ties go to the first in grid order. Each threshold's
    mask is labelled once per study and every minimum volume scored from its components (evaluation.ComponentScorer)."""
    from ..evaluation import ComponentScorer
    from ..inference import LesionFilter

    readable = [s for s in studies if s.organs is not None or method == "suv"]
    scored = []
    for t in T_GRID[method]:
        per_min_ml = {v: {} for v in MIN_ML_GRID}
        for s in readable:
            scorer = ComponentScorer(s.mask(ThresholdRule(method, t, 0.0)), s.label, s.voxel_ml)
            for v in MIN_ML_GRID:
                kept = LesionFilter(v).keeps(scorer.sizes, np.full(scorer.sizes.shape, np.inf), s.voxel_ml)
                per_min_ml[v][s.study_id] = scorer.metrics(kept)
        scored += [(selection_score(cases), -len(scored) - k, ThresholdRule(method, t, v))
                   for k, (v, cases) in enumerate(per_min_ml.items())]
    score, _, rule = max(scored, key=lambda item: item[:2])
    return rule, score


def threshold_baselines(choose_on: list[Study], score_on: list[Study], methods=METHODS, *, n_boot: int = 2000,
                        seed: int = 0) -> dict[str, dict]:
    """Each method: chosen on ``choose_on``, scored on ``score_on``: {"rule", "label", "selection_score",
    "per_case", "aggregate"} (rule as a dict)."""
    from dataclasses import asdict

    from ..evaluation import aggregate

    out = {}
    for method in methods:
        rule, score = choose_rule(method, choose_on)
        per_case = score_rule(rule, score_on)
        out[method] = {"rule": asdict(rule), "label": rule.label, "selection_score": score, "per_case": per_case,
                       "aggregate": aggregate(per_case, n_boot=n_boot, seed=seed) if per_case else {}}
    return out
