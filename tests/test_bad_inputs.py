"""Every hostile or careless input, one row each in ONE parametrised suite (add rows, not tests).

Each row runs one command (or one API call) and states the exit code and the text it must print: a refusal is one
line on stderr naming the file and the problem (exit 2), never a traceback, with nothing left at the outputs; the rows
that must now work (exit 0) say what they must print or write. Around every row all inputs are hashed and must come
out unchanged. Rows exercise real headers too: the real GE PET of ../shared/data/real_sts written as Bq/ml, its PET
and CT swapped, and an anonymised copy of its DICOM.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import CT, grid, sample, save_tiny, suv_at
from modeling_petct.cli import main
from modeling_petct.cli.checks import run_guarded
from modeling_petct.data.io import read_ct, read_pet, write_volume
from modeling_petct.data.volume import Volume

REPO = Path(__file__).resolve().parents[1]
# The real STS_001 PET: GE, Units GML (SUV as stored); dose, weight and times from its own header.
STS_WEIGHT_KG, STS_DOSE_MBQ, STS_INJECTION, STS_SCAN = 71.0, 388.777472, "10:35:00", "11:20:11"
STS_BQML_PER_SUV = STS_DOSE_MBQ * 1e6 * 2 ** (-2711 / 6586.2) / (STS_WEIGHT_KG * 1000)


def _model_folders(root: Path) -> dict:
    """A good tiny model and the broken ones a user can hand to --model."""
    from safetensors.torch import load_file, save_file

    good = save_tiny(root / "model", features_per_stage=(4, 8, 8, 8))
    mae = save_tiny(root / "mae", "mae", features_per_stage=(4, 8, 8, 8))
    folders = {"model": good, "mae": mae}
    for name in ("renamed", "wider", "corrupt", "cut_weights", "bert", "badjson"):
        folders[name] = root / name
        shutil.copytree(good, folders[name])
    weights = load_file(good / "model.safetensors")
    save_file({f"other_network.{k}": v for k, v in weights.items()}, folders["renamed"] / "model.safetensors")
    save_tiny(root / "wide_src", features_per_stage=(8, 16, 16, 16))
    shutil.copy(root / "wide_src" / "model.safetensors", folders["wider"] / "model.safetensors")
    (folders["corrupt"] / "model.safetensors").write_bytes(os.urandom(4096))
    data = (good / "model.safetensors").read_bytes()
    (folders["cut_weights"] / "model.safetensors").write_bytes(data[: len(data) // 2])
    config = json.loads((good / "config.json").read_text())
    (folders["bert"] / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    (folders["badjson"] / "config.json").write_text("{not json")
    return folders


def _nifti(path: Path, array, affine=None) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.eye(4) if affine is None else affine), path)
    return path


def _sts_files(root: Path, real_sts: Path) -> dict:
    """Real headers: the STS_001 PET as a Bq/ml NIfTI, an anonymised DICOM copy, a copy with a truncated slice."""
    import pydicom

    sts = real_sts / "STS_001"
    pet = read_pet(sts / "PET" / "dicom" / "image")
    bqml = write_volume(Volume(pet.array * np.float32(STS_BQML_PER_SUV), pet.affine), root / "sts_pet_bqml.nii.gz")
    anonymised = root / "sts_anonymised" / "PET"
    anonymised.mkdir(parents=True)
    for f in sorted((sts / "PET" / "dicom" / "image").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber", "StudyID"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(anonymised / f.name)
    truncated = root / "sts_truncated" / "PET"
    shutil.copytree(sts / "PET" / "dicom" / "image", truncated)
    broken = sorted(truncated.glob("*.dcm"))[20]
    broken.write_bytes(broken.read_bytes()[:700])  # cut inside the header
    zipped = root / "sts_pet.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in sorted((sts / "PET" / "dicom" / "image").glob("*.dcm")):
            z.write(f, f"PET/{f.name}")
    return {"bqml": bqml, "anonymised": anonymised, "truncated": truncated, "broken_name": broken.name, "zip": zipped,
            "pet_dicom": sts / "PET" / "dicom" / "image", "ct_dicom": sts / "CT" / "dicom" / "image",
            "pet_nifti": sts / "PET" / "nifti" / "image" / "image.nii.gz",
            "ct_nifti": sts / "CT" / "nifti" / "image" / "image.nii.gz"}


def _reordered(path: Path, array, affine) -> Path:
    """The same voxels on the same grid, stored with the first axis reversed and the first two axes swapped."""
    swap_flip = np.array([[0, -1, 0, array.shape[0] - 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    return _nifti(path, np.asarray(array)[::-1].transpose(1, 0, 2), affine @ swap_flip)


def _huge_declared(path: Path, shape=(700, 700, 700)) -> Path:
    """A .nii.gz of about a hundred bytes whose header declares ``shape`` float32 voxels."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(np.eye(4), code=1)
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4)
    return path


