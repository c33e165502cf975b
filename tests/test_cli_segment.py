"""`petct segment` end to end: outputs on the PET grid with the PET header, stats, DICOM SEG, and refusals."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import CT, grid, oracle_model, sample, save_tiny, suv_at
from modeling_petct.cli import main
from modeling_petct.data.io import write_volume
from modeling_petct.data.volume import Volume


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    return save_tiny(path, features_per_stage=(4, 8, 8, 8))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    pet = sample(suv_at, grid((2.0, 2.0, 3.0), (40, 32, 24), (-1, -1, 1)), (40, 32, 24))
    write_volume(pet, root / "PET.nii.gz")
    write_volume(CT, root / "CT.mha")  # CT as MetaImage on its own grid
    return root


def test_segment_writes_mask_on_pet_grid_with_stats(tmp_path, study, model_dir, capsys):
    out = tmp_path / "out" / "lesions.nii.gz"
    code = main([
        "segment", "--pet", str(study / "PET.nii.gz"), "--ct", str(study / "CT.mha"), "-o", str(out),
        "--model", str(model_dir), "--device", "cpu", "--stats", str(tmp_path / "lesions.csv"), "--stats-json", "--fast",
    ])  # fmt: skip
    assert code == 0 and "lesion(s)" in capsys.readouterr().out
    pet_img, mask_img = nib.load(study / "PET.nii.gz"), nib.load(out)
    assert mask_img.shape == pet_img.shape
    assert np.array_equal(mask_img.header.get_sform(), pet_img.header.get_sform())
    assert np.array_equal(mask_img.header.get_qform(), pet_img.header.get_qform())
    data = json.loads((tmp_path / "lesions.json").read_text())
    with open(tmp_path / "lesions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == data["totals"]["lesion_count"]
    mask = np.asarray(mask_img.dataobj)
    assert sum(int(r["voxels"]) for r in rows) == int((mask > 0).sum())


def test_progress_bar_counts_windows_in_a_terminal_only(tmp_path, study, model_dir, monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    args = ["segment", "--pet", str(study / "PET.nii.gz"), "--ct", str(study / "CT.mha"), "--model", str(model_dir),
            "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "piped.nii.gz")]) == 0
    assert "window" not in capsys.readouterr().err  # logs and pipes stay clean
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*args, "-o", str(tmp_path / "tty.nii.gz")]) == 0
    shown = terminal.getvalue()
    assert "window 1/" in shown and "100%" in shown


def test_dicom_seg_references_the_pet_series(tmp_path, real_sts):
    import highdicom as hd
    import pydicom

    from modeling_petct.inference import InferenceSettings, Segmenter
    from modeling_petct.outputs.files import StudyFiles, write_study

    pet_dir = real_sts / "STS_001" / "PET" / "dicom" / "image"
    ct_dir = real_sts / "STS_001" / "CT" / "dicom" / "image"
    result = Segmenter(oracle_model(), InferenceSettings(overlap=0, roi_size=(32, 64, 64)))(pet_dir, ct_dir)
    assert result.mask.array.sum() > 50
    write_study(result, StudyFiles.beside(tmp_path / "m.nii.gz", dicom_seg=tmp_path / "seg.dcm"))
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    first = pydicom.dcmread(result.pet.meta["dicom_files"][0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.PatientID == first.PatientID
    # every SEG pixel, placed in the world through DICOM geometry, must hit a mask voxel, and the counts agree
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in result.pet.meta["dicom_files"]}
    inverse = np.linalg.inv(result.mask.affine)
    hits = 0
    for frame, item in zip(seg.pixel_array.reshape(-1, seg.Rows, seg.Columns), seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ds = pydicom.dcmread(sources[uid], stop_before_pixels=True)
        r, c = np.nonzero(frame)
        iop, pos = np.asarray(ds.ImageOrientationPatient, float), np.asarray(ds.ImagePositionPatient, float)
        lps = pos + c[:, None] * float(ds.PixelSpacing[1]) * iop[:3] + r[:, None] * float(ds.PixelSpacing[0]) * iop[3:]
        ijk = np.rint((lps * [-1, -1, 1]) @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        assert result.mask.array[tuple(ijk.T)].all()
        hits += len(r)
    assert hits == int(result.mask.array.sum())


def test_dicom_seg_frames_do_not_depend_on_the_masks_array_order(tmp_path, real_sts):
    """The same mask in another axis order (permuted, flipped: same world voxels) gives the same SEG frames; a mask
    half a voxel off the PET's grid is refused."""
    import highdicom as hd

    from modeling_petct.data.io import read_pet
    from modeling_petct.errors import PetCtInputError
    from modeling_petct.outputs.dicom_seg import build_dicom_seg

    pet = read_pet(real_sts / "STS_001" / "PET" / "dicom" / "image")
    mask = np.zeros(pet.shape, np.uint8)
    mask[5:9, 10:20, 3:30] = 1
    mask[20, 30, 40] = 1  # asymmetric: a flip or a swap would move it
    plain = Volume(mask, pet.affine, meta=pet.meta)
    shape = np.array(mask.shape)
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = shape[1] - 1  # j -> n - 1 - j, the world position of every voxel unchanged
    order = [2, 0, 1]
    permute = np.eye(4)[[*order, 3]].T  # new axis a is old axis order[a]
    other = Volume(np.transpose(mask[:, ::-1, :], order), pet.affine @ flip @ permute, meta=pet.meta)
    frames = []
    for i, volume in enumerate((plain, other)):
        build_dicom_seg(volume, pet).save_as(tmp_path / f"{i}.dcm")
        seg = hd.seg.segread(tmp_path / f"{i}.dcm")
        frames.append({item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: frame
                       for frame, item in zip(seg.pixel_array.reshape(-1, seg.Rows, seg.Columns),
                                              seg.PerFrameFunctionalGroupsSequence)})
    assert frames[0].keys() == frames[1].keys() and sum(int(f.sum()) for f in frames[0].values()) == int(mask.sum())
    assert all(np.array_equal(frames[0][uid], frames[1][uid]) for uid in frames[0])
    shifted = pet.affine.copy()
    shifted[:3, 3] += 0.5 * pet.affine[:3, 0]
    with pytest.raises(PetCtInputError, match="not on this PET image's grid"):
        build_dicom_seg(Volume(mask, shifted, meta=pet.meta), pet)


