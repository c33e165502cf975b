"""The one in-memory image type: voxels plus the affine that places them in the patient."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 3-D image with its geometry.

    ``array`` is indexed (i, j, k) in the file's own voxel order (nibabel's convention), and ``affine`` maps
    (i, j, k, 1) to RAS+ world millimetres. Images read with SimpleITK (MHA, DICOM) are converted to this
    convention on read, so every consumer sees one geometry model. ``header`` keeps the original NIfTI header, so a
    mask written on this grid carries the input's affine (sform and qform) bit for bit.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = "<memory>"
    header: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def with_array(self, array: np.ndarray, **meta) -> "Volume":
        """A volume on the same grid (same affine and header) holding other voxels, e.g. a mask."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return Volume(array, self.affine.copy(), self.source, self.header, {**self.meta, **meta})
