"""nnU-Net v2's predictor, reproduced for models imported from an nnU-Net results folder (config.nnunet).

Steps, in nnU-Net's order (nnunetv2 2.8: preprocessing/preprocessors/default_preprocessor.py, inference/
predict_from_raw_data.py, inference/export_prediction.py): channels in the model's order on the reader's array axes;
crop to the box of voxels that are nonzero in any channel (holes filled); normalise each channel at native
resolution; resample to the plans' spacing (order 3, or in-plane order 3 and order 0 along an axis coarser than 3x
the finest); sliding window at half-patch steps weighted by a Gaussian (sigma = patch / 8) and accumulated in
float16; mirrored inputs averaged as logits; folds averaged as logits; logits resampled back linearly; softmax;
argmax; pasted into the crop box.

``NnUNetRecipe.parity()`` follows every step (the parity tests compare it with nnunetv2 itself);
``NnUNetRecipe.fast()`` is approximate: trilinear torch resampling, no mirroring, non-overlapping windows, fp32.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ANISOTROPY = 3.0  # nnU-Net's ANISO_THRESHOLD: a spacing ratio above it resamples the coarse axis separately


@dataclass(frozen=True)
class NnUNetRecipe:
    """How an imported nnU-Net model predicts. ``resampling``: "nnunet" (scipy splines exactly as nnU-Net's skimage
    calls) or "torch" (trilinear, approximate). ``step``: window step as a fraction of the patch (nnU-Net 0.5).
    ``mirroring``: average over the checkpoint's mirror axes. ``half_accumulation``: blend windows in float16 as
    nnU-Net does (float32 otherwise)."""

    step: float = 0.5
    mirroring: bool = True
    resampling: str = "nnunet"
    half_accumulation: bool = True
    approximate: bool = False

    def __post_init__(self):
        if not 0 < self.step <= 1:
            raise ValueError(f"NnUNetRecipe.step: must lie in (0, 1], got {self.step}")
        if self.resampling not in ("nnunet", "torch"):
            raise ValueError(f"NnUNetRecipe.resampling: 'nnunet' or 'torch', got {self.resampling!r}")

    @classmethod
    def parity(cls, mirroring: bool = True) -> "NnUNetRecipe":
        return cls(mirroring=mirroring)

    @classmethod
    def fast(cls) -> "NnUNetRecipe":
        return cls(step=1.0, mirroring=False, resampling="torch", half_accumulation=False, approximate=True)


@dataclass
class Prepared:
    """The network's input (C, z, y, x on the plans' grid) and what it takes to map outputs back."""

    data: np.ndarray
    shape_before_crop: tuple[int, ...]
    box: tuple[slice, ...]
    native_spacing: tuple[float, ...]  # of the cropped array, after transpose_forward


# -- input channels -------------------------------------------------------------------------------------------------

def _to_array_order(config, array: np.ndarray) -> np.ndarray:
    """A Volume array (i, j, k) -> the nnU-Net reader's axes, then the plans' transpose_forward."""
    recipe = config.nnunet
    if recipe["array_order"] == "sitk":
        array = array.transpose(2, 1, 0)
    return array.transpose(recipe["transpose_forward"])


def _from_array_order(config, array: np.ndarray) -> np.ndarray:
    recipe = config.nnunet
    lead = array.ndim - 3
    back = np.argsort(recipe["transpose_forward"])
    array = array.transpose(*range(lead), *(lead + back))
    return array.transpose(*range(lead), *(lead + np.array([2, 1, 0]))) if recipe["array_order"] == "sitk" else array


def input_channels(config, pet, ct, guidance=None) -> tuple[np.ndarray, tuple[float, ...]]:
    """(channels in the model's order on the nnU-Net array axes, their spacing) from PET and CT Volumes on one grid.

    ``guidance``: the foreground and background click maps on the PET grid for a model that takes them (zeros when
    not given: no clicks)."""
    images = {"PET": pet.array, "CT": ct.array}
    clicks = list(guidance) if guidance is not None else [np.zeros(pet.shape, np.float32)] * config.guidance_channels
    channels = [images[m] for m in config.modalities] + clicks
    stacked = np.stack([_to_array_order(config, np.asarray(c, np.float32)) for c in channels])
    return stacked, _spacing_in_array_order(config, pet.spacing)


def _spacing_in_array_order(config, spacing_ijk) -> tuple[float, ...]:
    recipe = config.nnunet
    spacing = list(spacing_ijk)[::-1] if recipe["array_order"] == "sitk" else list(spacing_ijk)
    return tuple(float(spacing[i]) for i in recipe["transpose_forward"])


# -- preprocessing --------------------------------------------------------------------------------------------------

def nonzero_box(data: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the voxels nonzero in any channel, holes filled (nnU-Net's crop_to_nonzero)."""
    from scipy.ndimage import binary_fill_holes

    mask = binary_fill_holes((data != 0).any(axis=0))
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def normalize(channel: np.ndarray, scheme: dict) -> np.ndarray:
    """One channel normalised as nnU-Net's scheme class does (float32, the whole cropped image: use_mask_for_norm
    is refused at import)."""
    x = channel.astype(np.float32, copy=True)
    name = scheme["scheme"]
    if name == "CTNormalization":
        np.clip(x, scheme["lower"], scheme["upper"], out=x)
        x -= scheme["mean"]
        x /= max(scheme["std"], 1e-8)
    elif name == "ZScoreNormalization":
        mean, std = x.mean(), x.std()
        x -= mean
        x /= max(std, 1e-8)
    elif name == "RescaleTo01Normalization":
        x -= x.min()
        x /= np.clip(x.max(), 1e-8, None)
    elif name != "NoNormalization":
        raise ValueError(f"unknown normalization scheme {name!r}")
    return x


def new_shape(shape, spacing, target) -> tuple[int, ...]:
    return tuple(int(round(s / t * n)) for n, s, t in zip(shape, spacing, target))


def separate_axis(current, target, force: bool | None = None) -> int | None:
    """The axis nnU-Net resamples on its own (with order_z), or None: the coarse axis of whichever spacing is more
    than 3x anisotropic (the current one first); none when two axes tie for coarsest."""
    if force is False:
        return None
    for spacing in ((current,) if force else (current, target)):
        spacing = np.asarray(spacing, float)
        if force or spacing.max() / spacing.min() > ANISOTROPY:
            axes = np.flatnonzero(spacing.max() / spacing == 1)
            return int(axes[0]) if len(axes) == 1 else None
    return None


def _spline_resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    """skimage.transform.resize(image, shape, order, mode="edge", anti_aliasing=False), which nnU-Net calls: scipy's
    zoom on pixel areas (grid_mode), edge values repeated, clipped to the input's range."""
    from scipy import ndimage

    zoom = [n / o for n, o in zip(shape, image.shape)]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    return np.clip(out, image.min(), image.max(), out=out)


def _axis_resize(image: np.ndarray, axis: int, size: int, order: int) -> np.ndarray:
    """Resample one axis only (pixel-area coordinates, edge repeated): nnU-Net's order_z step."""
    from scipy import ndimage

    zoom = [1.0] * image.ndim
    zoom[axis] = size / image.shape[axis]
    return ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)


