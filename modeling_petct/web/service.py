"""What the demo does with one study, without any UI: check the uploads, segment, quantify, render, write downloads.

Kept apart from the Gradio layout (``gradio_app.py``) so the whole request path is testable without a browser and the
UI stays a thin shell. Each browser session owns one ``DemoSession``: a private temporary folder (removed when the
page closes) and the arrays the slice sliders re-render from.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.volume import Volume
from ..errors import PetCtInputError
from .uploads import UploadLimits, prepare_upload
from ..outputs.pictures import fused_slice, pet_mip_overlay, resample_like, slice_count, to_ras

NOT_A_DEVICE = "Research demo, not a medical device: do not use it for diagnosis or treatment decisions."
TABLE_COLUMNS = {  # lesion_table key -> column title shown in the UI
    "id": "Lesion",
    "volume_ml": "Volume (ml)",
    "suv_max": "SUVmax",
    "suv_mean": "SUVmean",
    "suv_peak": "SUVpeak",
    "tlg": "TLG (SUV·ml)",
}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelShelf:
    """The models the operator offers (label -> local folder or Hub id), each loaded once, on first use."""

    def __init__(self, models: dict[str, str], device: str | None = None):
        self.models = dict(models)
        self.device = device or default_device()
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, label: str):
        if not self.models:
            raise PetCtInputError("model", "no model is configured on this demo (see the line under the model list)")
        if label not in self.models:
            raise PetCtInputError(label or "model", "no such model on this demo; pick one from the list")
        with self._lock:
            if label not in self._loaded:
                from ..inference import load_segmentation_model

                self._loaded = {label: load_segmentation_model(self.models[label], self.device)}  # keep one in memory
            return self._loaded[label]

    def describe(self, label: str | None) -> str:
        """A line for the UI saying plainly which model will run (and that none is configured, if so)."""
        if not self.models:
            return (
                "**No model configured.** Start the demo with `petct demo --model DIR_OR_HUB_ID` "
                "(e.g. the model that `petct quickstart` trains), or set `PETCT_DEMO_MODELS` on a Space."
            )
        if label not in self.models:
            return "Pick a model."
        line = f"**Model:** `{label}` from `{self.models[label]}`, running on **{self.device}**."
        model = self._loaded.get(label)
        if model is not None:
            config = model.config
            n_params = sum(p.numel() for p in model.parameters()) / 1e6
            line += f" Backbone `{config.backbone}`, {n_params:.1f} M parameters, inputs {'+'.join(config.modalities)}."
        return line


@dataclass
class StudyView:
    """A segmented study on the PET grid, RAS+ voxel order, ready for slice-by-slice rendering."""

    suv: Volume
    ct: Volume
    mask: Volume

    @classmethod
    def build(cls, suv: Volume, ct: Volume, mask: Volume) -> "StudyView":
        return cls(to_ras(suv), to_ras(resample_like(ct, suv, fill=-1024.0)), to_ras(mask))

    def count(self, plane: str) -> int:
        return slice_count(self.suv, plane)

    def render(self, plane: str, index: int) -> np.ndarray:
        index = int(np.clip(index, 0, self.count(plane) - 1))
        return fused_slice(self.suv, self.ct, self.mask, plane=plane, index=index)


@dataclass
class DemoResult:
    view: StudyView
    mip: np.ndarray
    rows: list[dict]
    totals: dict
    mask_path: Path
    csv_path: Path
    summary: str

    def table(self) -> list[list]:
        """Rows for the UI table, columns ``TABLE_COLUMNS``, rounded for reading."""
        return [[r["id"]] + [round(float(r[key]), 2) for key in list(TABLE_COLUMNS)[1:]] for r in self.rows]


@dataclass
class DemoSession:
    """One browser session's private folder and its last segmented study."""

    workdir: Path
    view: StudyView | None = None
    _runs: int = field(default=0, repr=False)

    @classmethod
    def open(cls, root: str | Path) -> "DemoSession":
        Path(root).mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="session-", dir=root)))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def fresh_dir(self, name: str) -> Path:
        """A new empty folder for one request; the previous request's outputs of this session are deleted."""
        for old in self.workdir.glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._runs += 1
        out = self.workdir / f"{name}-{self._runs}"
        out.mkdir()
        return out

    def example(self, seed: int) -> tuple[Path, Path]:
        """A synthetic PET/CT pair from the phantom generator (deterministic in ``seed``), written as NIfTI."""
        from ..data.synthetic.phantom import make_phantom, write_study

        study = write_study(make_phantom(seed, size="small"), self.fresh_dir("example") / f"phantom_seed{seed}")
        return study / "PET.nii.gz", study / "CT.nii.gz"


