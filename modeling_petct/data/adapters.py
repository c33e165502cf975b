"""Find the PET/CT studies of a dataset on disk, in each dataset's published layout, as manifest rows.

Layouts (what each ``*_studies(root)`` expects under ``root``):

- ``autopet``: TCIA FDG-PET-CT-Lesions in NIfTI, ``PETCT_<hash>/<study date folder>/{SUV,CTres,SEG}.nii.gz``
  (``CTres`` is the CT already on the PET grid; ``CT.nii.gz`` is used when it is missing).
- ``deeppsma``: DEEP-PSMA challenge data (zenodo 15281784), ``<case>/FDG/{PET,CT}.nii.gz`` (+ ``TTB.nii.gz``, the FDG
  tumour-burden label); only the FDG scans are taken, the PSMA folders are ignored.
- ``spade``: the Stanford SPADE arrays as the paper's authors read them, ``<patient>/<scan>/{pet,ct}.npy`` holding
  (Z, Y, X) arrays without geometry: PET spacing is taken as 3 x 3.5 x 3.5 mm (the authors' assumption) and the CT
  is taken to cover the same field of view; the authors' 11 anomalous scans are left out.
- ``vimed``: ViMed-PET after extracting its zip parts: one folder per patient holding a PET and a CT, as NIfTI/MHA
  files or DICOM series folders, recognised by name (``*PET*``/``*PT*``, ``*CT*``).
- ``folder``: any folder of studies, one sub-folder per study with files named like ``PET``/``SUV`` and
  ``CTres``/``CT`` (+ ``SEG``/``label``/``mask``), e.g. ``petct phantom`` output; or an nnU-Net raw dataset
  (``imagesTr/<case>_0000.nii.gz`` = CT, ``_0001`` = PET as in the autoPET III/IV release, ``labelsTr/<case>.nii.gz``).

Organ maps (TotalSegmentator output, data/organs.py) are found beside each study's PET: ``organs.nii.gz`` (its
multilabel form) or a folder ``organs/``, ``segmentations/`` or ``totalsegmentator/`` of one mask per class; for the
nnU-Net layout ``organsTr/<case>.nii.gz``. ``organs_dir`` (``--organs-dir``) points elsewhere instead:
``<organs_dir>/<study_id>.nii.gz`` or ``<organs_dir>/<study_id>/`` (either form inside).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import PetCtInputError
from .conventions import SAFE_STUDY_ID
from .volume import Volume

SOURCES = ("autopet", "deeppsma", "spade", "vimed", "folder")
SPADE_SPACING_ZYX = (3.0, 3.5, 3.5)
SPADE_ANOMALIES = frozenset({  # excluded by the paper's authors (1137 -> 1126 scans)
    "LDca4f40/LDca5687", "LDca56d5/LDca5e13", "LDca4eed/LDca54ed", "LDca519f/LDca5602", "LDca56da/LDca5d8b",
    "LDca58c7/LDca5c77", "LDca58c3/LDca5c6f", "LDca4f3f/LDca5507", "LDca58c2/LDca5c6e", "LDca5163/LDca5581",
    "LDca56d2/LDca5d2b",
})
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
ORGAN_FILES = ("organs.nii.gz", "organs.nii", "organs.mha")
ORGAN_FOLDERS = ("organs", "segmentations", "totalsegmentator")
NNUNET_CHANNELS = {"ct": "0000", "pet": "0001"}  # autoPET III/IV nnU-Net release


def discover(root, source: str, organs_dir=None) -> list[dict]:
    """Manifest rows (without geometry) for every study of ``source`` under ``root``, with organ maps where found."""
    root = Path(root)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if not root.is_dir():
        raise PetCtInputError(root, "not a folder")
    rows = {"autopet": autopet_studies, "deeppsma": deeppsma_studies, "spade": spade_studies,
            "vimed": vimed_studies, "folder": folder_studies}[source](root)
    if not rows:
        raise PetCtInputError(root, f"no studies found in the {source!r} layout (see modeling_petct.data.adapters)")
    check_study_ids(rows, root)
    return attach_organs(rows, organs_dir)


def check_study_ids(rows, where) -> None:
    """Each study id names its own output folder: an empty id would write into the output root, a repeated one over
    another study (folders ``a b`` and ``a_b`` both become ``a_b``), an unsafe one outside the output."""
    seen = {}
    for r in rows:
        sid, name = r["study_id"], r.get("study") or r.get("pet_path")
        if not sid:
            raise PetCtInputError(where, f"study {name!r} gives an empty study id (ids keep letters, digits, "
                                         "'.', '_' and '-'): rename its folder")
        if not re.match(SAFE_STUDY_ID, sid):
            raise PetCtInputError(where, f"study id {sid!r} is not a safe folder name (letters, digits, '.', '_', "
                                         "'-', starting with a letter or digit)")
        if sid in seen:
            raise PetCtInputError(where, f"studies {seen[sid]!r} and {name!r} both get the study id {sid!r}: rename "
                                         "one of them")
        seen[sid] = name


def attach_organs(rows: list[dict], organs_dir=None) -> list[dict]:
    """Fill each row's ``organ_path`` (kept when already set): from ``organs_dir`` when given, else beside the PET."""
    if organs_dir is not None and not Path(organs_dir).is_dir():
        raise PetCtInputError(organs_dir, "--organs-dir is not a folder")
    for r in rows:
        if r.get("organ_path"):
            continue
        if organs_dir is not None:
            found = find_organs(Path(organs_dir), r["study_id"])
        elif r.get("source") != "spade" and not Path(r["pet_path"]).parent.name.startswith("images"):
            found = find_organs(Path(r["pet_path"]).parent)
        else:
            found = None
        r["organ_path"] = str(found) if found else ""
    return rows


