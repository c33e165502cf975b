"""Organ labels for PET: TotalSegmentator's classes mapped to a small vocabulary of organs with physiological FDG uptake.

TotalSegmentator (v2, task ``total``) writes either one multilabel NIfTI (``--ml``) with the class ids below, or a
folder with one ``<class name>.nii.gz`` mask per class. Both map to a PET organ vocabulary (default ``ORGANS``;
organ label i + 1 for the vocabulary's i-th organ, 0 = other tissue). The ids are TotalSegmentator's own
(totalsegmentator/map_to_binary.py, ``class_map["total"]``, checked against its repository).

A vocabulary is a mapping organ -> TotalSegmentator classes (``ORGAN_CLASSES``), or a sequence of organ names taken
from it; any ``total`` class may be gathered into a custom organ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import PetCtInputError
from .volume import Volume

# TotalSegmentator v2 "total": all 117 classes in id order (id = position + 1).
_TOTAL_CLASSES = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas", "adrenal_gland_right",
    "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
    "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea", "thyroid_gland", "small_bowel",
    "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left", "kidney_cyst_right", "sacrum",
    *(f"vertebrae_{v}" for v in ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6",
                                 "T5", "T4", "T3", "T2", "T1", "C7", "C6", "C5", "C4", "C3", "C2", "C1")),
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right", "subclavian_artery_left",
    "common_carotid_artery_right", "common_carotid_artery_left", "brachiocephalic_vein_left",
    "brachiocephalic_vein_right", "atrial_appendage_left", "superior_vena_cava", "inferior_vena_cava",
    "portal_vein_and_splenic_vein", "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
    "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left", "clavicula_right",
    "femur_left", "femur_right", "hip_left", "hip_right", "spinal_cord", "gluteus_maximus_left",
    "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right", "gluteus_minimus_left",
    "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right", "brain",
    "skull", *(f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13)), "sternum", "costal_cartilages",
)
TOTALSEG_TOTAL_IDS = {name: i for i, name in enumerate(_TOTAL_CLASSES, start=1)}
TOTALSEG_MAX_ID = len(_TOTAL_CLASSES)  # 117

# The PET organ vocabulary (default) and the TotalSegmentator classes each organ gathers.
ORGAN_CLASSES = {
    "brain": ("brain",),
    "heart": ("heart",),
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidneys": ("kidney_right", "kidney_left"),
    "urinary_bladder": ("urinary_bladder",),
    "bowel": ("stomach", "small_bowel", "duodenum", "colon"),
    "lungs": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
              "lung_lower_lobe_right"),
    # every bone of the task (red marrow in spine, pelvis, ribs, sternum, proximal long bones: bone metastases)
    "skeleton": tuple(n for n in TOTALSEG_TOTAL_IDS if n.startswith(("vertebrae_", "rib_", "hip_", "femur_", "humerus_",
                                                                     "scapula_", "clavicula_")))
                + ("sacrum", "sternum", "skull"),
}
ORGANS = tuple(ORGAN_CLASSES)  # organ label i + 1 in an organ map; 0 = other tissue
OTHER = "other"  # the organ of a lesion that lies mostly outside every organ of the vocabulary
# Organs whose FDG uptake is physiological and intense (brain glucose use, urinary excretion, myocardium): lesion
# components mostly inside them are the classic false positives and are flagged "physiological".
PHYSIOLOGICAL_UPTAKE = ("brain", "urinary_bladder", "kidneys", "heart")
# `--suppress-physiological` drops a lesion component only when at least this fraction of its voxels lies inside one
# of these organs (the heart is left out: myocardial uptake varies and cardiac/pericardial lesions exist).
SUPPRESSIBLE = ("brain", "urinary_bladder", "kidneys")
SUPPRESS_FRACTION = 0.9


def vocabulary(organs: Mapping[str, Sequence[str]] | Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """A checked organ -> TotalSegmentator classes mapping; names alone pick organs of ``ORGAN_CLASSES``."""
    if organs is None:
        return dict(ORGAN_CLASSES)
    if not isinstance(organs, Mapping):
        unknown = [o for o in organs if o not in ORGAN_CLASSES]
        if unknown:
            raise ValueError(f"organ vocabulary: unknown organ(s) {unknown}; known: {list(ORGANS)} (or give a "
                             "mapping organ -> TotalSegmentator classes)")
        organs = {o: ORGAN_CLASSES[o] for o in organs}
    out = {str(o): tuple(c) for o, c in organs.items()}
    bad = sorted({c for cs in out.values() for c in cs} - set(TOTALSEG_TOTAL_IDS))
    if not out or bad or OTHER in out:
        raise ValueError(f"organ vocabulary: needs organs made of TotalSegmentator 'total' classes, not named "
                         f"{OTHER!r}; unknown classes {bad}")
    return out


def totalsegmentator_lut(organs=None) -> np.ndarray:
    """uint8 lookup table: TotalSegmentator ``total`` id -> PET organ label (0 = not in the vocabulary)."""
    lut = np.zeros(TOTALSEG_MAX_ID + 1, np.uint8)
    for label, classes in enumerate(vocabulary(organs).values(), start=1):
        lut[[TOTALSEG_TOTAL_IDS[c] for c in classes]] = label
    return lut


def organs_from_totalsegmentator_ids(ids: np.ndarray, organs=None, *, source="organ map") -> np.ndarray:
    """A TotalSegmentator multilabel array (``total`` ids) as PET organ labels (uint8, 1..len(vocabulary))."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        rounded = np.rint(ids)
        if np.abs(ids - rounded).max(initial=0) > 1e-3:
            raise PetCtInputError(source, "holds non-integer values: not a TotalSegmentator multilabel map")
        ids = rounded
    lo, hi = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
    if lo < 0 or hi > TOTALSEG_MAX_ID:
        raise PetCtInputError(source, f"holds ids {lo}..{hi}; TotalSegmentator 'total' ids are 0..{TOTALSEG_MAX_ID}")
    return totalsegmentator_lut(organs)[ids.astype(np.intp, copy=False)]


