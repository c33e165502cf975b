"""petct-fm: Hugging Face-native PET/CT foundation models (masked autoencoder + lesion segmentation).

The package reads as its data flow (README "Layout"): ``data`` (read, find, harmonise, cache, crops; ``synthetic``
phantoms) -> ``models`` (the remote-code files) -> ``training`` (Accelerate engine, MAE and segmentation recipes) and
``experiments`` (the study, the quickstart) -> ``inference`` (load, memory check, sliding window, native-grid mask)
-> ``outputs`` (lesion table, DICOM SEG, pictures), ``evaluation`` (autoPET metrics, statistics), ``web`` (the Gradio
demo), ``hub`` and ``cli``. Data code never imports model code; model code imports nothing else of the package.

Importing the package is cheap (no torch, transformers or MONAI), so ``petct --help`` and the data-only commands
start fast. The model classes below are lazy attributes, and the Auto classes learn model_type "petct" and
"petct-separated" by a post-import hook (wrapt): the moment transformers loads its Auto modules, whether before or
after this import, PetCtConfig and every class in ``models.registry`` are registered. So ``import modeling_petct``
followed by ``AutoModel.from_pretrained(folder)`` works as with an eager import. The same moment each class is
``register_for_auto_class``-ed (``_register_for_hub``), so every ``save_pretrained`` writes a Hub-ready folder.
"""

from __future__ import annotations

import importlib
import sys

import wrapt

from .models.registry import CONFIG_CLASSES, CONFIG_MODULE, MODEL_CLASSES, auto_map

__version__ = "0.1.0"

_OUTPUTS = ("PetCtPreTrainedModel", "PetCtModelOutput", "PetCtMaskedImageModelingOutput", "PetCtSegmentationOutput")
_LAZY = {
    "PRESETS": CONFIG_MODULE,
    **{name: CONFIG_MODULE for name in CONFIG_CLASSES},
    **{name: "modeling_petct" for name in _OUTPUTS},
    **{c.name: c.module for c in MODEL_CLASSES},
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".models.{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


_EXECUTED: set[str] = set()  # modules whose post-import hook has run: finished executing, whatever the flag says


def _ready(module_name: str) -> bool:
    """Imported and finished executing. A module mid-import has ``__spec__._initializing`` set, and the flag is still
    up while its post-import hooks run (and while anything they import runs), hence ``_EXECUTED``."""
    module = sys.modules.get(module_name)
    return module is not None and (module_name in _EXECUTED or not getattr(module.__spec__, "_initializing", False))


def _busy(modules) -> bool:
    """One of our model files is mid-import: its own post-import hook registers once it is done."""
    names = [f"{__name__}.models.{m}" for m in modules]
    return any(name in sys.modules and not _ready(name) for name in names)


def _on_import(loaded) -> None:
    """Post-import hook of transformers' Auto modules and of our model files: whichever finishes last registers."""
    _EXECUTED.add(loaded.__name__)
    if loaded.__name__.startswith(f"{__name__}.models."):
        _register_for_hub(loaded)
    _register_configs()
    _register_models()


def _register_configs() -> None:
    auto = "transformers.models.auto.configuration_auto"
    if not _ready(auto) or _busy([CONFIG_MODULE]):
        return
    for name, model_type in CONFIG_CLASSES.items():
        sys.modules[auto].AutoConfig.register(model_type, __getattr__(name), exist_ok=True)


def _register_models() -> None:
    auto = "transformers.models.auto.modeling_auto"
    if not _ready(auto) or _busy({CONFIG_MODULE} | {c.module for c in MODEL_CLASSES}):
        return
    for c in MODEL_CLASSES:
        getattr(sys.modules[auto], c.auto_class).register(__getattr__(c.config), __getattr__(c.name), exist_ok=True)


def _register_for_hub(loaded) -> None:
    """transformers' own ``register_for_auto_class`` on every class of the model file just imported: a plain
    ``save_pretrained`` / ``push_to_hub`` then copies the remote-code files (this file and its relative imports) and
    writes ``auto_map``, so the saved folder loads with ``trust_remote_code=True`` where petct-fm is not installed.
    ``hub_auto_map`` adds ``AutoModel`` (the backbone) beside the task's Auto class (PetCtPreTrainedModel.save_pretrained)."""
    module = loaded.__name__.rsplit(".", 1)[-1]
    if module == CONFIG_MODULE:
        for name in CONFIG_CLASSES:
            getattr(loaded, name).register_for_auto_class("AutoConfig")
    for c in MODEL_CLASSES:
        if c.module == module:
            getattr(loaded, c.name).register_for_auto_class(c.auto_class)
            getattr(loaded, c.name).hub_auto_map = auto_map(c)


# Whichever finishes last, transformers' Auto module or our model file, triggers the registration.
for _name in ("transformers.models.auto.configuration_auto", "transformers.models.auto.modeling_auto",
              *sorted(f"{__name__}.models.{m}" for m in {CONFIG_MODULE} | {c.module for c in MODEL_CLASSES})):
    wrapt.register_post_import_hook(_on_import, _name)
