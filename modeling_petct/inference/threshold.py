"""Classical threshold segmentation of FDG-avid lesions: the baselines a network must beat, and the TMTV workflow.

Four rules on the PET in SUV, each followed by dropping connected components (18-connected, as autoPET counts
lesions) under ``min_ml``:

- ``suv``: SUV >= t (the international TMTV benchmark's workflow: t = 4, 3 ml).
- ``suv-organs``: the same outside the physiological-uptake organs (brain, urinary bladder, kidneys, heart) of the
  study's organ map, each dilated by one voxel: what a reader removes first.
- ``suvmax41``: hot regions (SUV >= t, outside those organs) each re-thresholded at 41% of its own SUVmax (the EANM
  fixed-fraction rule for lesion volumes).
- ``percist``: SUV >= 1.5 x liver mean + 2 x liver SD (PERCIST's measurability threshold), outside those organs,
  the liver taken from the organ map (eroded by one voxel, so spill-over at its border does not widen the SD);
  t is unused. A study without a mapped liver gets an empty mask (PERCIST is undefined there).

``ThresholdSegmenter`` puts a rule behind the Segmenter call, so `petct segment --method threshold` writes what a
model's run writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.conventions import DEFAULT_NORMALIZATION, HARMONISED_SPACING_MM
from .isocontour import ISOCONTOUR_FRACTION
from .segmenter import SegmentationMethod
from .settings import InferenceSettings

METHODS = ("suv", "suv-organs", "suvmax41", "percist")
NEEDS_ORGANS = ("suv-organs", "suvmax41", "percist")
LABELS = {"suv": "SUV >= {t:g}", "suv-organs": "SUV >= {t:g} outside physiological organs",
          "suvmax41": "41% of SUVmax in regions SUV >= {t:g}", "percist": "PERCIST liver threshold"}


@dataclass(frozen=True)
class ThresholdRule:
    """One threshold method with its SUV threshold ``t`` and minimum component volume ``min_ml``."""

    method: str = "suv"
    t: float = 4.0
    min_ml: float = 3.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"threshold method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (math.isfinite(self.t) and self.t >= 0 and math.isfinite(self.min_ml) and self.min_ml >= 0):
            raise ValueError(f"threshold t and min_ml must be finite and >= 0, got {self.t}, {self.min_ml}")

    @property
    def label(self) -> str:
        return LABELS[self.method].format(t=self.t) + (f", >= {self.min_ml:g} ml" if self.min_ml else "")

    def mask(self, suv: np.ndarray, voxel_ml: float, organs: np.ndarray | None = None,
             organ_names: tuple[str, ...] = (), *, excluded: np.ndarray | None = None) -> np.ndarray:
        """The uint8 lesion mask of ``suv`` (any grid; ``organs`` on the same grid, label i + 1 = organ_names[i];
        ``excluded``: their ``physiological`` voxels when already computed)."""
        suv = np.asarray(suv, dtype=np.float32)
        if self.method in NEEDS_ORGANS and organs is None:
            raise ValueError(f"threshold method {self.method!r} needs the study's organ map")
        allowed = np.ones(suv.shape, bool)
        if self.method != "suv" and organs is not None:
            allowed = ~(physiological(organs, organ_names) if excluded is None else excluded)
        if self.method == "percist":
            cut = liver_threshold(suv, organs, organ_names)
            hot = (suv >= cut) & allowed if cut is not None else np.zeros(suv.shape, bool)
        else:
            hot = (suv >= self.t) & allowed
        if self.method == "suvmax41":
            hot = fixed_fraction(suv, hot)
        return drop_small(hot, self.min_ml, voxel_ml)


def _organ_ids(organ_names, wanted) -> list[int]:
    from ..data.organs import organ_names as names_of

    return [i + 1 for i, name in enumerate(names_of(organ_names)) if name in wanted]


def physiological(organs: np.ndarray, organ_names=()) -> np.ndarray:
    """Voxels of brain, urinary bladder, kidneys and heart, dilated by one voxel (26-neighbourhood)."""
    from scipy import ndimage

    from ..data.organs import PHYSIOLOGICAL_UPTAKE

    inside = np.isin(np.asarray(organs), _organ_ids(organ_names, PHYSIOLOGICAL_UPTAKE))
    return ndimage.binary_dilation(inside, structure=np.ones((3, 3, 3), bool))


def liver_threshold(suv: np.ndarray, organs: np.ndarray, organ_names=()) -> float | None:
    """1.5 x mean + 2 x SD of the SUV in the liver (eroded by one voxel when that leaves voxels); None without one."""
    from scipy import ndimage

    liver = np.isin(np.asarray(organs), _organ_ids(organ_names, ("liver",)))
    core = ndimage.binary_erosion(liver)
    values = suv[core if core.any() else liver]
    if values.size == 0:
        return None
    return float(1.5 * values.mean() + 2.0 * values.std())


def fixed_fraction(suv: np.ndarray, hot: np.ndarray, fraction: float = ISOCONTOUR_FRACTION) -> np.ndarray:
    """Within each connected hot region, the voxels at or above ``fraction`` of that region's SUVmax."""
    labels, n = _components(hot)
    inside = labels[hot]
    peak = np.full(n + 1, np.inf, np.float32)
    peak[1:] = -np.inf
    np.maximum.at(peak, inside, suv[hot])  # only the hot voxels: ndimage.maximum sorts the whole volume
    return (labels > 0) & (suv >= fraction * peak[labels])


