"""The model card of an imported nnU-Net v2 model: where the weights came from, under which licence, which channel
is which, and how petct-fm runs it. Every claim comes from the import's provenance (conversion.json) and config."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from .card import HUB_LICENSES, LICENSE_FILE, install_section, validate_model_card

IMPORT_SOURCE = "nnU-Net v2 results folder"  # conversion.json's "source" of an import (a conversion has a file)

NNUNET_CITATION = ("Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a self-configuring method for "
                   "deep learning-based biomedical image segmentation. Nature Methods 18, 203-211 (2021).")


def _licence(licence: str | None) -> tuple[str, str | None, str]:
    """(Hub licence id, licence_name for 'other', the sentence the card states)."""
    if not licence or licence == "unknown":
        return "unknown", None, ("The weights' licence was not given at import: check the source's terms before any "
                                 "use or redistribution.")
    if licence in HUB_LICENSES:
        return licence, None, f"The weights' licence, as stated by their authors: `{licence}`."
    return "other", licence, f"The weights' licence, as stated by their authors: {licence}."


def is_import(provenance: dict) -> bool:
    return provenance.get("source") == IMPORT_SOURCE


def import_licence_file(provenance: dict) -> str | None:
    """LICENSE.md of an import whose licence is not a Hub id (the card's license_link points to it)."""
    licence_id, licence_name, sentence = _licence(provenance.get("weights_licence"))
    if licence_id != "other":
        return None
    source = provenance.get("source_url") or provenance["folder"]
    return f"# Licence of these weights\n\n{sentence}\n\nSource: {source}. Check the source's own terms.\n"


def render_import_card(name: str, config: dict, provenance: dict) -> ModelCard:
    """README.md of an imported model folder (validated as the Hub parses it)."""
    licence_id, licence_name, licence_text = _licence(provenance.get("weights_licence"))
    recipe = config["nnunet"]
    channels = ", ".join(f"{c}: `{n}` -> {r}" for c, (n, r) in
                         enumerate(zip(recipe["channel_names"], [*config["modalities"], "foreground clicks",
                                                                  "background clicks"])))
    norms = ", ".join(n["scheme"] for n in recipe["normalization"])
    folds = ", ".join(provenance["folds"])
    source = provenance.get("source_url") or provenance["folder"]
    meta = ModelCardData(model_name=name, license=licence_id, license_name=licence_name, library_name="transformers",
                         license_link=LICENSE_FILE if licence_id == "other" else None,
                         pipeline_tag="image-segmentation",
                         tags=["medical-imaging", "pet-ct", "3d", "nnu-net", "custom_code"])
    body = f"""
# {name}

An nnU-Net v2 model ({provenance['trainer']}, {provenance['configuration']}, folds {folds}) imported into petct-fm:
it loads with `transformers` and runs without nnunetv2. Source: {source} (dataset `{provenance['dataset']}`).

## Licence
{licence_text} Dataset licence in its dataset.json: {provenance.get('dataset_licence') or 'not stated'}.

## Inputs
Channels (nnU-Net name -> role): {channels}; how the roles were set: {provenance['channel_roles']}.
Normalisation per channel: {norms}; target spacing {tuple(config['target_spacing'])} mm, patch
{tuple(config['crop_size'])}, mirror axes {tuple(recipe['mirror_axes'])}.

## How to use
```bash
petct segment --model <this folder or repo id> --pet PET.nii.gz --ct CT.nii.gz -o mask.nii.gz
```
`petct segment` reproduces nnU-Net's predictor (crop to nonzero, normalisation at native resolution, order-3
resampling, Gaussian sliding window at step 0.5, mirroring, folds averaged as logits, logits resampled back). Without
petct-fm the network alone loads with `trust_remote_code=True` after:
```bash
{install_section(config)}
```

## Provenance
Imported from `{provenance['folder']}` ({provenance['checkpoint']}); sha256 of each fold's checkpoint in
`conversion.json`.

## Citation
{NNUNET_CITATION} Cite the model's own authors as their source asks.
"""
    card = ModelCard(f"---\n{meta.to_yaml()}\n---\n{body}")
    return validate_model_card(str(card))