def resample(data: np.ndarray, shape, current, target, order: int, order_z: int, force: bool | None = None,
             out_dtype=None) -> np.ndarray:
    """nnU-Net's resample_data_or_seg_to_shape for images and logits (C, z, y, x), computed in float64; channels in
    parallel threads (scipy's splines release the GIL), each exactly as nnU-Net computes it."""
    from concurrent.futures import ThreadPoolExecutor

    shape = tuple(int(s) for s in shape)
    if tuple(data.shape[1:]) == shape:
        return data
    axis = separate_axis(current, target, force)
    out = np.empty((data.shape[0], *shape), out_dtype or data.dtype)

    def one(c: int) -> None:
        channel = data[c].astype(np.float64)
        if axis is None:
            out[c] = _spline_resize(channel, shape, order)
            return
        in_plane = tuple(s for a, s in enumerate(shape) if a != axis)
        slices = np.stack([_spline_resize(s, in_plane, order) for s in np.moveaxis(channel, axis, 0)], axis=axis)
        out[c] = slices if slices.shape[axis] == shape[axis] else _axis_resize(slices, axis, shape[axis], order_z)

    with ThreadPoolExecutor(max_workers=max(1, min(len(data), os.cpu_count() or 1))) as pool:
        list(pool.map(one, range(len(data))))
    return out


