"""Segment one PET/CT study: read -> harmonise -> sliding-window inference on the body crop -> mask on the native PET grid.

The mask comes back on the PET input's own grid (the autoPET convention), voxel for voxel: class probabilities are
resampled from the 3x2x2 mm model grid to the native PET grid with linear interpolation and the argmax is taken
there. Linear-on-probabilities, rather than nearest-on-labels, keeps lesion borders smooth where the native grid is
finer than the model grid and does not shift them by half a model voxel where it is coarser.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.plausibility import check_pet_ct
from ..data.volume import Volume
from ..errors import PetCtInputError
from .memory import check_memory
from .sliding_window import InferenceSettings, predict_with_organs


@dataclass
class SegmentationResult:
    """The mask on the native PET grid (uint8, same affine and header as ``pet``) and what produced it.

    ``organs``: organ map on the PET grid (labels 1..len(organ_names), 0 = other) from the organ-aware model or the
    user's TotalSegmentator output; None when neither. ``suppressed``: lesion components removed by
    ``suppress_physiological`` (None when it was not asked for)."""

    mask: Volume
    pet: Volume
    harmonized: object  # HarmonizedStudy
    probabilities: np.ndarray | None = None  # (C, Z, Y, X) on the harmonised grid, when asked for
    timings: dict = field(default_factory=dict)
    organs: Volume | None = None
    organ_names: tuple[str, ...] = ()
    organ_source: str | None = None  # "model" or the organ file/folder
    suppressed: int | None = None


@dataclass(frozen=True)
class LesionFilter:
    """The post-processing a model stores in its config (chosen on validation in training, never on test): predicted
    lesion components (18-connected, as autoPET counts them) smaller than ``min_ml`` ml, or whose peak lesion
    probability is below ``min_confidence``, are dropped.

    Why both: specks of one to three voxels are most of a briefly trained model's false-positive lesions, but so are
    small true lesions; the peak probability tells them apart better than the size (BENCHMARKS.md, "Post-processing
    by peak probability")."""

    min_ml: float = 0.0
    min_confidence: float = 0.0

    @classmethod
    def of(cls, config, min_ml: float | None = None, min_confidence: float | None = None) -> "LesionFilter":
        """The model's own filter (config.min_lesion_ml, config.min_lesion_confidence), with any value overridden."""
        return cls(config.min_lesion_ml if min_ml is None else float(min_ml),
                   config.min_lesion_confidence if min_confidence is None else float(min_confidence))

    def keeps(self, voxels: np.ndarray, peak: np.ndarray, voxel_ml: float) -> np.ndarray:
        """Which components (their voxel counts and peak probabilities, from ``lesion_components``) stay."""
        min_voxels = math.ceil(self.min_ml / voxel_ml - 1e-9)  # n voxels are kept when n * voxel_ml >= min_ml
        return (voxels >= min_voxels) & (peak >= self.min_confidence)

    def apply(self, mask: np.ndarray, lesion_probability: np.ndarray, voxel_ml: float) -> np.ndarray:
        """``mask`` without the components this filter drops (``lesion_probability`` on the same grid)."""
        if (self.min_ml <= 0 and self.min_confidence <= 0) or not mask.any():
            return mask
        labels, voxels, peak = lesion_components(mask, lesion_probability)
        return keep_components(mask, labels, self.keeps(voxels, peak, voxel_ml))


def lesion_components(mask: np.ndarray, lesion_probability: np.ndarray):
    """(component labels 1..n, 18-connected as autoPET counts lesions; voxels per component; peak probability per
    component)."""
    import cc3d
    from scipy import ndimage

    from ..data.geometry import LESION_CONNECTIVITY

    labels, n = cc3d.connected_components((mask > 0).astype(np.uint8), connectivity=LESION_CONNECTIVITY, return_N=True)
    voxels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peak = np.asarray(ndimage.maximum(lesion_probability, labels, np.arange(1, n + 1)), np.float64).reshape(n)
    return labels, voxels, peak


def keep_components(mask: np.ndarray, labels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``mask`` where the component ``labels`` marked in ``kept`` (one flag per component 1..n) lie, else 0."""
    return np.where(np.concatenate([[False], kept])[labels], mask, 0).astype(mask.dtype)


def to_native_mask(harmonized, probabilities: np.ndarray, lesion_filter: LesionFilter = LesionFilter()) -> np.ndarray:
    """Argmax on the native PET grid of linearly resampled probabilities; outside the body crop = background; then
    the model's ``lesion_filter``."""
    if probabilities.shape[0] == 2:  # p1 > p0 <=> p1 > 0.5, and linear interpolation preserves p0 + p1 = 1
        lesion = harmonized.to_native(probabilities[1], order="linear", fill=0.0)
        mask = (lesion > 0.5).astype(np.uint8)
    else:
        native = harmonized.to_native_probabilities(probabilities)
        mask, lesion = np.argmax(native, axis=0).astype(np.uint8), 1.0 - native[0]
    voxel_ml = abs(float(np.linalg.det(harmonized.pet_affine[:3, :3]))) / 1000.0
    return lesion_filter.apply(mask, lesion, voxel_ml)


def segment_study(
    pet,
    ct,
    model,
    *,
    device: str = "cpu",
    fast: bool = False,
    tta: bool = False,
    settings: InferenceSettings | None = None,
    keep_probabilities: bool = False,
    progress: Callable[[float, str], None] | None = None,
    organs=None,
    suppress_physiological: bool = False,
    backend: str = "auto",
    min_lesion_ml: float | None = None,
    min_lesion_confidence: float | None = None,
    clicks=None,
    clicks_space: str = "voxel",
) -> SegmentationResult:
    """Segment lesions of one study; ``pet``/``ct`` are paths (NIfTI, MHA, DICOM folder) or Volumes.

    ``settings`` overrides ``fast``/``tta``/``backend`` (the CPU runtime: inference/backends.py)/``min_lesion_ml``/
    ``min_lesion_confidence`` (None: the model's own, ``LesionFilter.of(config)``). Nothing is written:
    see ``write_outputs`` / ``petct segment``.
    ``organs``: TotalSegmentator output (multilabel file or folder, data/organs.py) or an organ-label Volume (default
    vocabulary), used instead of an organ-aware model's own organ map. ``suppress_physiological``: drop lesion
    components lying almost entirely in brain, bladder or kidneys (``outputs.lesions.suppress_physiological``).
    ``clicks``: for a click-guided model, a Grand Challenge "Multiple points" file (coordinates in ``clicks_space``,
    data/clicks.py: PET voxel indices by default) or a list of data.clicks.Click; stamped on the model grid as the
    model was trained.
    """
    from ..data.harmonize import harmonize
    from ..data.io import read_ct, read_pet

    report = progress or (lambda fraction, message: None)
    settings = settings or replace(InferenceSettings.fast() if fast else InferenceSettings(), tta=tta, backend=backend,
                                   min_lesion_ml=min_lesion_ml, min_lesion_confidence=min_lesion_confidence)
    config = model.config
    timings = {}
    t0 = time.perf_counter()
    report(0.0, "reading")
    for value in (pet, ct, organs):
        if value is not None and not isinstance(value, Volume) and not Path(value).exists():
            raise PetCtInputError(value, "no such file or folder")
    points = _click_points(clicks, clicks_space, config)
    check_memory(pet, ct, config)  # paths: from the headers, before any voxel is read
    pet = pet if isinstance(pet, Volume) else read_pet(pet)
    ct = ct if isinstance(ct, Volume) else read_ct(ct)
    check_pet_ct(pet, ct)  # SUV and HU from the voxels: Bq/ml, swapped or empty inputs stop here
    if points is not None:
        from ..data.clicks import clicks_from_points

        clicks = clicks_from_points(points, pet.affine, pet.shape, clicks_space, clicks)
    timings["read_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    report(0.1, "harmonising")
    study = harmonize(pet, ct, spacing=config.target_spacing, normalization=config.normalization)
    timings["harmonize_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report(0.2, "inference")
    guidance = None
    if clicks is not None:
        from ..data.clicks import encode_clicks

        guidance = encode_clicks(clicks, study.grid_affine, study.shape, config.guidance_encoding,
                                 config.guidance_size)
    probs, organ_zyx = predict_with_organs(
        model, study.image, settings, device=device, guidance=guidance,
        on_window=lambda done, total: report(0.2 + 0.7 * done / total, f"window {done}/{total}"))
    timings["inference_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report(0.9, "resampling to the PET grid")
    lesion_filter = LesionFilter.of(config, settings.min_lesion_ml, settings.min_lesion_confidence)
    mask = pet.with_array(to_native_mask(study, probs, lesion_filter), modality="SEG", units="label")
    organ_map, names, source = _organ_map(organs, organ_zyx, study, pet, config)
    suppressed = None
    if suppress_physiological:
        if organ_map is None:
            raise PetCtInputError("--suppress-physiological", "needs organs: an organ-aware model or --organs FILE")
        from ..outputs.lesions import suppress_physiological as suppress

        mask, suppressed = suppress(mask, organ_map, names)
    timings["to_native_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    report(1.0, "done")
    return SegmentationResult(mask, pet, study, probs if keep_probabilities else None, timings, organ_map, names,
                              source, suppressed)


def _click_points(clicks, space: str, config):
    """The points of a click file, read and checked before any voxel (None for no file); a model without click
    inputs refuses clicks."""
    if clicks is None:
        return None
    if not config.guidance_channels:
        raise PetCtInputError("--clicks", "this model takes no clicks (config.guidance_channels is 0): use a "
                                          "click-guided model (train_seg.py --interactive)")
    if isinstance(clicks, list):
        return None
    from ..data.clicks import load_click_file

    return load_click_file(clicks, space)


def _organ_map(organs, organ_zyx, study, pet: Volume, config):
    """(organ map on the PET grid, its organ names, its source): the user's organs first, else the model's."""
    from ..data.organs import ORGANS, organ_map_on, read_organ_map

    if organs is not None:
        vol = organs if isinstance(organs, Volume) else read_organ_map(organs)
        return organ_map_on(vol, pet), ORGANS, str(vol.source)
    if organ_zyx is None:
        return None, (), None
    native = study.to_native(organ_zyx, order="nearest", fill=0).astype(np.uint8)
    return pet.with_array(native, modality="SEG", units="organ label"), tuple(config.organ_labels), "model"
