"""Interactive segmentation scored step by step, on harmonised studies with labels.

Protocols (``PROTOCOLS``):
- "autopet-iv": autoPET IV's, ``steps`` = 11 steps, step s with s foreground and s background clicks simulated from
  the ground truth (data/simulated_clicks.py: centres of lesions, hot non-lesion regions), the clicks of step s those
  of step s - 1 plus one of each kind;
- "error-driven": step 0 without clicks, then each step one click at the centre of the largest remaining error of the
  previous step's mask, a foreground click on a miss or a background click on a false positive, whichever is larger.
Each step is scored by the autoPET metrics (Dice, FPV, FNV in ml) and the lesion-level F1 (IoU >= 0.1, autoPET V's
detection rule); the summary gives them after the last step and their area under the curve over the steps (unit
step, autoPET IV's: a Dice of 1 at every step of 11 gives an AUC of 10).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..data.simulated_clicks import BACKGROUND, FOREGROUND, centre, ground_truth_clicks, largest_errors
from .metrics import case_metrics, lesion_f1

PROTOCOLS = ("autopet-iv", "error-driven")
EDITED = " + Space edits"  # a protocol scored on the mask the Space shows (evaluate_interactive's space_edits)
STEPS = 11
METRICS = ("dice", "fpv_ml", "fnv_ml", "lesion_f1")


def run_protocol(mask_for: Callable, label: np.ndarray, pet: np.ndarray | None, voxel_ml: float, protocol: str,
                 steps: int = STEPS, seed: int = 0) -> list[dict]:
    """The metrics of each step (and its number of clicks); ``mask_for(clicks)`` gives the mask for (channel,
    (z, y, x)) clicks on the grid of ``label``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    planned = ground_truth_clicks(label, pet, steps - 1, steps - 1, np.random.default_rng(seed)) \
        if protocol == "autopet-iv" else []
    fg, bg = ([c for c in planned if c[0] == kind] for kind in (FOREGROUND, BACKGROUND))
    clicks, curve, mask = [], [], None
    for step in range(steps):
        if protocol == "autopet-iv":
            clicks = fg[:step] + bg[:step]
        elif step and (errors := largest_errors(mask, label)):
            channel, part = max(errors, key=lambda e: int(e[1][1].sum()))
            clicks = clicks + [(channel, centre(part))]
        mask = mask_for(clicks)
        curve.append({**step_metrics(mask, label, voxel_ml), "clicks": len(clicks)})
    return curve


def step_metrics(mask: np.ndarray, label: np.ndarray, voxel_ml: float) -> dict:
    m = case_metrics(mask, label, voxel_ml)
    return {"dice": m["dice"], "fpv_ml": m["fpv_ml"], "fnv_ml": m["fnv_ml"], "lesion_f1": lesion_f1(mask, label)}


def summarize(curves: dict[str, list[dict]]) -> dict:
    """Mean curve over cases (NaN-free means: Dice and F1 of lesion-free cases are undefined), the metrics after the
    last step, and the mean per-case area under each curve."""
    def mean(values) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    cases = list(curves.values())
    n_steps = len(cases[0])
    mean_curve = [{k: mean([c[s][k] for c in cases]) for k in (*METRICS, "clicks")} for s in range(n_steps)]
    auc = {f"auc_{k}": mean([float(np.trapezoid([step[k] for step in c])) for c in cases]) for k in METRICS}
    return {"n_cases": len(cases), "steps": mean_curve, "final": mean_curve[-1], **auc}


def evaluate_interactive(model, cache, ids: list[str], protocols=PROTOCOLS, steps: int = STEPS, *, settings=None,
                         device="cpu", seed: int = 0, space_edits: bool = False,
                         progress: Callable[[str], None] | None = None) -> dict:
    """{protocol: {"summary": summarize(...), "cases": {study id: curve}}} for a guidance model on cached studies
    (harmonised grid, the cached label). With ``space_edits``, also {protocol + EDITED: ...}: the mask as the Space
    shows it (the model re-run with the clicks, then a foreground click on a lesion it still leaves empty gets the
    41%-of-SUVmax region and a background click removes the component under it: inference/isocontour.py)."""
    from ..inference import InferenceSettings
    from ..inference.interactive import ClickPredictor
    from ..inference.isocontour import isocontour_edit

    def responders(study) -> dict:
        predictor = ClickPredictor(model, np.asarray(study.image), settings or InferenceSettings(), device)
        voxel_ml, suv = _voxel_ml(study), study.pet_suv() if space_edits else None
        masks = {}  # by clicks: a step shared by protocols and variants runs the model once

        def network(clicks):
            key = tuple(clicks)
            if key not in masks:
                masks[key] = predictor.mask(clicks, voxel_ml)
            return masks[key]

        def edited(clicks):
            return isocontour_edit(network(clicks), suv, clicks, study.spacing, where_missed=True)

        return {**{p: network for p in protocols}, **{p + EDITED: edited for p in protocols if space_edits}}

    return _score_studies(cache, ids, responders, steps, seed, progress)


def evaluate_isocontour_tool(cache, ids: list[str], protocols=PROTOCOLS, steps: int = STEPS, *, seed: int = 0) -> dict:
    """The classical interactive tool alone, scored like ``evaluate_interactive`` (same clicks, same metrics): from an
    empty mask, a foreground click adds the 41%-of-SUVmax region under it, a background click removes the component
    under it (inference/isocontour.py, the Space's edits for a model without click inputs)."""
    from ..inference.isocontour import isocontour_edit

    def responders(study) -> dict:
        suv, empty = study.pet_suv(), np.zeros(study.shape, np.uint8)
        return {p: lambda clicks: isocontour_edit(empty, suv, clicks, study.spacing) for p in protocols}

    return _score_studies(cache, ids, responders, steps, seed)


def _score_studies(cache, ids: list[str], responders: Callable, steps: int, seed: int,
                   progress: Callable[[str], None] | None = None) -> dict:
    """{variant: {"summary", "cases"}}: ``responders(study)`` gives {variant: mask_for(clicks)} per study, each run
    under its protocol (the variant's name less EDITED)."""
    out: dict = {}
    for study_id in ids:
        study = cache.load(study_id)
        label, pet = np.asarray(study.label), np.asarray(study.image[0])
        for variant, mask_for in responders(study).items():
            curve = run_protocol(mask_for, label, pet, _voxel_ml(study), variant.removesuffix(EDITED), steps, seed)
            out.setdefault(variant, {"cases": {}})["cases"][study_id] = curve
            if progress:
                progress(f"{study_id} {variant}: Dice {curve[-1]['dice']:.3f} after {steps - 1} steps")
    for result in out.values():
        result["summary"] = summarize(result["cases"])
    return out


def _voxel_ml(study) -> float:
    return float(np.prod(study.spacing)) / 1000.0


def plot_dice_vs_clicks(results: dict, path) -> None:
    """Mean Dice per step, one line per protocol (PNG)."""
    from ..plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    for protocol, result in results.items():
        curve = result["summary"]["steps"]
        ax.plot(range(len(curve)), [s["dice"] for s in curve], marker="o", ms=3,
                label=f"{protocol} (AUC {result['summary']['auc_dice']:.2f})")
    ax.set_xlabel("interaction step")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