def _torch_resize(data: np.ndarray, shape) -> np.ndarray:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(data, np.float32))[None]
    return torch.nn.functional.interpolate(tensor, size=tuple(int(s) for s in shape), mode="trilinear",
                                           align_corners=False)[0].numpy()


def prepare(config, channels: np.ndarray, spacing, recipe: NnUNetRecipe) -> Prepared:
    """Crop, normalise at native resolution, resample to the plans' spacing."""
    plan = config.nnunet
    box = nonzero_box(channels)
    cropped = channels[(slice(None), *box)]
    data = np.stack([normalize(c, s) for c, s in zip(cropped, plan["normalization"])])
    target = tuple(config.target_spacing)
    shape = new_shape(data.shape[1:], spacing, target)
    if recipe.resampling == "torch":
        data = _torch_resize(data, shape) if tuple(data.shape[1:]) != shape else data
    else:
        r = plan["resampling"]
        data = resample(data, shape, spacing, target, r["order"], r["order_z"], r["force_separate_z"])
    return Prepared(np.ascontiguousarray(data, np.float32), tuple(channels.shape[1:]), box, tuple(spacing))


# -- sliding window -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def gaussian_weights(patch: tuple[int, ...]) -> np.ndarray:
    """nnU-Net's importance map: a unit impulse at the patch centre blurred with sigma = patch / 8, scaled to a
    maximum of 10, zeros raised to the smallest nonzero value (float16 as nnU-Net keeps it)."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0)
    weights = (weights / (weights.max() / 10)).astype(np.float16)
    weights[weights == 0] = weights[weights != 0].min()
    return weights


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """nnU-Net's tile positions along one axis: as few steps of at most step x patch as cover it, spread evenly."""
    steps = int(np.ceil((size - patch) / (patch * step))) + 1
    if steps == 1:
        return [0]
    stride = (size - patch) / (steps - 1)
    return [int(np.round(stride * i)) for i in range(steps)]


def _pad_to(data: np.ndarray, patch) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero padding up to the patch size, split evenly (the larger half after), as nnU-Net's pad_nd_image."""
    pads = [max(p - n, 0) for n, p in zip(data.shape[1:], patch)]
    widths = [(0, 0)] + [(d // 2, d - d // 2) for d in pads]
    keep = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths[1:], data.shape[1:]))
    return (np.pad(data, widths) if any(pads) else data), keep


def _mirrored(network, x, axes):
    """network(x) averaged with its predictions on every combination of flips along ``axes`` (batched)."""
    import torch

    combos = [()] + [c for i in range(len(axes)) for c in itertools.combinations([a + 2 for a in axes], i + 1)]
    batch = torch.cat([x.flip(c) if c else x for c in combos])
    out = network(batch)
    total = out[0:1].clone()
    for i, c in enumerate(combos[1:], start=1):
        total += out[i:i + 1].flip(c)
    return total / len(combos)


def sliding_window_logits(network, data: np.ndarray, patch, recipe: NnUNetRecipe, mirror_axes=(),
                          heads: int = 2, on_window=None) -> np.ndarray:
    """Gaussian-weighted logits (heads, z, y, x) of ``network`` (tensor -> logits tensor) over ``data``."""
    import torch

    patch = tuple(int(p) for p in patch)
    padded, keep = _pad_to(data, patch)
    dtype = torch.float16 if recipe.half_accumulation else torch.float32
    logits = torch.zeros((heads, *padded.shape[1:]), dtype=dtype)
    weight_sum = torch.zeros(padded.shape[1:], dtype=dtype)
    weights = torch.from_numpy(gaussian_weights(patch)).to(dtype)
    starts = [window_starts(n, p, recipe.step) for n, p in zip(padded.shape[1:], patch)]
    windows = list(itertools.product(*starts))
    x_all = torch.from_numpy(padded)
    axes = tuple(mirror_axes) if recipe.mirroring else ()
    with torch.inference_mode():
        for done, corner in enumerate(windows, start=1):
            region = tuple(slice(s, s + p) for s, p in zip(corner, patch))
            x = x_all[(slice(None), *region)][None].contiguous()
            out = (_mirrored(network, x, axes) if axes else network(x))[0].float().cpu()
            logits[(slice(None), *region)] += out * weights.float()
            weight_sum[region] += weights
            if on_window is not None:
                on_window(done, len(windows))
    logits /= weight_sum
    return logits[(slice(None), *keep)].numpy()


