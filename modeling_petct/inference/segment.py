"""The steps every segmentation method shares: read and check a study, map a result back to the native PET grid.

The mask comes back on the PET input's own grid (the autoPET convention), voxel for voxel: class probabilities are
resampled from the 3x2x2 mm model grid to the native PET grid with linear interpolation and the argmax is taken
there. Linear-on-probabilities, rather than nearest-on-labels, keeps lesion borders smooth where the native grid is
finer than the model grid and does not shift them by half a model voxel where it is coarser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.plausibility import check_pet_ct
from ..data.volume import Volume
from ..errors import PetCtInputError


@dataclass(frozen=True)
class LesionFilter:
    """The post-processing a model stores in its config (chosen on validation in training, never on test): predicted
    lesion components (18-connected, as autoPET counts them) smaller than ``min_ml`` ml, or whose peak lesion
    probability is below ``min_confidence``, are dropped.

    Why both: specks of one to three voxels are most of a briefly trained model's false-positive lesions, but so are
    small true lesions; at about one false positive per study the peak probability kept more true lesions than the
    size did on a phantom cohort."""

    min_ml: float = 0.0
    min_confidence: float = 0.0

    @classmethod
    def of(cls, config, min_ml: float | None = None, min_confidence: float | None = None) -> "LesionFilter":
        """The model's own filter (config.min_lesion_ml, config.min_lesion_confidence), with any value overridden."""
        return cls(config.min_lesion_ml if min_ml is None else float(min_ml),
                   config.min_lesion_confidence if min_confidence is None else float(min_confidence))

    def keeps(self, voxels: np.ndarray, peak: np.ndarray, voxel_ml: float) -> np.ndarray:
        """Which components (their voxel counts and peak probabilities, from ``component_peaks``) stay."""
        min_voxels = math.ceil(self.min_ml / voxel_ml - 1e-9)  # n voxels are kept when n * voxel_ml >= min_ml
        return (voxels >= min_voxels) & (peak >= self.min_confidence)

    def to_dict(self) -> dict:
        return {"min_ml": self.min_ml, "min_confidence": self.min_confidence}

    def apply(self, mask: np.ndarray, lesion_probability: np.ndarray, voxel_ml: float) -> np.ndarray:
        """``mask`` without the components this filter drops (``lesion_probability`` on the same grid)."""
        if (self.min_ml <= 0 and self.min_confidence <= 0) or not mask.any():
            return mask
        labels, voxels, peak = component_peaks(mask, lesion_probability)
        return keep_components(mask, labels, self.keeps(voxels, peak, voxel_ml))


def component_peaks(mask: np.ndarray, lesion_probability: np.ndarray):
    """(component labels 1..n, 18-connected as autoPET counts lesions; voxels per component; peak probability per
    component)."""
    from ..data.geometry import label_lesions

    labels, n = label_lesions(mask)
    inside = labels > 0  # the lesion voxels only: scipy's labelled maximum took ~20 s on a whole-body grid
    component = labels[inside] - 1
    voxels = np.bincount(component, minlength=n)
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, component, np.asarray(lesion_probability)[inside].astype(np.float64))
    return labels, voxels, peak


