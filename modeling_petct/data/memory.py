"""Refuse, from the headers alone, a study whose harmonisation or segmentation would not fit in memory.

The grid that costs memory is the canonical one harmonisation builds: the PET's field of view (not the CT's) at the
target spacing, CT resampled onto all of it before the body crop. A small PET with 40 mm voxels spans a 1280^3 grid
at 3x2x2 mm, so the guard sizes that grid (``canonical_grid`` of the PET header), as harmonisation will.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import PetCtInputError

# Bytes per voxel that stay alive at the peak (see estimate_memory_bytes).
_NATIVE_BYTES = 4 * 4  # PET float32 + its SimpleITK copy + resampled probability + mask/scratch
_CT_NATIVE_BYTES = 8  # CT float32 + its SimpleITK copy
_HARMONIZE_GRID_BYTES = 4 * 6  # CT on the full canonical grid + body mask + component labels + cropped channels
_MODEL_GRID_BYTES = 4 * 9  # 2 input channels + C logits + blending weights + probabilities (on the crop <= full grid)
_WINDOW_ACTIVATION_BYTES = 4 * 160  # per window voxel: activations of a 32-feature 6-stage UNet, bf16/fp32 mix
_BASE_BYTES = 600 * 2**20  # the interpreter, torch and the model


def estimate_memory_bytes(pet_shape, pet_affine, ct_shape, target_spacing, roi_size=None, num_labels: int = 2) -> int:
    """Rough peak resident memory of harmonising (``roi_size`` None) or segmenting one study, from its grids alone."""
    from .harmonize import canonical_grid

    native = int(np.prod(pet_shape, dtype=np.int64)) * _NATIVE_BYTES + int(np.prod(ct_shape, dtype=np.int64)) * _CT_NATIVE_BYTES
    _, grid_shape = canonical_grid(np.asarray(pet_affine, float), tuple(pet_shape[:3]), target_spacing)
    grid = int(np.prod(grid_shape, dtype=np.int64))
    need = native + grid * _HARMONIZE_GRID_BYTES + _BASE_BYTES
    if roi_size is not None:
        need += grid * (_MODEL_GRID_BYTES + 4 * max(0, num_labels - 2))
        need += int(np.prod(roi_size)) * _WINDOW_ACTIVATION_BYTES
    return need


def available_memory_bytes() -> int:
    """Memory available to a new process without swapping (psutil: Linux, macOS, Windows); PETCT_MAX_MEMORY_GB
    overrides it."""
    if os.environ.get("PETCT_MAX_MEMORY_GB"):
        return int(float(os.environ["PETCT_MAX_MEMORY_GB"]) * 2**30)
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(pet, ct, config=None, *, spacing=None) -> None:
    """Refuse, before reading voxels, a study that would not fit in memory. ``pet``/``ct``: paths or Volumes;
    ``config`` a segmentation model's (its spacing, window and labels), or ``spacing`` alone for harmonisation."""
    from .geometry import peek_grid

    pet_grid, ct_grid = peek_grid(pet), peek_grid(ct)
    if pet_grid is None or ct_grid is None:
        return
    spacing = tuple(config.target_spacing) if config is not None else tuple(spacing)
    roi, labels = (tuple(config.crop_size), int(config.num_labels)) if config is not None else (None, 2)
    if np.linalg.matrix_rank(pet_grid[1][:3, :3]) < 3:
        return  # a singular affine is refused by the reader, with its own message
    need = estimate_memory_bytes(pet_grid[0], pet_grid[1], ct_grid[0], spacing, roi, labels)
    have = available_memory_bytes()
    if need > have:
        from .harmonize import canonical_grid

        grid = canonical_grid(pet_grid[1], pet_grid[0], spacing)[1]
        source = pet.source if hasattr(pet, "source") else pet
        raise PetCtInputError(
            source,
            f"too large for memory: PET {pet_grid[0]} spans a {'x'.join(map(str, grid))} grid at "
            f"{'x'.join(f'{s:g}' for s in spacing)} mm (CT {ct_grid[0]}), about {need / 2**30:.1f} GiB needed, "
            f"{have / 2**30:.1f} GiB available (set PETCT_MAX_MEMORY_GB to override)",
        )
