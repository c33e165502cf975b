"""Model cards written from the files a run produced (config, training options, evaluation JSON), never by hand.

The metadata goes through huggingface_hub's ``ModelCardData``/``EvalResult`` so the ``model-index`` is the Hub's own
format, and ``validate_model_card`` re-parses the finished card the way the Hub client does, plus the checks the
Hub applies to model metadata that can be done offline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..errors import PetCtInputError
from ..models.registry import model_class

PAPER_ARXIV = "2605.21835"
PAPER_TITLE = "An Open Multi-Center Whole-Body FDG PET/CT Foundation Model for Tumor Segmentation"
AUTHORS_CODE = "https://github.com/liu-xiaofeng/MAE-for-PET-CT"

# The pretraining corpus (METHOD.md). Licences are the providers' terms: check them before reusing the weights.
TRAINING_DATA = (
    ("AutoPET FDG-PET-CT-Lesions", 1014, "https://doi.org/10.7937/gkr0-xv29",
     "TCIA data usage policy (see the TCIA collection page)"),
    ("DeepPSMA challenge, FDG scans only", 100, "https://zenodo.org/records/15281784",
     "terms of the Zenodo record 15281784"),
    ("Stanford SPADE (1,137 minus 11 excluded)", 1126, "Stanford (see the paper)",
     "the provider's data use terms"),
    ("ViMed-PET (Vietnamese PET/CT report dataset)", 2757, "ViMed-PET release (see the paper)",
     "the provider's data use terms"),
)

# Evaluation JSON keys -> (model-index metric type, human-readable name)
METRICS = {
    "dice": ("dice", "Dice (lesion-positive scans)"),
    "fpv_ml": ("false_positive_volume", "False-positive volume (ml)"),
    "fnv_ml": ("false_negative_volume", "False-negative volume (ml)"),
    "lesion_sensitivity": ("recall", "Lesion-wise sensitivity"),
    "fp_per_case": ("false_positives_per_case", "False-positive components per scan"),
}
# Hub licence ids likely for medical model weights (a subset of the Hub's list); anything else: "other" + a name.
HUB_LICENSES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "mpl-2.0", "gpl-3.0", "lgpl-3.0", "agpl-3.0",
                "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nd-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
                "cc-by-nc-nd-4.0", "openrail", "unknown", "other"}


@dataclass
class EvalSource:
    """One evaluation JSON (``petct evaluate`` / ``petct study`` output) and the data it was computed on."""

    path: Path
    dataset_name: str
    split: str = "test"
    dataset_type: str | None = None  # default: a slug of dataset_name

    def __post_init__(self):
        self.path = Path(self.path)
        if self.dataset_type is None:
            self.dataset_type = re.sub(r"[^a-z0-9]+", "-", self.dataset_name.lower()).strip("-") or "unspecified"


@dataclass
class CardInputs:
    repo_id: str
    model_dir: Path
    training_config: Path | None = None
    evals: list[EvalSource] = field(default_factory=list)
    license: str = "other"
    license_name: str | None = "petct-fm-weights"
    base_model: str | None = None


def read_structured(path: Path) -> dict:
    """A JSON or YAML mapping, or a PetCtInputError naming the file."""
    try:
        text = Path(path).read_text()
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise PetCtInputError(path, f"cannot read as JSON/YAML ({err})") from None
    if not isinstance(data, dict):
        raise PetCtInputError(path, "expected a JSON/YAML mapping at the top level")
    return data


_NOT_RESULTS = re.compile(r"(^|_)(cases|history|split)$")  # per-case tables and training logs, not results


def _metric_prefix(node: dict) -> str | None:
    """"" for {dice, fpv_ml, ...}; "test_" for {test_dice, test_fpv_ml, ...} (fine-tuning results.json)."""
    for key, value in node.items():
        if isinstance(key, str) and key.endswith("dice") and isinstance(value, (int, float)):
            prefix = key[: -len("dice")]
            if isinstance(node.get(f"{prefix}fpv_ml"), (int, float)):
                return prefix
    return None


def _metric_blocks(node, path: tuple[str, ...] = ()):
    """(label path, metrics with plain keys) for every set of aggregate results in an evaluation JSON.

    ``petct evaluate`` writes {case: metrics, ..., "aggregate": metrics}: only the aggregate counts. Fine-tuning
    results.json holds {"test": {"test_dice": ...}, "test_cases": {...}}; per-case tables and training history are
    skipped. Lists of runs are labelled by each item's name/run/label when present."""
    if isinstance(node, dict):
        prefix = None if isinstance(node.get("aggregate"), dict) else _metric_prefix(node)
        if isinstance(node.get("aggregate"), dict):
            yield from _metric_blocks(node["aggregate"], path)
        elif prefix is not None:
            yield path, {k[len(prefix):]: v for k, v in node.items() if isinstance(k, str) and k.startswith(prefix)}
        else:
            for key, value in node.items():
                if not _NOT_RESULTS.search(str(key)):
                    yield from _metric_blocks(value, path + (str(key),))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            keys = [k for k in ("name", "run", "label") if isinstance(item, dict) and k in item]
            name = str(item[keys[0]]) if keys else str(i)
            yield from _metric_blocks(item, path + (name,))