def _bad(args, tmp_path, capsys, message):
    out = tmp_path / "bad" / "lesions.nii.gz"
    code = main(["segment", *args, "-o", str(out), "--stats", str(tmp_path / "bad" / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_refusals_exit_2_without_output(tmp_path, study, model_dir, capsys, real_sts):
    pet, ct, m = str(study / "PET.nii.gz"), str(study / "CT.mha"), ["--model", str(model_dir)]
    _bad(["--pet", str(tmp_path / "missing.nii.gz"), "--ct", ct, *m], tmp_path, capsys, "no such file")
    _bad(["--pet", pet, "--ct", ct], tmp_path, capsys, "pass --model")
    nan = np.ones((8, 8, 8), np.float32)
    nan[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    _bad(["--pet", str(tmp_path / "nan.nii.gz"), "--ct", ct, *m], tmp_path, capsys, "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "4d.nii.gz")
    _bad(["--pet", str(tmp_path / "4d.nii.gz"), "--ct", ct, *m], tmp_path, capsys, "4d.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), tmp_path / "2d.nii.gz")
    _bad(["--pet", str(tmp_path / "2d.nii.gz"), "--ct", ct, *m], tmp_path, capsys, "2d.nii.gz")
    far = np.diag([2.0, 2.0, 3.0, 1.0])
    far[2, 3] = 5000.0
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), far), tmp_path / "far.nii.gz")
    _bad(["--pet", str(tmp_path / "far.nii.gz"), "--ct", ct, *m], tmp_path, capsys, "do not overlap")
    _bad(["--pet", pet, "--ct", ct, *m, "--dicom-seg", str(tmp_path / "bad" / "x.dcm")], tmp_path, capsys, "DICOM")
    sts = real_sts / "STS_001"
    _bad(["--pet", str(sts / "PET" / "dicom" / "image"), "--ct", str(real_sts / "STS_002" / "CT" / "dicom" / "image"), *m],
         tmp_path, capsys, "different patients")  # fmt: skip


def test_refuses_too_large_before_reading_voxels(tmp_path, study, model_dir, capsys):
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 1500))
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
    with open(tmp_path / "huge.nii", "wb") as f:  # header only: reading the voxels would fail
        f.write(header.binaryblock + b"\0" * (int(header["vox_offset"]) - len(header.binaryblock)))
    _bad(["--pet", str(tmp_path / "huge.nii"), "--ct", str(study / "CT.mha"), "--model", str(model_dir)],
         tmp_path, capsys, "too large for memory")  # fmt: skip


def test_pipeline_runs_the_same_code(study, model_dir):
    from transformers import pipeline

    import modeling_petct.inference.pipeline  # noqa: F401  (registers the task)

    seg = pipeline("petct-segmentation", model=str(model_dir), device="cpu")
    out = seg({"pet": str(study / "PET.nii.gz"), "ct": str(study / "CT.mha")}, fast=True)
    assert isinstance(out["mask"], Volume) and out["mask"].shape == (40, 32, 24)
    assert out["totals"]["lesion_count"] == len(out["lesions"])


@pytest.fixture(scope="module")
def guided_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("guided"), features_per_stage=(4, 8, 8, 8), guidance_channels=2,
                     guidance_encoding="ball", guidance_size=2.0)


