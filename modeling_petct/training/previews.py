"""Reconstruction previews: what the MAE sees and what it gives back, one coronal slice per modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path


def reconstruction_preview(model, pixel_values: torch.Tensor, path: Path, *, accelerator=None, step: int = 0,
                           modalities=("PET", "CT")) -> Path:
    """Save a PNG grid (rows: modalities; columns: input, mask, masked input, reconstruction) of the middle coronal
    slice, and log it to the TensorBoard tracker when there is one."""
    from ..plotting import pyplot

    plt = pyplot()

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = model(pixel_values=pixel_values[None].to(device))
    model.train(was_training)
    image = pixel_values.float().cpu().numpy()
    recon = out.reconstruction[0].float().cpu().numpy()
    mask = out.mask.float()
    if mask.dim() == 4:  # (B, D, H, W) without a channel axis
        mask = mask[:, None]
    mask = F.interpolate(mask, size=image.shape[1:], mode="nearest")[0].expand(image.shape[0], -1, -1, -1).cpu().numpy()
    y = image.shape[2] // 2
    columns = {"input": image, "mask": mask, "masked input": image * (1 - mask), "reconstruction": recon}
    fig, axes = plt.subplots(len(modalities), 4, figsize=(10, 2.6 * len(modalities)), squeeze=False)
    for row, name in enumerate(modalities):
        lo, hi = np.percentile(image[row], [1, 99.5])
        for col, (title, arr) in enumerate(columns.items()):
            ax = axes[row][col]
            vmin, vmax = (0, 1) if title == "mask" else (lo, hi)
            ax.imshow(arr[row][:, y, :], cmap="gray_r" if name == "PET" else "gray", vmin=vmin, vmax=vmax, aspect="auto")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"MAE reconstruction, step {step}, coronal slice", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    if accelerator is not None:
        _log_image(accelerator, fig, step)
    plt.close(fig)
    return path


def _log_image(accelerator, fig, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            fig.canvas.draw()
            rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            tracker.log_images({"reconstruction": rgb}, step=step, dataformats="HWC")
