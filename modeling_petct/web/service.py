"""What the demo does with one study, without any UI: check the uploads, segment, quantify, render, write downloads.

Kept apart from the Gradio layout (``app.py``) so the whole request path is testable without a browser and the UI
stays a thin shell. Each browser session owns one ``DemoSession``: a private folder (removed when the page closes)
holding its downloads and pictures, the uploads it received, and its last result. A result is frozen: it keeps the
facts of the model that produced it (name, training data, validation score) whatever the model list says later.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.volume import Volume
from ..errors import PetCtInputError, PetCtWarning
from ..outputs.lesions import DECIMALS
from ..outputs.pictures import fused_slice, pet_mip_overlay, resample_like, slice_count, slice_voxel, to_ras
from .editing import MaskEditor
from .uploads import UPLOAD_SUFFIXES, UploadLimits, prepare_upload

NOT_A_DEVICE = "Research demo, not a medical device: do not use it for diagnosis or treatment decisions."
TABLE_COLUMNS = {  # lesion_table key -> column title shown in the UI
    "id": "#",
    "volume_ml": "Volume (ml)",
    "suv_max": "SUVmax",
    "suv_mean": "SUVmean",
    "suv_peak": "SUVpeak",
    "tlg": "TLG (SUV·ml)",
    "location": "Location (patient mm)",
}
ORGAN_COLUMN = "Organ"
SORT_KEYS = {"Volume": "volume_ml", "SUVmax": "suv_max", "Lesion number": "id"}
DEFAULT_SUV_WINDOW = 10.0


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fmt(key: str, value: float) -> str:
    """A quantity as the whole demo writes it (table, summary, CSV): fixed decimals per quantity."""
    return f"{float(value):.{DECIMALS[key]}f}"


@dataclass(frozen=True)
class ModelFacts:
    """What a reader must know about the model behind a result; copied into each result when it is made."""

    label: str
    location: str
    training_data: str
    synthetic: bool | None  # None: not recorded with the model
    validation: str

    def markdown(self) -> str:
        data = f"trained on **{self.training_data}**" if self.synthetic is not False else f"trained on {self.training_data}"
        return f"`{self.label}` · {data} · {self.validation}"


def read_model_facts(label: str, location: str) -> ModelFacts:
    """Facts from the files a run leaves: ``training_summary.json`` (the validation score the model was selected on)
    in the folder, and the quickstart marker above it (quickstart models are trained on synthetic phantoms only)."""
    from ..training.results import QUICKSTART_MARKER, SELECTION_SHORT

    folder = Path(location)
    if not folder.is_dir():
        return ModelFacts(label, location, "data not recorded here (see its model card)", None, "no validation score")
    validation = "no validation score recorded"
    summary = folder / "training_summary.json"
    try:
        selected = json.loads(summary.read_text()) if summary.is_file() else {}
        if selected.get("value") is not None:
            metric = SELECTION_SHORT.get(selected.get("selected_on"), f"validation {selected.get('selected_on')}")
            validation = f"{metric} {float(selected['value']):.3f}"
    except (OSError, ValueError, TypeError):
        pass
    if any((parent / QUICKSTART_MARKER).is_file() for parent in (folder, *folder.resolve().parents)):
        return ModelFacts(label, location, "synthetic phantoms only (petct quickstart)", True, validation)
    return ModelFacts(label, location, "data not recorded with the model", None, validation)


class ModelShelf:
    """The models the operator offers (label -> local folder or Hub id), each loaded once, on first use, and bound
    to the default inference settings and the shelf's device (a ``Segmenter``)."""

    def __init__(self, models: dict[str, str], device: str | None = None):
        self.models = dict(models)
        self.device = device or default_device()
        self.facts = {label: read_model_facts(label, location) for label, location in self.models.items()}
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, label: str):
        if not self.models:
            raise PetCtInputError("model", "no model is configured on this demo (see the line under the model list)")
        if label not in self.models:
            raise PetCtInputError(label or "model", "no such model on this demo; pick one from the list")
        with self._lock:
            if label not in self._loaded:
                from ..inference import Segmenter, load_segmentation_model
                from ..inference.loading import model_label

                model = load_segmentation_model(self.models[label], self.device)
                segmenter = Segmenter(model, device=self.device, name=model_label(self.models[label]))
                self._loaded = {label: segmenter}  # keep one in memory
            return self._loaded[label]

    def describe(self, label: str | None) -> str:
        """Lines for the UI saying plainly which model will run (and that none is configured, if so)."""
        if not self.models:
            return (
                "**No model configured.** Start the demo with `petct demo --model DIR_OR_HUB_ID` "
                "(e.g. the model that `petct quickstart` trains), or set `PETCT_DEMO_MODELS` on a Space."
            )
        if label not in self.models:
            return "Pick a model."
        line = f"{self.facts[label].markdown()} · runs on **{self.device}**."
        segmenter = self._loaded.get(label)
        if segmenter is not None:
            model = segmenter.model
            config = model.config
            n_params = sum(p.numel() for p in model.parameters()) / 1e6
            line += f" Backbone `{config.backbone}`, {n_params:.1f} M parameters, inputs {'+'.join(config.modalities)}."
        return line


