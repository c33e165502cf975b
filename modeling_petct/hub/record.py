"""What a model card may say about a run, read from the run's own record: ``results.json`` (fine-tuning,
training.results.RunResult) or ``pretraining.json`` (MAE pretraining), beside the model folder. Data sources and
study counts, where the run started from, the score it was selected on, the post-processing and the test metrics
behind its numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

RECORD_FILES = ("results.json", "pretraining.json")  # training.results.RESULTS_FILE, PRETRAINING_FILE
SYNTHETIC_SOURCE = "synthetic-phantom"
_PHANTOM_ID = re.compile(r"^phantom_\d+(_\d+)?$")  # ids written by data.synthetic.phantom
SOURCE_NAMES = {SYNTHETIC_SOURCE: "synthetic PET/CT phantoms (petct-fm, modeling_petct.data.synthetic)",
                "autopet": "AutoPET FDG-PET-CT-Lesions", "deeppsma": "DeepPSMA (FDG)", "spade": "Stanford SPADE",
                "vimed": "ViMed-PET"}
SPLITS = ("train", "val", "test")
CASE_KEYS = ("dice", "fpv_ml", "fnv_ml", "gt_lesions", "detected_lesions", "false_positive_components")
LOCAL_CHECKPOINT = "a local checkpoint"


def find_run_record(model_dir: Path, given: Path | None = None) -> Path | None:
    """The run's record: given, or in the model folder or its parent (a run's best/ or last/ sits inside the run)."""
    if given is not None:
        return Path(given)
    for folder in (model_dir, model_dir.parent):
        for name in RECORD_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _source_of(study_id: str) -> str:
    return SYNTHETIC_SOURCE if _PHANTOM_ID.match(study_id) else "unrecorded"


def data_sources(record: dict) -> dict[str, dict[str, int]]:
    """source -> {split: studies} ("all" where only a total is known). The record's data_sources (training: the
    cache sidecars' "source", "unknown" when absent) when it names any; else from its split's study ids, where
    petct-fm's phantoms are recognisable and anything else is "unrecorded"."""
    split = record.get("split") or {}
    recorded = {str(k): int(v) for k, v in (record.get("data_sources") or {}).items()}
    unknown = recorded.pop("unknown", 0)
    if len(recorded) == 1 and not unknown:  # one source: every split is from it
        return {next(iter(recorded)): {s: len(split.get(s) or []) for s in SPLITS}}
    if recorded:
        return {**{k: {"all": n} for k, n in recorded.items()}, **({"unrecorded": {"all": unknown}} if unknown else {})}
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        for study_id in split.get(name) or []:
            per_split = counts.setdefault(_source_of(str(study_id)), {})
            per_split[name] = per_split.get(name, 0) + 1
    return counts


def is_synthetic(sources: dict) -> bool:
    return bool(sources) and all(s.startswith("synthetic") or s == "phantom" for s in sources)


def dataset_name(sources: dict) -> str:
    return " + ".join(SOURCE_NAMES.get(s, s) for s in sources) or "unrecorded data"


def hub_id(name: str) -> str | None:
    """``name`` when it can only be a Hub repo id (owner/name, not a folder here, not a path); else None."""
    if not name or name.startswith((".", "/", "~")) or Path(name).expanduser().exists():
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name if name.count("/") == 1 else None


def started_from(record: dict, base_model: str | None) -> str:
    """Where the run started, never a local path: the given base model, a Hub id, or "a local checkpoint"."""
    if base_model:
        return base_model
    pretrained = record.get("pretrained")
    if not pretrained:
        return "random initialisation (from scratch)"
    names = pretrained if isinstance(pretrained, list) else [pretrained]
    return " + ".join(hub_id(str(n)) or LOCAL_CHECKPOINT for n in names)


def recorded_base_model(record: dict | None) -> str | None:
    """The Hub id the run started from, when the record names one (a local folder is not a base model)."""
    pretrained = (record or {}).get("pretrained")
    return hub_id(pretrained) if isinstance(pretrained, str) else None


def selection_score(record: dict, model_dir: Path) -> str | None:
    """What the selected checkpoint's recorded score is: the record's selection_metric, else training_summary.json's
    selected_on (older records). Described as what it computes, not as a Dice when it is not one."""
    from ..training.results import SELECTION_SCORES

    metric = record.get("selection_metric")
    summary = model_dir / "training_summary.json"
    if metric is None and summary.is_file():
        metric = json.loads(summary.read_text()).get("selected_on")
    return SELECTION_SCORES.get(metric, f"{metric} (validation)" if metric else "metric not recorded")


def postprocessing(record: dict) -> str:
    """The lesion filter behind the record's test metrics (the model's config.min_lesion_ml/min_lesion_confidence)."""
    ml, confidence = float(record.get("min_lesion_ml") or 0.0), float(record.get("min_lesion_confidence") or 0.0)
    if not ml and not confidence:
        return "none (every predicted component kept)"
    parts = ([f"components under {ml:g} ml dropped"] if ml else []) + (
        [f"components whose peak lesion probability is under {confidence:g} dropped"] if confidence else [])
    return "; ".join(parts)


def test_metrics(record: dict) -> dict:
    """The record's test metrics: recomputed from its per-study table with bootstrap 95% CIs, lesion sensitivity
    and false positives per study (evaluation.statistics.aggregate) when the table has them, else its summary."""
    from ..evaluation.statistics import aggregate

    cases = record.get("test_cases") or {}
    if cases and all(isinstance(c, dict) and all(k in c for k in CASE_KEYS) for c in cases.values()):
        return aggregate(cases)
    summary = {k.removeprefix("test_"): v for k, v in (record.get("test") or {}).items()}
    return {**summary, "n_cases": len(cases)} if cases else summary
