"""One study in, one ``SegmentationResult`` out: a method bound once to its settings, then called per study.

nnU-Net's predictor shape: ``Segmenter(model, settings, device)`` holds what does not change between studies (the
network, how it runs, its post-processing); ``segmenter(pet, ct, organs=None, clicks=None)`` segments one study. Every
caller (``petct segment``, the demo, the quickstart, the transformers pipeline) goes through it, and
``outputs.write_study`` writes what it returns.

``SegmentationMethod`` holds the steps all methods share (read -> check -> harmonise -> infer -> native PET grid ->
organs -> physiological suppression); a method says only how it infers on the harmonised grid and what to record
about itself, so a classical rule (an SUV threshold) sits behind the same call and its result is written and scored
exactly like a network's.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..data.volume import Volume
from ..errors import PetCtInputError
from .segment import (LesionFilter, click_points, native_organ_map, placed_clicks, read_study, suppress_physiological,
                      to_native_mask)
from .settings import InferenceSettings

Progress = Callable[[float, str], None]


@dataclass
class SegmentationResult:
    """The mask on the native PET grid (uint8, same affine and header as ``pet``) and what produced it.

    ``organs``: organ map on the PET grid (labels 1..len(organ_names), 0 = other) from the organ-aware model or the
    user's TotalSegmentator output; None when neither. ``suppressed``: lesion components removed by physiological
    suppression (None when it was not asked for). ``provenance``: what made the mask (method, model, settings), written
    beside the outputs."""

    mask: Volume
    pet: Volume
    harmonized: object  # HarmonizedStudy; None for a model imported from nnU-Net (nnU-Net's own preprocessing)
    probabilities: np.ndarray | None = None  # (C, Z, Y, X) on the harmonised grid (nnU-Net models: (C, i, j, k) on
    # the PET grid), when asked for
    timings: dict = field(default_factory=dict)
    organs: Volume | None = None
    organ_names: tuple[str, ...] = ()
    organ_source: str | None = None  # "model" or the organ file/folder
    suppressed: int | None = None
    provenance: dict = field(default_factory=dict)


class SegmentationMethod(ABC):
    """A way to segment lesions of one study; subclasses say how they infer (``infer``) and what they are
    (``provenance``). ``spacing``/``normalization``: the harmonised grid the method works on."""

    settings: InferenceSettings
    spacing: tuple[float, float, float]
    normalization: str
    lesion_filter: LesionFilter = LesionFilter()
    organ_labels: tuple[str, ...] = ()  # names of the organ map the method itself produces, if any

    @abstractmethod
    def infer(self, study, clicks, progress: Progress) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities (C, Z, Y, X) on ``study``'s harmonised grid, organ labels (Z, Y, X) or None);
        ``clicks``: None or a list of ``data.clicks.Click`` (world mm), only for a method that ``accepts_clicks``."""

    @property
    def accepts_clicks(self) -> bool:
        """Whether the method can be guided by clicks (an interactive model)."""
        return False

    @abstractmethod
    def provenance(self) -> dict:
        """What a reader needs to know which method, model and settings made a mask (JSON-ready)."""

    def check_memory(self, pet, ct) -> None:
        """Refuse, from the headers, a study that cannot fit in memory (before any voxel is read)."""
        from ..data.memory import check_memory

        check_memory(pet, ct, spacing=self.spacing)

    def __call__(self, pet, ct, organs=None, clicks=None, *, clicks_space: str = "voxel",
                 progress: Progress | None = None, keep_probabilities: bool = False) -> SegmentationResult:
        """Segment one study. ``pet``/``ct``: paths (NIfTI, MHA, NRRD, DICOM folder) or Volumes; ``organs``:
        TotalSegmentator output (file or folder) or an organ-label Volume, used instead of the method's own organ map;
        ``clicks``: for a method that ``accepts_clicks``, a Grand Challenge "Multiple points" file (coordinates in
        ``clicks_space``, data/clicks.py) or a list of ``data.clicks.Click``. Nothing is written: see
        ``outputs.write_study``."""
        if clicks is not None and not self.accepts_clicks:
            raise PetCtInputError("--clicks", "this model takes no clicks (config.guidance_channels is 0): use a "
                                              "click-guided model (train_seg.py --interactive)")
        report, clock = progress or _silent, _Clock()
        report(0.0, "reading")
        points = click_points(clicks, clicks_space)  # a broken click file stops here, before any voxel is read
        pet, ct = read_study(pet, ct, organs, self.check_memory)
        clicks = placed_clicks(clicks, points, clicks_space, pet)
        clock.lap("read_s")
        mask, model_organs, study, probs = self.predict_on_pet_grid(pet, ct, clicks, report, clock)
        result = self._finish(pet, study, mask, model_organs, organs)
        clock.lap("to_native_s")
        report(1.0, "done")
        result.probabilities = probs if keep_probabilities else None
        result.timings = clock.timings()
        return result

    def predict_on_pet_grid(self, pet: Volume, ct: Volume, clicks, report: Progress, clock):
        """(lesion mask on the PET grid after the lesion filter, the method's organ labels on the PET grid or None,
        the harmonised study, its class probabilities): harmonise, ``infer``, resample back."""
        from ..data.harmonize import harmonize

        report(0.1, "harmonising")
        study = harmonize(pet, ct, spacing=self.spacing, normalization=self.normalization)
        clock.lap("harmonize_s")
        report(0.2, "inference")
        probs, organ_zyx = self.infer(study, clicks, lambda done, message: report(0.2 + 0.7 * done, message))
        clock.lap("inference_s")
        report(0.9, "resampling to the PET grid")
        mask = pet.with_array(to_native_mask(study, probs, self.lesion_filter), modality="SEG", units="label")
        organs = None if organ_zyx is None else study.to_native(organ_zyx, order="nearest", fill=0)
        return mask, organs, study, probs

    def _finish(self, pet: Volume, study, mask: Volume, model_organs, organs) -> SegmentationResult:
        """The result on the PET grid: the organ map (the user's, else the method's) and, when asked, the mask without
        physiological uptake."""
        organ_map, names, source = native_organ_map(organs, model_organs, pet, self.organ_labels)
        suppressed = None
        if self.settings.suppress_physiological:
            if organ_map is None:
                raise PetCtInputError("--suppress-physiological", "needs organs: an organ-aware model or --organs FILE")
            mask, suppressed = suppress_physiological(mask, organ_map, names)
        return SegmentationResult(mask, pet, study, organs=organ_map, organ_names=names, organ_source=source,
                                  suppressed=suppressed, provenance=self.provenance())


