"""Synthetic whole-body FDG PET/CT studies with exact lesion masks, so everything runs offline and is testable.

Anatomy is a set of ellipsoids and elliptic cylinders laid out in an adult frame (RAS mm, origin mid-body, z from
mid-thigh to vertex over 978 mm) and scaled to the field of view. It is painted as a tissue-label map on each grid
(CT fine, PET coarse), then mapped to HU (+ noise) and to SUV (physiological uptake, lesions, Gaussian PSF, noise).
Lesions are painted on the PET grid first, so the mask is exactly the set of voxels that received lesion uptake.
Everything is vectorised over the bounding box of each shape; a "small" study takes well under a second.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..volume import Volume

F18_HALF_LIFE_S = 6586.2
ADULT_FOV_MM = (600.0, 600.0, 978.0)  # the adult frame the anatomy below is drawn in (x, y, z extent)

# size -> PET grid (shape, spacing mm) and CT in-plane refinement (CT spacing = PET spacing / factor in x and y).
SIZES = {
    "small": {"pet_shape": (64, 64, 96), "pet_spacing": (4.0, 4.0, 4.0), "ct_factor": 2.0},
    "autopet": {"pet_shape": (400, 400, 326), "pet_spacing": (2.0364, 2.0364, 3.0), "ct_factor": 1.28},
}

# Tissues: name -> (HU, HU noise sd, SUV range sampled per patient).
TISSUES = {
    "air": (-1000, 5, (0.0, 0.0)),
    "fat": (-100, 12, (0.2, 0.4)),
    "muscle": (45, 12, (0.5, 0.9)),
    "lung": (-840, 25, (0.3, 0.6)),
    "blood": (40, 12, (1.2, 1.9)),
    "myocardium": (45, 12, (1.5, 12.0)),
    "liver": (55, 12, (1.6, 2.6)),
    "spleen": (48, 12, (1.4, 2.2)),
    "kidney": (35, 12, (3.0, 6.0)),
    "urine": (8, 10, (8.0, 40.0)),
    "brain": (35, 10, (6.0, 11.0)),
    "cortical_bone": (900, 60, (0.6, 0.9)),
    "marrow": (250, 40, (0.9, 1.6)),
    "yellow_marrow": (-40, 20, (0.4, 0.7)),
    "disc": (90, 15, (0.5, 0.9)),
    "bowel": (25, 15, (1.2, 3.2)),
    "gas": (-900, 30, (0.0, 0.0)),
    "table": (150, 20, (0.0, 0.0)),
    # CT appearance of lesions (their uptake is drawn on the PET grid separately).
    "lesion_soft": (38, 12, (0.0, 0.0)),
    "lesion_liver": (28, 12, (0.0, 0.0)),
    "lesion_sclerotic": (700, 60, (0.0, 0.0)),
}
TISSUE_ID = {name: i for i, name in enumerate(TISSUES)}

# Lymph-node stations in the adult frame (RAS mm): cervical, supraclavicular, axillary, mediastinal, para-aortic,
# mesenteric, iliac, inguinal (mirrored where paired).
NODE_STATIONS = [(35, 0, 300), (60, -10, 255), (135, -5, 200), (0, 12, 165), (12, -45, -80), (-20, 30, -120),
                 (60, -10, -200), (85, 45, -300)]
LESION_SITES = ("lymph_node", "lung", "liver", "bone")
LESION_CT_TISSUE = {"lymph_node": "lesion_soft", "lung": "lesion_soft", "liver": "lesion_liver", "bone": "lesion_soft"}


@dataclass
class Grid:
    """An axis-aligned grid in LPS voxel order (affine diag(-sx, -sy, sz)), centred on the world origin."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([-self.spacing[0], -self.spacing[1], self.spacing[2], 1.0])
        affine[:3, 3] = -affine[:3, :3] @ ((np.array(self.shape) - 1) / 2.0)
        return affine

    def axes(self) -> list[np.ndarray]:
        """World (RAS mm) coordinate of the voxel centres along each axis."""
        aff = self.affine
        return [aff[a, a] * np.arange(n) + aff[a, 3] for a, n in enumerate(self.shape)]