@dataclass
class StudyView:
    """A segmented study on the PET grid, RAS+ voxel order, ready for slice-by-slice rendering.

    ``labels`` holds the lesion ids of the lesion table (0 = background), so pictures number what the table lists.
    """

    suv: Volume
    ct: Volume
    labels: Volume

    @classmethod
    def build(cls, suv: Volume, ct: Volume, labels: Volume) -> "StudyView":
        return cls(to_ras(suv), to_ras(resample_like(ct, suv, fill=-1024.0)), to_ras(labels))

    def count(self, plane: str) -> int:
        return slice_count(self.suv, plane)

    def shown(self, visible: set[int]) -> Volume:
        array = np.asarray(self.labels.array)
        return self.labels.with_array(np.where(np.isin(array, sorted(visible)), array, 0).astype(np.int32))

    def render(self, plane: str, index: int, visible: set[int], suv_max: float = DEFAULT_SUV_WINDOW) -> np.ndarray:
        index = int(np.clip(index, 0, self.count(plane) - 1))
        return fused_slice(
            self.suv, self.ct, self.shown(visible), plane=plane, index=index, suv_max=suv_max, annotate=True
        )

    def mip(self, visible: set[int], suv_max: float = DEFAULT_SUV_WINDOW) -> np.ndarray:
        return pet_mip_overlay(self.suv, self.shown(visible), suv_max=suv_max, annotate=True)

    def slices_through(self, lesion_id: int) -> tuple[int, int]:
        """(axial, coronal) slice indices through the lesion voxel nearest its centroid (always inside the lesion)."""
        anchor = self.anchor(lesion_id)
        return int(anchor[2]), int(anchor[1])

    def anchor(self, lesion_id: int) -> np.ndarray:
        """The lesion's voxel nearest its centroid (RAS+ voxel order of this view)."""
        voxels = np.argwhere(np.asarray(self.labels.array) == lesion_id)
        if not len(voxels):
            raise KeyError(lesion_id)
        return voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]

    def world(self, voxel_ras) -> np.ndarray:
        return self.labels.affine[:3, :3] @ np.asarray(voxel_ras, float) + self.labels.affine[:3, 3]


def location(row: dict) -> str:
    """The lesion centroid in DICOM patient coordinates, with the side spelled out: "R 45 · A 12 · z 830"."""
    x, y, z = (row[f"centroid_lps_{a}_mm"] for a in "xyz")
    return f"{'L' if x >= 0 else 'R'} {abs(x):.0f} · {'P' if y >= 0 else 'A'} {abs(y):.0f} · z {z:.0f}"