class DemoSessions:
    """Open sessions by id (the browser's session hash), each with its own folder under ``root``.

    A session is closed (its folder deleted) when its page goes away, or, for clients that never say goodbye, when
    more than ``max_sessions`` are open (oldest first), so strangers cannot fill the disk.
    """

    def __init__(self, root: str | Path, max_sessions: int = 16):
        self.root = Path(root)
        self.max_sessions = max_sessions
        self._open: OrderedDict[str, DemoSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> DemoSession:
        with self._lock:
            if session_id not in self._open:
                self._open[session_id] = DemoSession.open(self.root)
                while len(self._open) > self.max_sessions:
                    self._open.popitem(last=False)[1].close()
            self._open.move_to_end(session_id)
            return self._open[session_id]

    def find(self, session_id: str) -> DemoSession | None:
        with self._lock:
            return self._open.get(session_id)

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self._open.pop(session_id, None)
        if session is not None:
            session.close()


def run_study(
    pet_upload: str | Path,
    ct_upload: str | Path,
    model,
    session: DemoSession,
    *,
    device: str = "cpu",
    limits: UploadLimits = UploadLimits(),
    progress=None,
) -> DemoResult:
    """Check and read the two uploads, segment, quantify, and write the mask (NIfTI, PET grid) and the table (CSV).

    ``progress(fraction, desc)`` (e.g. ``gr.Progress``) is told how far the request is. Bad uploads raise
    ``PetCtInputError`` naming the file; extracted files are removed before this returns.
    """
    from ..data.io import read_ct, read_pet, write_volume
    from ..inference import segment_study
    from ..outputs.lesions import lesion_table, write_lesion_csv

    report = progress if progress is not None else (lambda fraction, desc=None: None)  # gr.Progress is falsy
    started = time.perf_counter()
    out = session.fresh_dir("result")
    report(0.0, desc="checking the uploads")
    with tempfile.TemporaryDirectory(dir=session.workdir) as scratch:
        pet = read_pet(prepare_upload(pet_upload, Path(scratch) / "pet", limits))
        ct = read_ct(prepare_upload(ct_upload, Path(scratch) / "ct", limits))
    report(0.1, desc="segmenting")
    result = segment_study(pet, ct, model, device=device, progress=_scaled(report, 0.1, 0.85))
    mask = result.mask
    report(0.85, desc="measuring lesions")
    rows, totals = lesion_table(mask, pet)
    mask_path = write_volume(mask, out / "lesion_mask.nii.gz", like=pet)
    csv_path = out / "lesions.csv"
    write_lesion_csv(csv_path, rows)
    report(0.92, desc="rendering")
    view = StudyView.build(pet, ct, mask)
    mip = pet_mip_overlay(pet, mask)
    summary = (
        f"**{totals['lesion_count']} lesion(s)**, total MTV {totals['total_mtv_ml']:.1f} ml, "
        f"total TLG {totals['total_tlg']:.1f} SUV·ml. PET grid {pet.shape}, "
        f"{time.perf_counter() - started:.1f} s on {device}. {NOT_A_DEVICE}"
    )
    report(1.0, desc="done")
    return DemoResult(view, mip, rows, totals, mask_path, csv_path, summary)


def _scaled(report, start: float, stop: float):
    """Map a sub-task's progress (0..1) onto [start, stop] of the whole request."""

    def inner(fraction, desc=None):
        report(start + (stop - start) * float(fraction), desc=desc)

    return inner
