"""Clicks simulated from a ground truth on the harmonised grid, by autoPET IV's rules, and from a prediction's errors;
used alike by training (training/interaction.py) and by the interactive evaluation protocols (evaluation/).

- foreground: the centre (deepest voxel, by the distance transform) of each ground-truth lesion component, in a
  random order of components; more clicks than components fall on random voxels of the components;
- background: the centres of hot non-lesion regions (PET above the ``hot_quantile`` of the non-lesion voxels), else
  random non-lesion voxels;
- errors: one foreground click at the centre of the largest missed lesion part, one background click at the centre
  of the largest false positive.
A click is (channel, (z, y, x)): channel 0 foreground ("tumor"), 1 background (data/clicks.py's CLICK_KINDS).
"""

from __future__ import annotations

import numpy as np

from .clicks import CLICK_KINDS
from .geometry import LESION_CONNECTIVITY

FOREGROUND, BACKGROUND = range(len(CLICK_KINDS))


Part = tuple[tuple[slice, ...], np.ndarray]  # a component: its bounding box and its mask inside that box


def components(mask: np.ndarray) -> list[Part]:
    """The 18-connected components of ``mask`` (autoPET's lesions), largest first, each as (box, mask in the box)."""
    import cc3d
    from scipy import ndimage

    labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=LESION_CONNECTIVITY, return_N=True)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    return [(boxes[k], labels[boxes[k]] == k + 1) for k in np.argsort(-sizes, kind="stable")]


def centre(part: Part) -> tuple[int, int, int]:
    """The component's deepest voxel (largest distance to its outside): inside it even when it is not convex."""
    from scipy import ndimage

    box, inside = part
    depth = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1, 1:-1]
    return tuple(int(i + s.start) for i, s in zip(np.unravel_index(np.argmax(depth), depth.shape), box))


def _clicks_in(parts: list[Part], n: int, rng: np.random.Generator, shuffle: bool = True
               ) -> list[tuple[int, int, int]]:
    """``n`` clicks: the centres of the parts (in a random order, or largest first), then random voxels of random
    parts."""
    if not parts or n <= 0:
        return []
    order = rng.permutation(len(parts)) if shuffle else range(len(parts))
    clicks = [centre(parts[i]) for i in list(order)[:n]]
    for _ in range(n - len(clicks)):
        box, inside = parts[int(rng.integers(len(parts)))]
        voxel = np.argwhere(inside)[rng.integers(int(inside.sum()))]
        clicks.append(tuple(int(v + s.start) for v, s in zip(voxel, box)))
    return clicks


def ground_truth_clicks(label: np.ndarray, pet: np.ndarray | None, n_fg: int, n_bg: int, rng: np.random.Generator,
                        hot_quantile: float = 0.99) -> list[tuple[int, tuple[int, int, int]]]:
    """(channel, (z, y, x)) clicks on a volume or crop by autoPET IV's rules (see the module docstring); background
    clicks go to the largest hot regions first."""
    lesion = label > 0
    clicks = [(FOREGROUND, c) for c in _clicks_in(components(lesion), n_fg, rng)]
    outside = ~lesion
    hot: list[Part] = []
    if pet is not None and outside.any() and n_bg > 0:
        hot = components(outside & (pet > np.quantile(pet[outside], hot_quantile)))
    if len(hot) < n_bg and outside.any():  # not enough hot regions: the rest anywhere outside the lesions
        everywhere = (tuple(slice(0, n) for n in label.shape), outside)
        hot = hot + [everywhere] * (n_bg - len(hot))
    return clicks + [(BACKGROUND, c) for c in _clicks_in(hot, n_bg, rng, shuffle=False)]


def error_clicks(prediction: np.ndarray, label: np.ndarray) -> list[tuple[int, tuple[int, int, int]]]:
    """One foreground click at the centre of the largest missed lesion part and one background click at the centre
    of the largest false positive (each where there is one)."""
    return [(channel, centre(error)) for channel, error in largest_errors(prediction, label)]


def largest_errors(prediction: np.ndarray, label: np.ndarray) -> list[tuple[int, Part]]:
    """(channel, largest component) of the misses (foreground) and of the false positives (background), where any."""
    truth, predicted = label > 0, prediction > 0
    out = []
    for channel, error in ((FOREGROUND, truth & ~predicted), (BACKGROUND, predicted & ~truth)):
        if error.any():
            out.append((channel, components(error)[0]))
    return out