@dataclass
class PhantomStudy:
    study_id: str
    pet: Volume
    ct: Volume
    label: Volume
    lesions: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


class _Painter:
    """Paints shapes given in the adult frame onto one grid (world = adult x scale), each inside its bounding box."""

    def __init__(self, grid: Grid, scale: float, fill: np.ndarray):
        self.grid, self.scale, self.out = grid, scale, fill
        self.world = grid.axes()

    def _box(self, lo, hi):
        slices, coords = [], []
        for axis, (a, b) in zip(self.world, zip(lo, hi)):
            idx = np.nonzero((axis >= min(a, b)) & (axis <= max(a, b)))[0]
            if idx.size == 0:
                return None, None
            slices.append(slice(idx[0], idx[-1] + 1))
            coords.append(axis[idx[0] : idx[-1] + 1])
        return tuple(slices), coords

    def ellipsoid_mask(self, centre, radii, world: bool = False):
        c = np.asarray(centre, float) * (1.0 if world else self.scale)
        r = np.asarray(radii, float) * (1.0 if world else self.scale)
        sl, coords = self._box(c - r, c + r)
        if sl is None:
            return None, None
        x, y, z = coords
        d = ((x - c[0]) / r[0])[:, None, None] ** 2 + ((y - c[1]) / r[1])[None, :, None] ** 2 + ((z - c[2]) / r[2])[None, None, :] ** 2
        return sl, d <= 1.0

    def cylinder_mask(self, centre_xy, radii_xy, z_range, hollow: float = 0.0):
        """Elliptic cylinder along z; ``hollow`` > 0 keeps only a wall that thick (adult mm)."""
        s = self.scale
        c, r = np.asarray(centre_xy, float) * s, np.asarray(radii_xy, float) * s
        sl, coords = self._box((c[0] - r[0], c[1] - r[1], z_range[0] * s), (c[0] + r[0], c[1] + r[1], z_range[1] * s))
        if sl is None:
            return None, None
        x, y, z = coords
        inside = ((x - c[0]) / r[0])[:, None] ** 2 + ((y - c[1]) / r[1])[None, :] ** 2 <= 1.0
        if hollow:
            ri = r - hollow * s
            inside &= ((x - c[0]) / ri[0])[:, None] ** 2 + ((y - c[1]) / ri[1])[None, :] ** 2 > 1.0
        return sl, np.broadcast_to(inside[:, :, None], inside.shape + (len(z),))

    def paint(self, mask_pair, tissue: str, where=None):
        sl, mask = mask_pair
        if sl is None:
            return
        if where is not None:
            mask = mask & where(sl)
        np.copyto(self.out[sl], np.uint8(TISSUE_ID[tissue]), where=mask)