def _study_folder(folder: Path, pet: Volume, ct: Volume, label=None) -> Path:
    folder.mkdir(parents=True)
    write_volume(pet, folder / "PET.nii.gz")
    write_volume(ct, folder / "CT.nii.gz")
    if label is not None:
        _nifti(folder / "SEG.nii.gz", label, pet.affine)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory, real_sts):
    """Every input the rows use, written once; the rows write only under their own tmp_path."""
    from modeling_petct.data.synthetic.phantom import write_phantom_cohort

    root = tmp_path_factory.mktemp("bad_inputs")
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24), (-1, -1, 1)), (40, 32, 24))
    study = root / "study"
    study.mkdir()
    write_volume(pet, study / "PET.nii.gz")
    write_volume(CT, study / "CT.mha")
    e = {"root": root, "pet": study / "PET.nii.gz", "ct": study / "CT.mha", "study": study, **_model_folders(root)}
    e["zero_pet"] = write_volume(pet.with_array(np.zeros(pet.shape, np.float32)), root / "zero_pet.nii.gz")
    e["negative_pet"] = write_volume(pet.with_array(-pet.array), root / "negative_pet.nii.gz")
    e["big_voxels"] = _nifti(root / "big_voxels.nii.gz", np.ones((32, 32, 32)), np.diag([40.0, 40.0, 40.0, 1.0]))
    e["huge_declared"] = _huge_declared(root / "huge_declared.nii.gz")
    e["declares_4gib"] = _huge_declared(root / "declares_4gib.nii.gz", (1024, 1024, 1024))
    e.update(_sts_files(root, real_sts))
    e["dicom_phantom"] = write_phantom_cohort(root / "dicom_cohort", 1, 3, fmt="dicom", lesion_free_fraction=0.0)[0]
    e["cohort"] = Path(write_phantom_cohort(root / "cohort", 2, 5, lesion_free_fraction=0.0)[0]).parent
    seg = np.asarray(nib.load(e["cohort"] / sorted(os.listdir(e["cohort"]))[0] / "SEG.nii.gz").dataobj, np.float32)
    e["gt"] = _nifti(root / "gt.nii.gz", seg)
    e["prob"] = _nifti(root / "prob.nii.gz", seg * 0.7)
    e["minus_one"] = _nifti(root / "minus_one.nii.gz", -seg)
    e["pet_as_pred"] = _nifti(root / "pet_as_pred.nii.gz", np.random.default_rng(0).gamma(2.0, 0.6, seg.shape))
    e["labels_two"] = _nifti(root / "labels_two.nii.gz", seg * 2)
    e["gt_reordered"] = _reordered(root / "gt_reordered.nii.gz", seg, np.eye(4))
    ct = read_ct(e["cohort"] / sorted(os.listdir(e["cohort"]))[0] / "CT.nii.gz")
    cohort_pet = read_pet(e["cohort"] / sorted(os.listdir(e["cohort"]))[0] / "PET.nii.gz")
    e["wrong_label"] = _study_folder(root / "wrong_label" / "s1", cohort_pet, ct, np.zeros((10, 10, 10)))
    hot_ct = ct.with_array(np.where(ct.array > 500, 1e5, ct.array).astype(np.float32))
    e["hot_ct"] = _study_folder(root / "hot_ct" / "s1", cohort_pet, hot_ct)
    e["a_file"] = root / "a_file.txt"
    e["a_file"].write_text("not a folder")
    e.update(_partial_views(root, e["cohort"] / sorted(os.listdir(e["cohort"]))[0]))
    e.update(_caches(root, e["cohort"]))
    return e


def _caches(root: Path, cohort: Path) -> dict:
    """The cohort harmonised (with its organ maps), and a copy of that cache without them."""
    from modeling_petct.data.cache import StudyCache, harmonize_many
    from modeling_petct.data.manifest import build_manifest

    cache = StudyCache(root / "cache")
    harmonize_many(build_manifest(("folder", cohort)), cache, progress=False)
    bare = root / "cache_no_organs"
    shutil.copytree(cache.root, bare)
    for study in StudyCache(bare).ids():
        (bare / study / "organs.npy").unlink()
        info = json.loads((bare / study / "study.json").read_text())
        (bare / study / "study.json").write_text(json.dumps({**info, "has_organs": False}))
    return {"cache": cache.root, "cache_no_organs": bare}


def _partial_views(root: Path, study: Path) -> dict:
    """Headers that read fine but cover the wrong part: a CT of the PET's last 40 (or 86) of 96 slices, a PET of one
    slice, an organ map moved 2 m away from the PET."""
    ct, pet, organs = (nib.load(study / f) for f in ("CT.nii.gz", "PET.nii.gz", "organs.nii.gz"))
    out = {"ct_40_of_96": root / "ct_40_of_96.nii.gz", "ct_86_of_96": root / "ct_86_of_96.nii.gz",
           "pet_one_slice": root / "pet_one_slice.nii.gz", "organs_far": root / "organs_far.nii.gz",
           "study_pet": study / "PET.nii.gz", "study_ct": study / "CT.nii.gz"}
    nib.save(ct.slicer[:, :, 56:], out["ct_40_of_96"])
    nib.save(ct.slicer[:, :, 10:], out["ct_86_of_96"])
    nib.save(pet.slicer[:, :, 48:49], out["pet_one_slice"])
    far = organs.affine.copy()
    far[2, 3] += 2000.0
    nib.save(nib.Nifti1Image(np.asarray(organs.dataobj), far), out["organs_far"])
    return out


