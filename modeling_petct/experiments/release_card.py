"""The model card of a released phantom model, written from its release.json record only (every figure is the build's)."""

from __future__ import annotations

import math

import yaml

WARNING = ("**Trained on synthetic phantoms only.** These weights have never seen a patient scan; they show how the "
           "package works and are not for clinical use or for patient data.")


def render_card(record: dict) -> str:
    """README.md: Hub metadata (YAML front matter) and the data, training, compute, evaluation and rebuild sections."""
    from ..models.registry import model_class

    meta = {"library_name": "transformers", "license": "apache-2.0", "pipeline_tag": model_class(_class(record)).task,
            "tags": ["medical-imaging", "pet-ct", "synthetic-data", "petct-fm"]}  # the registry's task: no MAE is
    # tagged for a segmentation pipeline it cannot serve
    pools = "\n".join(f"| {p['role']} | {p['centre']} | {p['n']} | {p['cohort_seed']} | {'yes' if p['labelled'] else 'no'} |"
                      for p in record["cohort"])
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# {record['name']}

{record['kind']} of the petct-fm package (`tiny-unet` preset, 4 mm voxels, 32 x 32 x 48 crops).

{WARNING}

## Data
Synthetic PET/CT phantoms (`modeling_petct.data.synthetic.phantom`), centres A (reference), B, C (other scanners:
PSF, noise, SUV calibration, field of view). Pools (cohort seed {record['cohort_seed']} of the release plan):

| role | centre | studies | cohort seed | labels |
|---|---|---|---|---|
{pools}

Pretraining used the unlabelled pools plus the training pool's images (never validation or test studies).

## Training
{record['steps']} optimizer steps, training seed {record['seed']}{_selection(record)}.

## Compute
This model's training: {record['wall_s']:.0f} s wall. The build: {_stages(record)}; {record['machine']},
{record['built']}.{(' ' + record['note']) if record.get('note') else ''}
{_evaluation(record)}
## Rebuild
`{record['command']}` (plan "{record['plan']}"). sha256 of model.safetensors: `{record['sha256']['model.safetensors']}`.

## Use
```python
from modeling_petct import {_class(record)}
model = {_class(record)}.from_pretrained("path/to/{record['name']}")
```
"""


STAGES = {"cohort_s": "cohort (written, or reused from an earlier start of the build)",
          "pretraining_s": "the three MAEs in parallel, one thread each", "segmenter_s": "the segmenter"}


def _class(record: dict) -> str:
    return "PetCtForMaskedImageModeling" if "autoencoder" in record["kind"] else "PetCtForSegmentation"


def _stages(record: dict) -> str:
    return ", ".join(f"{STAGES.get(k, k)} {v:.0f} s" for k, v in record["timings_s"].items())


def _selection(record: dict) -> str:
    if "selected_step" not in record:
        return "; the checkpoint with the lowest masked-reconstruction loss on the validation studies"
    return (f"; {record['n_train']} labelled training studies; checkpoint (step {record['selected_step']}) and "
            f"post-processing chosen on the validation studies (score {record['validation_score']:.3f})")


def _evaluation(record: dict) -> str:
    test = record.get("test")
    if not test:
        return ""
    dice = test.get("test_dice", math.nan)
    return (f"\n## Evaluation\nOn the release cohort's own test studies (scored once, after every choice): Dice "
            f"{dice:.3f} (lesion-positive studies), {test.get('test_fp_per_case', math.nan):.2f} false-positive "
            f"lesions per study, false-positive volume {test.get('test_fpv_ml', math.nan):.1f} ml. The quickstart "
            "report scores it on its own test studies beside the threshold baselines.\n")
