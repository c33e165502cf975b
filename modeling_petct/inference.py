"""Segment one PET/CT study: read -> harmonise -> sliding-window inference on the body crop -> mask on the native PET grid.

The mask comes back on the PET input's own grid (the autoPET convention), voxel for voxel: class probabilities are
resampled from the 3x2x2 mm model grid to the native PET grid with linear interpolation and the argmax is taken
there. Linear-on-probabilities, rather than nearest-on-labels, keeps lesion borders smooth where the native grid is
finer than the model grid and does not shift them by half a model voxel where it is coarser.

Speed (benchmarks/inference_segment.py): the authors' recipe is MONAI ``sliding_window_inference`` with roi
96x128x128, overlap 0.5, constant blending, fp32 (``InferenceSettings.reference()``). The default here keeps the roi
but uses overlap 0.25 (far fewer windows), Gaussian blending (the seams that fewer windows would show are faded) and
bf16 autocast where the hardware has fast bf16 kernels (CUDA; CPUs with AVX512-BF16/AMX). On AVX2-only CPUs PyTorch
runs bf16 3-D convolutions through a slow reference kernel (measured 25x slower than fp32 on the dev box), so
``precision="auto"`` stays in fp32 there. ``fast`` tiles without overlap.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .data.volume import Volume
from .errors import PetCtInputError

# No default public checkpoint is published yet: --model must be given (a local folder or a Hub id in the local cache).
MODEL_HELP = (
    "pass --model with a local folder holding config.json + model.safetensors (e.g. the output of `petct quickstart` "
    "or of train_seg.py), or a Hugging Face Hub id already in the local cache (download it where there is network "
    "with `hf download ID`, then run with HF_HUB_OFFLINE=1)"
)
# Bytes per voxel that stay alive at the peak (see estimate_memory_bytes).
_NATIVE_BYTES = 4 * 4  # PET float32 + its SimpleITK copy + resampled probability + mask/scratch
_MODEL_GRID_BYTES = 4 * 9  # full canonical CT + 2 input channels + C logits + blending weights + probabilities
_WINDOW_ACTIVATION_BYTES = 4 * 160  # per window voxel: activations of a 32-feature 6-stage UNet, bf16/fp32 mix


@dataclass(frozen=True)
class InferenceSettings:
    """How the sliding window runs. ``roi_size`` None = the model's training crop (config.crop_size)."""

    overlap: float = 0.25
    mode: str = "gaussian"  # MONAI blend mode: "gaussian" or "constant"
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto": bf16 where the device runs it fast
    roi_size: tuple[int, int, int] | None = None
    tta: bool = False  # average over in-plane flips (none, left-right, anterior-posterior, both)
    sw_batch_size: int = 1

    @classmethod
    def reference(cls) -> "InferenceSettings":
        """The authors' recipe (METHOD.md): overlap 0.5, constant blending, fp32."""
        return cls(overlap=0.5, mode="constant", precision="fp32")

    @classmethod
    def fast(cls) -> "InferenceSettings":
        """No overlap: every body voxel is seen once (the FLOP floor of the network at the model's crop)."""
        return cls(overlap=0.0, mode="gaussian")


@dataclass
class SegmentationResult:
    """The mask on the native PET grid (uint8, same affine and header as ``pet``) and what produced it."""

    mask: Volume
    pet: Volume
    harmonized: object  # HarmonizedStudy
    probabilities: np.ndarray | None = None  # (C, Z, Y, X) on the harmonised grid, when asked for
    timings: dict = field(default_factory=dict)


def load_segmentation_model(source: str | os.PathLike | None, device: str = "cpu"):
    """A petct segmentation model (``PetCtForSegmentation`` or the separated-modality probe, by its config) in eval
    mode on ``device`` from a local folder or a Hub id (cache only when offline).

    Original ``.pth`` checkpoints are converted to a folder first (hub_scripts), then loaded like any folder.
    """
    from transformers import AutoModelForSemanticSegmentation

    if source is None or str(source).strip() == "":
        raise PetCtInputError("--model", f"no model given: {MODEL_HELP}")
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            pth = sorted(p.name for p in path.glob("*.pth")) + sorted(p.name for p in path.glob("*.pt"))
            hint = f" it holds {', '.join(pth[:3])}: convert the original checkpoint first (python hub_scripts/convert_original_checkpoint.py);" if pth else ""
            raise PetCtInputError(path, f"not a model folder (no config.json);{hint} {MODEL_HELP}")
        folder = path
    elif path.exists() or str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise PetCtInputError(source, f"no such model folder; {MODEL_HELP}")
    else:
        folder = _hub_snapshot(str(source))
    model = AutoModelForSemanticSegmentation.from_pretrained(folder)
    return model.to(device).eval()


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.py", "*.md"]))
    except Exception as err:  # offline, not cached, unknown repo, no network: all end in the same advice
        raise PetCtInputError(
            repo_id, f"no local folder of that name and the Hub model could not be loaded ({type(err).__name__}); {MODEL_HELP}"
        ) from None


# --- memory -------------------------------------------------------------------------------------------------------