def _hash_tree(*roots) -> dict:
    """Content hash and mode of every file under the roots (inputs may be neither changed nor removed)."""
    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode))
    return out


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable  # (env, tmp) -> argv list for `petct`, or a callable returning an exit code
    code: int = 2
    says: str | Callable = ""  # text the message must hold (stderr when code != 0, else stdout); or (env) -> text
    check: Callable | None = None  # (env, tmp) -> None: further assertions on what was (not) written
    setenv: dict = field(default_factory=dict)
    stream: str | None = None  # where `says` is looked for, when not the default ("stderr": a warning on exit 0)


def seg(e, tmp, *extra, pet=None, ct=None, model="model"):
    return ["segment", "--pet", str(pet or e["pet"]), "--ct", str(ct or e["ct"]), "--model", str(e[model]),
            "--device", "cpu", "--fast", *extra]


def out(tmp, name="out/lesions.nii.gz"):
    return ["-o", str(tmp / name)]


def nothing_written(e, tmp):
    assert not (tmp / "out").exists() or not any((tmp / "out").rglob("*")), list((tmp / "out").rglob("*"))


def _interrupted_segment(e, tmp):
    import modeling_petct.inference as inference

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    inference.Segmenter.__call__ = interrupt
    try:
        return main(seg(e, tmp, *out(tmp)))
    finally:
        del inference.Segmenter.__call__  # back to SegmentationMethod.__call__


def _api(call):
    """A Python-API case: the call must raise PetCtInputError (one line through the CLI's guard)."""
    return lambda e, tmp: (lambda: run_guarded("api", call, e))


def _inf_ct_api(e):
    from modeling_petct.inference import InferenceSettings, Segmenter, load_segmentation_model

    ct = read_ct(e["ct"])
    array = ct.array.copy()
    array[5, 5, 5] = np.inf
    return Segmenter(load_segmentation_model(e["model"]), InferenceSettings.fast())(read_pet(e["pet"]), ct.with_array(array))


def _bqml_pipeline_api(e):
    from transformers import pipeline

    import modeling_petct.inference.pipeline  # noqa: F401  (registers the task)

    return pipeline("petct-segmentation", model=str(e["model"]), device="cpu")(
        {"pet": str(e["bqml"]), "ct": str(e["ct_dicom"])}, fast=True)


def _train_mae_missing_cache(e, tmp):
    return lambda: subprocess.run(
        [sys.executable, str(REPO / "train_mae.py"), "--cache_dir", str(tmp / "no_cache"), "--output_dir",
         str(tmp / "run")], capture_output=True, text=True, timeout=300)


def _seg_algorithm_name(e, tmp):
    """AlgorithmName / SegmentAlgorithmName: the model's name (the folder's own name here), never a local path."""
    import pydicom

    ds = pydicom.dcmread(tmp / "seg.dcm")
    names = [el.value for el in ds.iterall() if el.keyword in ("AlgorithmName", "SegmentAlgorithmName")]
    assert names and all(n == "model" for n in names), names


def _public_modes(e, tmp):
    umask = os.umask(0)
    os.umask(umask)
    for f in (tmp / "out").rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == ((0o777 if f.is_dir() else 0o666) & ~umask), f


def _suv_conversion_recorded(e, tmp):
    totals = json.loads((tmp / "out" / "s.json").read_text())["totals"]
    assert totals["suv_conversion"]["suv_factor"] == pytest.approx(1 / STS_BQML_PER_SUV, rel=1e-3)
    descrip = nib.load(tmp / "out" / "lesions.nii.gz").header["descrip"].tobytes()
    assert b"SUVbw from Bq/ml" in descrip


def _cache_modes(e, tmp):
    umask = os.umask(0)
    os.umask(umask)
    for f in (tmp / "cache").rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == ((0o777 if f.is_dir() else 0o666) & ~umask), f