def find_organs(folder: Path, study_id: str | None = None) -> Path | None:
    """An organ map in ``folder`` (``organs.nii.gz`` or a TotalSegmentator folder), or ``folder/<study_id>...``."""
    from .organs import is_totalsegmentator_folder

    if study_id is not None:
        for candidate in (folder / f"{study_id}{s}" for s in IMAGE_SUFFIXES):
            if candidate.is_file():
                return candidate
        folder = folder / study_id
        if is_totalsegmentator_folder(folder):
            return folder
    for name in ORGAN_FILES:
        if (folder / name).is_file():
            return folder / name
    return next((folder / n for n in ORGAN_FOLDERS if is_totalsegmentator_folder(folder / n)), None)


def safe_id(*parts: str) -> str:
    """A study id usable as a folder name: runs of other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_.")


def _row(source, study_id, subject, study, pet, ct, label=None, suv_status=None) -> dict:
    if suv_status is None:  # what read_pet will do with it
        suv_status = "DICOM, converted to SUVbw on read" if Path(pet).is_dir() else "assumed-SUV-file"
    return {"study_id": study_id, "source": source, "subject": subject, "study": study, "pet_path": str(pet),
            "ct_path": str(ct), "label_path": str(label) if label else "", "suv_status": suv_status}


def autopet_studies(root: Path) -> list[dict]:
    rows = []
    for suv in sorted(root.rglob("SUV.nii.gz")):
        study_dir = suv.parent
        ct = study_dir / "CTres.nii.gz"
        ct = ct if ct.is_file() else study_dir / "CT.nii.gz"
        seg = study_dir / "SEG.nii.gz"
        subject, study = study_dir.parent.name, study_dir.name
        rows.append(_row("autopet", safe_id(subject, study), subject, study, suv, ct, seg if seg.is_file() else None,
                         "SUV-nifti (AutoPET release)"))
    return rows


def deeppsma_studies(root: Path) -> list[dict]:
    rows = []
    for pet in sorted(root.rglob("FDG/PET.nii.gz")):
        case = pet.parent.parent.name
        ttb = pet.parent / "TTB.nii.gz"
        rows.append(_row("deeppsma", safe_id("deeppsma", case), case, "FDG", pet, pet.parent / "CT.nii.gz",
                         ttb if ttb.is_file() else None, "SUV-nifti (DEEP-PSMA release)"))
    return rows


def spade_studies(root: Path, include_anomalies: bool = False) -> list[dict]:
    rows = []
    for pet in sorted(root.glob("*/*/pet.npy")):
        scan = pet.parent
        key = f"{scan.parent.name}/{scan.name}"
        if key in SPADE_ANOMALIES and not include_anomalies:
            continue
        rows.append(_row("spade", safe_id("spade", scan.parent.name, scan.name), scan.parent.name, scan.name, pet,
                         scan / "ct.npy", None, "as-distributed (npy, units not verifiable)"))
    return rows


def vimed_studies(root: Path) -> list[dict]:
    rows = []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        pet, ct = _find(patient, ("PET", "PT", "SUV")), _find(patient, ("CTres", "CT"))
        if pet and ct:
            rows.append(_row("vimed", safe_id("vimed", patient.name), patient.name, patient.name, pet, ct))
    return rows


def folder_studies(root: Path) -> list[dict]:
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return _nnunet_studies(root)
    rows = []
    for study in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pet, ct = _find(study, ("PET", "SUV", "PT")), _find(study, ("CTres", "CT"))
        if pet and ct:
            label = _find(study, ("SEG", "label", "mask"))
            rows.append(_row("folder", safe_id(study.name), study.name, study.name, pet, ct, label))
    return rows


def _nnunet_studies(root: Path) -> list[dict]:
    rows = []
    for images in ("imagesTr", "imagesTs"):
        for ct in sorted((root / images).glob(f"*_{NNUNET_CHANNELS['ct']}.nii.gz")):
            case = ct.name[: -len(f"_{NNUNET_CHANNELS['ct']}.nii.gz")]
            pet = ct.with_name(f"{case}_{NNUNET_CHANNELS['pet']}.nii.gz")
            label = root / images.replace("images", "labels") / f"{case}.nii.gz"
            organs = root / images.replace("images", "organs") / f"{case}.nii.gz"
            if pet.is_file():
                rows.append({**_row("folder", safe_id(case), case, case, pet, ct, label if label.is_file() else None),
                             "organ_path": str(organs) if organs.is_file() else ""})
    return rows


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    """The first image file or DICOM folder whose name starts with one of ``stems`` (in order of preference)."""
    entries = sorted(folder.iterdir())
    for stem in stems:
        for p in entries:
            name = p.name
            base = next((name[: -len(s)] for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
            if p.is_file() and base is not None and _stem_matches(base, stem):
                return p
            if p.is_dir() and _stem_matches(name, stem) and any(f.is_file() for f in p.iterdir()):
                return p  # a DICOM series folder (files often have no extension); read_volume checks it
    return None


def _stem_matches(name: str, stem: str) -> bool:
    """'PET', 'pet_ac', 'PET-WB' match 'PET'; 'CTres' does not match 'CT' when 'CTres' is asked for first."""
    return re.fullmatch(rf"{re.escape(stem)}([_\-. ].*)?", name, flags=re.IGNORECASE) is not None


def load_study(row: dict) -> tuple[Volume, Volume, Volume | None]:
    """Read one manifest row as (PET in SUV, CT in HU, label or None)."""
    if row.get("source") == "spade":
        pet = spade_volume(row["pet_path"], "PT")
        return pet, spade_volume(row["ct_path"], "CT", like=pet), None
    from .io import read_ct, read_pet, read_volume

    label = read_volume(row["label_path"], modality="SEG") if row.get("label_path") else None
    return read_pet(row["pet_path"]), read_ct(row["ct_path"]), label


def load_organs(row: dict):
    """The row's organ map (PET organ labels of the default vocabulary, on its own grid), or None."""
    if not row.get("organ_path"):
        return None
    from .organs import read_organ_map

    return read_organ_map(row["organ_path"])


def spade_volume(path, modality: str, like: Volume | None = None) -> Volume:
    """A SPADE (Z, Y, X) array with the assumed geometry: z head->feet, y anterior->posterior, x right->left.

    The CT (``like`` = its PET) spreads the PET's field of view over its own shape, as the authors resize it.
    """
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise PetCtInputError(path, f"cannot read .npy ({err})") from err
    if arr.ndim != 3:
        raise PetCtInputError(path, f"expected a 3-D (Z, Y, X) array, got shape {arr.shape}")
    fov_zyx = np.asarray(SPADE_SPACING_ZYX) * (like.shape[::-1] if like is not None else arr.shape)
    spacing_xyz = (fov_zyx / np.asarray(arr.shape))[::-1]
    affine = np.diag([*-spacing_xyz, 1.0])  # RAS: x -> left, y -> posterior, z -> feet
    affine[:3, 3] = -spacing_xyz / 2  # the field of view starts at world 0 for PET and CT alike
    meta = {"modality": modality, "units": "SUV" if modality == "PT" else "HU"}
    if modality == "PT":
        meta["suv_status"] = "as-distributed (npy, units not verifiable)"
    return Volume(np.asarray(arr, np.float32).T, affine, str(path), None, meta)