class Segmenter(SegmentationMethod):
    """A petct segmentation network bound to its settings and device.

    Example::

        >>> model = load_segmentation_model("runs/seg/best")
        >>> segmenter = Segmenter(model, InferenceSettings.fast(), "cpu")
        >>> result = segmenter("PET.nii.gz", "CT.nii.gz")
        >>> write_study(result, "out/")  # modeling_petct.outputs
    """

    def __new__(cls, model, *args, **kwargs):
        """A model imported from nnU-Net (config.nnunet) gets ``NnUNetSegmenter``: nnU-Net's own predictor."""
        if cls is Segmenter and getattr(model.config, "nnunet", None) is not None:
            from .nnunet_segmenter import NnUNetSegmenter

            cls = NnUNetSegmenter
        return super().__new__(cls)

    def __init__(self, model, settings: InferenceSettings | None = None, device="cpu", *, name: str | None = None):
        self.model, self.device = model, device
        self.settings = settings or InferenceSettings()
        config = model.config
        self.spacing, self.normalization = tuple(config.target_spacing), config.normalization
        self.lesion_filter = LesionFilter.of(config, self.settings.min_lesion_ml, self.settings.min_lesion_confidence)
        self.organ_labels = tuple(getattr(config, "organ_labels", ()) or ())
        self.name = name

    @property
    def accepts_clicks(self) -> bool:
        return bool(self.model.config.guidance_channels)

    def check_memory(self, pet, ct) -> None:
        from ..data.memory import check_memory

        check_memory(pet, ct, self.model.config)

    def infer(self, study, clicks, progress: Progress):
        from .sliding_window import predict_with_organs

        return predict_with_organs(self.model, study.image, self.settings, device=self.device,
                                   guidance=self.guidance_maps(study, clicks),
                                   on_window=lambda done, total: progress(done / total, f"window {done}/{total}"))

    def guidance_maps(self, study, clicks) -> np.ndarray | None:
        """Click maps on the harmonised grid, encoded as the model was trained; None without clicks (a guidance model
        then gets zero maps)."""
        if clicks is None:
            return None
        from ..data.clicks import encode_clicks

        config = self.model.config
        return encode_clicks(clicks, study.grid_affine, study.shape, config.guidance_encoding, config.guidance_size)

    def click_refiner(self, study, probabilities: np.ndarray):
        """Masks on the PET grid for successive click lists on ``study`` (harmonised), starting from its
        ``probabilities`` without clicks; each re-runs only the windows its clicks change (inference/interactive.py)."""
        from .interactive import ClickRefiner

        return ClickRefiner(self, study, probabilities)

    def provenance(self) -> dict:
        return {"method": "network", **self._model_record, "device": str(self.device),
                "settings": self.settings.to_dict(), "lesion_filter": self.lesion_filter.to_dict()}

    @cached_property
    def _model_record(self) -> dict:
        """The model's name, its config's hash and its weights' checksum (computed once per Segmenter)."""
        from .loading import model_label, weights_checksum

        source = getattr(self.model, "name_or_path", "") or ""
        return {"model": self.name or model_label(source), "architecture": type(self.model).__name__,
                "config_sha256": config_checksum(self.model.config), "weights_sha256": weights_checksum(self.model)}


def config_checksum(config) -> str:
    """sha256 of the config's JSON (keys sorted): two models with one checksum were configured identically."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _silent(fraction: float, message: str) -> None:
    pass


class _Clock:
    """Seconds per step, each ``lap`` measured from the previous one."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.last = now - self.last, now

    def timings(self) -> dict:
        return {**self.laps, "total_s": self.last - self.start}