@dataclass
class DemoResult:
    """One segmented study, frozen with the facts of the model that produced it; ``editor`` holds its edits (the
    table, pictures and downloads are those of the edited mask)."""

    view: StudyView
    rows: list[dict]
    totals: dict
    files: object  # outputs.files.StudyFiles: the downloads (``download_files``)
    model: ModelFacts
    seconds: float
    device: str
    uploads: str  # "PET.nii.gz + CT.nii.gz": what the result is of
    notes: list[str] = field(default_factory=list)  # facts to review the result by (partial view, voxel size, ...)
    editor: MaskEditor | None = None
    segmentation: object = None  # the method's SegmentationResult, which the edited masks are written from
    download_stem: str = "lesions"  # study_model_date: what the download names start with

    def visible(self, min_ml: float = 0.0) -> set[int]:
        return {r["id"] for r in self.rows if r["volume_ml"] >= min_ml}

    def columns(self) -> list[str]:
        organ = any("organ" in r for r in self.rows)
        return list(TABLE_COLUMNS.values()) + ([ORGAN_COLUMN] if organ else [])

    def table(self, min_ml: float = 0.0, sort: str = "Volume") -> list[list]:
        """Rows for the UI table (lesions of at least ``min_ml``), largest first by ``sort``; numbers as text with the
        decimals ``DECIMALS`` (a number cell would drop trailing zeros: 912.7 beside 2.05)."""
        key = SORT_KEYS.get(sort, "volume_ml")
        shown = sorted((r for r in self.rows if r["volume_ml"] >= min_ml), key=lambda r: r[key], reverse=key != "id")
        organ = ORGAN_COLUMN in self.columns()
        return [
            [r["id"], *(fmt(k, r[k]) for k in list(TABLE_COLUMNS)[1:-1]), location(r)]
            + ([_organ(r)] if organ else [])
            for r in shown
        ]

    def header(self, current_model: str | None = None) -> str:
        """Whose result this is; says so plainly when the model list now names another model."""
        line = f"**Result of** {self.model.markdown()} · on {self.uploads}"
        if current_model is not None and current_model != self.model.label:
            line += f"  \n⚠ The model list now says `{current_model}`: this result is still from `{self.model.label}`. "
            line += "Press **Segment** to run the selected model."
        return line

    def summary(self, min_ml: float = 0.0) -> str:
        shown = self.visible(min_ml)
        hidden = len(self.rows) - len(shown)
        mtv, tlg = fmt("volume_ml", self.totals["total_mtv_ml"]), fmt("tlg", self.totals["total_tlg"])
        if not self.rows:
            return f"**No lesion found: review the MIP.** {_review(self.notes)} PET grid {self.view.suv.shape}."
        text = f"**{len(self.rows)} lesion(s)**, total MTV {mtv} ml, total TLG {tlg} SUV·ml"
        if hidden:
            text += f" ({hidden} under {min_ml:g} ml hidden from the table and pictures; totals count all)"
        return f"{text}. PET grid {self.view.suv.shape}, {self.seconds:.1f} s on {self.device}."


def _review(notes: list[str]) -> str:
    return ("Check: " + "; ".join(notes) + ".") if notes else ""


def _organ(row: dict) -> str:
    return str(row.get("organ", "")) + (" (physiological uptake?)" if row.get("physiological") else "")


@dataclass
class DemoSession:
    """One browser session's private folder, the uploads it was given, and its last result."""

    workdir: Path
    result: DemoResult | None = None
    uploads: set[Path] = field(default_factory=set)
    inputs_version: int = 0  # counts changes of the uploads: a result of older inputs is never shown
    closed: bool = False  # the page went away: a running request stops and writes nothing
    selected: int | None = None  # the lesion id of the last table row clicked (what "remove" removes)
    _runs: int = field(default=0, repr=False)

    @classmethod
    def open(cls, root: str | Path) -> "DemoSession":
        Path(root).mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="session-", dir=root)))

    def close(self) -> None:
        self.closed = True
        shutil.rmtree(self.workdir, ignore_errors=True)

    def fresh_dir(self, name: str) -> Path:
        """A new empty folder for one request; the previous request's outputs of this session are deleted."""
        for old in self.workdir.glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._runs += 1
        out = self.workdir / f"{name}-{self._runs}"
        out.mkdir()
        return out

    def picture(self, name: str, image: np.ndarray, keep: int = 3) -> str:
        """``image`` as a PNG in the session folder (served from there, deleted with it); older ones of ``name`` go."""
        from PIL import Image

        folder = self.workdir / "pictures"
        folder.mkdir(exist_ok=True)
        self._runs += 1
        path = folder / f"{name}-{self._runs:06d}.png"
        Image.fromarray(image).save(path, optimize=False, compress_level=1)
        for old in sorted(folder.glob(f"{name}-*.png"))[:-keep]:  # the browser may still be fetching the newest
            old.unlink(missing_ok=True)
        return str(path)

    def example(self, seed: int) -> tuple[Path, Path]:
        """A synthetic PET/CT pair from the phantom generator (deterministic in ``seed``), written as NIfTI."""
        from ..data.synthetic.phantom import make_phantom, write_study

        study = write_study(make_phantom(seed, size="small"), self.fresh_dir("example") / f"phantom_seed{seed}")
        return study / "PET.nii.gz", study / "CT.nii.gz"


