"""Refuse, from the headers alone, a study whose segmentation would not fit in memory."""

from __future__ import annotations

import os

import numpy as np

from ..data.geometry import peek_geometry
from ..errors import PetCtInputError

# Bytes per voxel that stay alive at the peak (see estimate_memory_bytes).
_NATIVE_BYTES = 4 * 4  # PET float32 + its SimpleITK copy + resampled probability + mask/scratch
_MODEL_GRID_BYTES = 4 * 9  # full canonical CT + 2 input channels + C logits + blending weights + probabilities
_WINDOW_ACTIVATION_BYTES = 4 * 160  # per window voxel: activations of a 32-feature 6-stage UNet, bf16/fp32 mix


def estimate_memory_bytes(pet_shape, ct_shape, ct_spacing, target_spacing, roi_size, num_labels: int = 2) -> int:
    """Rough peak resident memory of one ``segment_study`` call, from the image sizes alone.

    Native grids hold the inputs and the resampled output; the model grid (CT field of view at the target spacing,
    an upper bound of the body crop) holds the input channels, blended logits and weights; one window holds the
    network's activations.
    """
    native = int(np.prod(pet_shape)) * _NATIVE_BYTES + int(np.prod(ct_shape)) * 8
    extent_mm3 = float(np.prod(np.asarray(ct_shape[:3], float) * np.asarray(ct_spacing[:3], float)))
    model_voxels = int(extent_mm3 / float(np.prod(target_spacing)))
    model_grid = model_voxels * (_MODEL_GRID_BYTES + 4 * max(0, num_labels - 2))
    return native + model_grid + int(np.prod(roi_size)) * _WINDOW_ACTIVATION_BYTES + 600 * 2**20


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None elsewhere); PETCT_MAX_MEMORY_GB overrides it."""
    if os.environ.get("PETCT_MAX_MEMORY_GB"):
        return int(float(os.environ["PETCT_MAX_MEMORY_GB"]) * 2**30)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(pet_path, ct_path, config) -> None:
    """Refuse, before reading voxels, a study that would not fit in memory."""
    pet, ct = peek_geometry(pet_path), peek_geometry(ct_path)
    if pet is None or ct is None:
        return
    need = estimate_memory_bytes(pet[0][:3], ct[0][:3], ct[1], config.target_spacing, config.crop_size, config.num_labels)
    have = available_memory_bytes()
    if have is not None and need > have:
        raise PetCtInputError(
            f"{pet_path} + {ct_path}",
            f"too large for memory: PET {pet[0]} and CT {ct[0]} need about {need / 2**30:.1f} GiB, "
            f"{have / 2**30:.1f} GiB available (set PETCT_MAX_MEMORY_GB to override)",
        )
