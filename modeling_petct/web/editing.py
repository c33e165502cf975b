"""Editing a segmentation in the Space: add a lesion, mark a false positive, remove a lesion, undo, reset.

The mask is always the replay of the edits on the model's own result, so undo and reset are exact. With a
click-guided model, "add" and "false positive" clicks go to the model (re-run with every click so far, as trained);
the lesion under a false-positive click is then removed as well, and an "add" on a lesion the model still leaves
empty (none of the hot region under the click in its mask) gets the classical region below, so the user's word is
final. Without click inputs, "add" takes the hot region under the click at 41% of its SUVmax (the classical tool,
inference/isocontour.py). "remove" (a table row) takes the lesion away. Edits are kept as world points (RAS mm),
so they do not depend on how a picture was drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..data.clicks import Click
from ..data.volume import Volume
from ..inference.isocontour import isocontour_edit

EDITS = {"add": "tumor", "false positive": "background", "remove": None}  # edit kind -> model click kind
REFINED_KEPT = 4  # model masks kept per study (by their clicks): undoing recent clicks re-runs nothing


@dataclass(frozen=True)
class Edit:
    kind: str  # a key of EDITS
    world: tuple[float, float, float]  # RAS mm


@dataclass
class MaskEditor:
    """The edited mask of one study on its native PET grid (``pet``: SUV). ``refine(clicks)``, for a click-guided
    model, gives the model's mask for a list of data.clicks.Click; None for models without click inputs."""

    pet: Volume
    base: np.ndarray  # the model's mask without edits (uint8, PET grid)
    refine: Callable[[list[Click]], np.ndarray] | None = None
    edits: list[Edit] = field(default_factory=list)
    _refined: dict = field(default_factory=dict, repr=False)

    def voxel(self, world) -> tuple[int, int, int]:
        ijk = np.linalg.solve(self.pet.affine[:3, :3], np.asarray(world, float) - self.pet.affine[:3, 3])
        return tuple(int(v) for v in np.clip(np.rint(ijk), 0, np.asarray(self.pet.shape) - 1))

    def world(self, voxel) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.pet.affine[:3, :3] @ np.asarray(voxel, float) + self.pet.affine[:3, 3])

    def apply(self, kind: str, voxel) -> None:
        if kind not in EDITS:
            raise ValueError(f"edit must be one of {sorted(EDITS)}, got {kind!r}")
        self.edits.append(Edit(kind, self.world(voxel)))

    def undo(self) -> Edit | None:
        return self.edits.pop() if self.edits else None

    def reset(self) -> None:
        self.edits.clear()

    def mask(self) -> np.ndarray:
        """The model's result (re-run with the clicks, for a click-guided model), then each edit in order."""
        clicks = [(0 if edit.kind == "add" else 1, self.voxel(edit.world)) for edit in self.edits]
        return isocontour_edit(self._model_mask(), np.asarray(self.pet.array, np.float32), clicks, self.pet.spacing,
                               where_missed=self.refine is not None)  # a guided model's answer stands

    def _model_mask(self) -> np.ndarray:
        clicks = [Click(EDITS[e.kind], e.world) for e in self.edits if self.refine is not None and EDITS[e.kind]]
        if not clicks:
            return self.base
        key = tuple(clicks)
        if key not in self._refined:
            self._refined[key] = self.refine(clicks)
            while len(self._refined) > REFINED_KEPT:
                self._refined.pop(next(iter(self._refined)))
        return self._refined[key]
