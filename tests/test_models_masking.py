"""The masked-autoencoding objective: block masks, imputation and the weighted global MSE."""

from __future__ import annotations

import pytest
import torch

from modeling_petct.models.masking import impute, random_block_mask, weighted_reconstruction_loss


def test_independent_channel_masks_statistics():
    generator = torch.Generator().manual_seed(0)
    mask = random_block_mask((8, 2, 64, 64, 64), (4, 4, 4), 0.5, generator=generator)
    assert mask.shape == (8, 2, 64, 64, 64)
    cells = mask[:, :, ::4, ::4, ::4]  # one voxel per cell
    assert torch.equal(cells.repeat_interleave(4, 2).repeat_interleave(4, 3).repeat_interleave(4, 4), mask)
    assert abs(cells.mean().item() - 0.5) < 0.01
    both = (cells[:, 0] * cells[:, 1]).mean().item()
    assert abs(both - 0.25) < 0.01  # independent per channel: ~25% of cells lose both modalities
    assert (cells[:, 0] != cells[:, 1]).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_joint_masks_are_shared_across_channels_and_respect_the_ratio():
    mask = random_block_mask((4, 2, 32, 32, 32), (4, 4, 4), 0.3, independent_channels=False,
                             generator=torch.Generator().manual_seed(1))
    assert torch.equal(mask[:, 0], mask[:, 1])
    assert abs(mask.mean().item() - 0.3) < 0.02


def test_noise_makes_the_mask_deterministic_and_border_cells_are_cropped():
    noise = torch.tensor([0.1, 0.9, 0.4]).reshape(1, 1, 3, 1, 1)  # cells of 4 along z over 10 voxels: 3 cells
    mask = random_block_mask((1, 1, 10, 4, 4), (4, 4, 4), 0.5, noise=noise)
    assert mask[0, 0, :, 0, 0].tolist() == [1] * 4 + [0] * 4 + [1] * 2
    with pytest.raises(ValueError, match="noise must have shape"):
        random_block_mask((1, 2, 10, 4, 4), (4, 4, 4), 0.5, noise=noise)


def test_zero_and_token_imputation():
    x = torch.randn(1, 2, 4, 4, 4)
    mask = torch.zeros_like(x)
    mask[:, 0, :2] = 1
    zero = impute(x, mask)
    assert torch.all(zero[mask == 1] == 0) and torch.equal(zero[mask == 0], x[mask == 0])
    token = torch.tensor([3.0, -2.0]).reshape(1, 2, 1, 1, 1)
    filled = impute(x, mask, token)
    assert torch.all(filled[:, 0, :2] == 3.0) and torch.equal(filled[mask == 0], x[mask == 0])


def test_weighted_loss_matches_a_hand_computation():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4, 1, 1)
    reconstruction = torch.tensor([0.0, 2.0, 5.0, 5.0]).reshape(1, 1, 4, 1, 1)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 4, 1, 1)
    # masked voxels: errors 1, 0 -> mean 0.5; visible: errors 4, 1 -> mean 2.5
    assert weighted_reconstruction_loss(reconstruction, target, mask).item() == pytest.approx(0.5 + 0.2 * 2.5)
    assert weighted_reconstruction_loss(reconstruction, target, mask, 1.0, 0.0).item() == pytest.approx(0.5)
    assert weighted_reconstruction_loss(reconstruction.bfloat16(), target, mask).dtype == torch.float32
