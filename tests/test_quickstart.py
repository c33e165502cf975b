"""`petct quickstart --tiny` end to end (the real pipeline at a seconds-long budget), and the study's resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    from modeling_petct.cli import main

    out = tmp_path_factory.mktemp("qs") / "run"
    assert main(["quickstart", "--tiny", "-o", str(out)]) == 0
    return out


def test_quickstart_writes_an_honest_report_with_every_figure(quickstart, capsys):
    report = quickstart / "report" / "report.md"
    text = report.read_text()
    for figure in ("label_efficiency.png", "learning_curves.png", "held_out_mip.png", "mae_reconstruction.png"):
        assert f"]({figure})" in text
        assert (report.parent / figure).read_bytes()[:4] == b"\x89PNG"
    assert "| tiny-unet | pretrained |" in text and "| tiny-unet | scratch |" in text
    assert "Does pretraining help here?" in text and "Wilcoxon" in text
    cells = json.loads((quickstart / "study" / "results.json").read_text())["cells"]
    assert {c["arm"] for c in cells} == {"pretrained", "scratch"}
    for cell in cells:  # selection on validation, test split never used for training
        assert not set(cell["split"]["test"]) & set(cell["split"]["train"] + cell["split"]["val"])


def test_quickstart_mask_is_on_the_native_pet_grid(quickstart):
    import nibabel as nib

    mask = next((quickstart / "report").glob("*_lesions.nii.gz"))
    study_id = mask.name.replace("_lesions.nii.gz", "")
    pet = nib.load(str(quickstart / "data" / "studies" / study_id / "PET.nii.gz"))
    seg = nib.load(str(mask))
    assert seg.shape == pet.shape and np.allclose(seg.affine, pet.affine)


def test_study_rerun_skips_finished_cells(quickstart, monkeypatch):
    from modeling_petct.training import segmentation
    from modeling_petct.experiments.quickstart import TINY
    from modeling_petct.experiments.study import StudyArguments, run_study

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(segmentation, "finetune", no_training)
    logs = []
    args = StudyArguments(cache_dir=str(quickstart / "data" / "cache"), output_dir=str(quickstart / "study"),
                          backbones=[TINY.preset], pretrained=[str(quickstart / "mae" / "best")],
                          fractions=list(TINY.fractions), probe_k=0)
    paths = run_study(args, log=logs.append)
    assert all("done earlier" in line for line in logs) and len(logs) == 2 * len(TINY.fractions)
    assert Path(paths["figure"]).exists()


def test_quickstart_refuses_to_replace_a_foreign_folder(tmp_path):
    from modeling_petct.errors import PetCtInputError
    from modeling_petct.experiments.quickstart import run_quickstart

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(PetCtInputError, match="not an earlier quickstart"):
        run_quickstart(tmp_path, tiny=True)
    assert (tmp_path / "precious.txt").exists()