def peek_geometry(path) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """Shape and voxel size (mm) from the header alone, before any voxel is read; None when not cheaply known."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            img = nib.load(str(path))
            return tuple(img.shape), tuple(float(z) for z in img.header.get_zooms()[:3])
        if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            return tuple(reader.GetSize()), tuple(reader.GetSpacing())
    except Exception:  # unreadable headers are reported by the reader itself, with its own message
        return None
    return None


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


# --- inference ----------------------------------------------------------------------------------------------------


def _channels(config) -> list[int]:
    """Harmonised channel indices (0 PET, 1 CT) the model was trained on, in its order."""
    return [{"PET": 0, "CT": 1}[m] for m in config.modalities]


def use_bf16(precision: str, device) -> bool:
    """Whether to autocast to bf16: asked for, or "auto" and the device has fast bf16 convolution kernels."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _predictor(model, settings: InferenceSettings, device) -> Callable:
    import torch

    flips = [(), (4,), (3,), (3, 4)] if settings.tta else [()]  # dims of (B, C, Z, Y, X): X = left-right, Y = AP
    bf16 = use_bf16(settings.precision, device)

    def predict(window):
        ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        total = None
        with ctx:
            for dims in flips:
                logits = model(window.flip(dims) if dims else window).logits.float()
                logits = logits.flip(dims) if dims else logits
                total = logits if total is None else total + logits
        return total / len(flips)

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
                          on_window: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Class probabilities (C, Z, Y, X) float32 on the harmonised grid from MONAI's sliding-window inferer.

    Logits are blended across windows (as the authors' recipe does), then soft-maxed once. ``on_window(done, total)``
    is called after every batch of windows, so a progress bar can move while the network runs.
    """
    import torch
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    roi = tuple(int(r) for r in (settings.roi_size or model.config.crop_size))
    x = torch.from_numpy(np.ascontiguousarray(image[_channels(model.config)]))[None]
    predict = _predictor(model, settings, device)
    if on_window is not None:
        predict = _counting(predict, window_count(x.shape[2:], roi, settings.overlap), on_window)
    with torch.inference_mode():
        logits = sliding_window_inference(
            x, roi, settings.sw_batch_size, predict, overlap=settings.overlap, mode=settings.mode, sw_device=device,
            device="cpu",
        )
        return torch.softmax(logits[0], dim=0).numpy()


def to_native_mask(harmonized, probabilities: np.ndarray) -> np.ndarray:
    """Argmax on the native PET grid of linearly resampled probabilities; outside the body crop = background."""
    if probabilities.shape[0] == 2:  # p1 > p0 <=> p1 > 0.5, and linear interpolation preserves p0 + p1 = 1
        return (harmonized.to_native(probabilities[1], order="linear", fill=0.0) > 0.5).astype(np.uint8)
    return np.argmax(harmonized.to_native_probabilities(probabilities), axis=0).astype(np.uint8)


def segment_study(
    pet,
    ct,
    model,
    *,
    device: str = "cpu",
    fast: bool = False,
    tta: bool = False,
    settings: InferenceSettings | None = None,
    keep_probabilities: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> SegmentationResult:
    """Segment lesions of one study; ``pet``/``ct`` are paths (NIfTI, MHA, DICOM folder) or Volumes.

    ``settings`` overrides ``fast``/``tta``. Nothing is written: see ``write_outputs`` / ``petct segment``.
    """
    from .data.harmonize import harmonize
    from .data.io import read_ct, read_pet

    report = progress or (lambda fraction, message: None)
    settings = settings or replace(InferenceSettings.fast() if fast else InferenceSettings(), tta=tta)
    config = model.config
    timings = {}
    t0 = time.perf_counter()
    report(0.0, "reading")
    for value in (pet, ct):
        if not isinstance(value, Volume) and not Path(value).exists():
            raise PetCtInputError(value, "no such file or folder")
    if not isinstance(pet, Volume) and not isinstance(ct, Volume):
        check_memory(pet, ct, config)
    pet = pet if isinstance(pet, Volume) else read_pet(pet)
    ct = ct if isinstance(ct, Volume) else read_ct(ct)
    timings["read_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    report(0.1, "harmonising")
    study = harmonize(pet, ct, spacing=config.target_spacing, normalization=config.normalization)
    timings["harmonize_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report(0.2, "inference")
    probs = predict_probabilities(model, study.image, settings, device=device,
                                  on_window=lambda done, total: report(0.2 + 0.7 * done / total, f"window {done}/{total}"))
    timings["inference_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report(0.9, "resampling to the PET grid")
    mask = pet.with_array(to_native_mask(study, probs), modality="SEG", units="label")
    timings["to_native_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    report(1.0, "done")
    return SegmentationResult(mask, pet, study, probs if keep_probabilities else None, timings)


def write_outputs(result: SegmentationResult, mask_path, *, stats_csv=None, stats_json=None, dicom_seg=None,
                  model_name: str = "petct-fm") -> dict:
    """Write the mask (PET grid, PET header reused) and the optional lesion table / DICOM SEG, all or nothing.

    Everything is computed in memory first; each file goes to a temporary name and is renamed only after every
    file was written, so a refused input or a failed writer leaves no output behind. Returns the study totals.
    """
    from .data.io import write_volume
    from .quantify import lesion_table, write_lesion_csv, write_lesion_json
    from .atomic import atomic_path

    rows, totals = lesion_table(result.mask, result.pet)
    seg = None
    if dicom_seg is not None:
        from .dicom_seg import build_dicom_seg

        seg = build_dicom_seg(result.mask, result.pet, model_name=model_name)
    with contextlib.ExitStack() as stack:
        write_volume(result.mask, stack.enter_context(atomic_path(mask_path)))
        if stats_csv is not None:
            write_lesion_csv(stack.enter_context(atomic_path(stats_csv)), rows)
        if stats_json is not None:
            write_lesion_json(stack.enter_context(atomic_path(stats_json)), rows, totals)
        if seg is not None:
            seg.save_as(stack.enter_context(atomic_path(dicom_seg)))
    return totals