class DemoSessions:
    """Open sessions by id (the browser's session hash), each with its own folder under ``root``.

    A session is closed (its folder and its uploads deleted) when its page goes away, or, for clients that never say
    goodbye, when more than ``max_sessions`` are open (oldest first), so strangers cannot fill the disk.
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
                    self._forget(self._open.popitem(last=False)[1])
            self._open.move_to_end(session_id)
            return self._open[session_id]

    def find(self, session_id: str) -> DemoSession | None:
        with self._lock:
            return self._open.get(session_id)

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self._open.pop(session_id, None)
            if session is not None:
                self._forget(session)

    def _forget(self, session: DemoSession) -> None:
        """Delete the session's folder and the uploads (Gradio's copies under ``root``) no other open session uses."""
        session.close()
        in_use = set().union(*(s.uploads for s in self._open.values()))
        for upload in session.uploads - in_use:
            if upload.resolve().is_relative_to(self.root.resolve()):
                upload.unlink(missing_ok=True)
                try:
                    upload.parent.rmdir()  # Gradio keeps each upload in a folder of its own
                except OSError:
                    pass


def run_study(
    pet_upload: str | Path,
    ct_upload: str | Path,
    segmenter,
    facts: ModelFacts,
    session: DemoSession,
    *,
    limits: UploadLimits = UploadLimits(),
    progress=None,
) -> DemoResult:
    """Check and read the two uploads, segment with ``segmenter`` (an ``inference.SegmentationMethod``), and write
    the study's downloads with ``outputs.write_study`` (``download_files``).

    ``progress(fraction, desc)`` (e.g. ``gr.Progress``) is told how far the request is. Bad uploads, and PET/CT pairs
    the plausibility checks refuse, raise ``PetCtInputError`` naming the uploaded file (the zip, not what it held);
    extracted files are removed before this returns, except a DICOM PET's series, kept in the session folder while
    its result lives (the DICOM SEG of every edit references it).
    """
    from ..outputs.files import write_study

    report = _while_open(session, progress if progress is not None else (lambda fraction, desc=None: None))
    started = time.perf_counter()
    out = session.fresh_dir("result")
    names = {"PET": Path(pet_upload).name, "CT": Path(ct_upload).name}
    source = session.fresh_dir("source")
    try:
        pet, ct, result, notes = _segment_uploads(pet_upload, ct_upload, names, segmenter, source, limits, report)
    except BaseException:
        shutil.rmtree(source, ignore_errors=True)
        raise
    dicom = bool(pet.meta.get("dicom_files"))
    if not dicom:
        shutil.rmtree(source, ignore_errors=True)
    result = replace(result, provenance={**result.provenance, "uploads": names})
    report(0.85, desc="measuring lesions")
    stem = download_stem(names["PET"], result.provenance.get("model") or facts.label)
    files = download_files(out, stem, dicom=dicom)
    rows, totals = write_study(result, files)
    labels = lesion_labels(result.mask)
    editor = MaskEditor(pet, np.asarray(result.mask.array, np.uint8), _refiner(segmenter, result))
    report(0.92, desc="rendering")
    view = StudyView.build(pet, ct, labels)
    seconds = time.perf_counter() - started
    report(1.0, desc="done")
    uploads = f"`{names['PET']}` + `{names['CT']}`"
    notes += review_facts(pet, facts, dicom=any(str(u).lower().endswith(".zip") for u in (pet_upload, ct_upload)))
    return DemoResult(view, rows, totals, files, facts, seconds, str(segmenter.device), uploads, notes, editor, result,
                      stem)


def _segment_uploads(pet_upload, ct_upload, names: dict, segmenter, pet_folder: Path, limits: UploadLimits, report):
    """(PET, CT, the segmenter's result, the warnings it gave); refusals name the uploads by ``names`` ("PET", "CT" ->
    upload name). A PET zip is unpacked in ``pet_folder``; a CT zip in a scratch folder removed at once."""
    from ..data.io import read_ct, read_pet

    report(0.0, desc="checking the uploads")
    with tempfile.TemporaryDirectory(dir=pet_folder.parent) as scratch:
        pet = _read_upload(read_pet, pet_upload, "PET", pet_folder, limits)
        ct = _read_upload(read_ct, ct_upload, "CT", Path(scratch) / "ct", limits)
    report(0.1, desc="segmenting")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PetCtWarning)
            kept = {"keep_probabilities": True} if getattr(segmenter, "accepts_clicks", False) else {}
            result = segmenter(pet, ct, progress=_scaled(report, 0.1, 0.85), **kept)  # a click starts from them
    except PetCtInputError as err:  # the plausibility checks: name the uploads, not the server's copies
        raise PetCtInputError(_named(err.source, pet, ct, names), err.problem) from None
    return pet, ct, result, [str(w.message).split(": ", 1)[-1] for w in caught if issubclass(w.category, PetCtWarning)]


def download_stem(pet_name: str, model: str) -> str:
    """What a result's download names start with: study (the PET upload's name), model and today's UTC date, each in
    characters safe in any file system, joined by "_": ``patient7-PET_petct-phantom-segmenter_2026-12-07``."""
    day = datetime.datetime.now(datetime.timezone.utc).date()
    study = next((pet_name[: -len(s)] for s in UPLOAD_SUFFIXES if pet_name.lower().endswith(s)), pet_name)
    return f"{_safe_name(study, 'study')}_{_safe_name(model, 'model')}_{day.isoformat()}"


def _safe_name(text: str, fallback: str, limit: int = 48) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-.")[:limit].strip("-.") or fallback


def download_files(out: Path, stem: str, *, dicom: bool):
    """The demo's downloads in ``out``: the numbered mask (voxel value = the table's lesion number), the lesion table
    as CSV and JSON, the settings record, and a DICOM SEG when the PET came as a DICOM series (as ``petct segment
    --dicom-seg``, which needs the PET series it references)."""
    from ..outputs.files import StudyFiles

    return StudyFiles.beside(out / f"{stem}_lesions.nii.gz", csv=out / f"{stem}_lesions.csv",
                             json=out / f"{stem}_lesions.json", numbered=True,
                             dicom_seg=out / f"{stem}_lesions_seg.dcm" if dicom else None)


class SessionClosed(Exception):
    """The page of a running request was closed: the request stops (the worker is free for the next visitor)."""


def _while_open(session: DemoSession, report):
    """``report``, raising SessionClosed once the session is closed (checked at every progress step: every window)."""

    def inner(fraction, desc=None):
        if session.closed:
            raise SessionClosed(session.workdir)
        report(fraction, desc=desc)

    return inner


def review_facts(pet: Volume, facts: ModelFacts, *, dicom: bool) -> list[str]:
    """Plain facts that make a result less trustworthy (shown beside "no lesion found"): real scans given to a model
    trained on synthetic phantoms, and PET voxels far from the model's grid."""
    notes = []
    if facts.synthetic and dicom:
        notes.append("this model was trained on synthetic phantoms only; this is a real DICOM scan")
    coarse = max(pet.spacing)
    if coarse > 6.0 or min(pet.spacing) < 1.0:
        notes.append(f"PET voxels of {' x '.join(f'{s:.1f}' for s in pet.spacing)} mm (training data: about 2-4 mm)")
    return notes


