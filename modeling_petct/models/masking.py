"""The paper's masked-autoencoding objective: per-channel Bernoulli block masks, imputation, weighted global MSE."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def cell_grid(spatial_shape: Sequence[int], cell_size: Sequence[int]) -> tuple[int, ...]:
    """Number of mask cells along each axis (a partial cell at the border counts as one)."""
    return tuple(math.ceil(s / c) for s, c in zip(spatial_shape, cell_size))


def random_block_mask(
    shape: Sequence[int],
    cell_size: Sequence[int],
    ratio: float,
    independent_channels: bool = True,
    *,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A float mask of `shape` (B, C, D, H, W), 1 = masked, constant over cells of `cell_size` voxels.

    Each cell is masked with probability `ratio`, independently per channel (independent_channels=True, the paper:
    ~ratio^2 of cells lose every modality) or jointly for all channels. `noise` (uniform in [0, 1), shape
    (B, C or 1, *cell_grid)) makes the mask deterministic: a cell is masked where noise < ratio.
    """
    batch, channels, *spatial = shape
    grid = cell_grid(spatial, cell_size)
    noise_shape = (batch, channels if independent_channels else 1, *grid)
    if noise is None:
        noise = torch.rand(noise_shape, generator=generator, device=device or "cpu")
    elif tuple(noise.shape) != noise_shape:
        raise ValueError(f"noise must have shape {noise_shape} (batch, channels or 1, cell grid), "
                         f"got {tuple(noise.shape)}")
    cells = (noise < ratio).float()
    for axis, cell in enumerate(cell_size, start=2):
        cells = cells.repeat_interleave(cell, dim=axis)
    mask = cells[(..., *(slice(0, s) for s in spatial))]
    return mask.expand(batch, channels, *spatial).to(device or noise.device).contiguous()


def impute(pixel_values: torch.Tensor, mask: torch.Tensor, token: torch.Tensor | None = None) -> torch.Tensor:
    """Replace masked voxels by 0 (the mean after z-scoring: the paper) or by a learnable per-channel token."""
    mask = mask.to(pixel_values.dtype)
    filled = 0.0 if token is None else token.to(pixel_values.dtype) * mask
    return pixel_values * (1 - mask) + filled


def weighted_reconstruction_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    masked_weight: float = 1.0,
    visible_weight: float = 0.2,
) -> torch.Tensor:
    """masked_weight x mean squared error over masked voxels + visible_weight x the same over visible voxels.

    Means are global over the batch (the authors' "weighted global reconstruction"); visible_weight=0 is the
    masked-only loss. Computed in float32 whatever the autocast dtype."""
    squared = (reconstruction.float() - target.float()).square()
    mask = mask.float()
    loss = masked_weight * (squared * mask).sum() / mask.sum().clamp_min(1)
    if visible_weight:
        visible = 1 - mask
        loss = loss + visible_weight * (squared * visible).sum() / visible.sum().clamp_min(1)
    return loss