def _zip_of(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _zipped_truncated(e, tmp):
    archive = _zip_of(tmp / "truncated.zip", {f"PET/{f.name}": f.read_bytes() for f in sorted(e["truncated"].glob("*"))})
    return seg(e, tmp, *out(tmp), pet=archive, ct=e["ct_dicom"])


def _zip_bomb(e, tmp):
    bomb = _zip_of(tmp / "bomb.zip", {f"PET/{i}.dcm": bytes(2**20) for i in range(300)})  # 300 MiB in ~0.3 MiB
    return seg(e, tmp, *out(tmp), pet=bomb, ct=e["ct_dicom"])


def _long_member_name(e, tmp):
    first = sorted(e["pet_dicom"].glob("*.dcm"))[0]
    archive = _zip_of(tmp / "long.zip", {"PET/" + "a" * 300 + ".dcm": first.read_bytes()})
    return seg(e, tmp, *out(tmp), pet=archive, ct=e["ct_dicom"])


def study(e, tmp, *extra, cache="cache"):
    return ["study", "--presets", "tiny-unet", "--fractions", "1.0", "--seeds", "0", "--probe_k", "0", "--cache_dir",
            str(e[cache]), "--output_dir", str(tmp / "out"), "--max_steps", "1", "--report_to", "none", "--cpu",
            "true", "--progress_bar", "false", *extra]


def _disk_full(argv):
    """``argv`` run with every Path.write_text failing as on a full disk."""
    def run(e, tmp):
        def call():
            from unittest import mock

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            with mock.patch("pathlib.Path.write_text", full):
                return main(argv(e, tmp))
        return call
    return run


def _quickstart_into_link(e, tmp):
    earlier = tmp / "earlier"
    earlier.mkdir()
    (earlier / "mine.txt").write_text("keep")
    (tmp / "link").symlink_to(earlier)
    return ["quickstart", "--tiny", "-o", str(tmp / "link")]


def _conversion_flags(injection: str, scan: str) -> list[str]:
    return ["--weight-kg", "71", "--dose-mbq", str(STS_DOSE_MBQ), "--injection-time", injection, "--scan-time", scan]


def _first_study(e) -> Path:
    return e["cohort"] / sorted(os.listdir(e["cohort"]))[0]


def _cache_over_user_folder(e, tmp):
    """-o CACHE already holding the user's own folder named like a study (no cache sidecar)."""
    mine = tmp / "cache" / _first_study(e).name
    mine.mkdir(parents=True)
    (mine / "raw.txt").write_text("the user's own copy")
    return ["harmonize", "--input", str(e["cohort"]), "-o", str(tmp / "cache")]


def _user_folder_kept(e, tmp):
    mine = tmp / "cache" / _first_study(e).name
    assert [p.name for p in mine.iterdir()] == ["raw.txt"] and (mine / "raw.txt").read_text() == "the user's own copy"
    assert [p.name for p in (tmp / "cache").iterdir()] == [mine.name], "the refused run wrote into the cache"


def _studies_named(*names):
    """segment -i over copies of one study in folders with these names."""
    def argv(e, tmp):
        for name in names:
            shutil.copytree(_first_study(e), tmp / "studies" / name)
        return ["segment", "-i", str(tmp / "studies"), "-o", str(tmp / "out"), "--model", str(e["model"]), "--fast",
                "--device", "cpu"]
    return argv


def _organs_dir_elsewhere(e, tmp):
    """--organs-dir holding the first study's organ map moved 2 m away from its PET."""
    (tmp / "organs").mkdir()
    shutil.copy(e["organs_far"], tmp / "organs" / f"{_first_study(e).name}.nii.gz")
    return ["harmonize", "--input", str(e["cohort"]), "--organs-dir", str(tmp / "organs"), "-o", str(tmp / "cache")]


def _manifest_with_unsafe_id(e, tmp):
    """A saved manifest (as a colleague might send) whose first study id would write outside the cache."""
    import datasets

    from modeling_petct.data.manifest import build_manifest, save_manifest

    rows = build_manifest(("folder", e["cohort"])).to_list()
    rows[0]["study_id"] = "../x"
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the row's stderr is the command's alone
    save_manifest(datasets.Dataset.from_list(rows), tmp / "manifest")
    if shown:
        datasets.enable_progress_bars()
    return ["harmonize", "--manifest", str(tmp / "manifest"), "-o", str(tmp / "out")]


def _one_study(e, *extra):
    first = _first_study(e)
    return ["harmonize", "--pet", str(first / "PET.nii.gz"), "--ct", str(first / "CT.nii.gz"), *extra]


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


CASES = [
    # 1. input data destroyed
    Case("segment -o <the PET>", lambda e, t: seg(e, t, "-o", str(e["pet"])), says="is the input"),
    Case("segment -o inside the PET DICOM folder", lambda e, t: seg(e, t, "-o", str(e["anonymised"] / "m.nii.gz"),
                                                                    pet=e["anonymised"], ct=e["ct_dicom"]),
         says="lies inside the input"),
    Case("segment --dicom-seg over a source slice",
         lambda e, t: seg(e, t, *out(t), "--dicom-seg", str(sorted(e["anonymised"].glob("*.dcm"))[0]),
                          pet=e["anonymised"], ct=e["ct_dicom"]), says="lies inside the input"),
    Case("harmonize --input DIR -o DIR", lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(e["cohort"])],
         says="is the input"),
    Case("harmonize --input DIR -o DIR/cache",
         lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(e["cohort"] / "cache")], says="lies inside"),
    Case("harmonize -o the folder holding the study",
         lambda e, t: ["harmonize", "--pet", str(e["cohort"] / sorted(os.listdir(e["cohort"]))[0] / "PET.nii.gz"),
                       "--ct", str(e["cohort"] / sorted(os.listdir(e["cohort"]))[0] / "CT.nii.gz"),
                       "-o", str(e["cohort"])], says="contains the input"),
    # 2. a wrong model runs silently
    Case("MAE checkpoint as --model", lambda e, t: seg(e, t, *out(t), model="mae"), says="pretraining (MAE)"),
    Case("weights of another architecture", lambda e, t: seg(e, t, *out(t), model="renamed"),
         says="missing or of another shape"),
    Case("weights of another width", lambda e, t: seg(e, t, *out(t), model="wider"), says="wider"),
    # 3. inputs that look valid but are not
    Case("real PET as Bq/ml NIfTI", lambda e, t: seg(e, t, *out(t), pet=e["bqml"], ct=e["ct_dicom"]),
         says="PET is not in SUV", check=nothing_written),
    Case("real PET and CT swapped", lambda e, t: seg(e, t, *out(t), pet=e["ct_nifti"], ct=e["pet_nifti"]),
         says="swapped"),
    Case("real Bq/ml PET converted with flags",
         lambda e, t: seg(e, t, *out(t), "--stats", str(t / "out" / "s.csv"), "--stats-json", pet=e["bqml"],
                          ct=e["ct_dicom"]) + ["--weight-kg", "71", "--dose-mbq", str(STS_DOSE_MBQ),
                                               "--injection-time", STS_INJECTION, "--scan-time", STS_SCAN],
         code=0, says="converted from Bq/ml to SUVbw", check=_suv_conversion_recorded),
    Case("conversion flags incomplete", lambda e, t: seg(e, t, *out(t), "--weight-kg", "70", pet=e["bqml"]),
         says="--dose-mbq"),
    Case("harmonize Bq/ml PET", lambda e, t: ["harmonize", "--pet", str(e["bqml"]), "--ct", str(e["ct_dicom"]),
                                              "-o", str(t / "cache")], code=1, says="PET is not in SUV"),
    Case("pipeline Bq/ml PET", _api(_bqml_pipeline_api), says="PET is not in SUV"),
    Case("all-zero PET", lambda e, t: seg(e, t, *out(t), pet=e["zero_pet"]), says="all zero"),
    Case("all-negative PET", lambda e, t: seg(e, t, *out(t), pet=e["negative_pet"]), says="all negative"),
    Case("CT with Inf (API, as the demo calls it)", _api(_inf_ct_api), says="infinite"),
    Case("--spacing -3 2 2", lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(t / "c"),
                                           "--spacing", "-3", "2", "2"], says="positive and finite"),
    Case("--spacing 0 0 0", lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(t / "c"),
                                          "--spacing", "0", "0", "0"], says="positive and finite"),
    Case("--dtype float16 overflow", lambda e, t: ["harmonize", "--input", str(e["hot_ct"].parent), "-o",
                                                   str(t / "cache"), "--dtype", "float16", "--normalization", "none"],
         code=1, says="overflow float16"),
    Case("harmonize label of another shape", lambda e, t: ["harmonize", "--input", str(e["wrong_label"].parent), "-o",
                                                           str(t / "cache")], code=1, says="shape (10, 10, 10)"),
    # 4. evaluate scores anything
    Case("evaluate a probability map", lambda e, t: ["evaluate", "--pred", str(e["prob"]), "--gt", str(e["gt"])],
         says="not an integer prediction"),
    Case("evaluate labels of -1", lambda e, t: ["evaluate", "--pred", str(e["minus_one"]), "--gt", str(e["gt"])],
         says="negative labels"),
    Case("evaluate a PET as the prediction", lambda e, t: ["evaluate", "--pred", str(e["pet_as_pred"]), "--gt",
                                                           str(e["gt"])], says="not an integer prediction"),
    Case("evaluate labels > 1 warn", lambda e, t: ["evaluate", "--pred", str(e["labels_two"]), "--gt", str(e["gt"]),
                                                   "--bootstrap", "10"], code=0, says="aggregate"),
    Case("evaluate --help: FNV NaN as autoPET III", lambda e, t: ["evaluate", "--help"], code=0,
         says="evaluation_metrics.py"),
    # 5. memory guard misses the grid that is built
    Case("segment: 40 mm PET spans a 1280 mm grid", lambda e, t: seg(e, t, *out(t), pet=e["big_voxels"]),
         says="too large for memory", setenv={"PETCT_MAX_MEMORY_GB": "3"}),
    Case("harmonize: 40 mm PET spans a 1280 mm grid",
         lambda e, t: ["harmonize", "--pet", str(e["big_voxels"]), "--ct", str(e["ct"]), "-o", str(t / "cache")],
         code=1, says="too large for memory", setenv={"PETCT_MAX_MEMORY_GB": "3"}),
    Case("harmonize: tiny file declaring 700^3", lambda e, t: ["harmonize", "--pet", str(e["huge_declared"]), "--ct",
                                                               str(e["ct"]), "-o", str(t / "cache")],
         code=1, says="truncated or corrupt", setenv={"PETCT_MAX_MEMORY_GB": "64"}),
    Case("segment: tiny file declaring 700^3", lambda e, t: seg(e, t, *out(t), pet=e["huge_declared"]),
         says="huge_declared.nii.gz", setenv={"PETCT_MAX_MEMORY_GB": "64"}),
    # 6. --dicom-seg on anonymised data; its algorithm name
    Case("--dicom-seg on the phantom DICOM", lambda e, t: seg(e, t, *out(t), "--dicom-seg", str(t / "seg.dcm"),
                                                              pet=e["dicom_phantom"] / "PET", ct=e["dicom_phantom"] / "CT"),
         code=0, says="lesion(s)", check=_seg_algorithm_name),
    Case("--dicom-seg on anonymised real DICOM", lambda e, t: seg(e, t, *out(t), "--dicom-seg", str(t / "seg.dcm"),
                                                                  pet=e["anonymised"], ct=e["ct_dicom"]),
         code=0, says="lesion(s)", check=_seg_algorithm_name),
    Case("segment --min-lesion-ml -1", lambda e, t: seg(e, t, *out(t), "--min-lesion-ml", "-1"),
         says="--min-lesion-ml: must be a volume >= 0 in ml"),
    Case("segment --min-lesion-confidence 1.5", lambda e, t: seg(e, t, *out(t), "--min-lesion-confidence", "1.5"),
         says="--min-lesion-confidence: must be a probability in [0, 1]"),
    # 7. tracebacks instead of one line
    Case("segment -o in a read-only folder", lambda e, t: seg(e, t, "-o", "/proc/petct/lesions.nii.gz"),
         says="cannot write into /proc"),
    Case("segment --stats in a read-only folder", lambda e, t: seg(e, t, *out(t), "--stats", "/proc/petct/s.csv"),
         says="cannot write into /proc"),
    Case("evaluate --json in a read-only folder", lambda e, t: ["evaluate", "--pred", str(e["gt"]), "--gt",
                                                               str(e["gt"]), "--json", "/proc/petct/e.json"],
         says="cannot write into /proc"),
    Case("harmonize -o a read-only folder", lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o",
                                                          "/proc/petct-cache"], says="cannot write into /proc"),
    Case("-o mask.png", lambda e, t: seg(e, t, *out(t, "out/mask.png")), says="suffix '.png'"),
    Case("-o noext", lambda e, t: seg(e, t, *out(t, "out/noext")), says="no file extension"),
    Case("-o <existing dir>", lambda e, t: seg(e, t, "-o", str(e["study"])), says="is an existing folder"),
    pytest.param(Case("--device cuda without a GPU", lambda e, t: seg(e, t, *out(t), "--device", "cuda"),
                      says="sees no GPU"), marks=NO_GPU, id="--device cuda without a GPU"),
    Case("--device mps", lambda e, t: seg(e, t, *out(t), "--device", "mps"), says="mps (Apple GPU) is not available"),
    Case("--device foo", lambda e, t: seg(e, t, *out(t), "--device", "foo"), says="unknown device 'foo'"),
    Case("corrupt safetensors", lambda e, t: seg(e, t, *out(t), model="corrupt"), says="cannot load the model"),
    Case("truncated safetensors", lambda e, t: seg(e, t, *out(t), model="cut_weights"), says="cannot load the model"),
    Case("another model_type", lambda e, t: seg(e, t, *out(t), model="bert"), says="model_type 'bert'"),
    Case("invalid config.json", lambda e, t: seg(e, t, *out(t), model="badjson"), says="not valid JSON"),
    Case("phantom -o <a file>", lambda e, t: ["phantom", "-o", str(e["a_file"]), "-n", "1"],
         says="exists and is not a folder"),
    Case("train_mae.py user error", _train_mae_missing_cache, says="train_mae.py: error"),
    Case("Ctrl-C during segment", lambda e, t: (lambda: _interrupted_segment(e, t)), code=130, says="interrupted",
         check=nothing_written),
    # 8. a truncated .dcm is reported by its own name
    Case("truncated .dcm named", lambda e, t: seg(e, t, *out(t), pet=e["truncated"], ct=e["ct_dicom"]),
         says=lambda e: e["broken_name"]),
    # CLI conventions
    Case("outputs get the umask's permissions", lambda e, t: seg(e, t, *out(t), "--stats", str(t / "out" / "s.csv")),
         code=0, says="lesion(s)", check=_public_modes),
    Case("cache folders get the umask's permissions",
         lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(t / "cache")], code=0, says="harmonised 2",
         check=_cache_modes),
    Case("harmonize prints no progress bar into a pipe",
         lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o", str(t / "cache")], code=0, says="",
         check=None, stream="no-bar"),
    Case("--version", lambda e, t: ["--version"], code=0, says="petct-fm "),
    Case("-q prints nothing", lambda e, t: seg(e, t, *out(t), "-q"), code=0, says="", stream="silent"),
    Case("segment --help lists NRRD", lambda e, t: ["segment", "--help"], code=0, says="NRRD"),
    # 9. lost data: a user's folder replaced, two studies written into one folder or into the output root
    Case("harmonize -o over a user's folder named like a study", _cache_over_user_folder,
         says="was not written by `petct harmonize`", check=_user_folder_kept),
    Case("segment -i: 'a b' and 'a_b' collide", _studies_named("a b", "a_b"), says="both get the study id 'a_b'"),
    Case("segment -i: '___' gives no id", _studies_named("___", "ok"), says="'___' gives an empty study id"),
    Case("segment -i: '+++' gives no id", _studies_named("+++"), says="'+++' gives an empty study id"),
    Case("harmonize --study-id ../x", lambda e, t: _one_study(e, "--study-id", "../x", "-o", str(t / "out")),
         says="'../x' is not a safe folder name"),
    Case("harmonize --manifest with the study id ../x", _manifest_with_unsafe_id,
         says="'../x' is not a safe folder name"),
    Case("harmonize --shard of an empty shard", lambda e, t: _one_study(e, "--shard", "1/2", "-o", str(t / "out")),
         says="shard 1 would be empty"),
    # 10. silent wrong results: clock times, partial views, organ maps elsewhere, probability maps as truth
    Case("Bq/ml flags with UTC offsets", lambda e, t: seg(e, t, *out(t), "--stats", str(t / "out" / "s.csv"),
                                                        "--stats-json", pet=e["bqml"], ct=e["ct_dicom"])
         + ["--weight-kg", "71", "--dose-mbq", str(STS_DOSE_MBQ), "--injection-time", "2026-06-12T12:35:00+02:00",
            "--scan-time", "2026-06-12T12:20:11+01:00"], code=0, says="45.18 min after injection",
         check=_suv_conversion_recorded),
    Case("Bq/ml flags: a date-time beside a clock time", lambda e, t: seg(e, t, *out(t), pet=e["bqml"])
         + _conversion_flags("2026-06-12T08:26", "09:23:07"), says="not one of each"),
    Case("Bq/ml flags: an offset on one only", lambda e, t: seg(e, t, *out(t), pet=e["bqml"])
         + _conversion_flags("2026-06-12T08:26+02:00", "2026-06-12T09:23"), says="only one carries a UTC offset"),
    Case("Bq/ml flags: HH:MM across midnight", lambda e, t: seg(e, t, *out(t), pet=e["bqml"])
         + _conversion_flags("23:40", "00:37"), says="across midnight, give both as date-times"),
    Case("CT of 40 of the PET's 96 slices", lambda e, t: seg(e, t, *out(t), pet=e["study_pet"], ct=e["ct_40_of_96"]),
         says="lies outside the CT's field of view: only what the CT covers is segmented"),
    Case("CT of 86 of the PET's 96 slices warns", lambda e, t: seg(e, t, *out(t), pet=e["study_pet"],
                                                                   ct=e["ct_86_of_96"]),
         code=0, says="lesions there are not segmented", stream="stderr"),
    Case("PET of one slice", lambda e, t: seg(e, t, *out(t), pet=e["pet_one_slice"], ct=e["study_ct"]),
         says="1 slice(s) along an axis"),
    Case("segment --organs elsewhere", lambda e, t: seg(e, t, *out(t), "--organs", str(e["organs_far"]),
                                                        pet=e["study_pet"], ct=e["study_ct"]),
         says="PET and organ map fields of view do not overlap"),
    Case("harmonize --organs elsewhere",
         lambda e, t: ["harmonize", "--pet", str(e["study_pet"]), "--ct", str(e["study_ct"]), "--organs",
                       str(e["organs_far"]), "-o", str(t / "cache")], code=1,
         says="PET and organ map fields of view do not overlap"),
    Case("harmonize --organs-dir elsewhere", _organs_dir_elsewhere, code=1,
         says="PET and organ map fields of view do not overlap"),
    Case("evaluate a probability map as ground truth",
         lambda e, t: ["evaluate", "--pred", str(e["gt"]), "--gt", str(e["prob"])],
         says="not an integer ground-truth label map"),
    Case("evaluate the same grid in another voxel order",
         lambda e, t: ["evaluate", "--pred", str(e["gt_reordered"]), "--gt", str(e["gt"]), "--bootstrap", "10"],
         code=0, says="aggregate (1 cases, 1 with lesions): dice 1.0000"),
    Case("evaluate ground-truth labels 2 warn",
         lambda e, t: ["evaluate", "--pred", str(e["gt"]), "--gt", str(e["labels_two"]), "--bootstrap", "10"],
         code=0, says="labels_two.nii.gz: labels up to 2; every label > 0 is taken as lesion", stream="stderr"),
    # 11. resources: what a file declares is checked before it is unpacked or allocated
    Case("segment: zip of 300 members of 1 MiB zeros", _zip_bomb, says="expands 1"),
    Case("segment: truncated .dcm in a zip named by zip and member", _zipped_truncated,
         says=lambda e: f"truncated.zip (member PET/{e['broken_name']})"),
    Case("segment: zip member of 300 characters", _long_member_name, says="characters) cannot be unpacked"),
    Case("segment: 91-byte .nii.gz declaring 1024^3", lambda e, t: seg(e, t, *out(t), pet=e["declares_4gib"]),
         says="truncated or corrupt", setenv={"PETCT_MAX_MEMORY_GB": "1000"}),
    Case("harmonize: 91-byte .nii.gz declaring 1024^3",
         lambda e, t: ["harmonize", "--pet", str(e["declares_4gib"]), "--ct", str(e["ct"]), "-o", str(t / "cache")],
         code=1, says="truncated or corrupt", setenv={"PETCT_MAX_MEMORY_GB": "1000"}),
    # 12. petct study: every argument checked before the first cell trains
    Case("study: two --pretrained for one preset", lambda e, t: study(e, t, "--pretrained", str(e["mae"]), "none"),
         says="2 entries for 1 preset(s)"),
    Case("study --fractions 1.5", lambda e, t: study(e, t, "--fractions", "1.5"), says="lie in (0, 1]"),
    Case("study --fractions 0", lambda e, t: study(e, t, "--fractions", "0"), says="lie in (0, 1]"),
    Case("study: one --separated_pretrained", lambda e, t: study(e, t, "--separated_pretrained", str(e["mae"])),
         says="needs two entries per preset"),
    Case("study: unknown preset", lambda e, t: study(e, t, "--presets", "nope"), says="unknown preset(s) ['nope']"),
    Case("study: missing MAE folder", lambda e, t: study(e, t, "--pretrained", str(t / "no_mae")),
         says="no such MAE folder"),
    Case("study --organ_aware on a cache without organ maps",
         lambda e, t: study(e, t, "--organ_aware", "true", cache="cache_no_organs"), says="--organ_aware needs organ maps"),
    Case("study --output_dir a file", lambda e, t: study(e, t)[:-1] + ["false", "--output_dir", str(e["a_file"])],
         says="exists and is not a folder"),
    # 13. one line, not a traceback
    Case("segment on a full disk", _disk_full(lambda e, t: seg(e, t, *out(t))), says="No space left on device"),
    Case("segment -i on a full disk", _disk_full(lambda e, t: ["segment", "-i", str(e["cohort"]), "-o", str(t / "out"),
                                                               "--model", str(e["model"]), "--fast"]),
         says="No space left on device"),
    Case("harmonize on a full disk", _disk_full(lambda e, t: ["harmonize", "--input", str(e["cohort"]), "-o",
                                                              str(t / "cache")]), says="No space left on device"),
    Case("quickstart -o a symbolic link", _quickstart_into_link, says="is a symbolic link"),
    Case("segment --model ''", lambda e, t: ["segment", "--pet", str(e["pet"]), "--ct", str(e["ct"]), "--model", "",
                                              *out(t)],
         says="--model: no model given"),
    Case("a DICOM .zip as --pet", lambda e, t: seg(e, t, *out(t), "--dicom-seg", str(t / "seg.dcm"), pet=e["zip"],
                                                   ct=e["ct_dicom"]), code=0, says="lesion(s)",
         check=_seg_algorithm_name),
]