def _anatomy(painter: _Painter, body: dict) -> None:
    """Draw the body (fat, muscle, organs, skeleton, table) as tissue ids. Later shapes override earlier ones."""
    P, f, t = painter, body["fatness"], body["fat_mm"]
    rx, ry = 165 * f, 110 * f
    # Body outline (fat), then muscle inside it.
    for shrink, tissue in ((0.0, "fat"), (t, "muscle")):
        P.paint(P.cylinder_mask((0, 0), (rx - shrink, ry - shrink), (-340, 230)), tissue)
        P.paint(P.ellipsoid_mask((0, 0, 230), (rx - shrink, ry - shrink, 60 - shrink)), tissue)
        for side in (-1, 1):
            P.paint(P.cylinder_mask((side * 95, 0), (78 * f - shrink, 82 * f - shrink), (-500, -300)), tissue)
            P.paint(P.cylinder_mask((side * (rx + 40), -5), (40 - shrink / 2, 45 - shrink / 2), (-60, 250)), tissue)
        P.paint(P.cylinder_mask((0, -10), (55 - shrink / 2, 55 - shrink / 2), (250, 345)), tissue)
    P.paint(P.cylinder_mask((0, 0), (rx - t - 15, ry - t - 15), (-250, 30)), "fat")  # visceral fat
    for blob in body["bowel"]:
        P.paint(P.ellipsoid_mask(blob["centre"], blob["radii"]), blob["tissue"])
    # Thorax.
    for side in (-1, 1):
        P.paint(P.ellipsoid_mask((side * 75, 0, 155), (58, 78, 115)), "lung")
    P.paint(P.ellipsoid_mask((-25, 35, 95), (55, 50, 60)), "myocardium")
    P.paint(P.ellipsoid_mask((-28, 38, 98), (36, 32, 40)), "blood")
    P.paint(P.cylinder_mask((-15, -45), (12, 12), (-180, 150)), "blood")
    # Abdomen and pelvis.
    P.paint(P.ellipsoid_mask((70, 10, 0), (95, 80, 75)), "liver")
    P.paint(P.ellipsoid_mask((-95, -40, 20), (35, 45, 50)), "spleen")
    for side in (-1, 1):
        P.paint(P.ellipsoid_mask((side * 70, -60, -60), (28, 32, 55)), "kidney")
        P.paint(P.ellipsoid_mask((side * 62, -55, -60), (11, 11, 24)), "urine")
    P.paint(P.ellipsoid_mask((0, 35, -262), np.array((45, 40, 35)) * body["bladder"]), "urine")
    # Head: scalp, skull, brain.
    P.paint(P.ellipsoid_mask((0, 5, 395), (75, 92, 100)), "fat")
    P.paint(P.ellipsoid_mask((0, 5, 395), (71, 88, 96)), "cortical_bone")
    P.paint(P.ellipsoid_mask((0, 5, 395), (64, 81, 89)), "brain")
    # Skeleton: vertebrae with discs, ribs, pelvis, femurs, humeri.
    disc = lambda sl: (np.mod(P.world[2][sl[2]] / P.scale, 30.0) < 6.0)[None, None, :]  # noqa: E731
    P.paint(P.cylinder_mask((0, -72), (22, 18), (-240, 330)), "cortical_bone")
    P.paint(P.cylinder_mask((0, -72), (17, 14), (-240, 330)), "marrow")
    P.paint(P.cylinder_mask((0, -72), (22, 18), (-240, 330)), "disc", where=disc)
    rib = lambda sl: ((np.mod(P.world[2][sl[2]] / P.scale, 28.0) < 9.0)[None, None, :]  # noqa: E731
                      & (P.world[1][sl[1]] / P.scale < 55)[None, :, None])
    P.paint(P.cylinder_mask((0, 0), (rx - t - 6, ry - t - 6), (20, 250), hollow=10), "marrow", where=rib)
    for side in (-1, 1):
        P.paint(P.ellipsoid_mask((side * 100, -45, -200), (55, 22, 65)), "cortical_bone")
        P.paint(P.ellipsoid_mask((side * 100, -45, -200), (49, 16, 59)), "marrow")
        P.paint(P.ellipsoid_mask((side * 90, -10, -290), (22, 22, 22)), "marrow")
        P.paint(P.cylinder_mask((side * 95, 0), (14, 14), (-500, -300)), "cortical_bone")
        P.paint(P.cylinder_mask((side * 95, 0), (9, 9), (-500, -300)), "yellow_marrow")
        P.paint(P.cylinder_mask((side * (rx + 40), -5), (11, 11), (-60, 250)), "cortical_bone")
    P.paint(P.ellipsoid_mask((0, -80, -230), (40, 20, 50)), "marrow")
    # Scanner table: a plate below the body, separated by an air gap (body cropping must drop it).
    P.paint(P.cylinder_mask((0, -(ry + 25)), (230, 5), (-500, 500)), "table")


