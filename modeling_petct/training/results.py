"""The results record of one fine-tuning or probing run (`results.json`), one name per fact.

Written by `training.segmentation.finetune`, read by the study report, the quickstart report, the model card and the
demo, so that a fact is spelled the same everywhere, and ranked by one set of rules (``cells_by_validation``,
``best_by_arm``: validation scores only): ``network`` is the backbone family (``config.backbone``, e.g.
"swinunetr-v2"), ``preset`` the preset name (e.g. "swinunetr-v2-small"), ``arm`` how the network started.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path

RESULTS_FILE = "results.json"
PRETRAINING_FILE = "pretraining.json"  # the MAE pretraining run's record (a model card reads both)
ARMS = ("pretrained", "scratch", "pretrained-organs", "scratch-organs", "probe", "probe-separated", "probe-random")
FP_PENALTY = 0.05  # Dice per false-positive lesion on a lesion-free validation study (our choice; paper: Dice only)
# --selection_metric -> what the score is (the record's best_val_score holds the selected checkpoint's score)
SELECTION_SCORES = {"val_dice": "validation Dice (mean over lesion-positive studies)",
                    "val_dice_fp": f"validation Dice minus {FP_PENALTY} per false-positive lesion on an average "
                                   "lesion-free study"}
# ... and in a few words, where a score is shown beside a model (the demo's model list)
SELECTION_SHORT = {"val_dice": "validation Dice", "val_dice_fp": "validation Dice less FP penalty"}
LEGACY_KEYS = {"best_val_dice": "best_val_score"}  # records written before the rename are read as today's
QUICKSTART_MARKER = ".petct-quickstart"  # in a `petct quickstart` output folder: its models saw phantoms only
ORGANS_SUFFIX = "-organs"  # a fine-tuning arm that also learns organs (config.organ_labels)
INTERACTIVE_SUFFIX = "-interactive"  # a fine-tuning arm with click inputs, trained with simulated clicks


def arm_of(*, pretrained: bool, linear_probe: bool, separated: bool, organ_aware: bool = False,
           interactive: bool = False) -> str:
    """How a run started: fine-tuned from a pretrained model or from scratch (lesion-only, or organ-aware; with or
    without click inputs), or a (separated-modality) probe."""
    if separated:
        return "probe-separated"
    if linear_probe:
        return "probe" if pretrained else "probe-random"  # a probe of random features: the control
    return (("pretrained" if pretrained else "scratch") + (ORGANS_SUFFIX if organ_aware else "")
            + (INTERACTIVE_SUFFIX if interactive else ""))


@dataclass
class RunResult:
    network: str  # backbone family (config.backbone)
    preset: str | None  # preset name the config was built from (None: a custom config)
    arm: str  # one of ARMS
    pretrained: str | list[str] | None  # the MAE (or the PET-only, CT-only pair) the run started from
    linear_probe: bool
    schedule: str
    k_shot: int | None
    label_fraction: float | None
    n_train: int
    seed: int
    split_seed: int
    steps: int
    learning_rate: float
    selected_model: str
    selected_step: int | None
    best_val_score: float | None  # the selected checkpoint's score, on selection_metric
    history: list = field(default_factory=list)
    split: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)  # test_dice, test_fpv_ml, test_fnv_ml (summary)
    test_cases: dict = field(default_factory=dict)  # study id -> autoPET metrics
    cache_dir: str = ""  # the harmonised cache the run read
    data_sources: dict = field(default_factory=dict)  # study source (cache sidecar "source") -> studies in train+val+test
    min_lesion_ml: float = 0.0  # the selected model's post-processing (config.min_lesion_ml, inference.LesionFilter)
    min_lesion_confidence: float = 0.0  # ... and config.min_lesion_confidence
    lesion_filter_scores: dict = field(default_factory=dict)  # "<ml>,<confidence>" -> selection score, when chosen
    selection_metric: str | None = None  # what best_val_score is: a key of SELECTION_SCORES (None: older records)
    select_on: str | None = None  # the split the checkpoint was selected on: "val", or "test" (the authors' protocol)

    @property
    def label(self) -> str:
        """How tables name the network: the preset, else the family."""
        return self.preset or self.network

    @property
    def amount(self) -> str:
        """How many labels: "5-shot", the fraction ("0.1"), or "n=<scans>"."""
        if self.k_shot:
            return f"{self.k_shot}-shot"
        return f"{self.label_fraction:g}" if self.label_fraction is not None else f"n={self.n_train}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunResult:
        """A record from results.json (keys this version does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {LEGACY_KEYS.get(k, k): v for k, v in values.items()}
        return cls(**{k: v for k, v in values.items() if k in names})

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / RESULTS_FILE
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """From a run folder or its results.json."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        return cls.from_dict(json.loads(path.read_text()))


def recorded_score(record: dict) -> float | None:
    """The selected checkpoint's score of a results.json record, whichever version wrote it."""
    return record.get("best_val_score", record.get("best_val_dice"))


def selection_name(record: dict, short: bool = False) -> str:
    """What a record's score is (SELECTION_SCORES / SELECTION_SHORT of its selection_metric); Dice for old records."""
    names = SELECTION_SHORT if short else SELECTION_SCORES
    return names.get(record.get("selection_metric") or "val_dice", "validation score")


def data_sources(cache, ids) -> dict[str, int]:
    """How many studies of each source (the cache sidecar's "source", "unknown" when absent) a run used."""
    counts: dict[str, int] = {}
    for study_id in sorted(set(ids)):
        source = str(cache.info(study_id).get("source") or "unknown")
        counts[source] = counts.get(source, 0) + 1
    return counts


def save_pretraining_record(folder: str | Path, record: dict) -> Path:
    """The MAE run's record (data sources and split, steps, the selected step and its validation loss)."""
    path = Path(folder) / PRETRAINING_FILE
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1, default=_json_default))
    return path


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


# Ranking rules over run records (cells): validation scores only, never test studies.

def cells_by_validation(results) -> list:
    """Fine-tuning runs, best validation score first (runs without one last): RunResults as given, or the cell
    dicts of a study's results.json path (what the demo reads)."""
    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text())["cells"]
    return sorted(results, key=checkpoint_score, reverse=True)


def checkpoint_score(cell) -> float:
    """The validation score of a cell's selected checkpoint (a RunResult or a results.json cell dict); -inf when none."""
    value = recorded_score(cell) if isinstance(cell, dict) else cell.best_val_score
    return -math.inf if value is None or math.isnan(value) else value


def best_by_arm(results: list) -> dict:
    """The cell of best validation score per fine-tuning arm (never chosen on test studies)."""
    best = {}
    for cell in cells_by_validation(results):
        if cell.arm in ("pretrained", "scratch"):
            best.setdefault(cell.arm, cell)
    return best


def validation_score(cell) -> float:
    """A cell's validation score after its post-processing (the best candidate's score where one was chosen), else
    its checkpoint's score; -inf when it has none."""
    if cell.lesion_filter_scores:
        return float(max(cell.lesion_filter_scores.values()))
    return float(checkpoint_score(cell))
