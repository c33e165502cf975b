"""Synthetic whole-body FDG PET/CT studies with exact lesion and organ masks, so everything runs offline and is testable.

Anatomy is a set of ellipsoids, elliptic cylinders and tubes laid out in an adult frame (RAS mm, origin mid-body, z
from mid-thigh to vertex over 978 mm) and scaled to the field of view. Each subject draws its own organ positions and
sizes, bladder filling, ureter boluses, bowel activity, brown-fat and muscle activation: the physiological uptake a
reader must explain away varies from scan to scan, and CT shows what each hot structure is (urine, bowel, fat, muscle).
Lesions have CT correlates where real ones do (soft-tissue nodes in fat, nodules in lung, hypodense liver lesions,
sclerotic or lytic bone) and a realistic size distribution (median ~15 mm, ~8 % below 8 mm).

The body is painted as a tissue-label map on each grid (CT fine, PET coarse), then mapped to HU (+ noise) and SUV
(uptake, lesions, Gaussian PSF, noise); the CT grid also gets an organ map in TotalSegmentator ``total`` class ids.
Lesions are painted on the PET grid first, so the mask is exactly the set of voxels that received lesion uptake.
A *centre* sets what the scanner adds (PSF, PET noise, SUV calibration, CT noise, whole-body or torso field of view),
so multi-centre cohorts differ the way real ones do. A small study takes well under a second.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...seeds import phantom_study_seed
from ..conventions import F18_HALF_LIFE_S
from ..organs import TOTALSEG_TOTAL_IDS
from ..volume import Volume

ADULT_FOV_MM = (600.0, 600.0, 978.0)  # the adult frame the anatomy below is drawn in (x, y, z extent)

# size -> PET grid (shape, spacing mm) and CT in-plane refinement (CT spacing = PET spacing / factor in x and y).
SIZES = {
    "small": {"pet_shape": (64, 64, 96), "pet_spacing": (4.0, 4.0, 4.0), "ct_factor": 2.0},
    "autopet": {"pet_shape": (400, 400, 326), "pet_spacing": (2.0364, 2.0364, 3.0), "ct_factor": 1.28},
}

# What a site's scanner and protocol add. "A" is the AutoPET-like reference centre (labelled data comes from it);
# "D" is kept out of training as the held-out centre. torso = skull base to upper thigh (adult-frame z range).
CENTRES = {
    "A": {"psf_fwhm_mm": 6.5, "pet_noise": 1.0, "suv_scale": 1.0, "ct_noise": 1.0, "fov": "whole_body"},
    "B": {"psf_fwhm_mm": 8.5, "pet_noise": 1.5, "suv_scale": 0.9, "ct_noise": 1.6, "fov": "torso"},
    "C": {"psf_fwhm_mm": 5.0, "pet_noise": 0.8, "suv_scale": 1.12, "ct_noise": 0.7, "fov": "whole_body"},
    "D": {"psf_fwhm_mm": 7.5, "pet_noise": 1.25, "suv_scale": 1.06, "ct_noise": 1.3, "fov": "torso"},
}
TORSO_Z = (-330.0, 300.0)

# Tissues: name -> (HU, HU noise sd, SUV range sampled per patient). Several tissues share a CT appearance and differ
# in uptake (muscle vs active muscle, bowel vs active bowel, ureter vs a urine bolus): CT says what they are.
TISSUES = {
    "air": (-1000, 5, (0.0, 0.0)),
    "fat": (-100, 12, (0.2, 0.4)),
    "brown_fat": (-70, 15, (0.3, 0.5)),  # active (SUV 2-8) in some subjects, see _sample_body
    "muscle": (45, 12, (0.5, 0.9)),
    "muscle_active": (45, 12, (1.8, 4.5)),
    "lung": (-840, 25, (0.3, 0.6)),
    "blood": (40, 12, (1.2, 1.9)),
    "heart_blood": (40, 12, (1.2, 1.9)),  # = blood's SUV; a tissue of its own so the organ map can tell the heart
    "myocardium": (45, 12, (1.5, 12.0)),
    "liver": (55, 12, (1.6, 2.6)),
    "spleen": (48, 12, (1.4, 2.2)),
    "kidney": (35, 12, (2.5, 6.0)),
    "renal_urine": (8, 10, (5.0, 40.0)),
    "ureter": (8, 10, (0.8, 2.5)),
    "ureter_bolus": (8, 10, (4.0, 30.0)),
    "urine": (8, 10, (4.0, 60.0)),  # bladder
    "brain": (35, 10, (6.0, 12.0)),
    "cortical_bone": (900, 60, (0.6, 0.9)),
    "marrow": (250, 40, (0.9, 1.6)),
    "yellow_marrow": (-40, 20, (0.4, 0.7)),
    "disc": (90, 15, (0.5, 0.9)),
    "bowel": (25, 15, (1.0, 2.5)),
    "bowel_active": (25, 15, (3.0, 8.0)),
    "gas": (-900, 30, (0.0, 0.0)),
    "table": (150, 20, (0.0, 0.0)),
    # CT appearance of lesions (their uptake is drawn on the PET grid separately).
    "lesion_soft": (38, 12, (0.0, 0.0)),
    "lesion_liver": (28, 12, (0.0, 0.0)),
    "lesion_sclerotic": (700, 60, (0.0, 0.0)),
    "lesion_lytic": (30, 15, (0.0, 0.0)),
}
TISSUE_ID = {name: i for i, name in enumerate(TISSUES)}
PHYSIOLOGICAL_HOT = ("myocardium", "kidney", "renal_urine", "ureter_bolus", "urine", "brain", "bowel_active",
                     "brown_fat", "muscle_active")

# Lymph-node stations in the adult frame (RAS mm): cervical, supraclavicular, axillary, mediastinal, para-aortic,
# mesenteric, iliac, inguinal (mirrored where paired).
NODE_STATIONS = [(35, 0, 300), (60, -10, 255), (135, -5, 200), (0, 12, 165), (12, -45, -80), (-20, 30, -120),
                 (60, -10, -200), (85, 45, -300)]
LESION_SITES = ("lymph_node", "lung", "liver", "bone")
LESION_CT_TISSUE = {"lymph_node": "lesion_soft", "lung": "lesion_soft", "liver": "lesion_liver", "bone": "lesion_soft"}
# Organs whose position and size vary between subjects: nominal (centre, radii) in the adult frame.
ORGAN_SHAPES = {
    "liver": ((70, 10, 0), (95, 80, 75)), "spleen": ((-95, -40, 20), (35, 45, 50)),
    "kidney_right": ((70, -60, -60), (28, 32, 55)), "kidney_left": ((-70, -60, -60), (28, 32, 55)),
    "heart": ((-25, 35, 95), (55, 50, 60)), "lung_right": ((75, 0, 155), (58, 78, 115)),
    "lung_left": ((-75, 0, 155), (58, 78, 115)), "bladder": ((0, 35, -262), (45, 40, 35)),
    "brain": ((0, 5, 395), (64, 81, 89)),
}
SPINE_Z = (-240.0, 330.0)
VERTEBRA_MM = 30.0
_VERTEBRAE = ["S1", "L5", "L4", "L3", "L2", "L1", *(f"T{i}" for i in range(12, 0, -1)), *(f"C{i}" for i in range(7, 0, -1))]
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
    organs: Volume | None = None  # TotalSegmentator "total" class ids on the CT grid (0 = none of them)


class _Painter:
    """Paints shapes given in the adult frame onto one grid (world = adult x scale), each inside its bounding box.

    With ``organs`` it also writes an organ id for every painted voxel (0 unless given), so later shapes override the
    organ map exactly as they override the tissue map.
    """

    def __init__(self, grid: Grid, scale: float, fill: np.ndarray, organs: np.ndarray | None = None):
        self.grid, self.scale, self.out, self.organs = grid, scale, fill, organs
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
        r = np.maximum(np.asarray(radii, float) * (1.0 if world else self.scale), 1e-3)
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

    def paint(self, mask_pair, tissue: str, where=None, organ=0):
        """``organ``: a TotalSegmentator id, or a function of the box slices giving ids that broadcast to it."""
        sl, mask = mask_pair
        if sl is None:
            return
        if where is not None:
            mask = mask & where(sl)
        np.copyto(self.out[sl], np.uint8(TISSUE_ID[tissue]), where=mask)
        if self.organs is not None:
            ids = organ(sl) if callable(organ) else np.uint8(organ)
            np.copyto(self.organs[sl], np.asarray(ids, np.uint8), where=mask)

    def tube(self, points, radius_mm: float, tissue: str, step_mm: float = 1.5):
        """A tube of ``radius_mm`` (real mm, not scaled: ureters stay visible) along a polyline in the adult frame."""
        pts = np.asarray(points, float) * self.scale
        for a, b in zip(pts[:-1], pts[1:]):
            for t in np.linspace(0.0, 1.0, max(2, int(np.linalg.norm(b - a) / step_mm) + 1)):
                self.paint(self.ellipsoid_mask(a + t * (b - a), (radius_mm,) * 3, world=True), tissue)

    def z_ids(self, lut):
        """An organ-id function from a per-slice lookup (adult-frame z -> id)."""
        return lambda sl: lut(self.world[2][sl[2]] / self.scale).astype(np.uint8)[None, None, :]


def _ts(name: str) -> int:
    return TOTALSEG_TOTAL_IDS[name]


def _vertebra_ids(z: np.ndarray) -> np.ndarray:
    level = np.clip(((z - SPINE_Z[0]) // VERTEBRA_MM).astype(int), 0, len(_VERTEBRAE) - 1)
    return np.array([_ts(f"vertebrae_{v}") for v in _VERTEBRAE])[level]


def _lung_ids(side: int, centre_z: float, radius_z: float):
    """Lobes split by height: right upper / middle / lower, left upper / lower (TotalSegmentator's five lobes)."""
    if side > 0:
        return lambda z: np.where(z > centre_z + 0.25 * radius_z, _ts("lung_upper_lobe_right"),
                                  np.where(z > centre_z - 0.3 * radius_z, _ts("lung_middle_lobe_right"),
                                           _ts("lung_lower_lobe_right")))
    return lambda z: np.where(z > centre_z, _ts("lung_upper_lobe_left"), _ts("lung_lower_lobe_left"))


def organ_shape(body: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """This subject's (centre, radii) of a varying organ, adult frame."""
    centre, radii = ORGAN_SHAPES[name]
    o = body["organs"][name]
    return np.add(centre, o["shift"]), np.multiply(radii, o["scale"])


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
    muscle = "muscle_active" if body["muscle_active"] else "muscle"
    for side in (-1, 1):
        P.paint(P.ellipsoid_mask((side * 40, -55, -130), (14, 14, 75)), muscle)  # psoas
        P.paint(P.ellipsoid_mask((side * 28, -22, 292), (10, 10, 35)), muscle)  # neck muscles
        P.paint(P.ellipsoid_mask((side * 58, -12, 262), (24, 14, 14)), "brown_fat")  # supraclavicular fat
        P.paint(P.ellipsoid_mask((side * 38, -78, 175), (8, 10, 45)), "brown_fat")  # paravertebral fat
    for blob in body["bowel"]:
        P.paint(P.ellipsoid_mask(blob["centre"], blob["radii"]), blob["tissue"], organ=_ts(blob["organ"]))
    _organs(P, body)
    _skeleton(P, rx, ry, t)
    # Scanner table: a plate below the body, separated by an air gap (body cropping must drop it).
    P.paint(P.cylinder_mask((0, -(ry + 25)), (230, 5), (-500, 500)), "table")


def _organs(P: _Painter, body: dict) -> None:
    """Thorax, abdomen, urinary tract and head, at this subject's positions and sizes."""
    for side, name in ((1, "lung_right"), (-1, "lung_left")):
        c, r = organ_shape(body, name)
        P.paint(P.ellipsoid_mask(c, r), "lung", organ=P.z_ids(_lung_ids(side, c[2], r[2])))
    c, r = organ_shape(body, "heart")
    P.paint(P.ellipsoid_mask(c, r), "myocardium", organ=_ts("heart"))
    P.paint(P.ellipsoid_mask(c + (-3, 3, 3), r * 0.65), "heart_blood", organ=_ts("heart"))
    P.paint(P.cylinder_mask((-15, -45), (12, 12), (-180, 150)), "blood")  # aorta
    P.paint(P.ellipsoid_mask(*organ_shape(body, "liver")), "liver", organ=_ts("liver"))
    P.paint(P.ellipsoid_mask(*organ_shape(body, "spleen")), "spleen", organ=_ts("spleen"))
    bladder_c, bladder_r = organ_shape(body, "bladder")
    for side, name in ((1, "kidney_right"), (-1, "kidney_left")):
        c, r = organ_shape(body, name)
        P.paint(P.ellipsoid_mask(c, r), "kidney", organ=_ts(name))
        pelvis = c + (-side * 8, 5, 0)
        P.paint(P.ellipsoid_mask(pelvis, r * (0.38, 0.34, 0.42)), "renal_urine", organ=_ts(name))
        path = [pelvis - (0, 0, r[2] * 0.4), (side * 45, -45, -170), (side * 0.55 * bladder_r[0], bladder_c[1], bladder_c[2] + 0.6 * bladder_r[2])]
        P.tube(path, 3.0, "ureter")
        for start, length in body["boluses"][name]:
            P.tube(_polyline_piece(path, start, length), 3.5, "ureter_bolus")
    P.paint(P.ellipsoid_mask(bladder_c, bladder_r), "urine", organ=_ts("urinary_bladder"))
    c, r = organ_shape(body, "brain")
    P.paint(P.ellipsoid_mask(c, r + 11), "fat")  # scalp
    P.paint(P.ellipsoid_mask(c, r + 7), "cortical_bone")  # skull
    P.paint(P.ellipsoid_mask(c, r), "brain", organ=_ts("brain"))


def _skeleton(P: _Painter, rx: float, ry: float, t: float) -> None:
    """Vertebrae with discs (TotalSegmentator vertebra ids by level), ribs, pelvis, femurs, humeri."""
    disc = lambda sl: (np.mod(P.world[2][sl[2]] / P.scale - SPINE_Z[0], VERTEBRA_MM) < 6.0)[None, None, :]  # noqa: E731
    vertebra = P.z_ids(_vertebra_ids)
    P.paint(P.cylinder_mask((0, -72), (22, 18), SPINE_Z), "cortical_bone", organ=vertebra)
    P.paint(P.cylinder_mask((0, -72), (17, 14), SPINE_Z), "marrow", organ=vertebra)
    P.paint(P.cylinder_mask((0, -72), (22, 18), SPINE_Z), "disc", where=disc)
    rib = lambda sl: ((np.mod(P.world[2][sl[2]] / P.scale, 28.0) < 9.0)[None, None, :]  # noqa: E731
                      & (P.world[1][sl[1]] / P.scale < 55)[None, :, None])
    P.paint(P.cylinder_mask((0, 0), (rx - t - 6, ry - t - 6), (20, 250), hollow=10), "marrow", where=rib)
    for side, hip in ((-1, "hip_left"), (1, "hip_right")):
        P.paint(P.ellipsoid_mask((side * 100, -45, -200), (55, 22, 65)), "cortical_bone", organ=_ts(hip))
        P.paint(P.ellipsoid_mask((side * 100, -45, -200), (49, 16, 59)), "marrow", organ=_ts(hip))
        P.paint(P.ellipsoid_mask((side * 90, -10, -290), (22, 22, 22)), "marrow")
        P.paint(P.cylinder_mask((side * 95, 0), (14, 14), (-500, -300)), "cortical_bone")
        P.paint(P.cylinder_mask((side * 95, 0), (9, 9), (-500, -300)), "yellow_marrow")
        P.paint(P.cylinder_mask((side * (rx + 40), -5), (11, 11), (-60, 250)), "cortical_bone")
    P.paint(P.ellipsoid_mask((0, -80, -230), (40, 20, 50)), "marrow", organ=_ts("sacrum"))


def _polyline_piece(points, start: float, length: float) -> list:
    """The part of a polyline between fractions ``start`` and ``start + length`` of its length."""
    pts = np.asarray(points, float)
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    at = lambda s: np.array([np.interp(s * cum[-1], cum, pts[:, k]) for k in range(3)])  # noqa: E731
    inner = [p for p, c in zip(pts, cum) if start * cum[-1] < c < (start + length) * cum[-1]]
    return [at(start), *inner, at(min(1.0, start + length))]


def _sample_body(rng: np.random.Generator) -> dict:
    """One subject: habitus, organ geometry, and the physiological uptake pattern of this scan."""
    bowel = []
    for _ in range(int(rng.integers(5, 10))):
        centre = (rng.uniform(-100, 100), rng.uniform(-10, 60), rng.uniform(-220, -40))
        organ = "colon" if rng.random() < 0.4 else "small_bowel"
        tissue = "bowel_active" if rng.random() < 0.3 else "bowel"
        bowel.append({"centre": centre, "radii": tuple(rng.uniform(12, 28, 3)), "tissue": tissue, "organ": organ})
        if rng.random() < 0.4:
            bowel.append({"centre": centre, "radii": tuple(rng.uniform(4, 9, 3)), "tissue": "gas", "organ": organ})
    suv = {name: float(np.exp(rng.uniform(np.log(max(lo, 1e-3)), np.log(max(hi, 1e-3))))) if hi > 0 else 0.0
           for name, (_, _, (lo, hi)) in TISSUES.items()}
    suv["heart_blood"] = suv["blood"]
    brown_fat = bool(rng.random() < 0.3)
    if brown_fat:
        suv["brown_fat"] = float(rng.uniform(2.0, 8.0))
    organs = {}
    for name in ORGAN_SHAPES:
        shift, scale = rng.uniform(-12, 12, 3), rng.uniform(0.85, 1.15, 3)
        if name == "bladder":  # filling: nearly empty to full
            scale = np.full(3, rng.uniform(0.45, 1.35)) * rng.uniform(0.9, 1.1, 3)
        if name == "brain":
            shift, scale = rng.uniform(-4, 4, 3), rng.uniform(0.95, 1.05, 3)
        organs[name] = {"shift": tuple(float(v) for v in shift), "scale": tuple(float(v) for v in scale)}
    boluses = {side: [(float(rng.uniform(0.05, 0.8)), float(rng.uniform(0.08, 0.25)))
                      for _ in range(int(rng.integers(0, 3)))] for side in ("kidney_right", "kidney_left")}
    return {"fatness": float(rng.uniform(0.9, 1.12)), "fat_mm": float(rng.uniform(12, 35)), "bowel": bowel,
            "suv": suv, "organs": organs, "boluses": boluses, "brown_fat_active": brown_fat,
            "muscle_active": bool(rng.random() < 0.25)}


def _lesion_centre(rng, site: str, body: dict) -> np.ndarray:
    """A lesion centre in the adult frame: at a node station, or inside this subject's lung, liver or bone."""
    if site == "lymph_node":
        x, y, z = NODE_STATIONS[int(rng.integers(len(NODE_STATIONS)))]
        return np.array([x * rng.choice([-1, 1]), y, z]) + rng.uniform(-10, 10, 3)
    if site == "bone":
        shapes = [((0, -72, 45), (14, 11, 270)), ((100, -45, -200), (44, 14, 55)), ((-100, -45, -200), (44, 14, 55))]
    else:
        shapes = [organ_shape(body, n) for n in (("lung_right", "lung_left") if site == "lung" else ("liver",))]
    c, r = shapes[int(rng.integers(len(shapes)))]
    direction = rng.normal(size=3)
    return np.array(c) + np.array(r) * 0.6 * rng.uniform(0, 1) * direction / np.linalg.norm(direction)


def _sample_lesions(rng, n: int, scale: float, pet: Grid, body: dict, z_range=None) -> list[dict]:
    """Lesion centres (snapped to PET voxel centres, so none is empty; inside ``z_range`` adult mm when given), radii
    in real mm (log-normal, median 15 mm, 5-45 mm), SUV at least twice the local background."""
    aff = pet.affine
    lesions = []
    while len(lesions) < n:
        site = LESION_SITES[int(rng.integers(len(LESION_SITES)))]
        centre = _lesion_centre(rng, site, body)
        diameter = float(np.clip(np.exp(rng.normal(np.log(15.0), 0.4)), 5.0, 45.0))
        if site == "liver":  # keep it inside the organ
            diameter = min(diameter, max(8.0, 1.2 * min(organ_shape(body, "liver")[1]) * scale))
        if z_range is not None and not (z_range[0] + 20 < centre[2] < z_range[1] - 20):
            continue
        radii = diameter / 2 * rng.uniform(0.85, 1.15, 3)
        voxel = np.rint(np.linalg.solve(aff[:3, :3], centre * scale - aff[:3, 3]))
        voxel = np.clip(voxel, 0, np.array(pet.shape) - 1)
        background = body["suv"]["liver" if site == "liver" else "muscle"]
        suv = float(np.exp(rng.uniform(np.log(max(3.0, 2.0 * background)), np.log(20.0))))
        lesions.append({"site": site, "centre_mm": (aff[:3, :3] @ voxel + aff[:3, 3]).tolist(),
                        "radii_mm": radii.tolist(), "radius_mm": float(np.mean(radii)), "suv": suv,
                        "necrotic": bool(diameter > 28 and rng.random() < 0.5),
                        "ct": _lesion_ct(rng, site, diameter)})
    return lesions


def _lesion_ct(rng, site: str, diameter: float) -> str:
    if site == "bone":
        return "lesion_sclerotic" if rng.random() < 0.5 else "lesion_lytic"
    return LESION_CT_TISSUE[site]


def _grids(size: str, shape) -> tuple[Grid, Grid, float]:
    spec = SIZES[size]
    pet_shape = tuple(int(s) for s in (shape or spec["pet_shape"]))
    sp = spec["pet_spacing"]
    ct_sp = (sp[0] / spec["ct_factor"], sp[1] / spec["ct_factor"], sp[2])
    ct_shape = tuple(int(round(n * a / b)) for n, a, b in zip(pet_shape, sp, ct_sp))
    fov = np.array(pet_shape) * np.array(sp)
    scale = float(min(fov[2] / ADULT_FOV_MM[2], min(fov[:2]) / ADULT_FOV_MM[0]))
    return Grid(pet_shape, sp), Grid(ct_shape, ct_sp), scale


def _reconstruct(activity: np.ndarray, grid: Grid, rng: np.random.Generator, fwhm_mm: float = 6.5,
                 noise_factor: float = 1.0) -> np.ndarray:
    """What a scanner shows of the true uptake: Gaussian PSF, then count-like noise (sd ~ sqrt(signal))."""
    pet = ndimage.gaussian_filter(activity, fwhm_mm / 2.3548 / np.asarray(grid.spacing), mode="nearest")
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    noise = rng.standard_normal(pet.shape, dtype=np.float32)
    noise *= np.sqrt(np.maximum(pet, 0.0))
    noise *= np.float32(noise_factor * 0.2 * (0.064 / voxel_ml) ** 0.25)  # liver CoV ~15 % at 4 mm voxels
    pet += noise
    return np.maximum(pet, 0.0, out=pet)


def _hounsfield(tissue: np.ndarray, rng: np.random.Generator, slab: int = 32, noise_factor: float = 1.0) -> np.ndarray:
    """Tissue ids -> int16 HU with tissue-dependent noise, a slab of slices at a time (bounded memory)."""
    hu_lut = np.array([hu for hu, _, _ in TISSUES.values()], np.float32)
    sd_lut = np.array([sd for _, sd, _ in TISSUES.values()], np.float32) * np.float32(noise_factor)
    ct = np.empty(tissue.shape, np.int16)
    for k in range(0, tissue.shape[2], slab):
        t = tissue[:, :, k : k + slab]
        hu = rng.standard_normal(t.shape, dtype=np.float32)
        hu *= sd_lut[t]
        hu += hu_lut[t]
        np.rint(hu, out=hu)
        ct[:, :, k : k + slab] = np.clip(hu, -1024, 3071, out=hu)
    return ct


def _paint_lesions_pet(lesions: list[dict], pet_grid: Grid, activity: np.ndarray) -> np.ndarray:
    """Lesion uptake into ``activity`` (in place) and the exact lesion mask."""
    label = np.zeros(pet_grid.shape, np.uint8)
    painter = _Painter(pet_grid, 1.0, label)
    for les in lesions:
        sl, mask = painter.ellipsoid_mask(les["centre_mm"], les["radii_mm"], world=True)
        label[sl][mask] = 1
        activity[sl][mask] = les["suv"]
        if les["necrotic"]:
            sl_c, core = painter.ellipsoid_mask(les["centre_mm"], np.array(les["radii_mm"]) * 0.45, world=True)
            activity[sl_c][core] = les["suv"] * 0.25
        les["voxels"] = int(mask.sum())
    return label


def _paint_lesions_ct(lesions: list[dict], painter: _Painter) -> None:
    """CT correlates: a node sits in a rim of fat; lung nodules, liver and bone lesions replace their tissue."""
    for les in lesions:
        if les["site"] == "lymph_node":
            painter.paint(painter.ellipsoid_mask(les["centre_mm"], np.array(les["radii_mm"]) + 4.0, world=True), "fat")
        ct_tissue = "lesion_soft" if les["necrotic"] and les["site"] == "bone" else les["ct"]
        painter.paint(painter.ellipsoid_mask(les["centre_mm"], les["radii_mm"], world=True), ct_tissue)


def _torso_slices(grid: Grid, scale: float) -> slice:
    z = grid.axes()[2] / scale
    idx = np.nonzero((z >= TORSO_Z[0]) & (z <= TORSO_Z[1]))[0]
    return slice(int(idx[0]), int(idx[-1]) + 1)


def _crop_z(array: np.ndarray, affine: np.ndarray, z: slice) -> tuple[np.ndarray, np.ndarray]:
    """Keep slices ``z`` of a volume; the affine moves with them so world positions are unchanged."""
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, z.start]) + affine[:3, 3]
    return np.ascontiguousarray(array[:, :, z]), out


