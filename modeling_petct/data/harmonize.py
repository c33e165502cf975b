"""The paper's preprocessing as one reversible step: canonical orientation, 3x2x2 mm, CT on the PET grid, body crop,
per-channel normalisation. The result keeps the geometry needed to put a prediction back on the native PET grid.

Axis conventions: ``HarmonizedStudy.image`` is (C, Z, Y, X) with Z running head -> feet, Y anterior -> posterior and
X patient right -> left (radiological display order), so ``image[:, z]`` is an axial slice as a radiologist views it.
"""

from __future__ import annotations

import itertools

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import PetCtInputError
from .conventions import DEFAULT_NORMALIZATION, HARMONISED_SPACING_MM, NORMALIZATIONS
from .io import resample_sitk, volume_to_sitk
from .volume import Volume

# nnU-Net's AutoPET plan (METHOD.md): clip window, then (x - mean) / sd. Channel 0 PET (SUV), channel 1 CT (HU).
CLINICAL_STATS = {"pet": (1.04, 51.2, 7.06, 7.96), "ct": (-832.0, 1128.0, 107.7, 286.3)}
BODY_HU = -500.0
BODY_PAD = 3
CT_AIR_HU = -1024.0
# World (RAS) directions of the canonical array axes, as columns z, y, x: feet (-S), posterior (-A), left (-R).
CANONICAL_AXES_RAS = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]]).T


@dataclass
class HarmonizedStudy:
    """Harmonised arrays on the cropped canonical grid plus the way back to the native PET grid."""

    image: np.ndarray  # float32 (2, Z, Y, X): channel 0 PET, channel 1 CT, normalised
    grid_affine: np.ndarray  # 4x4: (z, y, x, 1) of the cropped arrays -> RAS+ mm
    pet_affine: np.ndarray  # 4x4: native PET (i, j, k, 1) -> RAS+ mm
    pet_shape: tuple[int, int, int]
    crop_box: tuple[tuple[int, int], ...]  # ((z0, z1), (y0, y1), (x0, x1)) on the uncropped canonical grid
    normalization: str
    norm_stats: dict  # per channel: mean/sd (and clip window) actually applied
    spacing: tuple[float, float, float] = HARMONISED_SPACING_MM
    label: np.ndarray | None = None  # uint8 (Z, Y, X)
    organs: np.ndarray | None = None  # uint8 (Z, Y, X) organ labels 1..len(organ_names), 0 = other (data/organs.py)
    organ_names: tuple[str, ...] = ()
    suv: np.ndarray | None = None  # float32 (Z, Y, X), PET before normalisation (None when loaded from a cache)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape[1:])

    def pet_suv(self) -> np.ndarray:
        """The PET in SUV on the harmonised grid: ``suv`` when kept, else the normalisation undone from the recorded
        mean and SD (values beyond a clip window stay clipped)."""
        if self.suv is not None:
            return np.asarray(self.suv, np.float32)
        stats = self.norm_stats["pet"]
        return np.asarray(self.image[0], np.float32) * np.float32(stats["sd"]) + np.float32(stats["mean"])

    def to_native(self, array_zyx: np.ndarray, *, order: str = "nearest", fill: float = 0,
                  box: tuple[slice, ...] | None = None) -> np.ndarray:
        """Resample an array on the cropped grid onto the native PET grid (i, j, k), or onto its ``box`` of native
        voxels only; outside the crop = ``fill``."""
        if tuple(array_zyx.shape) != self.shape:
            raise ValueError(f"array shape {array_zyx.shape} is not the harmonised grid {self.shape}")
        interp = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear}[order]
        src = volume_to_sitk(Volume(np.asarray(array_zyx).T, _zyx_to_sitk_order(self.grid_affine)))
        affine, shape = np.asarray(self.pet_affine, float), self.pet_shape
        if box is not None:
            start = [s.start for s in box]
            affine = affine.copy()
            affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
            shape = tuple(s.stop - s.start for s in box)
        return sitk.GetArrayFromImage(resample_sitk(src, affine, shape, interp, fill)).T

    def native_box(self, region_zyx: tuple[slice, ...]) -> tuple[slice, ...]:
        """The native PET voxels (i, j, k) whose linearly resampled values depend on ``region_zyx`` of the cropped
        grid: those falling within one cropped voxel of it."""
        corners = np.array(list(itertools.product(*[(s.start - 1, s.stop) for s in region_zyx])), float)
        world = corners @ np.asarray(self.grid_affine, float)[:3, :3].T + np.asarray(self.grid_affine, float)[:3, 3]
        inverse = np.linalg.inv(np.asarray(self.pet_affine, float))
        ijk = world @ inverse[:3, :3].T + inverse[:3, 3]
        lo, hi = np.floor(ijk.min(0)).astype(int), np.ceil(ijk.max(0)).astype(int) + 1
        return tuple(slice(int(max(0, a)), int(min(n, b))) for a, b, n in zip(lo, hi, self.pet_shape))

    def to_native_probabilities(self, prob_czyx: np.ndarray, fill_background: bool = True) -> np.ndarray:
        """Per-channel linear resampling of class probabilities; outside the crop is background (channel 0 = 1)."""
        out = np.stack([self.to_native(np.asarray(p, np.float32), order="linear") for p in prob_czyx])
        if fill_background:
            outside = self.to_native(np.ones(self.shape, np.uint8), order="nearest") == 0
            out[0][outside] = 1.0
        return out

    def to_dict(self) -> dict:
        """JSON-safe geometry and provenance (the arrays are stored separately)."""
        return {
            "grid_affine": np.asarray(self.grid_affine).tolist(),
            "pet_affine": np.asarray(self.pet_affine).tolist(),
            "pet_shape": list(self.pet_shape),
            "crop_box": [list(b) for b in self.crop_box],
            "normalization": self.normalization,
            "norm_stats": self.norm_stats,
            "spacing": list(self.spacing),
            "shape": list(self.shape),
            "has_label": self.label is not None,
            "has_organs": self.organs is not None,
            "organ_names": list(self.organ_names),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict, image: np.ndarray, label=None, suv=None, organs=None) -> "HarmonizedStudy":
        return cls(
            image=image,
            grid_affine=np.asarray(d["grid_affine"], float),
            pet_affine=np.asarray(d["pet_affine"], float),
            pet_shape=tuple(d["pet_shape"]),
            crop_box=tuple(tuple(b) for b in d["crop_box"]),
            normalization=d["normalization"],
            norm_stats=d["norm_stats"],
            spacing=tuple(d["spacing"]),
            label=label,
            organs=organs,
            organ_names=tuple(d.get("organ_names", ())),
            suv=suv,
            meta=d.get("meta", {}),
        )