def test_segment_with_clicks_stamps_them_where_the_file_says(tmp_path, study, guided_dir, monkeypatch, capsys):
    """The click file's (i, j, k) reaches the network as a ball on the model grid that maps back onto that voxel."""
    from modeling_petct.data.clicks import clicks_from_points, write_clicks
    from modeling_petct.data.io import read_volume
    from modeling_petct.inference import sliding_window

    seen = {}
    real = sliding_window.predict_with_organs

    def spy(model, image, settings, **kw):
        seen["guidance"] = kw["guidance"]
        return real(model, image, settings, **kw)

    monkeypatch.setattr(sliding_window, "predict_with_organs", spy)
    pet = read_volume(study / "PET.nii.gz")
    clicks = clicks_from_points([("tumor", (20, 10, 12)), ("background", (5, 25, 3))], pet.affine, pet.shape)
    path = write_clicks(tmp_path / "clicks.json", clicks, pet.affine)
    out = tmp_path / "refined.nii.gz"
    code = main(["segment", "--pet", str(study / "PET.nii.gz"), "--ct", str(study / "CT.mha"), "-o", str(out),
                 "--model", str(guided_dir), "--device", "cpu", "--fast", "--clicks", str(path)])
    assert code == 0, capsys.readouterr().err
    assert nib.load(out).shape == pet.shape
    from modeling_petct.data.harmonize import harmonize

    study_grid = harmonize(pet, read_volume(study / "CT.mha"))
    for channel, ijk in ((0, (20, 10, 12)), (1, (5, 25, 3))):
        native = study_grid.to_native((seen["guidance"][channel] == 1).astype(np.uint8))
        hit = np.argwhere(native > 0)
        assert len(hit) and np.abs(hit - ijk).max() <= 1  # the model voxel of the click covers the clicked voxel


def test_segment_refuses_clicks_it_cannot_use_in_one_line(tmp_path, study, model_dir, guided_dir, capsys):
    base = ["segment", "--pet", str(study / "PET.nii.gz"), "--ct", str(study / "CT.mha"), "--device", "cpu"]
    good = tmp_path / "clicks.json"
    good.write_text('{"type": "Multiple points", "points": [{"point": [1, 2, 3], "name": "tumor"}]}')
    far = tmp_path / "far.json"
    far.write_text('{"type": "Multiple points", "points": [{"point": [1, 2, 300], "name": "tumor"}]}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "Multiple points", "points": [{"point": [1, 2, 3], "name": "lesion"}]}')
    cases = [((model_dir, good), "takes no clicks"), ((guided_dir, bad), "point 0: name"),
             ((guided_dir, far), "outside the PET image")]
    for (model, clicks), problem in cases:
        out = tmp_path / "out.nii.gz"
        code = main([*base, "-o", str(out), "--model", str(model), "--clicks", str(clicks)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and problem in err and err.count("\n") == 0 and not out.exists(), err
    code = main(["segment", "-i", str(study.parent), "-o", str(tmp_path / "many"), "--model", str(guided_dir),
                 "--clicks", str(good)])
    assert code == 2 and "--clicks" in capsys.readouterr().err