def _sample_body(rng: np.random.Generator) -> dict:
    bowel = []
    for _ in range(int(rng.integers(5, 10))):
        centre = (rng.uniform(-100, 100), rng.uniform(-10, 60), rng.uniform(-220, -40))
        bowel.append({"centre": centre, "radii": tuple(rng.uniform(12, 28, 3)), "tissue": "bowel"})
        if rng.random() < 0.4:
            bowel.append({"centre": centre, "radii": tuple(rng.uniform(4, 9, 3)), "tissue": "gas"})
    suv = {name: float(np.exp(rng.uniform(np.log(max(lo, 1e-3)), np.log(max(hi, 1e-3))))) if hi > 0 else 0.0
           for name, (_, _, (lo, hi)) in TISSUES.items()}
    return {"fatness": float(rng.uniform(0.9, 1.12)), "fat_mm": float(rng.uniform(12, 35)),
            "bladder": float(rng.uniform(0.7, 1.2)), "bowel": bowel, "suv": suv}


def _sample_lesions(rng, n: int, scale: float, pet: Grid, body: dict) -> list[dict]:
    """Lesion centres (snapped to PET voxel centres, so none is empty), radii in real mm, SUV, site."""
    organs = {"lung": [((s * 75, 0, 155), (58, 78, 115)) for s in (-1, 1)], "liver": [((70, 10, 0), (95, 80, 75))],
              "bone": [((0, -72, 40), (15, 12, 250)), ((100, -45, -200), (45, 14, 55)), ((-100, -45, -200), (45, 14, 55))]}
    aff = pet.affine
    lesions = []
    for _ in range(n):
        site = LESION_SITES[int(rng.integers(len(LESION_SITES)))]
        if site == "lymph_node":
            x, y, z = NODE_STATIONS[int(rng.integers(len(NODE_STATIONS)))]
            centre = np.array([x * rng.choice([-1, 1]), y, z]) + rng.uniform(-10, 10, 3)
            room = 0.0
        else:
            c, r = organs[site][int(rng.integers(len(organs[site])))]
            direction = rng.normal(size=3)
            centre = np.array(c) + np.array(r) * 0.6 * rng.uniform(0, 1) * direction / np.linalg.norm(direction)
            room = 0.8 * min(r)
        max_d = min(50.0, 2 * room * scale) if site != "lymph_node" else min(35.0, 90.0 * scale)
        diameter = float(np.exp(rng.uniform(np.log(5.0), np.log(max(max_d, 5.0)))))
        radii = diameter / 2 * rng.uniform(0.8, 1.2, 3)
        voxel = np.rint(np.linalg.solve(aff[:3, :3], centre * scale - aff[:3, 3]))
        voxel = np.clip(voxel, 0, np.array(pet.shape) - 1)
        background = body["suv"]["liver" if site == "liver" else "muscle"]
        suv = float(np.exp(rng.uniform(np.log(max(2.5, 1.5 * background)), np.log(25.0))))
        lesions.append({"site": site, "centre_mm": (aff[:3, :3] @ voxel + aff[:3, 3]).tolist(),
                        "radii_mm": radii.tolist(), "radius_mm": float(np.mean(radii)), "suv": suv,
                        "necrotic": bool(diameter > 30 and rng.random() < 0.5)})
    return lesions


def _grids(size: str, shape) -> tuple[Grid, Grid, float]:
    spec = SIZES[size]
    pet_shape = tuple(int(s) for s in (shape or spec["pet_shape"]))
    sp = spec["pet_spacing"]
    ct_sp = (sp[0] / spec["ct_factor"], sp[1] / spec["ct_factor"], sp[2])
    ct_shape = tuple(int(round(n * a / b)) for n, a, b in zip(pet_shape, sp, ct_sp))
    fov = np.array(pet_shape) * np.array(sp)
    scale = float(min(fov[2] / ADULT_FOV_MM[2], min(fov[:2]) / ADULT_FOV_MM[0]))
    return Grid(pet_shape, sp), Grid(ct_shape, ct_sp), scale


