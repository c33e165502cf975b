"""The one table of petct-fm model classes: Auto registration, the Hub's auto_map and remote-code files, the model
card's task and the demo's model discovery are all derived from it. Plain data: importing it costs nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelClass:
    name: str  # the class name (as in config.json's "architectures")
    module: str  # its remote-code file in models/, without .py
    config: str  # its configuration class (in configuration_petct.py)
    auto_class: str  # the transformers Auto class it registers with
    task: str  # Hub pipeline tag
    title: str  # what the model does, for cards and menus
    segments_lesions: bool  # a lesion-segmentation model: `petct segment`, the demo and the pipeline take it


CONFIG_MODULE = "configuration_petct"
CONFIG_CLASSES = {"PetCtConfig": "petct", "PetCtSeparatedConfig": "petct-separated",
                  "PetCtEnsembleConfig": "petct-ensemble"}  # class -> model_type
MODEL_CLASSES = (
    ModelClass("PetCtModel", "modeling_petct", "PetCtConfig", "AutoModel", "image-feature-extraction",
               "PET/CT feature extraction", False),
    ModelClass("PetCtForMaskedImageModeling", "modeling_petct", "PetCtConfig", "AutoModelForMaskedImageModeling",
               "image-feature-extraction", "Masked PET/CT reconstruction (pretraining)", False),
    ModelClass("PetCtForSegmentation", "modeling_petct", "PetCtConfig", "AutoModelForSemanticSegmentation",
               "image-segmentation", "Whole-body FDG PET/CT lesion segmentation", True),
    ModelClass("PetCtSeparatedModel", "modeling_separated", "PetCtSeparatedConfig", "AutoModel",
               "image-feature-extraction", "PET/CT feature extraction (separated PET and CT backbones)", False),
    ModelClass("PetCtForSeparatedModalityProbe", "modeling_separated", "PetCtSeparatedConfig",
               "AutoModelForSemanticSegmentation", "image-segmentation",
               "Whole-body FDG PET/CT lesion segmentation (separated-modality linear probe)", True),
    ModelClass("PetCtEnsembleForSegmentation", "modeling_ensemble", "PetCtEnsembleConfig",
               "AutoModelForSemanticSegmentation", "image-segmentation",
               "Whole-body FDG PET/CT lesion segmentation (ensemble of networks, logits averaged)", True),
)
# Everything a Hub repo needs to run the classes above without petct-fm: flat files, relative imports among them only.
REMOTE_CODE_FILES = tuple(sorted({f"{CONFIG_MODULE}.py", "backbones.py", "masking.py"} |
                                 {f"{c.module}.py" for c in MODEL_CLASSES}))


def model_class(architecture: str) -> ModelClass | None:
    """The table's row for a config.json architecture name; None for anything that is not a petct-fm model."""
    return next((c for c in MODEL_CLASSES if c.name == architecture), None)


def auto_map(row: ModelClass) -> dict[str, str]:
    """config.json's ``auto_map`` model entries for a checkpoint of ``row``: its own Auto class, and ``AutoModel`` for
    the backbone class of the same config (what ``AutoModel.from_pretrained`` of a task checkpoint returns); a class
    whose config has no backbone class (an ensemble) is its own AutoModel."""
    base = next((c for c in MODEL_CLASSES if c.config == row.config and c.auto_class == "AutoModel"), row)
    return {"AutoModel": f"{base.module}.{base.name}", row.auto_class: f"{row.module}.{row.name}"}


def segmentation_architectures() -> set[str]:
    return {c.name for c in MODEL_CLASSES if c.segments_lesions}
