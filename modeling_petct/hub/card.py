"""Model cards written from the files a run produced, never by hand: every claim comes from the model's config.json,
the run's own record (``results.json``, training.results.RunResult: data sources and counts, steps, validation
and test metrics), ``conversion.json`` for converted checkpoints, and any evaluation JSON given.

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
from ..models.registry import auto_map, model_class
from .record import (SOURCE_NAMES, SPLITS, data_sources, dataset_name, find_run_record, is_synthetic,
                     postprocessing, recorded_base_model, selection_score, started_from, test_metrics)

PAPER_ARXIV = "2605.21835"
PAPER_TITLE = "An Open Multi-Center Whole-Body FDG PET/CT Foundation Model for Tumor Segmentation"
AUTHORS_CODE = "https://github.com/liu-xiaofeng/MAE-for-PET-CT"

# The authors' pretraining corpus (METHOD.md): claimed only for weights converted from their checkpoints.
# Licences are the providers' terms: check them before reusing the weights.
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
    "fp_per_case": ("false_positives_per_case", "False-positive lesions per scan"),
}
LICENSE_FILE = "LICENSE.md"  # shipped in the repo when the licence is "other" (license_link points to it)
# Hub licence ids likely for medical model weights (a subset of the Hub's list); anything else: "other" + a name.
HUB_LICENSES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "mpl-2.0", "gpl-3.0", "lgpl-3.0", "agpl-3.0",
                "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nd-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
                "cc-by-nc-nd-4.0", "openrail", "unknown", "other"}


@dataclass
class EvalSource:
    """One evaluation JSON (``petct evaluate`` / ``petct study`` output) or a run record's test split, and the data
    it was computed on. ``blocks``: the (label path, metrics) already read (a run record's); else read from path."""

    path: Path
    dataset_name: str
    split: str = "test"
    dataset_type: str | None = None  # default: a slug of dataset_name
    postprocessing: str = "not recorded in the evaluation file"
    metric_args: dict | None = None  # the recorded post-processing, as the model-index's metric args
    blocks: list | None = None

    def __post_init__(self):
        self.path = Path(self.path)
        if self.dataset_type is None:
            self.dataset_type = re.sub(r"[^a-z0-9]+", "-", self.dataset_name.lower()).strip("-") or "unspecified"

    def metric_blocks(self) -> list[tuple[tuple[str, ...], dict]]:
        return self.blocks if self.blocks is not None else list(_metric_blocks(read_structured(self.path)))


@dataclass
class CardInputs:
    repo_id: str
    model_dir: Path
    training_config: Path | None = None
    evals: list[EvalSource] = field(default_factory=list)
    license: str | None = None  # default: apache-2.0, or "other" (the data providers' terms) for converted weights
    license_name: str | None = None  # with "other": its name (default for converted weights: upstream-data-terms)
    license_file: Path | None = None  # with "other": the licence text, shipped as LICENSE.md
    base_model: str | None = None  # Hub id; default: the record's start when that is a Hub id
    results: Path | None = None  # the run record; default: results.json / pretraining.json beside the model

    @property
    def converted(self) -> bool:
        """Converted from one of the authors' checkpoints (an nnU-Net import has a card of its own)."""
        from .nnunet_card import is_import

        path = self.model_dir / "conversion.json"
        return path.is_file() and not is_import(read_structured(path))


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


def _eval_results(metrics: dict, task: tuple[str, str], source: EvalSource, label: tuple[str, ...]) -> list[EvalResult]:
    """One model-index result per finite autoPET metric of one aggregate. The split is the split field; a label
    (a run of a study file) is the dataset config, and the split name is not repeated there."""
    config = "/".join(part for part in label if part != source.split) or None
    return [EvalResult(task_type=task[0], task_name=task[1], dataset_type=source.dataset_type,
                       dataset_name=source.dataset_name, dataset_split=source.split, dataset_config=config,
                       metric_type=metric_type, metric_name=metric_name, metric_value=round(float(metrics[key]), 4),
                       metric_args=source.metric_args)
            for key, (metric_type, metric_name) in METRICS.items()
            if isinstance(metrics.get(key), (int, float)) and math.isfinite(metrics[key])]


def eval_results(source: EvalSource, task: tuple[str, str]) -> list[EvalResult]:
    """model-index results for every finite metric of every aggregate in one evaluation."""
    results = [r for label, metrics in source.metric_blocks() for r in _eval_results(metrics, task, source, label)]
    if not results:
        raise PetCtInputError(source.path, "no aggregate metrics (dice, fpv_ml, fnv_ml...) found")
    return results


def record_eval_source(record_path: Path, record: dict) -> EvalSource | None:
    """The record's test-split metrics as an evaluation source (None when the run scored no test split)."""
    if not (record.get("test") or {}):
        return None
    args = {k: float(record.get(k) or 0.0) for k in ("min_lesion_ml", "min_lesion_confidence")}
    return EvalSource(record_path, dataset_name(data_sources(record)), split="test", postprocessing=postprocessing(record),
                      metric_args=args, blocks=[((), test_metrics(record))])


# ---- card sections -------------------------------------------------------------------------------------------------

def _networks(config: dict) -> list[dict]:
    """The config of each backbone: the separated probe's two, else the model's own."""
    return [config[k] for k in ("pet_config", "ct_config") if isinstance(config.get(k), dict)] or [config]


def _backbones(config: dict) -> list[str]:
    return [c.get("backbone", "swinunetr-v2") for c in _networks(config)]


def _size_divisor(config: dict) -> int:
    divisors = [32 if c.get("backbone", "swinunetr-v2") == "swinunetr-v2" else math.prod(c.get("strides") or (32,))
                for c in _networks(config)]
    return math.lcm(*divisors)


def install_section(config: dict) -> str:
    """The exact pip commands for a clean environment (the same lines a missing package's error prints)."""
    from ..models.backbones import install_lines

    return "\n".join(install_lines(_backbones(config)))


_OUTPUTS = {"AutoModelForSemanticSegmentation": "out.logits: (B, num_labels, D, H, W); classes in model.config.id2label",
            "AutoModelForMaskedImageModeling": "out.reconstruction: (B, C, D, H, W), out.mask: 1 = masked",
            "AutoModel": "out.last_hidden_state: the decoder's feature map (B, F, D, H, W)"}


def _petct_use(repo_id: str, row) -> str:
    """What petct-fm itself does with this model (only what its commands accept)."""
    if row.segments_lesions:
        return ("With petct-fm installed, `petct segment` and the Gradio demo take this repo id as the model and run "
                "the whole pipeline (harmonisation, sliding window, mask back on the native PET grid, lesion table).")
    if row.auto_class == "AutoModelForMaskedImageModeling":
        return (f"This is a pretrained masked autoencoder, not a segmentation model: `petct segment` refuses it. With "
                f"petct-fm installed, `petct finetune --pretrained {repo_id}` fine-tunes it for lesion segmentation.")
    return "This is a feature extractor, not a segmentation model: `petct segment` refuses it."


def _usage_code(repo_id: str, row, config: dict) -> str:
    """The card's Python snippet: the task's Auto class and, where auto_map names a backbone class, AutoModel's."""
    channels = list(config.get("modalities") or ("PET", "CT"))
    channels += ["foreground clicks", "background clicks"][: int(config.get("guidance_channels") or 0)]
    entries = auto_map(row)
    backbone = entries["AutoModel"] != entries[row.auto_class]
    load = 'from_pretrained("{}", trust_remote_code=True).eval()'.format(repo_id)
    lines = ["import torch", f"from transformers import {row.auto_class}" + (", AutoModel" * backbone),
             f"model = {row.auto_class}.{load}",
             f"pixel_values = torch.zeros(1, {len(channels)}, {2 * _size_divisor(config)}, 128, 128)  "
             f"# {' + '.join(channels)}, (z, y, x)",
             "with torch.no_grad():", f"    out = model(pixel_values)  # {_OUTPUTS[row.auto_class]}"]
    if backbone:
        lines[-2:-2] = [f"backbone = AutoModel.{load}  # the same network without its head"]
        lines.append("    features = backbone(pixel_values).last_hidden_state")
    return "\n".join(lines)


def _usage_section(repo_id: str, row, config: dict) -> str:
    install = install_section(config)
    no_deps = (" `--no-deps` keeps dynamic-network-architectures' timm/torchvision pins from replacing a CPU torch "
               "with a CUDA build.") if "--no-deps" in install else ""
    return (f"Without petct-fm, these packages are all it needs:{no_deps}\n```bash\n{install}\n```\n"
            f"```python\n{_usage_code(repo_id, row, config)}\n```\n{_petct_use(repo_id, row)}")


def _source_row(source: str, counts: dict) -> str:
    cells = ["-" if "all" in counts else str(counts.get(split, 0)) for split in SPLITS]
    return f"| {SOURCE_NAMES.get(source, source)} | {' | '.join(cells)} | {sum(counts.values())} |"


def _data_section(inputs: CardInputs, record: dict | None) -> str:
    if (inputs.model_dir / "conversion.json").is_file():
        rows = "\n".join(f"| {name} | {n} | {src} | {lic} |" for name, n, src, lic in TRAINING_DATA)
        return ("Weights converted from the authors' released checkpoint, pretrained (per the paper) on their corpus "
                "of 4,997 FDG PET/CT scans:\n\n| dataset | scans | source | licence / terms |\n|---|---|---|---|\n"
                f"{rows}\n\nThe weights inherit the restrictions of these sources: check each provider's terms.")
    if record is None:
        return "No run record (results.json) was supplied: this card makes no claim about the training data."
    sources = data_sources(record)
    rows = "\n".join(_source_row(source, counts) for source, counts in sources.items())
    text = f"Studies, from the run record:\n\n| data | train | val | test | all |\n|---|---|---|---|---|\n{rows}"
    if is_synthetic(sources):
        text = ("**The data are synthetic.** This model was trained and evaluated only on computer-generated PET/CT "
                "phantoms (petct-fm's `modeling_petct.data.synthetic`), no patient scans: its numbers say nothing "
                "about performance on real studies.\n\n" + text)
    return text


def _selection(record: dict, model_dir: Path) -> dict:
    """The selected checkpoint: when, on which split, and its score named as what it is."""
    if record.get("selected_step") is None:
        return {}
    split = {"val": "the validation split", "test": "the test split (the authors' protocol: test numbers are "
             "optimistic)"}.get(record.get("select_on"), "a split the record does not name")
    from ..training.results import recorded_score

    score = recorded_score(record)
    name = selection_score(record, model_dir) if score is not None else "validation reconstruction loss"
    score = record.get("best_val_loss") if score is None else score
    return {"selected at step": record["selected_step"], "selected on": split,
            f"selection score ({name})": None if score is None else round(float(score), 4)}


def training_facts(inputs: CardInputs, record: dict) -> dict:
    """The card's training facts, each from the run record (None: not recorded, left out)."""
    return {"started from": started_from(record, inputs.base_model),
            "arm": record.get("arm"), "network": record.get("network") or record.get("backbone"),
            "preset": record.get("preset"), "linear probe": record.get("linear_probe"),
            "labelled training studies": record.get("n_train"), "k-shot": record.get("k_shot"),
            "label fraction": record.get("label_fraction"), "optimiser steps": record.get("steps"),
            "learning rate": record.get("learning_rate"), "seed": record.get("seed"),
            **_selection(record, inputs.model_dir)}


def _training_section(inputs: CardInputs, record: dict | None) -> str:
    parts = []
    if record is not None:
        facts = training_facts(inputs, record)
        parts.append("\n".join(f"- {k}: `{v}`" for k, v in facts.items() if v is not None))
    if inputs.training_config:
        options = read_structured(inputs.training_config)
        parts.append(f"Training options (`{inputs.training_config.name}`):\n\n```yaml\n"
                     f"{yaml.safe_dump(options, sort_keys=False).strip()}\n```")
    conversion = inputs.model_dir / "conversion.json"
    if conversion.is_file():
        info = read_structured(conversion)
        parts.append(f"Converted from `{info.get('source')}` (sha256 `{info.get('sha256')}`, preset "
                     f"`{info.get('preset')}`, Swin merging `{info.get('swin_downsample', 'n/a')}`) with "
                     "`hub_scripts/convert_original_checkpoint.py`, tested to reproduce the original network to 1e-5.")
    summary = inputs.model_dir / "training_summary.json"
    if summary.is_file():
        parts.append(f"Selection (`training_summary.json`):\n\n```json\n{summary.read_text().strip()}\n```")
    return "\n\n".join(parts) or "No training record or options were supplied for this card."


def _cell(metrics: dict, key: str) -> str:
    """A metric with its bootstrap 95% CI when both are finite, else n/a."""
    value, ci = metrics.get(key), metrics.get(f"{key}_ci95")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _n_scans(metrics: dict, record: dict | None, source: EvalSource) -> str:
    if "n_cases" in metrics:
        return str(metrics["n_cases"])
    cases = (record or {}).get(f"{source.split}_cases")
    return str(len(cases)) if isinstance(cases, dict) and cases else "?"


def _evaluation_section(sources: list[EvalSource], record: dict | None) -> str:
    if not sources:
        return "No evaluation was supplied for this card: no performance is claimed."
    rows = ["| data (split) | run | n scans | Dice [95% CI] | FPV ml | FNV ml | lesion sensitivity | "
            "false positives per scan | post-processing |", "|---|---|---|---|---|---|---|---|---|"]
    for source in sources:
        for label, m in source.metric_blocks():
            cells = [_cell(m, k) for k in ("dice", "fpv_ml", "fnv_ml", "lesion_sensitivity", "fp_per_case")]
            rows.append(f"| {source.dataset_name} ({source.split}) | {'/'.join(label) or '-'} | "
                        f"{_n_scans(m, record, source)} | {' | '.join(cells)} | {source.postprocessing} |")
    return ("autoPET metrics (18-connected components; Dice over lesion-positive scans; FPV/FNV in ml; a lesion is "
            "detected when a predicted voxel touches it; a false positive is a predicted component touching no "
            "lesion), with bootstrap 95% CIs where the per-scan metrics are known. Post-processing: what was applied "
            "to the masks before scoring.\n\n" + "\n".join(rows))


_STATIC = """## Intended use
Research on automated lesion segmentation and representation learning for whole-body FDG PET/CT: fine-tuning,
linear probing, label-efficiency studies, and benchmarking on public data.

## Out-of-scope use
**Not a medical device.** Not cleared or approved for diagnosis, treatment decisions, staging or response
assessment. Not validated for tracers other than FDG, for paediatric patients, or for scanners and protocols unlike
those of the training data. Outputs need review by a qualified reader."""

_CITATION = f"""## Citation
```bibtex
@misc{{petctfm2026,
  title         = {{{PAPER_TITLE}}},
  year          = {{2026}},
  eprint        = {{{PAPER_ARXIV}}},
  archivePrefix = {{arXiv}},
  url           = {{https://arxiv.org/abs/{PAPER_ARXIV}}}
}}
```
Authors' code: {AUTHORS_CODE}."""


def _model_summary(config: dict, num_parameters: int | None) -> str:
    keys = ("preset", "backbone", "modalities", "guidance_channels", "crop_size", "target_spacing", "normalization",
            "id2label", "organ_labels", "min_lesion_ml", "min_lesion_confidence", "mask_cell_size", "mask_ratio",
            "imputation", "masked_loss_weight", "visible_loss_weight")
    lines = [f"- `{k}`: `{config[k]}`" for k in keys if config.get(k) not in (None, [], ())]
    if num_parameters:
        lines.append(f"- parameters: {num_parameters / 1e6:.2f}M")
    return "\n".join(lines)


def license_terms(inputs: CardInputs) -> tuple[str, str | None, str | None]:
    """(Hub licence id, license_name, the text of LICENSE.md) of the weights. Weights this package trained:
    apache-2.0 unless told otherwise; converted weights: "other", the data providers' terms, written out;
    any other "other" needs its text (--license-file)."""
    license = inputs.license or ("other" if inputs.converted else "apache-2.0")
    if license != "other":
        return license, None, None
    if inputs.license_file is not None:
        try:
            text = Path(inputs.license_file).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise PetCtInputError(inputs.license_file, f"cannot read the licence text ({err})") from None
    elif inputs.converted:
        text = _UPSTREAM_TERMS
    else:
        raise PetCtInputError("--license other", "needs the licence text (--license-file): the Hub links to it")
    return license, inputs.license_name or ("upstream-data-terms" if inputs.converted else "other"), text


_UPSTREAM_TERMS = f"""# Terms of these weights

These weights were converted from a checkpoint the authors of "{PAPER_TITLE}" (arXiv:{PAPER_ARXIV}) released with
their code ({AUTHORS_CODE}). They were pretrained on data whose providers set their own terms, and the weights
inherit them: check each provider's terms before any use.

| dataset | source | licence / terms |
|---|---|---|
""" + "\n".join(f"| {name} | {src} | {lic} |" for name, _, src, lic in TRAINING_DATA) + """

The model code shipped beside the weights (the .py files) is petct-fm's, under the Apache License 2.0.
"""


def _metadata(inputs: CardInputs, row, results: list[EvalResult], synthetic: bool, record: dict | None
              ) -> ModelCardData:
    tags = ["medical-imaging", "pet-ct", "fdg-pet", "3d", "custom_code", f"arxiv:{PAPER_ARXIV}"]
    license, license_name, text = license_terms(inputs)
    return ModelCardData(
        model_name=inputs.repo_id.split("/")[-1], license=license, library_name="transformers",
        license_name=license_name, license_link=LICENSE_FILE if text else None, pipeline_tag=row.task,
        base_model=inputs.base_model or recorded_base_model(record), eval_results=results or None,
        metrics=list(dict.fromkeys(r.metric_type for r in results)) or None,
        tags=tags + (["synthetic-data"] if synthetic else []))


def render_model_card(inputs: CardInputs, config: dict, num_parameters: int | None = None) -> ModelCard:
    """The README.md of a Hub model folder, from its config.json, the run record and the given files."""
    arch = (config.get("architectures") or ["PetCtModel"])[0]
    row = model_class(arch) or model_class("PetCtModel")
    record_path = find_run_record(inputs.model_dir, inputs.results)
    record = read_structured(record_path) if record_path else None
    given = {Path(e.path).resolve() for e in inputs.evals}  # an --eval of the record itself names its data
    own = record_eval_source(record_path, record) if record and record_path.resolve() not in given else None
    sources = [own] * (own is not None) + list(inputs.evals)
    results = [r for source in sources for r in eval_results(source, (row.task, row.title))]
    synthetic = record is not None and is_synthetic(data_sources(record))
    body = f"""
# {inputs.repo_id.split("/")[-1]}

{row.title}: a petct-fm model (`{arch}`) following the paper "{PAPER_TITLE}" (arXiv:{PAPER_ARXIV}), packaged for
`transformers`.{" Trained on synthetic data only (see Training data)." if synthetic else ""}

## Model details
{_model_summary(config, num_parameters)}

Input: PET in SUV and CT in HU, resampled to the target spacing, body-cropped and normalised as petct-fm's
`harmonize` does; axes (z, y, x); every spatial size a multiple of {_size_divisor(config)}.

## How to use
{_usage_section(inputs.repo_id, row, config)}

{_STATIC}

## Training data
{_data_section(inputs, record)}

## Training procedure
{_training_section(inputs, record)}

## Evaluation
{_evaluation_section(sources, record)}

{_CITATION}
"""
    return ModelCard(f"---\n{_metadata(inputs, row, results, synthetic, record).to_yaml()}\n---\n{body}")


def validate_model_card(text: str, source: str = "README.md", folder: Path | None = None) -> ModelCard:
    """Parse a card as the Hub client does (strict model-index) and apply the Hub's offline metadata rules;
    ``folder``: the repo folder, where a relative license_link must point to a file."""
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        raise PetCtInputError(source, f"invalid model card metadata: {err}") from None
    meta = card.data
    problems = []
    if meta.license not in HUB_LICENSES:
        problems.append(f"license {meta.license!r} is not a Hub licence id")
    if meta.license == "other" and not (meta.license_name and meta.license_link):
        problems.append("license 'other' needs license_name and license_link")
    link = getattr(meta, "license_link", None)
    if folder is not None and link and "://" not in link and not (Path(folder) / link).is_file():
        problems.append(f"license_link {link!r} is not a file of the repo")
    for result in meta.eval_results or []:
        if not isinstance(result.metric_value, (int, float)) or not math.isfinite(result.metric_value):
            problems.append(f"metric {result.metric_type} has a non-finite value")
    if meta.eval_results and not meta.model_name:
        problems.append("model-index needs model_name")
    if problems:
        raise PetCtInputError(source, "; ".join(problems))
    return card