def harmonize(
    pet: Volume,
    ct: Volume,
    label: Volume | None = None,
    *,
    spacing=HARMONISED_SPACING_MM,
    normalization: str = DEFAULT_NORMALIZATION,
    crop_body: bool = True,
    organs: Volume | None = None,
    organ_names=None,
) -> HarmonizedStudy:
    """Harmonise one PET/CT pair (and optional lesion mask) as the paper does; see the module docstring for axes.

    ``organs``: an organ map (``data.organs.read_organ_map``, on any grid, usually the CT's) carried onto the crop by
    nearest neighbour exactly as the lesion mask is; ``organ_names`` names its labels (default ``ORGANS``)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    check_pair(pet, ct)
    spacing = tuple(float(s) for s in spacing)
    full_affine, full_shape = canonical_grid(pet.affine, pet.shape, spacing)

    # CT on the whole canonical grid (the body crop needs it); PET and label straight onto the crop
    ct_img = resample_sitk(volume_to_sitk(ct), _zyx_to_sitk_order(full_affine), full_shape[::-1], sitk.sitkLinear,
                           CT_AIR_HU)
    ct_full = sitk.GetArrayViewFromImage(ct_img)  # a view: valid while ct_img lives (to the end of this function)
    box = body_box(ct_full) if crop_body else tuple((0, n) for n in full_shape)
    ct_arr = ct_full[tuple(slice(a, b) for a, b in box)]
    grid_affine = full_affine.copy()
    grid_affine[:3, 3] = full_affine[:3, :3] @ [b[0] for b in box] + full_affine[:3, 3]
    crop_shape = tuple(b - a for a, b in box)

    def onto_crop(vol, interp, fill, array=None):
        img = volume_to_sitk(vol, array)
        return sitk.GetArrayFromImage(resample_sitk(img, _zyx_to_sitk_order(grid_affine), crop_shape[::-1], interp,
                                                    fill))

    suv = onto_crop(pet, sitk.sitkLinear, 0.0)
    image = np.empty((2, *crop_shape), np.float32)
    stats = {"pet": _normalize(suv, normalization, "pet", image[0]),
             "ct": _normalize(ct_arr, normalization, "ct", image[1])}
    del ct_full, ct_arr, ct_img
    lab = None
    if label is not None:
        lab_arr = np.asarray(label.array)
        lab_arr = np.rint(lab_arr) if lab_arr.dtype.kind == "f" else lab_arr  # 0.9999 must stay a lesion
        lab = onto_crop(label, sitk.sitkNearestNeighbor, 0, lab_arr.astype(np.uint8, copy=False))
    org = None
    if organs is not None:
        from .organs import organ_names as _names
        from .plausibility import check_overlap

        check_overlap(pet, organs, "organ map")  # one of another study would store an empty map for training
        organ_names = _names(organ_names)
        org = onto_crop(organs, sitk.sitkNearestNeighbor, 0, np.asarray(organs.array).astype(np.uint8, copy=False))
    return HarmonizedStudy(
        image=image,
        grid_affine=grid_affine,
        pet_affine=np.asarray(pet.affine, float).copy(),
        pet_shape=pet.shape,
        crop_box=box,
        normalization=normalization,
        norm_stats=stats,
        spacing=spacing,
        label=lab,
        organs=org,
        organ_names=tuple(organ_names) if org is not None else (),
        suv=suv,
        meta={
            "patient_id": pet.meta.get("patient_id") or ct.meta.get("patient_id"),
            "pet_source": str(pet.source),
            "ct_source": str(ct.source),
            "label_source": str(label.source) if label is not None else None,
            "organ_source": str(organs.source) if organs is not None else None,
            "suv_status": pet.meta.get("suv_status"),
            "pet_spacing": list(pet.spacing),
            "ct_spacing": list(ct.spacing),
        },
    )


def check_pair(pet: Volume, ct: Volume) -> None:
    """Refuse pairs that cannot belong together: different patients, or fields of view that do not overlap."""
    both = f"{pet.source} + {ct.source}"
    pid_pet, pid_ct = pet.meta.get("patient_id"), ct.meta.get("patient_id")
    if pid_pet and pid_ct and str(pid_pet) != str(pid_ct):
        raise PetCtInputError(both, f"PET and CT belong to different patients ({pid_pet!r} vs {pid_ct!r})")
    (lo_p, hi_p), (lo_c, hi_c) = world_bounds(pet.affine, pet.shape), world_bounds(ct.affine, ct.shape)
    overlap = np.minimum(hi_p, hi_c) - np.maximum(lo_p, lo_c)
    if np.any(overlap <= 0):
        raise PetCtInputError(both, "PET and CT fields of view do not overlap (different studies or broken geometry)")


def world_bounds(affine: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world (RAS mm) box spanned by the voxel edges of a grid."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij")).reshape(3, -1)
    pts = affine[:3, :3] @ corners + affine[:3, 3:4]
    return pts.min(axis=1), pts.max(axis=1)


def canonical_grid(affine: np.ndarray, shape, spacing) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The (Z, Y, X) grid at ``spacing`` covering the given grid's voxel edges, centred on it.

    When the input is already axis-aligned at ``spacing`` the new voxel centres coincide with the old ones.
    """
    axes_ras = CANONICAL_AXES_RAS
    centres = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    proj = axes_ras.T @ (affine[:3, :3] @ centres + affine[:3, 3:4])  # corner centres along z, y, x
    lo, hi = proj.min(axis=1), proj.max(axis=1)
    width = hi - lo + np.abs(axes_ras.T @ affine[:3, :3]).sum(axis=1)  # plus one voxel's projected size
    sp = np.asarray(spacing, float)
    n = np.maximum(1, np.ceil(width / sp - 1e-3)).astype(int)
    start = (lo + hi) / 2 - (n - 1) / 2 * sp
    out = np.eye(4)
    out[:3, :3] = axes_ras * sp
    out[:3, 3] = axes_ras @ start
    return out, tuple(int(v) for v in n)