def is_totalsegmentator_folder(path) -> bool:
    """A folder holding TotalSegmentator's one-mask-per-class output (at least one ``<total class>.nii.gz``)."""
    path = Path(path)
    return path.is_dir() and any((path / f"{c}.nii.gz").is_file() for c in TOTALSEG_TOTAL_IDS)


def read_organ_map(path, organs=None) -> Volume:
    """Read TotalSegmentator output (multilabel NIfTI/MHA file, or its folder of one mask per class) as a PET organ
    map: a uint8 Volume on the organ file's own grid (usually the CT's), labels 1..len(vocabulary), 0 = other.

    In a folder, classes outside the vocabulary are not read; where masks of different organs overlap the later
    organ of the vocabulary wins. Missing class files (``--roi_subset`` runs) are simply absent organs.
    """
    from .io import read_volume

    path = Path(path)
    voc = vocabulary(organs)
    if not path.exists():
        raise PetCtInputError(path, "no such organ map file or folder")
    if not path.is_dir():
        vol = read_volume(path, modality="SEG")
        return vol.with_array(organs_from_totalsegmentator_ids(vol.array, voc, source=path), units="organ label")
    if not is_totalsegmentator_folder(path):
        raise PetCtInputError(path, "not a TotalSegmentator output folder (no <class>.nii.gz of its 'total' task)")
    out = grid = None
    for label, classes in enumerate(voc.values(), start=1):
        for name in classes:
            f = path / f"{name}.nii.gz"
            if not f.is_file():
                continue
            mask = read_volume(f, modality="SEG")
            if grid is None:
                grid, out = mask, np.zeros(mask.shape, np.uint8)
            _check_same_grid(mask, grid)
            out[np.asarray(mask.array) > 0.5] = label
    if grid is None:
        raise PetCtInputError(path, f"holds none of the classes of the organ vocabulary {list(voc)}")
    return Volume(out, grid.affine.copy(), str(path), grid.header,
                  {**grid.meta, "modality": "SEG", "units": "organ label"})