def _reconstruct(activity: np.ndarray, grid: Grid, rng: np.random.Generator, fwhm_mm: float = 6.5) -> np.ndarray:
    """What a scanner shows of the true uptake: Gaussian PSF, then count-like noise (sd ~ sqrt(signal))."""
    pet = ndimage.gaussian_filter(activity, fwhm_mm / 2.3548 / np.asarray(grid.spacing), mode="nearest")
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    noise = rng.standard_normal(pet.shape, dtype=np.float32)
    noise *= np.sqrt(np.maximum(pet, 0.0))
    noise *= np.float32(0.2 * (0.064 / voxel_ml) ** 0.25)  # liver CoV ~15 % at 4 mm voxels, more for smaller ones
    pet += noise
    return np.maximum(pet, 0.0, out=pet)


def _hounsfield(tissue: np.ndarray, rng: np.random.Generator, slab: int = 32) -> np.ndarray:
    """Tissue ids -> int16 HU with tissue-dependent noise, a slab of slices at a time (bounded memory)."""
    hu_lut = np.array([hu for hu, _, _ in TISSUES.values()], np.float32)
    sd_lut = np.array([sd for _, sd, _ in TISSUES.values()], np.float32)
    ct = np.empty(tissue.shape, np.int16)
    for k in range(0, tissue.shape[2], slab):
        t = tissue[:, :, k : k + slab]
        hu = rng.standard_normal(t.shape, dtype=np.float32)
        hu *= sd_lut[t]
        hu += hu_lut[t]
        np.rint(hu, out=hu)
        ct[:, :, k : k + slab] = np.clip(hu, -1024, 3071, out=hu)
    return ct


