"""Each fine-tuning arm's best-by-validation model scored on a centre no model was trained on (the quickstart's
held-out centre), with the code that scores the test split."""

from __future__ import annotations

from pathlib import Path


def held_out_centre(out: Path, cohort, study: dict, budget) -> dict:
    """autoPET metrics of each arm's best-by-validation cell on the held-out centre's test studies."""
    ids = cohort.roles.get("held_out_test", [])
    if not ids:
        return {}
    from ..evaluation import aggregate
    from ..training.args import SegArguments, TrainArguments
    from ..training.loop import make_accelerator
    from ..training.segmentation import build_segmenter, score_studies  # noqa: F401  (same scoring as the test split)
    from .. import PetCtForSegmentation
    from ..training.results import best_by_arm

    accelerator = make_accelerator(TrainArguments(output_dir=str(out / "held_out_centre"), report_to="none",
                                                  mixed_precision=budget.mixed_precision))  # as the cells scored
    seg = SegArguments(sw_overlap=0.0)
    scored = {}
    for arm, cell in best_by_arm(study["results"]).items():
        model = PetCtForSegmentation.from_pretrained(cell.selected_model).eval()
        cases = score_studies(accelerator, model, cohort.cache, ids, seg, native=True)
        scored[arm] = {"cell": cell, **aggregate(cases, n_boot=500)}
    return scored