def body_box(ct_zyx: np.ndarray, threshold: float = BODY_HU, pad: int = BODY_PAD) -> tuple[tuple[int, int], ...]:
    """Bounding box (half-open, per axis) of the largest connected CT > threshold component, padded, on the grid."""
    import cc3d

    body = cc3d.largest_k(ct_zyx > threshold, k=1, connectivity=6, binary_image=True)
    if not body.any():
        return tuple((0, n) for n in ct_zyx.shape)
    box = []
    for axis, n in enumerate(ct_zyx.shape):
        hit = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((max(0, int(hit[0]) - pad), min(n, int(hit[-1]) + 1 + pad)))
    return tuple(box)


def _normalize(x: np.ndarray, how: str, channel: str, out: np.ndarray) -> dict:
    """Write the normalised channel into ``out`` (float32) and return what was applied."""
    clip = None
    if how == "clinical":
        lo, hi, mean, sd = CLINICAL_STATS[channel]
        clip = [lo, hi]
        np.clip(x, lo, hi, out=out)
    else:
        out[...] = x
        if how == "none":
            return {"mean": 0.0, "sd": 1.0, "clip": None}
        mean, sd = _mean_sd(out)
    out -= np.float32(mean)
    out *= np.float32(1.0 / max(sd, 1e-6))
    return {"mean": mean, "sd": sd, "clip": clip}


def _mean_sd(a: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """Mean and SD in two passes over cache-sized chunks (float32 pairwise sums, float64 totals, no big temporaries)."""
    flat = a.reshape(-1)
    parts = range(0, flat.size, chunk)
    mean = sum(float(flat[i : i + chunk].sum()) for i in parts) / flat.size
    sq = 0.0
    for i in parts:
        d = flat[i : i + chunk] - np.float32(mean)
        sq += float(np.square(d, out=d).sum())
    return mean, float(np.sqrt(sq / flat.size))


def _zyx_to_sitk_order(affine_zyx: np.ndarray) -> np.ndarray:
    """An affine indexed (z, y, x) rewritten for SimpleITK's index order (x, y, z)."""
    return affine_zyx[:, [2, 1, 0, 3]]