def make_phantom(seed: int, *, size: str = "small", shape=None, n_lesions: int | None = None,
                 lesion_free: bool = False, study_id: str | None = None, centre: str = "A") -> PhantomStudy:
    """One synthetic FDG PET/CT study, fully determined by ``seed`` (and ``centre``).

    ``shape`` overrides the PET grid shape of ``size`` (same spacing; the anatomy scales to the field of view).
    ``n_lesions`` defaults to 1-6; ``lesion_free=True`` gives a negative control with an empty mask. ``centre`` is a
    key of CENTRES: scanner PSF, noise, SUV calibration, CT noise and field of view (a torso scan keeps the slices
    from upper thigh to skull base).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}")
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {sorted(CENTRES)}")
    site = CENTRES[centre]
    rng = np.random.default_rng(seed)
    pet_grid, ct_grid, scale = _grids(size, shape)
    body = _sample_body(rng)
    n = 0 if lesion_free else (int(rng.integers(1, 7)) if n_lesions is None else int(n_lesions))
    torso = site["fov"] == "torso"
    lesions = _sample_lesions(rng, n, scale, pet_grid, body, z_range=TORSO_Z if torso else None)
    study_id = study_id or f"phantom_{seed}"

    pet_tissue = np.zeros(pet_grid.shape, np.uint8)
    _anatomy(_Painter(pet_grid, scale, pet_tissue), body)
    suv_lut = np.array([body["suv"][name] for name in TISSUES], np.float32)
    activity = suv_lut[pet_tissue]
    label = _paint_lesions_pet(lesions, pet_grid, activity)
    pet = _reconstruct(activity, pet_grid, rng, site["psf_fwhm_mm"], site["pet_noise"])
    pet *= np.float32(site["suv_scale"])

    ct_tissue = np.zeros(ct_grid.shape, np.uint8)
    organs = np.zeros(ct_grid.shape, np.uint8)
    ct_painter = _Painter(ct_grid, scale, ct_tissue, organs)
    _anatomy(ct_painter, body)
    _paint_lesions_ct(lesions, _Painter(ct_grid, scale, ct_tissue))
    ct = _hounsfield(ct_tissue, rng, noise_factor=site["ct_noise"])

    pet_affine, ct_affine = pet_grid.affine, ct_grid.affine
    if torso:
        z = _torso_slices(pet_grid, scale)  # PET and CT share the z axis
        (pet, _), (label, _), (ct, _) = (_crop_z(a, pet_affine, z) for a in (pet, label, ct))
        organs, ct_affine = _crop_z(organs, ct_affine, z)
        pet_affine = _crop_z(np.empty((1, 1, 0)), pet_affine, z)[1]
    meta = _acquisition(rng, study_id, seed, size, lesions)
    meta.update(centre=centre, fov=site["fov"], brown_fat_active=body["brown_fat_active"],
                muscle_active=body["muscle_active"])
    common = {"patient_id": study_id}
    return PhantomStudy(
        study_id,
        pet=Volume(pet, pet_affine, f"<phantom {study_id} PET>", None, {**common, "modality": "PT", "units": "SUV", "suv_status": "phantom-SUV"}),
        ct=Volume(ct, ct_affine, f"<phantom {study_id} CT>", None, {**common, "modality": "CT", "units": "HU"}),
        label=Volume(label, pet_affine.copy(), f"<phantom {study_id} SEG>", None, {**common, "modality": "SEG"}),
        lesions=lesions,
        meta=meta,
        organs=Volume(organs, ct_affine.copy(), f"<phantom {study_id} organs>", None, {**common, "modality": "SEG",
                                                                                       "labels": "totalsegmentator-total"}),
    )


def _acquisition(rng, study_id: str, seed: int, size: str, lesions: list[dict]) -> dict:
    """Patient weight, dose and times: what DICOM SUV conversion needs."""
    weight = float(np.round(rng.uniform(50, 115), 1))
    dose = float(np.round(weight * rng.uniform(3.0, 4.5) * 1e6, -4))
    injected = dt.datetime(2026, 1, 1, 8, 0) + dt.timedelta(days=int(rng.integers(0, 300)), minutes=int(rng.integers(0, 600)))
    start = injected + dt.timedelta(minutes=float(rng.uniform(50, 75)))
    return {"study_id": study_id, "seed": int(seed), "size": size, "patient_id": study_id, "weight_kg": weight,
            "dose_bq": dose, "injection_time": injected.isoformat(), "scan_start": start.isoformat(),
            "half_life_s": F18_HALF_LIFE_S, "n_lesions": len(lesions), "lesion_free": not lesions}


def write_study(study: PhantomStudy, study_dir: Path, fmt: str = "nifti", *, organs: bool = True) -> Path:
    """Write PET/CT (NIfTI, or DICOM series with SUV tags) + SEG.nii.gz + organs.nii.gz (TotalSegmentator ids on the
    CT grid, unless ``organs=False``) + phantom.json into ``study_dir``."""
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
    if organs and study.organs is not None:
        write_volume(study.organs, study_dir / "organs.nii.gz")
    record = {**study.meta, "lesions": study.lesions, "format": fmt}
    (study_dir / "phantom.json").write_text(json.dumps(record, indent=1))
    return study_dir


def write_phantom_cohort(out_dir, n: int, seed: int = 0, *, size: str = "small", fmt: str = "nifti",
                         lesion_free_fraction: float = 0.5, shape=None, centre: str = "A", labels: bool = True,
                         progress=None) -> list[Path]:
    """Write ``n`` studies ``<out>/<study_id>/{PET,CT,SEG,organs}.nii.gz`` (or PET/ CT/ DICOM folders); return their
    folders.

    Exactly round(n x lesion_free_fraction) studies, chosen by the seed, are lesion-free controls (autoPET: ~50 %).
    ``shape`` overrides the PET grid of ``size`` (see :func:`make_phantom`); ``centre`` picks the scanner;
    ``labels=False`` writes an unlabelled pool (no SEG or organ files, as a pretraining corpus has).
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    negatives = set(rng.permutation(n)[: int(round(n * lesion_free_fraction))].tolist())
    dirs = []
    for i in range(n):
        study_id = f"phantom_{seed:03d}_{i:04d}"
        study = make_phantom(phantom_study_seed(seed, i), size=size, shape=shape, lesion_free=i in negatives,
                             study_id=study_id, centre=centre)
        d = write_study(study, out / study_id, fmt, organs=labels)
        if not labels:
            (d / "SEG.nii.gz").unlink()
        dirs.append(d)
        if progress is not None:
            progress(i + 1, n, study_id)
    return dirs