def eval_results(source: EvalSource, task: tuple[str, str]) -> list[EvalResult]:
    """model-index results for every finite metric of every aggregate in one evaluation JSON."""
    data = read_structured(source.path)
    results = []
    for path, metrics in _metric_blocks(data):
        for key, (metric_type, metric_name) in METRICS.items():
            value = metrics.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            results.append(EvalResult(
                task_type=task[0], task_name=task[1], dataset_type=source.dataset_type,
                dataset_name=source.dataset_name, dataset_split=source.split,
                dataset_config="/".join(path) or None, metric_type=metric_type, metric_name=metric_name,
                metric_value=round(float(value), 4),
            ))
    if not results:
        raise PetCtInputError(source.path, "no aggregate metrics (dice, fpv_ml, fnv_ml...) found")
    return results


def _cell(metrics: dict, key: str) -> str:
    """A metric with its bootstrap 95% CI when both are finite, else n/a."""
    value, ci = metrics.get(key), metrics.get(f"{key}_ci95")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _results_table(sources: list[EvalSource]) -> str:
    rows = ["| data | run | n scans | Dice [95% CI] | FPV ml | FNV ml |", "|---|---|---|---|---|---|"]
    for source in sources:
        for path, m in _metric_blocks(read_structured(source.path)):
            rows.append(f"| {source.dataset_name} ({source.split}) | {'/'.join(path) or '-'} | "
                        f"{m.get('n_cases', '?')} | {_cell(m, 'dice')} | {_cell(m, 'fpv_ml')} | {_cell(m, 'fnv_ml')} |")
    return "\n".join(rows)


def _model_summary(config: dict, num_parameters: int | None) -> str:
    keys = ("preset", "backbone", "modalities", "crop_size", "target_spacing", "normalization", "num_labels",
            "mask_cell_size", "mask_ratio", "imputation", "masked_loss_weight", "visible_loss_weight")
    lines = [f"- `{k}`: `{config[k]}`" for k in keys if k in config]
    if num_parameters:
        lines.append(f"- parameters: {num_parameters / 1e6:.2f}M")
    return "\n".join(lines)


def _training_section(inputs: CardInputs) -> str:
    parts = []
    if inputs.training_config:
        options = read_structured(inputs.training_config)
        parts.append(f"Training options (`{inputs.training_config.name}`):\n\n```yaml\n"
                     f"{yaml.safe_dump(options, sort_keys=False).strip()}\n```")
    conversion = inputs.model_dir / "conversion.json"
    if conversion.is_file():
        info = read_structured(conversion)
        parts.append(f"Weights converted from the authors' released checkpoint `{info.get('source')}` "
                     f"(sha256 `{info.get('sha256')}`, preset `{info.get('preset')}`) with "
                     "`hub_scripts/convert_original_checkpoint.py` (tested to reproduce the original networks' outputs "
                     "to 1e-5).")
    summary = inputs.model_dir / "training_summary.json"
    if summary.is_file():
        parts.append(f"Training summary (`training_summary.json`):\n\n```json\n{summary.read_text().strip()}\n```")
    return "\n\n".join(parts) or "No training options were supplied for this card."