def make_phantom(seed: int, *, size: str = "small", shape=None, n_lesions: int | None = None,
                 lesion_free: bool = False, study_id: str | None = None) -> PhantomStudy:
    """One synthetic FDG PET/CT study, fully determined by ``seed``.

    ``shape`` overrides the PET grid shape of ``size`` (same spacing; the anatomy scales to the field of view).
    ``n_lesions`` defaults to 1-8; ``lesion_free=True`` gives a negative control with an empty mask.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}")
    rng = np.random.default_rng(seed)
    pet_grid, ct_grid, scale = _grids(size, shape)
    body = _sample_body(rng)
    n = 0 if lesion_free else (int(rng.integers(1, 9)) if n_lesions is None else int(n_lesions))
    lesions = _sample_lesions(rng, n, scale, pet_grid, body)
    study_id = study_id or f"phantom_{seed}"

    pet_tissue = np.zeros(pet_grid.shape, np.uint8)
    _anatomy(_Painter(pet_grid, scale, pet_tissue), body)
    suv_lut = np.array([body["suv"][name] for name in TISSUES], np.float32)
    activity = suv_lut[pet_tissue]
    label = np.zeros(pet_grid.shape, np.uint8)
    pet_painter = _Painter(pet_grid, 1.0, label)
    for les in lesions:
        sl, mask = pet_painter.ellipsoid_mask(les["centre_mm"], les["radii_mm"], world=True)
        label[sl][mask] = 1
        activity[sl][mask] = les["suv"]
        if les["necrotic"]:
            sl_c, core = pet_painter.ellipsoid_mask(les["centre_mm"], np.array(les["radii_mm"]) * 0.45, world=True)
            activity[sl_c][core] = les["suv"] * 0.25
        les["voxels"] = int(mask.sum())
    pet = _reconstruct(activity, pet_grid, rng)

    ct_tissue = np.zeros(ct_grid.shape, np.uint8)
    ct_painter = _Painter(ct_grid, scale, ct_tissue)
    _anatomy(ct_painter, body)
    for les in lesions:
        sclerotic = les["site"] == "bone" and not les["necrotic"]
        ct_painter.paint(ct_painter.ellipsoid_mask(les["centre_mm"], les["radii_mm"], world=True),
                         "lesion_sclerotic" if sclerotic else LESION_CT_TISSUE[les["site"]])
    ct = _hounsfield(ct_tissue, rng)

    weight = float(np.round(rng.uniform(50, 115), 1))
    dose = float(np.round(weight * rng.uniform(3.0, 4.5) * 1e6, -4))
    injected = dt.datetime(2026, 1, 1, 8, 0) + dt.timedelta(days=int(rng.integers(0, 300)), minutes=int(rng.integers(0, 600)))
    start = injected + dt.timedelta(minutes=float(rng.uniform(50, 75)))
    meta = {"study_id": study_id, "seed": int(seed), "size": size, "patient_id": study_id, "weight_kg": weight,
            "dose_bq": dose, "injection_time": injected.isoformat(), "scan_start": start.isoformat(),
            "half_life_s": F18_HALF_LIFE_S, "n_lesions": len(lesions), "lesion_free": not lesions}
    common = {"patient_id": study_id}
    return PhantomStudy(
        study_id,
        pet=Volume(pet, pet_grid.affine, f"<phantom {study_id} PET>", None, {**common, "modality": "PT", "units": "SUV", "suv_status": "phantom-SUV"}),
        ct=Volume(ct, ct_grid.affine, f"<phantom {study_id} CT>", None, {**common, "modality": "CT", "units": "HU"}),
        label=Volume(label, pet_grid.affine.copy(), f"<phantom {study_id} SEG>", None, {**common, "modality": "SEG"}),
        lesions=lesions,
        meta=meta,
    )


def study_seed(seed: int, index: int) -> int:
    """Independent per-study seed derived from the cohort seed."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_study(study: PhantomStudy, study_dir: Path, fmt: str = "nifti") -> Path:
    """Write PET/CT (NIfTI, or DICOM series with SUV tags) + SEG.nii.gz + phantom.json into ``study_dir``."""
    from ..io import write_volume

    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        write_volume(study.pet, study_dir / "PET.nii.gz")
        write_volume(study.ct, study_dir / "CT.nii.gz")
    elif fmt == "dicom":
        from .dicom_writer import write_phantom_dicom

        write_phantom_dicom(study, study_dir)
    else:
        raise ValueError("fmt must be 'nifti' or 'dicom'")
    write_volume(study.label, study_dir / "SEG.nii.gz")
    record = {**study.meta, "lesions": study.lesions, "format": fmt}
    (study_dir / "phantom.json").write_text(json.dumps(record, indent=1))
    return study_dir


def write_phantom_cohort(out_dir, n: int, seed: int = 0, *, size: str = "small", fmt: str = "nifti",
                         lesion_free_fraction: float = 0.2, shape=None, progress=None) -> list[Path]:
    """Write ``n`` studies ``<out>/<study_id>/{PET,CT,SEG}.nii.gz`` (or PET/ CT/ DICOM folders); return their folders.

    Exactly round(n x lesion_free_fraction) studies, chosen by the seed, are lesion-free controls. ``shape``
    overrides the PET grid of ``size`` (see :func:`make_phantom`).
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    negatives = set(rng.permutation(n)[: int(round(n * lesion_free_fraction))].tolist())
    dirs = []
    for i in range(n):
        study_id = f"phantom_{seed:03d}_{i:04d}"
        study = make_phantom(study_seed(seed, i), size=size, shape=shape, lesion_free=i in negatives,
                             study_id=study_id)
        dirs.append(write_study(study, out / study_id, fmt))
        if progress is not None:
            progress(i + 1, n, study_id)
    return dirs