def keep_components(mask: np.ndarray, labels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``mask`` where the component ``labels`` marked in ``kept`` (one flag per component 1..n) lie, else 0."""
    return np.where(np.concatenate([[False], kept])[labels], mask, 0).astype(mask.dtype)


def to_native_mask(harmonized, probabilities: np.ndarray, lesion_filter: LesionFilter = LesionFilter()) -> np.ndarray:
    """Argmax on the native PET grid of linearly resampled probabilities; outside the body crop = background; then
    the model's ``lesion_filter``."""
    if probabilities.shape[0] == 2:  # p1 > p0 <=> p1 > 0.5, and linear interpolation preserves p0 + p1 = 1
        lesion = harmonized.to_native(probabilities[1], order="linear", fill=0.0)
        return native_lesion_mask(lesion, lesion_filter, harmonized.pet_affine)
    native = harmonized.to_native_probabilities(probabilities)
    mask, lesion = np.argmax(native, axis=0).astype(np.uint8), 1.0 - native[0]
    return lesion_filter.apply(mask, lesion, _voxel_ml(harmonized.pet_affine))


def native_lesion_mask(lesion: np.ndarray, lesion_filter: LesionFilter, pet_affine: np.ndarray) -> np.ndarray:
    """The mask of a two-class model on the PET grid from its lesion probability there: above 0.5, filtered."""
    return lesion_filter.apply((lesion > 0.5).astype(np.uint8), lesion, _voxel_ml(pet_affine))


def _voxel_ml(affine: np.ndarray) -> float:
    return abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


def read_study(pet, ct, organs=None, memory_guard=None) -> tuple[Volume, Volume]:
    """(PET, CT) as Volumes: paths must exist, ``memory_guard(pet, ct)`` sizes them from the headers before any voxel
    is read, then the voxels must look like SUV and HU (``check_pet_ct``: Bq/ml, swapped or empty inputs stop here)."""
    from ..data.io import read_ct, read_pet

    for value in (pet, ct, organs):
        if value is not None and not isinstance(value, Volume) and not Path(value).exists():
            raise PetCtInputError(value, "no such file or folder")
    if memory_guard is not None:
        memory_guard(pet, ct)
    pet = pet if isinstance(pet, Volume) else read_pet(pet)
    ct = ct if isinstance(ct, Volume) else read_ct(ct)
    check_pet_ct(pet, ct)
    return pet, ct


def click_points(clicks, space: str = "voxel"):
    """The points of a click file (``data.clicks.load_click_file``: checked before any voxel is read); None for no
    clicks or for clicks already placed in the world (a list of ``data.clicks.Click``)."""
    if clicks is None or isinstance(clicks, list):
        return None
    from ..data.clicks import load_click_file

    return load_click_file(clicks, space)


def placed_clicks(clicks, points, space: str, pet: Volume):
    """``clicks`` as a list of ``data.clicks.Click`` in the world: a file's ``points`` placed through the PET grid."""
    if points is None:
        return clicks
    from ..data.clicks import clicks_from_points

    return clicks_from_points(points, pet.affine, pet.shape, space, clicks)


def native_organ_map(organs, model_organs, pet: Volume, organ_labels) -> tuple[Volume | None, tuple, str | None]:
    """(organ map on the PET grid, its organ names, its source): the user's ``organs`` (TotalSegmentator output or an
    organ-label Volume) first, else the method's own labels ``model_organs`` on the PET grid (named by
    ``organ_labels``), else none."""
    from ..data.organs import ORGANS, organ_map_on, read_organ_map

    if organs is not None:
        vol = organs if isinstance(organs, Volume) else read_organ_map(organs)
        return organ_map_on(vol, pet), ORGANS, str(vol.source)
    if model_organs is None:
        return None, (), None
    native = np.asarray(model_organs).astype(np.uint8)
    return pet.with_array(native, modality="SEG", units="organ label"), tuple(organ_labels), "model"


def suppress_physiological(mask: Volume, organs: Volume, organ_names=None, *, fraction=None,
                           suppressible=None) -> tuple[Volume, int]:
    """The mask without lesion components whose voxels lie at least ``fraction`` (default SUPPRESS_FRACTION, 0.9)
    inside the organs ``suppressible`` (default brain, urinary bladder, kidneys) together; and how many were removed."""
    from ..data import organs as org
    from ..data.geometry import check_same_grid, label_lesions

    check_same_grid(organs, mask, reference_name="the mask")
    names = org.organ_names(organ_names)
    fraction = org.SUPPRESS_FRACTION if fraction is None else fraction
    wanted = [i for i, n in enumerate(names, start=1) if n in (suppressible or org.SUPPRESSIBLE)]
    labels, n = label_lesions(mask.array)
    if n == 0 or not wanted:
        return mask, 0
    inside = np.isin(np.asarray(organs.array), wanted)
    share = np.bincount(labels.ravel(), weights=inside.ravel(), minlength=n + 1) / np.maximum(
        1, np.bincount(labels.ravel(), minlength=n + 1))
    drop = np.flatnonzero(share >= fraction)
    drop = drop[drop > 0]
    keep = (labels > 0) & ~np.isin(labels, drop)
    return mask.with_array(keep.astype(np.asarray(mask.array).dtype)), int(len(drop))
