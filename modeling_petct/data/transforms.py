"""Training crops straight from the memory-mapped cache, with the paper's augmentation (random zoom 0.9-1.1 with
p = 0.5, pad, random crop) and nnU-Net-style foreground oversampling for segmentation.

A zoomed crop reads only the window it needs (``crop / zoom``) and resizes it (MONAI ``Resized``) to the crop size,
so a sample costs one small read and one small interpolation, never a whole volume. Randomness comes from
``(seed, epoch, index)`` alone: the same sample is produced whichever DataLoader worker draws it, and a resumed run
that calls ``set_epoch`` sees the same crops as the uninterrupted one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.transforms import Resized

from ..seeds import crop_rng
from .cache import LESION_CROP_PROB, StudyCache

DEFAULT_CROP = (96, 128, 128)


class _CacheCrops(torch.utils.data.Dataset):
    """``organ_labels`` (organ names, the model's ``config.organ_labels``): crops also carry ``organ_labels``, the
    cached organ map relabelled to that order (1..N, 0 = other), cut and resized exactly like the lesion labels."""

    def __init__(self, cache, ids: Sequence[str], crop_size=DEFAULT_CROP, with_labels: bool = False,
                 organ_labels: Sequence[str] = ()):
        self.cache = cache if isinstance(cache, StudyCache) else StudyCache(cache)
        self.ids = list(ids)
        self.crop_size = tuple(int(c) for c in crop_size)
        self.with_labels = with_labels
        self.organ_labels = tuple(organ_labels)
        self._open: dict = {}  # per process: study id -> (image memmap, label memmap or None, organ LUT, organs)

    def _arrays(self, study_id: str):
        if study_id not in self._open:
            study = self.cache.load(study_id, mmap=True)
            if self.with_labels and study.label is None:
                raise ValueError(f"study {study_id} in {self.cache.root} has no label")
            lut = None
            if self.organ_labels:
                if study.organs is None:
                    raise ValueError(f"study {study_id} in {self.cache.root} has no organ map, which an organ-aware "
                                     "model needs (harmonise it with its TotalSegmentator output, data/organs.py)")
                from .organs import organ_names, relabel

                lut = relabel(np.arange(len(organ_names(study.organ_names)) + 1), organ_names(study.organ_names),
                              self.organ_labels).astype(np.int64)
            self._open[study_id] = (study.image, study.label, lut, study.organs)
        return self._open[study_id]

    def _window(self, study_id: str, start, size) -> dict:
        """The window [start, start + size) as tensors, zero-padded where it leaves the volume."""
        image, label, lut, organs = self._arrays(study_id)
        shape = image.shape[1:]
        src = tuple(slice(max(0, s), min(n, s + w)) for s, w, n in zip(start, size, shape))
        dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
        inside = all(a.stop - a.start == w for a, w in zip(src, size))
        alloc = np.empty if inside else np.zeros  # padding only where the window leaves the volume
        img = alloc((image.shape[0], *size), image.dtype)
        img[(slice(None), *dst)] = image[(slice(None), *src)]  # reads just this window
        out = {"pixel_values": torch.from_numpy(img).float()}  # torch casts a float16 cache fast; float32 is a no-op
        if self.with_labels:
            lab = alloc((1, *size), np.int64)
            lab[(0, *dst)] = label[src]
            out["labels"] = torch.from_numpy(lab)
        if lut is not None:
            org = alloc((1, *size), np.int64)
            org[(0, *dst)] = lut[organs[src]]
            out["organ_labels"] = torch.from_numpy(org)
        return out

    def _finish(self, sample: dict) -> dict:
        for key in ("labels", "organ_labels"):
            if key in sample:
                sample[key] = sample[key][0].long()
        return sample


class _RandomCrops(_CacheCrops):
    """One random crop per study per epoch (the paper's sampling), optionally zoomed."""

    def __init__(self, cache, ids, crop_size=DEFAULT_CROP, augment=True, seed=0, *, with_labels=False,
                 zoom_range=(0.9, 1.1), zoom_prob=0.5, organ_labels=()):
        super().__init__(cache, ids, crop_size, with_labels, organ_labels)
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        self.zoom_range, self.zoom_prob = zoom_range, zoom_prob
        keys, modes, corners = ["pixel_values"], ["trilinear"], [False]
        for key in ("labels",) * with_labels + ("organ_labels",) * bool(self.organ_labels):
            keys, modes, corners = keys + [key], modes + ["nearest"], corners + [None]
        self._resize = Resized(keys, spatial_size=self.crop_size, mode=modes, align_corners=corners)

    def set_epoch(self, epoch: int) -> None:
        """Make crops a function of (seed, epoch, index); call at the start of every epoch (and after resuming)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def rng(self, index: int) -> np.random.Generator:
        return crop_rng(self.seed, self.epoch, index)

    def _centre(self, rng, study_id, shape):  # uniform over the volume; overridden for foreground sampling
        return None

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        study_id = self.ids[index]
        shape = self._arrays(study_id)[0].shape[1:]
        zoom = 1.0
        if self.augment and rng.random() < self.zoom_prob:
            zoom = float(rng.uniform(*self.zoom_range))
        size = tuple(max(1, int(round(c / zoom))) for c in self.crop_size)
        centre = self._centre(rng, study_id, shape)
        start = []
        for axis, (w, n) in enumerate(zip(size, shape)):
            lo, hi = min(0, n - w), max(0, n - w)  # windows stay inside the volume where it is large enough
            s = int(rng.integers(lo, hi + 1)) if centre is None else int(np.clip(centre[axis] - w // 2, lo, hi))
            start.append(s)
        sample = self._window(study_id, start, size)
        if size != self.crop_size:
            sample = self._resize(sample)
            sample = {k: v.as_tensor() if hasattr(v, "as_tensor") else v for k, v in sample.items()}
        return self._finish(sample)


class MaeCropDataset(_RandomCrops):
    """Random crops for masked-autoencoder pretraining: ``{"pixel_values": float32 (2, D, H, W)}``."""

    def __init__(self, cache, ids, crop_size=DEFAULT_CROP, augment=True, seed=0, **kw):
        super().__init__(cache, ids, crop_size, augment, seed, with_labels=False, **kw)


class SegCropDataset(_RandomCrops):
    """Random crops for segmentation with ``labels`` int64 (D, H, W).

    ``fg_prob`` is the chance a crop is centred on a random lesion voxel (studies without lesions always get a
    uniform crop). 0.0 is the paper's protocol (plain random crops); the default 0.33 is nnU-Net's oversampling.
    """

    def __init__(self, cache, ids, crop_size=DEFAULT_CROP, augment=True, fg_prob=LESION_CROP_PROB, seed=0, **kw):
        super().__init__(cache, ids, crop_size, augment, seed, with_labels=True, **kw)
        self.fg_prob = float(fg_prob)
        self._fg: dict = {}

    def _centre(self, rng, study_id, shape):
        if self.fg_prob <= 0 or rng.random() >= self.fg_prob:
            return None
        if study_id not in self._fg:
            self._fg[study_id] = self.cache.foreground(study_id)
        pts = self._fg[study_id]
        return None if len(pts) == 0 else pts[rng.integers(len(pts))]


class ValCropDataset(_CacheCrops):
    """Deterministic crops tiling every study on a regular grid (no augmentation), for validation losses/metrics."""

    def __init__(self, cache, ids, crop_size=DEFAULT_CROP, *, overlap=0.0, with_labels=True, max_per_study=None,
                 organ_labels=()):
        super().__init__(cache, ids, crop_size, with_labels, organ_labels)
        self.items = []
        for sid in self.ids:
            starts = grid_starts(self.cache.info(sid)["shape"], self.crop_size, overlap)
            self.items += [(sid, s) for s in starts[:max_per_study]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sid, start = self.items[index]
        return self._finish(self._window(sid, start, self.crop_size))


def grid_starts(shape, crop_size, overlap=0.0) -> list[tuple[int, ...]]:
    """Window origins covering ``shape``; a volume smaller than the crop gets one centred (padded) window."""
    per_axis = []
    for n, w in zip(shape, crop_size):
        if n <= w:
            per_axis.append([-((w - n) // 2)])
            continue
        step = max(1, int(w * (1 - overlap)))
        s = list(range(0, n - w, step)) + [n - w]
        per_axis.append(sorted(set(s)))
    return [(a, b, c) for a in per_axis[0] for b in per_axis[1] for c in per_axis[2]]