def _run(case: Case, e, tmp, capsys):
    made = case.args(e, tmp)
    try:
        code = made() if callable(made) else main(made)
    except SystemExit as stop:  # argparse: --help, --version
        code = stop.code
    printed = capsys.readouterr()
    if isinstance(code, subprocess.CompletedProcess):
        return code.returncode, code.stdout, code.stderr
    return code, printed.out, printed.err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id if isinstance(c, Case) else None)
def test_bad_input(case, env, tmp_path, capsys, monkeypatch, real_sts):
    for key, value in case.setenv.items():
        monkeypatch.setenv(key, value)
    before = _hash_tree(env["root"], real_sts)
    code, stdout, stderr = _run(case, env, tmp_path, capsys)
    says = case.says(env) if callable(case.says) else case.says
    assert "Traceback" not in stdout + stderr, stderr
    assert code == case.code, f"exit {code}\nstdout: {stdout[-800:]}\nstderr: {stderr[-800:]}"
    if case.stream == "silent":
        assert stdout == "", stdout
    elif case.stream == "stderr":
        assert says in stderr and stderr.count(says) == 1 and "Traceback" not in stderr, stderr
    elif case.stream == "no-bar":
        assert "%|" not in stderr and "it/s" not in stderr, stderr
    elif code == 0 or case.code == 1:  # exit 1: a harmonize run that skipped a study names it in its summary
        assert says in stdout, stdout
    else:
        assert says in stderr and stderr.strip().count("\n") == 0, stderr
    if code == 2:
        nothing_written(env, tmp_path)
    if case.check:
        case.check(env, tmp_path)
    assert _hash_tree(env["root"], real_sts) == before, "an input file was changed or removed"