def _check_same_grid(vol: Volume, ref: Volume) -> None:
    from .geometry import check_same_grid

    check_same_grid(vol, ref, reference_name="the other class masks")


def organ_map_on(organ_map: Volume, reference: Volume) -> Volume:
    """The organ map on ``reference``'s grid (nearest neighbour, outside = 0), unchanged when already on it; refused
    when it does not overlap ``reference`` (every lesion would lie in 'other')."""
    from .geometry import same_grid
    from .plausibility import check_overlap

    check_overlap(reference, organ_map, "organ map")
    if same_grid(organ_map.shape, organ_map.affine, reference.shape, reference.affine):
        return reference.with_array(np.asarray(organ_map.array, np.uint8), modality="SEG", units="organ label")
    import SimpleITK as sitk

    from .io import resample_sitk, volume_to_sitk

    img = volume_to_sitk(organ_map, np.asarray(organ_map.array, np.uint8))
    out = sitk.GetArrayFromImage(resample_sitk(img, reference.affine, reference.shape, sitk.sitkNearestNeighbor, 0)).T
    return reference.with_array(out.astype(np.uint8), modality="SEG", units="organ label")


def organ_names(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Organ names of a map's labels 1..N (the default vocabulary when none is recorded)."""
    return tuple(names) if names else ORGANS


def relabel(organ_map: np.ndarray, source_names: Sequence[str], target_names: Sequence[str]) -> np.ndarray:
    """Labels of a map in ``source_names`` order rewritten in ``target_names`` order (organs not in target -> 0)."""
    lut = np.zeros(len(source_names) + 1, np.uint8)
    for i, name in enumerate(source_names, start=1):
        if name in target_names:
            lut[i] = list(target_names).index(name) + 1
    return lut[np.asarray(organ_map, np.intp)]


TOTALSEG_TOTAL_DATASETS = ("Dataset291", "Dataset292", "Dataset293", "Dataset294", "Dataset295")  # v2 `total` weights


def run_totalsegmentator(ct_path, organs=None, *, device: str = "cpu") -> Volume:
    """Organ map of a CT by TotalSegmentator (task ``total``, multilabel), if it and its weights are installed.

    It is optional and never needed by petct-fm itself: without it, give its output (``--organs FILE``)."""
    import importlib.util
    import tempfile

    if importlib.util.find_spec("totalsegmentator") is None:
        raise PetCtInputError("--organs auto", "TotalSegmentator is not installed (pip install TotalSegmentator), or "
                                               "give its output instead: --organs organs.nii.gz / its folder")
    from totalsegmentator.config import get_weights_dir

    weights = Path(get_weights_dir())
    if not any(weights.glob(f"{d}*") for d in TOTALSEG_TOTAL_DATASETS):
        raise PetCtInputError("--organs auto", f"TotalSegmentator's 'total' weights are not in {weights}: it downloads "
                                               "them from the network on first use (run `totalseg_download_weights "
                                               "-t total` once while online), or give --organs FILE")
    from totalsegmentator.python_api import totalsegmentator

    with tempfile.TemporaryDirectory(prefix="petct-totalseg-") as tmp:
        out = Path(tmp) / "organs.nii.gz"
        totalsegmentator(str(ct_path), str(out), ml=True, task="total", device=device, quiet=True)
        return read_organ_map(out, organs)


def organ_aware_overrides(organs: Sequence[str] = ORGANS, weight: float = 1.0) -> dict:
    """PetCtConfig overrides that make a segmentation model organ-aware (``--config_overrides`` JSON of train_seg.py,
    or the organ-aware arm of `petct study`); the cache must hold organ maps (`petct harmonize` finds them)."""
    return {"organ_labels": list(organs), "organ_loss_weight": float(weight)}