def _refiner(segmenter, result):
    """For a click-guided model: clicks (data.clicks.Click) -> its mask on the PET grid, re-running only the windows
    the clicks change (inference.ClickRefiner) where the method offers it, else the whole study as harmonised for
    the first pass; None for a method without click inputs."""
    if not getattr(segmenter, "accepts_clicks", False):  # any callable segmenting a study may serve the demo
        return None
    if hasattr(segmenter, "click_refiner") and getattr(result, "harmonized", None) is not None \
            and getattr(result, "probabilities", None) is not None:  # nnU-Net imports: no harmonised study
        refiner = segmenter.click_refiner(result.harmonized, result.probabilities)
        result.probabilities = None  # the refiner holds them
        return refiner
    from ..inference import to_native_mask

    def refine(clicks):
        probs, _ = segmenter.infer(result.harmonized, clicks, lambda done, message: None)
        return to_native_mask(result.harmonized, probs, segmenter.lesion_filter)

    return refine


EDIT_ACTIONS = ("add", "false positive", "remove", "undo", "reset")


def edit_result(session: DemoSession, action: str, voxel=None) -> DemoResult:
    """The session's result after one edit (``action`` in EDIT_ACTIONS; add, false positive and remove at
    ``voxel``, an index of the PET grid): table, pictures and downloads follow the edited mask, written by the one
    writer with the edits in its settings record."""
    from dataclasses import asdict

    from ..outputs.files import write_study

    result = session.result
    started = time.perf_counter()
    editor = result.editor
    if action == "undo":
        editor.undo()
    elif action == "reset":
        editor.reset()
    else:
        editor.apply(action, voxel)
    mask = editor.pet.with_array(editor.mask(), modality="SEG", units="label")
    labels = lesion_labels(mask)
    edits = [asdict(e) for e in editor.edits]
    edited = replace(result.segmentation, mask=mask, provenance={**result.segmentation.provenance, "edits": edits})
    stem = result.download_stem + ("_edited" if edits else "")
    files = download_files(session.fresh_dir("result"), stem, dicom=result.files.dicom_seg is not None)
    rows, totals = write_study(edited, files)
    view = replace(result.view, labels=to_ras(labels))
    session.result = replace(result, view=view, rows=rows, totals=totals, files=files,
                             seconds=time.perf_counter() - started)
    return session.result