def test_folder_mode_skips_failed_and_finished_studies(env, tmp_path, capsys):
    """-i STUDIES: one model load, a summary line per study, a broken study reported and skipped, --continue."""
    studies = tmp_path / "studies"
    shutil.copytree(env["cohort"], studies)
    broken = studies / "zz_broken"
    broken.mkdir()
    (broken / "PET.nii.gz").write_bytes(b"not an image")
    shutil.copy(env["ct"], broken / "CT.mha")
    before = _hash_tree(studies)
    args = ["segment", "-i", str(studies), "-o", str(tmp_path / "out"), "--model", str(env["model"]), "--fast",
            "--device", "cpu"]
    assert main(args) == 1
    printed = capsys.readouterr()
    good = sorted(p.name for p in env["cohort"].iterdir())
    assert all((tmp_path / "out" / s / "lesions.nii.gz").is_file() for s in good)
    assert "zz_broken: skipped" in printed.err and "segmented 2, already done 0, failed 1" in printed.out
    summary = json.loads((tmp_path / "out" / "segment_summary.json").read_text())
    assert sorted(summary["segmented"]) == good and list(summary["failed"]) == ["zz_broken"]
    assert main(args) == 2 and "--continue" in capsys.readouterr().err  # finished studies are never redone silently
    assert main([*args, "--continue"]) == 1
    assert "segmented 0, already done 2, failed 1" in capsys.readouterr().out
    assert _hash_tree(studies) == before


