"""How a study is segmented, bound once per ``Segmenter``: the sliding window, the CPU runtime and the post-processing.

Every string is checked when the settings are made (``InferenceSettings(precision="fp16")`` raises): a misspelt
choice must not silently run something else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

PRECISIONS = ("auto", "bf16", "fp32")
BLEND_MODES = ("gaussian", "constant")  # MONAI's sliding-window blend modes
BACKENDS = ("auto", "torch", "openvino", "openvino-int8")  # the CPU runtimes of inference/backends.py
RECIPES = ("default", "fast", "reference")  # named starting points: InferenceSettings.recipe(name)


@dataclass(frozen=True)
class InferenceSettings:
    """How the sliding window runs and what is done with its output.

    Args:
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        mode: MONAI blend mode, one of ``BLEND_MODES``.
        precision: ``"bf16"`` autocast, ``"fp32"``, or ``"auto"``: bf16 where the device runs it fast.
        roi_size: window size (z, y, x) in voxels; None = the model's training crop (config.crop_size).
        tta: average over in-plane flips; only for models trained with flips (petct-fm's recipes do not flip, and on
            such a model it lowered validation Dice).
        sw_batch_size: windows per forward pass.
        backend: CPU runtime, one of ``BACKENDS`` (inference/backends.py).
        min_lesion_ml: drop lesion components under this volume; None = the model's config.min_lesion_ml.
        min_lesion_confidence: drop lesion components whose peak probability is below this; None = the model's.
        suppress_physiological: drop lesions lying almost entirely in brain, bladder or kidneys (needs organs).

    Example::

        >>> InferenceSettings.fast().with_(backend="torch", min_lesion_ml=0.5).overlap
        0.0
    """

    overlap: float = 0.25
    mode: str = "gaussian"
    precision: str = "auto"
    roi_size: tuple[int, int, int] | None = None
    tta: bool = False
    sw_batch_size: int = 1
    backend: str = "auto"
    min_lesion_ml: float | None = None
    min_lesion_confidence: float | None = None
    suppress_physiological: bool = False

    def __post_init__(self):
        for name, value, choices in (("mode", self.mode, BLEND_MODES), ("precision", self.precision, PRECISIONS),
                                     ("backend", self.backend, BACKENDS)):
            if value not in choices:
                raise ValueError(f"InferenceSettings.{name} must be one of {', '.join(choices)}, got {value!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"InferenceSettings.overlap must be in [0, 1), got {self.overlap!r}")
        if not (isinstance(self.sw_batch_size, int) and self.sw_batch_size >= 1):
            raise ValueError(f"InferenceSettings.sw_batch_size must be an integer >= 1, got {self.sw_batch_size!r}")
        if self.roi_size is not None:
            if len(self.roi_size) != 3 or any(int(n) != n or n < 1 for n in self.roi_size):
                raise ValueError(f"InferenceSettings.roi_size must be three positive integers, got {self.roi_size!r}")
            object.__setattr__(self, "roi_size", tuple(int(n) for n in self.roi_size))
        if self.min_lesion_ml is not None and not 0 <= self.min_lesion_ml < math.inf:
            raise ValueError(f"InferenceSettings.min_lesion_ml must be a volume >= 0 ml, got {self.min_lesion_ml!r}")
        if self.min_lesion_confidence is not None and not 0 <= self.min_lesion_confidence <= 1:
            raise ValueError("InferenceSettings.min_lesion_confidence must be a probability in [0, 1], got "
                             f"{self.min_lesion_confidence!r}")

    @classmethod
    def reference(cls) -> "InferenceSettings":
        """The authors' recipe (METHOD.md): overlap 0.5, constant blending, fp32."""
        return cls(overlap=0.5, mode="constant", precision="fp32", backend="torch")

    @classmethod
    def fast(cls) -> "InferenceSettings":
        """No overlap: every body voxel is seen once (the FLOP floor of the network at the model's crop)."""
        return cls(overlap=0.0, mode="gaussian")

    @classmethod
    def recipe(cls, name: str, **changes) -> "InferenceSettings":
        """The named recipe (one of ``RECIPES``) with ``changes`` (as ``with_``)."""
        if name not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
        return {"default": cls, "fast": cls.fast, "reference": cls.reference}[name]().with_(**changes)

    def with_(self, **changes) -> "InferenceSettings":
        """A copy with ``changes`` (checked like the original); None values leave a field as it is."""
        return type(self)(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (recorded beside a study's outputs)."""
        out = asdict(self)
        out["roi_size"] = list(self.roi_size) if self.roi_size is not None else None
        return out