def drop_small(mask: np.ndarray, min_ml: float, voxel_ml: float) -> np.ndarray:
    """``mask`` (uint8) without its 18-connected components under ``min_ml`` ml (inference.LesionFilter's rule)."""
    from .segment import LesionFilter, keep_components

    mask = mask.astype(np.uint8)
    if min_ml <= 0 or not mask.any():
        return mask
    labels, n = _components(mask)
    voxels = np.bincount(labels[mask > 0], minlength=n + 1)[1:]
    return keep_components(mask, labels, LesionFilter(min_ml).keeps(voxels, np.full(n, np.inf), voxel_ml))


def _components(mask: np.ndarray):
    import cc3d

    from ..data.geometry import LESION_CONNECTIVITY

    return cc3d.connected_components(mask.astype(np.uint8), connectivity=LESION_CONNECTIVITY, return_N=True)


class ThresholdSegmenter(SegmentationMethod):
    """A threshold rule behind the Segmenter call (``segmenter(pet, ct, organs=None)``): reading, checks, organs,
    physiological suppression and outputs are every method's; the rule runs on the native PET grid in SUV, with no
    harmonisation and no network. Only the rules that need no organ map are offered here (``suv``: the TMTV
    workflow); drop physiological uptake with ``InferenceSettings(suppress_physiological=True)`` and organs."""

    device = "cpu"

    def __init__(self, rule: ThresholdRule = ThresholdRule(), settings: InferenceSettings | None = None):
        if rule.method in NEEDS_ORGANS:
            raise ValueError(f"ThresholdSegmenter runs rules without an organ map, not {rule.method!r}")
        self.rule, self.settings = rule, settings or InferenceSettings()
        self.spacing, self.normalization = HARMONISED_SPACING_MM, DEFAULT_NORMALIZATION  # sizes the memory check

    def infer(self, study, clicks, progress):
        raise NotImplementedError("a threshold rule runs on the native PET grid: see predict_on_pet_grid")

    def predict_on_pet_grid(self, pet, ct, clicks, report, clock):
        """(the rule's mask on the PET grid, no organ labels, no harmonised study, no probabilities)."""
        report(0.2, "thresholding")
        mask = self.rule.mask(np.asarray(pet.array, np.float32), pet.voxel_volume_ml)
        clock.lap("inference_s")
        return pet.with_array(mask, modality="SEG", units="label"), None, None, None

    def provenance(self) -> dict:
        from dataclasses import asdict

        return {"method": "threshold", "model": self.rule.label, "rule": asdict(self.rule),
                "settings": self.settings.to_dict()}