def test_every_command_leaves_its_inputs_unchanged(env, tmp_path, capsys, real_sts):
    """phantom -> harmonize -> segment (file, DICOM, folder) -> evaluate: inputs hashed before and after each."""
    cohort = tmp_path / "cohort"
    assert main(["phantom", "-o", str(cohort), "-n", "2", "--seed", "7"]) == 0
    inputs = (cohort, env["root"], real_sts)
    first = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    commands = [
        ["harmonize", "--input", str(cohort), "-o", str(tmp_path / "cache")],
        ["harmonize", "--input", str(cohort), "-o", str(tmp_path / "cache")],  # resumed run
        seg(env, tmp_path, "-o", str(tmp_path / "pred" / "p.nii.gz"), pet=first / "PET.nii.gz", ct=first / "CT.nii.gz"),
        seg(env, tmp_path, "-o", str(tmp_path / "d.nii.gz"), pet=env["pet_dicom"], ct=env["ct_dicom"]),
        ["segment", "-i", str(cohort), "-o", str(tmp_path / "many"), "--model", str(env["model"]), "--fast"],
        ["evaluate", "--pred", str(tmp_path / "pred" / "p.nii.gz"), "--gt", str(first / "SEG.nii.gz"),
         "--json", str(tmp_path / "e.json"), "--bootstrap", "10"],
    ]
    for argv in commands:
        before = _hash_tree(*inputs)
        assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert _hash_tree(*inputs) == before, argv