def clicked_voxel(result: DemoResult, plane: str, index: int, x: float, y: float):
    """The PET-grid voxel under a click at pixel (x, y) of a slice picture (None off the image)."""
    return slice_voxel(result.editor.pet, plane, index, x, y)


def lesion_voxel(result: DemoResult, lesion_id: int):
    """A PET-grid voxel inside table lesion ``lesion_id`` (what a row's "remove" edits at)."""
    return result.editor.voxel(result.view.world(result.view.anchor(lesion_id)))


def lesion_labels(mask: Volume) -> Volume:
    """The lesion ids ``lesion_table`` gives (its connected components, in its order) as a label image."""
    from ..data.geometry import label_lesions

    return mask.with_array(label_lesions(mask.array)[0].astype(np.int32))


def _read_upload(reader, upload, role: str, scratch: Path, limits: UploadLimits) -> Volume:
    """Check and read one upload; any refusal names the uploaded file and whether it is the PET or the CT."""
    try:
        return reader(prepare_upload(upload, scratch, limits))
    except PetCtInputError as err:
        raise PetCtInputError(f"{role} {Path(upload).name}", err.problem) from None


def _named(source: str, pet: Volume, ct: Volume, names: dict[str, str]) -> str:
    for role, volume in (("PET", pet), ("CT", ct)):
        if source in (str(volume.source), role, role.lower()):
            return f"{role} {names[role]}"
    return f"PET {names['PET']} + CT {names['CT']}"


def _scaled(report, start: float, stop: float):
    """Map a sub-task's progress (0..1) onto [start, stop] of the whole request."""

    def inner(fraction, desc=None):
        report(start + (stop - start) * float(fraction), desc=desc)

    return inner
