"""Sliding-window inference on the harmonised grid (MONAI's inferer), with bf16 only where the hardware is fast.

Speed (benchmarks/inference_segment.py): the authors' recipe is MONAI ``sliding_window_inference`` with roi
96x128x128, overlap 0.5, constant blending, fp32 (``InferenceSettings.reference()``). The default here keeps the roi
but uses overlap 0.25 (far fewer windows), Gaussian blending (the seams that fewer windows would show are faded) and
bf16 autocast where the hardware has fast bf16 kernels (CUDA; CPUs with AVX512-BF16/AMX). On AVX2-only CPUs PyTorch
runs bf16 3-D convolutions through a slow reference kernel (measured 25x slower than fp32 on the dev box), so
``precision="auto"`` stays in fp32 there. ``fast`` tiles without overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from .settings import InferenceSettings


def use_bf16(precision: str, device) -> bool:
    """Whether to autocast to bf16: asked for, or "auto" and the device has fast bf16 convolution kernels."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _predictor(model, settings: InferenceSettings, device, forward: Callable) -> Callable:
    """``forward``: window -> tuple of head logits, from the chosen backend (backends.window_forward)."""
    import torch

    flips = [(), (4,), (3,), (3, 4)] if settings.tta else [()]  # dims of (B, C, Z, Y, X): X = left-right, Y = AP
    bf16 = use_bf16(settings.precision, device)

    organ_aware = bool(getattr(model.config, "organ_labels", ()))

    def predict(window):
        ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        total = None
        with ctx:
            for dims in flips:
                heads = forward(window.flip(dims) if dims else window)
                heads = [h.float().flip(dims) if dims else h.float() for h in heads]
                total = heads if total is None else [t + h for t, h in zip(total, heads)]
        total = [t / len(flips) for t in total]
        return tuple(total) if organ_aware else total[0]  # MONAI blends each tensor of a tuple

    return predict


def window_count(shape, roi, overlap: float) -> int:
    """How many windows MONAI's sliding-window inferer runs over an image of spatial ``shape`` (it pads to the roi)."""
    from monai.data.utils import dense_patch_slices

    padded = [max(int(n), int(r)) for n, r in zip(shape, roi)]
    interval = [int(r) if n == r else max(1, int(r * (1 - overlap))) for n, r in zip(padded, roi)]
    return len(dense_patch_slices(padded, [int(r) for r in roi], interval))


def _counting(predict: Callable, total: int, on_window: Callable[[int, int], None]) -> Callable:
    """``predict`` that reports (windows done, total) after each batch of windows."""
    done = 0

    def counted(windows):
        nonlocal done
        logits = predict(windows)
        done += windows.shape[0]
        on_window(done, total)
        return logits

    return counted


def predict_probabilities(model, image: np.ndarray, settings: InferenceSettings = InferenceSettings(), *, device="cpu",
                          on_window: Callable[[int, int], None] | None = None, guidance: np.ndarray | None = None
                          ) -> np.ndarray:
    """Class probabilities (C, Z, Y, X) float32 on the harmonised grid from MONAI's sliding-window inferer.

    Logits are blended across windows (as the authors' recipe does), then soft-maxed once. ``on_window(done, total)``
    is called after every batch of windows, so a progress bar can move while the network runs. ``guidance``: the
    click maps of a guidance model (see ``model_input``).
    """
    return predict_with_organs(model, image, settings, device=device, on_window=on_window, guidance=guidance)[0]


def model_input(config, image: np.ndarray, guidance: np.ndarray | None = None) -> np.ndarray:
    """The network's input on the harmonised grid: the image channels the model takes, then its click maps
    (data.clicks.encode_clicks; all zero when no click is given)."""
    channels = image[config.input_channels]
    if not config.guidance_channels:
        if guidance is not None:
            raise ValueError("clicks given, but this model takes no click guidance (config.guidance_channels is 0)")
        return np.ascontiguousarray(channels)
    if guidance is None:
        guidance = np.zeros((config.guidance_channels, *image.shape[1:]), np.float32)
    if guidance.shape != (config.guidance_channels, *image.shape[1:]):
        raise ValueError(f"guidance maps {guidance.shape} do not match {config.guidance_channels} channels on the "
                         f"grid {image.shape[1:]}")
    return np.concatenate([channels, guidance.astype(np.float32, copy=False)])


def predict_with_organs(model, image: np.ndarray, settings: InferenceSettings = InferenceSettings(), *, device="cpu",
                        on_window: Callable[[int, int], None] | None = None, guidance: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """Lesion probabilities as ``predict_probabilities`` plus, for organ-aware models, the organ map (uint8 (Z, Y, X),
    argmax of the blended organ logits: labels 1..len(config.organ_labels), 0 = other); None for lesion-only models.
    Both heads come from the same windows (one network pass)."""
    import torch
    from monai.inferers import sliding_window_inference

    from .backends import window_forward

    device = torch.device(device)
    roi = tuple(int(r) for r in (settings.roi_size or model.config.crop_size))
    x = torch.from_numpy(model_input(model.config, image, guidance))[None]
    forward, _ = window_forward(model, settings.backend, x[0].numpy(), roi, device, settings.precision)
    predict = _predictor(model, settings, device, forward)
    if on_window is not None:
        predict = _counting(predict, window_count(x.shape[2:], roi, settings.overlap), on_window)
    with torch.inference_mode():
        logits = sliding_window_inference(
            x, roi, settings.sw_batch_size, predict, overlap=settings.overlap, mode=settings.mode, sw_device=device,
            device="cpu",
        )
        if isinstance(logits, (tuple, list)):
            return torch.softmax(logits[0][0], dim=0).numpy(), logits[1][0].argmax(0).to(torch.uint8).numpy()
        return torch.softmax(logits[0], dim=0).numpy(), None