def _heads(config) -> tuple[int, int]:
    """(lesion classes, organ classes: 0 for a model without an organ head)."""
    organs = tuple(getattr(config, "organ_labels", ()) or ())
    return config.num_labels, (1 + len(organs)) if organs else 0


def ensemble_logits(model, data: np.ndarray, recipe: NnUNetRecipe, on_window=None) -> np.ndarray:
    """Each member's sliding-window logits (lesion classes, then organ classes for an organ-aware model), averaged
    (nnU-Net's fold ensemble; float16 sums when it accumulates so)."""
    import torch

    members = list(getattr(model, "members", [model]))
    lesion, organ = _heads(model.config)
    total = None
    for k, member in enumerate(members):
        def network(x, member=member):
            out = member(x.to(device=member.device, dtype=member.dtype))
            return torch.cat([out.logits, out.organ_logits], 1) if organ else out.logits

        report = None if on_window is None else (lambda d, n, k=k: on_window(k * n + d, n * len(members)))
        logits = sliding_window_logits(network, data, model.config.crop_size, recipe,
                                       model.config.nnunet["mirror_axes"], lesion + organ, report)
        total = logits if total is None else total + logits
    if len(members) > 1:
        total = total / np.asarray(len(members), total.dtype)
    return total


# -- back to the native grid ----------------------------------------------------------------------------------------

def _softmax(logits: np.ndarray) -> np.ndarray:
    import torch

    return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits, np.float32)), 0).numpy()


def to_native(config, prepared: Prepared, logits: np.ndarray, recipe: NnUNetRecipe):
    """(class probabilities (C, i, j, k), organ labels (i, j, k) or None) on the Volume's grid: logits resampled to
    the crop, soft-maxed, pasted into the crop box (background probability 1 outside)."""
    crop_shape = tuple(b.stop - b.start for b in prepared.box)
    if recipe.resampling == "torch":
        logits = _torch_resize(logits, crop_shape) if tuple(logits.shape[1:]) != crop_shape else logits
    else:
        r = config.nnunet["resampling"]
        logits = resample(logits, crop_shape, tuple(config.target_spacing), prepared.native_spacing,
                          r["probabilities_order"], r["probabilities_order_z"], r["force_separate_z"])
    lesion, organ = _heads(config)
    inside = (slice(None), *prepared.box)
    probabilities = np.zeros((lesion, *prepared.shape_before_crop), np.float32)
    probabilities[0] = 1.0
    probabilities[inside] = _softmax(logits[:lesion])
    organs = None
    if organ:
        organs = np.zeros(prepared.shape_before_crop, np.uint8)
        organs[prepared.box] = np.argmax(logits[lesion:], axis=0)
        organs = _from_array_order(config, organs[None])[0]
    return _from_array_order(config, probabilities), organs


def ct_on_pet_grid(ct, pet):
    """The CT resampled linearly onto the PET grid (air outside its field of view); as given when already there.
    nnU-Net takes its channels on one grid (autoPET's CTres)."""
    from ..data.geometry import same_grid

    if same_grid(ct.shape, ct.affine, pet.shape, pet.affine):
        return ct
    import SimpleITK as sitk

    from ..data.io import resample_sitk, volume_to_sitk

    img = volume_to_sitk(ct, np.asarray(ct.array, np.float32))
    out = sitk.GetArrayFromImage(resample_sitk(img, pet.affine, pet.shape, sitk.sitkLinear, -1024.0)).T
    return pet.with_array(out.astype(np.float32), modality="CT", units="HU")


def predict(model, pet, ct, recipe: NnUNetRecipe = NnUNetRecipe(), guidance=None, on_window=None, device=None):
    """(class probabilities (C, i, j, k), organ labels or None) on the PET grid of an imported nnU-Net model; the
    argmax of the probabilities is nnU-Net's mask."""
    if device is not None:
        model = model.to(device)
    channels, spacing = input_channels(model.config, pet, ct_on_pet_grid(ct, pet), guidance)
    prepared = prepare(model.config, channels, spacing, recipe)
    logits = ensemble_logits(model, prepared.data, recipe, on_window)
    return to_native(model.config, prepared, logits, recipe)
