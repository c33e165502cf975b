"""Clicks as data: the Grand Challenge "Multiple points" file of autoPET IV, placed through the affines and stamped as
guidance maps on the harmonised grid.

A click file is ``{"type": "Multiple points", "points": [{"point": [i, j, k], "name": "tumor" | "background"}]}``
with voxel indices of the PET image in nibabel array order (the package's ``Volume`` order; SimpleITK and nnU-Net
arrays are (k, j, i)). Every click is carried into world millimetres by the PET affine and from there onto the
model grid by the grid's affine, never by permuting axes.

Encodings are computed directly from each model-grid voxel's distance to its click (in voxels of that grid): nothing
is resampled or normalised, so a map at inference is the map the network was trained on (an encoding mismatch alone
took an autoPET V entry from 0.77 to 0.40 Dice). A click is snapped to its nearest model voxel, as simulated clicks
are, so that voxel holds exactly 1. Several clicks of one kind combine by their maximum.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import PetCtInputError
from .conventions import GUIDANCE_ENCODINGS
from .geometry import LPS_TO_RAS

CLICK_KINDS = ("tumor", "background")  # Grand Challenge names, in guidance channel order: foreground, background
CLICK_SPACES = ("voxel", "world", "world-lps")  # PET voxel indices (i, j, k); RAS mm (NIfTI); LPS mm (ITK, DICOM)
GAUSSIAN_TRUNCATE = 3.0  # sigmas: beyond this the Gaussian map is 0 (1 % of the peak)


@dataclass(frozen=True)
class Click:
    """One click: ``kind`` ("tumor" or "background") at ``world``, RAS+ millimetres."""

    kind: str
    world: tuple[float, float, float]

    @property
    def channel(self) -> int:
        return CLICK_KINDS.index(self.kind)


def read_clicks(path, pet_affine: np.ndarray, pet_shape, space: str = "voxel") -> list[Click]:
    """The clicks of a Grand Challenge "Multiple points" file, placed in the world through the PET grid; a point off
    the PET image, an unknown name or a malformed file is a PetCtInputError naming the file."""
    return clicks_from_points(load_click_file(path, space), pet_affine, pet_shape, space, path)


def load_click_file(path, space: str = "voxel") -> list[tuple[str, list[float]]]:
    """(name, coordinates) of each point of a click file, checked without any image (before voxels are read)."""
    if space not in CLICK_SPACES:
        raise PetCtInputError("--clicks-space", f"must be one of {', '.join(CLICK_SPACES)}, got {space!r}")
    path = Path(path)
    if not path.is_file():
        raise PetCtInputError(path, "no such click file")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PetCtInputError(path, f"not a JSON click file ({err})") from None
    return _points(record, path)


def _points(record, source) -> list[tuple[str, list[float]]]:
    """(name, coordinates) of each point of a "Multiple points" record, checked."""
    if not isinstance(record, dict) or record.get("type") != "Multiple points" or \
            not isinstance(record.get("points"), list):
        raise PetCtInputError(source, 'expected a Grand Challenge {"type": "Multiple points", "points": [...]} record')
    points = []
    for n, entry in enumerate(record["points"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        point = entry.get("point") if isinstance(entry, dict) else None
        if name not in CLICK_KINDS:
            raise PetCtInputError(source, f"point {n}: name must be one of {CLICK_KINDS}, got {name!r}")
        if not (isinstance(point, list) and len(point) == 3 and all(_finite_number(v) for v in point)):
            raise PetCtInputError(source, f"point {n}: needs three finite coordinates, got {point!r}")
        points.append((name, [float(v) for v in point]))
    return points


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clicks_from_points(points, pet_affine: np.ndarray, pet_shape, space: str = "voxel", source="clicks"
                       ) -> list[Click]:
    """Clicks from (name, coordinates) pairs in ``space`` (CLICK_SPACES); each must lie on the PET image."""
    affine = np.asarray(pet_affine, float)
    clicks = []
    for n, (name, coords) in enumerate(points):
        coords = np.asarray(coords, float)
        if space == "voxel":
            world = affine[:3, :3] @ coords + affine[:3, 3]
        else:
            world = LPS_TO_RAS @ coords if space == "world-lps" else coords
        ijk = voxel_of(world, affine)
        if np.any(ijk < -0.5) or np.any(ijk > np.asarray(pet_shape) - 0.5):
            raise PetCtInputError(source, f"point {n} {coords.tolist()} ({space}) lies outside the PET image of shape "
                                          f"{tuple(pet_shape)} (voxel {np.round(ijk, 1).tolist()})")
        clicks.append(Click(name, tuple(float(v) for v in world)))
    return clicks


def voxel_of(world, affine: np.ndarray) -> np.ndarray:
    """Continuous voxel indices of world (RAS mm) point(s) on the grid of ``affine``: (3,) or (N, 3)."""
    world = np.asarray(world, float)
    inverse = np.linalg.inv(np.asarray(affine, float))
    return world @ inverse[:3, :3].T + inverse[:3, 3]


def write_clicks(path, clicks: list[Click], pet_affine: np.ndarray) -> Path:
    """Write clicks as a Grand Challenge "Multiple points" file in PET voxel indices (integers where they are)."""
    points = []
    for click in clicks:
        ijk = voxel_of(click.world, pet_affine)
        rounded = np.rint(ijk)
        ijk = [int(v) for v in rounded] if np.allclose(ijk, rounded, atol=1e-4) else [round(float(v), 4) for v in ijk]
        points.append({"point": ijk, "name": click.kind})
    record = {"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": points}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record))
    return path


def grid_voxels(clicks: list[Click], grid_affine: np.ndarray, shape) -> list[tuple[int, tuple[int, int, int]]]:
    """(channel, nearest voxel (z, y, x)) of each click on a model grid; clicks off that grid (outside the body crop)
    are left out."""
    out = []
    for click in clicks:
        zyx = np.rint(voxel_of(click.world, grid_affine)).astype(int)
        if np.all(zyx >= 0) and np.all(zyx < np.asarray(shape)):
            out.append((click.channel, tuple(int(v) for v in zyx)))
    return out


def encode_clicks(clicks: list[Click], grid_affine: np.ndarray, shape, encoding: str, size: float) -> np.ndarray:
    """Guidance maps float32 (2, Z, Y, X) on a model grid: channel 0 the "tumor" clicks, 1 the "background" ones."""
    return encode_voxels(grid_voxels(clicks, grid_affine, shape), shape, encoding, size)


def encode_voxels(voxels, shape, encoding: str, size: float, channels: int = len(CLICK_KINDS)) -> np.ndarray:
    """Guidance maps (channels, Z, Y, X) from (channel, (z, y, x)) clicks on the grid: ``encoding`` "gaussian" (sigma
    ``size`` voxels, peak 1) or "ball" (1 at the click falling linearly to 0 at radius ``size`` voxels: the ball's
    internal distance transform scaled to 1 at its centre)."""
    if encoding not in GUIDANCE_ENCODINGS:
        raise ValueError(f"encoding must be one of {GUIDANCE_ENCODINGS}, got {encoding!r}")
    if not size > 0:
        raise ValueError(f"the encoding size must be > 0 voxels, got {size}")
    maps = np.zeros((channels, *shape), np.float32)
    reach = int(math.ceil(size * (GAUSSIAN_TRUNCATE if encoding == "gaussian" else 1.0)))
    for channel, zyx in voxels:
        box = tuple(slice(max(0, c - reach), min(n, c + reach + 1)) for c, n in zip(zyx, shape))
        grids = np.ogrid[box]
        distance2 = sum((g - c).astype(np.float32) ** 2 for g, c in zip(grids, zyx))
        if encoding == "gaussian":
            value = np.exp(-distance2 / np.float32(2 * size * size))
            value[distance2 > (GAUSSIAN_TRUNCATE * size) ** 2] = 0
        else:
            value = np.clip(1 - np.sqrt(distance2) / np.float32(size), 0, None)
        np.maximum(maps[channel][box], value, out=maps[channel][box])
    return maps