def render_model_card(inputs: CardInputs, config: dict, num_parameters: int | None = None) -> ModelCard:
    """The README.md of a Hub model folder, from the model's config.json and the given run files."""
    arch = (config.get("architectures") or ["PetCtModel"])[0]
    row = model_class(arch) or model_class("PetCtModel")
    task = (row.task, row.title)
    results = [r for source in inputs.evals for r in eval_results(source, task)]
    model_name = inputs.repo_id.split("/")[-1]
    data = ModelCardData(
        model_name=model_name, license=inputs.license, library_name="transformers",
        license_name=inputs.license_name if inputs.license == "other" else None,
        pipeline_tag=task[0], base_model=inputs.base_model, eval_results=results or None,
        tags=["medical-imaging", "pet-ct", "fdg-pet", "3d", "masked-autoencoder", "custom_code",
              f"arxiv:{PAPER_ARXIV}"],
    )
    data_rows = "\n".join(f"| {name} | {n} | {src} | {lic} |" for name, n, src, lic in TRAINING_DATA)
    results_md = _results_table(inputs.evals) if inputs.evals else "No evaluation was supplied for this card."
    body = f"""
# {model_name}

A petct-fm model (`{arch}`): a whole-body FDG PET/CT network following the paper
"{PAPER_TITLE}" (arXiv:{PAPER_ARXIV}), packaged for `transformers`.

## Model details
{_model_summary(config, num_parameters)}

Input: a 2-channel (PET in SUV, CT in HU) volume resampled to the target spacing, body-cropped and normalised as
petct-fm's `harmonize` does; axes (z, y, x). Spatial sizes must be multiples of 32 for SwinUNETR.

## How to use
```python
from transformers import AutoModel
model = AutoModel.from_pretrained("{inputs.repo_id}", trust_remote_code=True)  # petct-fm not required
```
With petct-fm installed, its `petct segment` command and Gradio demo take this repo id as the model and run the
whole pipeline (harmonisation, sliding window, mask back on the native PET grid, lesion table).

## Intended use
Research on automated lesion segmentation and representation learning for whole-body FDG PET/CT: fine-tuning,
linear probing, label-efficiency studies, and benchmarking on public data.

## Out-of-scope use
**Not a medical device.** Not cleared or approved for diagnosis, treatment decisions, staging or response
assessment. Not validated for tracers other than FDG, for paediatric patients, or for scanners and protocols unlike
those of the training data. Outputs need review by a qualified reader.

## Training data
Pretraining corpus of 4,997 FDG PET/CT scans (the paper's):

| dataset | scans | source | licence / terms |
|---|---|---|---|
{data_rows}

The weights inherit the restrictions of these sources: check each provider's terms before reuse.

## Training procedure
{_training_section(inputs)}

## Evaluation
autoPET metrics (18-connected components; Dice over lesion-positive scans; FPV/FNV in ml), means with bootstrap
95% confidence intervals.

{results_md}

## Citation
```bibtex
@misc{{petctfm2026,
  title         = {{{PAPER_TITLE}}},
  year          = {{2026}},
  eprint        = {{{PAPER_ARXIV}}},
  archivePrefix = {{arXiv}},
  url           = {{https://arxiv.org/abs/{PAPER_ARXIV}}}
}}
```
Authors' code: {AUTHORS_CODE}.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def validate_model_card(text: str, source: str = "README.md") -> ModelCard:
    """Parse a card as the Hub client does (strict model-index) and apply the Hub's offline metadata rules."""
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        raise PetCtInputError(source, f"invalid model card metadata: {err}") from None
    meta = card.data
    problems = []
    if meta.license not in HUB_LICENSES:
        problems.append(f"license {meta.license!r} is not a Hub licence id")
    if meta.license == "other" and not meta.license_name:
        problems.append("license 'other' needs license_name")
    for result in meta.eval_results or []:
        if not isinstance(result.metric_value, (int, float)) or not math.isfinite(result.metric_value):
            problems.append(f"metric {result.metric_type} has a non-finite value")
    if meta.eval_results and not meta.model_name:
        problems.append("model-index needs model_name")
    if problems:
        raise PetCtInputError(source, "; ".join(problems))
    return card
