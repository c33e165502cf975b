"""The demo's wiring without a browser: per-session files cleaned, one study at a time, the CLI and the Space entry."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest
from conftest import free_port, save_tiny

from modeling_petct.web.service import DemoSession, DemoSessions, ModelShelf

DEMO_APP = Path(__file__).resolve().parents[1] / "modeling_petct" / "web" / "space_app.py"


def test_sessions_have_private_folders_removed_on_close_and_when_too_many(tmp_path):
    sessions = DemoSessions(tmp_path, max_sessions=2)
    a, b = sessions.get("a"), sessions.get("b")
    assert a.workdir != b.workdir and a.workdir.parent == tmp_path and sessions.get("a") is a
    sessions.close("a")
    assert not a.workdir.exists() and sessions.find("a") is None
    sessions.get("c"), sessions.get("d")  # three open: the least recently used ("b") is closed
    assert not b.workdir.exists() and sessions.find("b") is None and len(list(tmp_path.iterdir())) == 2


def test_a_new_request_deletes_the_previous_outputs_of_its_session(tmp_path):
    session = DemoSession.open(tmp_path)
    first = session.fresh_dir("result")
    (first / "lesion_mask.nii.gz").write_bytes(b"x")
    second = session.fresh_dir("result")
    assert not first.exists() and second.is_dir() and not any(second.iterdir())


def test_one_study_at_a_time_with_a_bounded_queue(tmp_path, monkeypatch):
    from modeling_petct.web.app import build_demo

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # build_demo points Gradio's cache at its folder: restore it
    demo = build_demo(ModelShelf({}), workroot=tmp_path)
    assert demo._queue.default_concurrency_limit == 1 and demo._queue.max_size == 16
    assert all(fn.concurrency_limit in ("default", 1) for fn in demo.fns.values())


def test_the_page_has_a_heading_and_every_picture_a_description(tmp_path, monkeypatch):
    import gradio as gr

    from modeling_petct.web.app import build_demo

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    demo = build_demo(ModelShelf({}), workroot=tmp_path)
    blocks = list(demo.blocks.values())
    pictures = [b for b in blocks if isinstance(b, gr.Image)]
    assert len(pictures) == 3 and all(len(p.alt_text or "") > 20 for p in pictures)
    assert any(isinstance(b, gr.Markdown) and str(b.value).startswith("# petct-fm") for b in blocks)


def test_no_model_configured_is_said_plainly():
    shelf = ModelShelf({})
    assert "No model configured" in shelf.describe(None)
    with pytest.raises(Exception, match="no model is configured"):
        shelf.get("anything")


def test_cli_refuses_a_missing_model_before_serving(capsys):
    from modeling_petct.cli import main

    assert main(["demo", "--model", "/nonexistent/model-dir", "--port", "1"]) == 2
    assert "/nonexistent/model-dir" in capsys.readouterr().err


def test_space_entry_point_builds_the_app_from_the_models_variable(monkeypatch, tmp_path):
    import gradio as gr

    monkeypatch.setenv("PETCT_DEMO_MODELS", f"{tmp_path}, org/petct-model")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # build_demo points Gradio's cache at its folder: restore it
    namespace = runpy.run_path(str(DEMO_APP), run_name="space_import")  # not __main__: builds, does not launch
    assert isinstance(namespace["demo"], gr.Blocks)
    assert namespace["shelf"].models == {tmp_path.name: str(tmp_path), "org/petct-model": "org/petct-model"}


def test_cli_offers_the_segmentation_models_quickstart_trained(tmp_path):
    from modeling_petct.cli.demo import quickstart_models

    saved = {"study/pretrained/model": "PetCtForSegmentation", "mae": "PetCtForMaskedImageModeling"}
    for name, architecture in saved.items():
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.json").write_text(f'{{"architectures": ["{architecture}"]}}')
    found = quickstart_models(tmp_path)
    assert found == {"study/pretrained/model · synthetic data (quickstart)": str(tmp_path / "study/pretrained/model")}
    assert quickstart_models(tmp_path / "absent") == {}


def test_cli_offers_the_quickstart_runs_best_validation_first(tmp_path):
    import json

    from modeling_petct.cli.demo import quickstart_models

    cells = []
    for arm, fraction, dice in [("pretrained", 0.1, 0.2), ("scratch", 0.3, 0.43), ("scratch", 1.0, None)]:
        model = tmp_path / "study" / arm / str(fraction) / "best"
        model.mkdir(parents=True)
        cells.append({"arm": arm, "label_fraction": fraction, "best_val_dice": dice, "selected_model": str(model)})
    (tmp_path / "study" / "results.json").write_text(json.dumps({"cells": cells}))
    found = quickstart_models(tmp_path)
    assert list(found) == ["no pretraining, 30% of labels · validation Dice 0.43 · synthetic data",
                           "MAE-pretrained, 10% of labels · validation Dice 0.20 · synthetic data",
                           "no pretraining, 100% of labels · validation Dice n/a · synthetic data"]
    assert found["no pretraining, 30% of labels · validation Dice 0.43 · synthetic data"] == cells[1]["selected_model"]


def test_closing_a_session_deletes_its_uploads_unless_another_open_session_holds_the_same_copy(tmp_path):
    sessions = DemoSessions(tmp_path)
    shared, own = tmp_path / "hash1" / "PET.nii.gz", tmp_path / "hash2" / "CT.nii.gz"
    outside = tmp_path.parent / f"{tmp_path.name}-not-ours.nii.gz"  # never delete what is not under the root
    for path in (shared, own, outside):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    a, b = sessions.get("a"), sessions.get("b")
    a.uploads |= {shared, own, outside}
    b.uploads |= {shared}
    sessions.close("a")
    assert shared.exists() and not own.exists() and not own.parent.exists() and outside.exists()
    sessions.close("b")
    assert not shared.exists()
    outside.unlink()


def test_stale_workroots_of_dead_servers_are_removed_at_start_and_ours_at_exit(tmp_path):
    import subprocess
    import sys

    from modeling_petct.web.workroot import OWNER_FILE, create_workroot, remove_stale_workroots

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, alive = tmp_path / "petct-demo-stale", tmp_path / "petct-demo-alive"
    for folder, pid in ((stale, dead.stdout.strip()), (alive, str(os.getpid()))):
        (folder / "hash").mkdir(parents=True)
        (folder / "hash" / "PET.nii.gz").write_bytes(b"x")
        (folder / OWNER_FILE).write_text(pid)
    assert remove_stale_workroots(tmp_path) == [stale]
    assert alive.exists() and not stale.exists()
    ours = create_workroot(tmp_path)
    assert (ours / OWNER_FILE).read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_sigterm_stops_the_server_and_deletes_its_files_gradio_copies_included(tmp_path):
    """`petct demo` as an operator runs it; an upload lands in Gradio's cache; SIGTERM (docker stop, systemd) ends it."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    petct = Path(sys.executable).with_name("petct")  # the console script, as installed
    server = subprocess.Popen([str(petct), "demo", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.1)
        uploaded = httpx.post(f"{url}/gradio_api/upload", files={"files": ("PET.nii.gz", b"uploaded bytes")}).json()
        (root,) = tmp_path.glob("petct-demo-*")
        assert Path(uploaded[0]).is_file() and Path(uploaded[0]).is_relative_to(root)  # Gradio's copy is in our folder
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    assert not list(tmp_path.glob("petct-demo-*"))


def test_model_facts_come_from_the_files_a_run_leaves(tmp_path):
    import json

    from modeling_petct.web.service import read_model_facts

    model = tmp_path / "quickstart" / "study" / "cells" / "best"
    model.mkdir(parents=True)
    (model / "training_summary.json").write_text(json.dumps({"selected_on": "val_dice", "value": 0.41234}))
    facts = read_model_facts("m", str(model))
    assert facts.synthetic is None and facts.validation == "validation Dice 0.412"
    (tmp_path / "quickstart" / ".petct-quickstart").write_text("marker")
    facts = read_model_facts("m", str(model))
    assert facts.synthetic is True and "synthetic" in facts.markdown() and "0.412" in facts.markdown()
    assert read_model_facts("org/model", "org/model").validation == "no validation score"


def test_the_plausibility_refusal_reaches_the_message_box_naming_the_uploads(tmp_path, monkeypatch):
    """PET and CT swapped: check_pet_ct (inside the Segmenter) refuses; the page says so in one line, result cleared."""
    import types


    from modeling_petct.data.synthetic.phantom import make_phantom, write_study
    from modeling_petct.web.app import Handlers
    from modeling_petct.web.uploads import UploadLimits

    study = write_study(make_phantom(2, size="small", n_lesions=1), tmp_path / "study")
    save_tiny(tmp_path / "m", crop_size=(64, 64, 64))
    handlers = Handlers(ModelShelf({"m": str(tmp_path / "m")}, device="cpu"), DemoSessions(tmp_path / "w"), UploadLimits())
    request = types.SimpleNamespace(session_hash="s")
    out = handlers.segment(str(study / "CT.nii.gz"), str(study / "PET.nii.gz"), "m", 10, 0, "Volume", request,
                           progress=None)  # fmt: skip
    message, header, *_, mask, csv = out
    assert "petct-error" in message and ("PET CT.nii.gz" in message or "CT PET.nii.gz" in message)
    assert "/" not in message.split(":")[0]  # names the uploads, not the server's folders
    assert header == "" and mask is None and csv is None
    assert handlers.sessions.find("s").result is None


def test_result_table_filters_sorts_locates_and_shows_organs_and_its_header_keeps_its_model():
    import types

    from modeling_petct.web.service import DemoResult, ModelFacts

    def row(i, ml, suv, **extra):
        centroid = {"centroid_lps_x_mm": -45.2, "centroid_lps_y_mm": 12.0, "centroid_lps_z_mm": 830.4}
        return {"id": i, "voxels": 1, "volume_ml": ml, "suv_max": suv, "suv_mean": 1.0, "suv_peak": 2.0, "tlg": ml,
                **centroid, **extra}  # fmt: skip

    facts = ModelFacts("A", "/m", "synthetic phantoms only (petct quickstart)", True, "validation Dice 0.432")
    totals = {"total_mtv_ml": 8.1, "total_tlg": 8.1}
    rows = [row(1, 0.1, 9.0), row(2, 5.0, 3.0), row(3, 3.0, 4.0)]
    view = types.SimpleNamespace(suv=types.SimpleNamespace(shape=(4, 4, 4)))
    result = DemoResult(view, rows, totals, None, facts, 1.0, "cpu", "`PET.nii.gz` + `CT.nii.gz`")
    assert [r[0] for r in result.table(0.5, "Volume")] == [2, 3] and result.visible(0.5) == {2, 3}
    assert [r[0] for r in result.table(0.0, "SUVmax")] == [1, 3, 2]
    assert result.table()[0][1:3] == ["5.00", "3.00"] and result.table()[0][6] == "R 45 · P 12 · z 830"
    assert result.columns()[-1] == "Location (patient mm)"
    organ_rows = [row(1, 2.0, 5.0, organ="liver", physiological=False), row(2, 1.0, 6.0, organ="brain", physiological=True)]
    with_organs = DemoResult(None, organ_rows, totals, None, facts, 1.0, "cpu", "x")
    assert with_organs.columns()[-1] == "Organ"
    assert [r[-1] for r in with_organs.table()] == ["liver", "brain (physiological uptake?)"]
    assert "A" in result.header("A") and "still from" not in result.header("A")
    assert "this result is still from `A`" in result.header("B") and "validation Dice 0.432" in result.header("B")
    assert "1 under 0.5 ml hidden" in result.summary(0.5) and "total MTV 8.10 ml" in result.summary(0.5)


class _During:
    """A segmenter that lets something happen (the visitor's next action) while it runs, then segments."""

    def __init__(self, real, action):
        self.real, self.action, self.device = real, action, real.device

    def __call__(self, pet, ct, progress=None):
        self.action()
        return self.real(pet, ct, progress=progress)


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The demo's handlers with a tiny model, one session with a synthetic example loaded."""
    from types import SimpleNamespace

    from modeling_petct.web.app import Handlers
    from modeling_petct.web.uploads import UploadLimits

    shelf = ModelShelf({"tiny": str(save_tiny(tmp_path / "model"))}, device="cpu")
    handlers = Handlers(shelf, DemoSessions(tmp_path / "work"), UploadLimits())
    request = SimpleNamespace(session_hash="visitor")
    pet, ct = handlers.sessions.get("visitor").example(0)
    return SimpleNamespace(handlers=handlers, shelf=shelf, request=request, pet=str(pet), ct=str(ct))


def _segment_while(page, monkeypatch, action):
    real = page.shelf.get("tiny")
    monkeypatch.setattr(page.shelf, "get", lambda label: _During(real, action))
    return page.handlers.segment(page.pet, page.ct, "tiny", 10, 0.0, "Volume", page.request,
                                 progress=lambda fraction, desc=None: None)


def test_uploads_changed_during_a_run_never_show_the_old_result(page, monkeypatch):
    session = page.handlers.sessions.get("visitor")
    shown = _segment_while(page, monkeypatch, lambda: page.handlers.inputs_changed(page.ct, page.ct, page.request))
    assert "uploads changed while segmenting" in shown[0]
    header, mip, downloads = shown[1], shown[3], shown[-4:]
    assert session.result is None and header == "" and mip is None and downloads == [None] * 4


def test_a_closed_page_stops_its_run_and_keeps_no_file(page, monkeypatch):
    session = page.handlers.sessions.get("visitor")
    shown = _segment_while(page, monkeypatch, lambda: page.handlers.end_session(page.request))
    assert session.closed and not session.workdir.exists()
    assert page.handlers.sessions.find("visitor") is None
    assert not list((session.workdir.parent).glob(f"{session.workdir.name}*"))
    assert len(shown) == 1 + len(page.handlers.cleared())


def test_no_lesion_is_a_review_warning_with_the_facts(page):
    import numpy as np

    from modeling_petct.data.volume import Volume
    from modeling_petct.web.service import ModelFacts, review_facts, run_study

    session = page.handlers.sessions.get("visitor")
    facts = ModelFacts("tiny", "x", "synthetic phantoms only", True, "no validation score")
    result = run_study(page.pet, page.ct, page.shelf.get("tiny"), facts, session)
    result.rows, result.notes = [], review_facts(result.view.suv, facts, dicom=True)
    assert result.summary().startswith("**No lesion found: review the MIP.**")
    assert "trained on synthetic phantoms only; this is a real DICOM scan" in result.summary()
    coarse = Volume(np.zeros((4, 4, 4), np.float32), np.diag([8.0, 8.0, 8.0, 1.0]))
    assert "PET voxels of 8.0 x 8.0 x 8.0 mm (training data: about 2-4 mm)" in review_facts(coarse, facts, dicom=False)


def test_a_partial_ct_is_a_fact_to_review_the_result_by(page, tmp_path):
    """A CT that misses part of the PET's uptake: the run goes on, and the summary says where lesions are not sought."""
    import nibabel as nib

    from modeling_petct.web.service import run_study

    ct = nib.load(page.ct)
    partial = tmp_path / "CT_partial.nii.gz"
    nib.save(ct.slicer[:, :, ct.shape[2] // 5:], partial)
    result = run_study(page.pet, partial, page.shelf.get("tiny"), page.shelf.facts["tiny"],
                       page.handlers.sessions.get("visitor"))
    result.rows = []
    assert "of the PET's uptake lies outside the CT's field of view; lesions there are not segmented" in result.summary()


def test_demo_model_list_keeps_every_folder_under_its_own_name(tmp_path):
    from modeling_petct.cli.demo import model_labels

    a, b = (save_tiny(tmp_path / f"cells/seed{s}/best") for s in (0, 1))
    labels = model_labels([str(a), str(b), str(a)])
    assert list(labels) == ["seed0/best", "seed1/best"] and set(labels.values()) == {str(a), str(b)}
    assert list(model_labels([str(a)])) == ["seed0/best"] and list(model_labels(["org/model"])) == ["org/model"]


def test_the_downloaded_mask_numbers_lesions_as_the_table_does(page):
    """Two blobs as the segmenter's mask: the downloaded mask holds ids 1 and 2, each where the table's row says."""
    import nibabel as nib
    import numpy as np

    from modeling_petct.web.service import run_study

    session, real = page.handlers.sessions.get("visitor"), page.shelf.get("tiny")

    def two_blobs(pet, ct, progress=None):
        result = real(pet, ct, progress=progress)
        blobs = np.zeros(result.mask.shape, np.uint8)
        blobs[10:14, 10:14, 10:14], blobs[30:32, 30:32, 30:32] = 1, 1
        result.mask = result.mask.with_array(blobs)
        return result

    two_blobs.device = real.device
    result = run_study(page.pet, page.ct, two_blobs, page.shelf.facts["tiny"], session)
    mask = np.asarray(nib.load(result.files.mask).dataobj)
    assert sorted(np.unique(mask)) == [0, 1, 2] and len(result.rows) == 2
    for row in result.rows:
        assert int((mask == row["id"]).sum()) == row["voxels"]


def _zipped_series(folder: Path, archive: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, Path("export") / path.relative_to(folder.parent))
    return archive


def test_downloads_carry_study_model_and_date_and_a_dicom_pet_gets_its_seg_after_edits_too(page, tmp_path):
    """A zipped DICOM PET/CT: the downloads are named study_model_date, the settings record names the uploads and
    the model, and a DICOM SEG references the uploaded PET series (rewritten after an edit, named _edited). A NIfTI
    PET gets no SEG (as `petct segment --dicom-seg` refuses one) and leaves no copy of its upload behind."""
    import datetime
    import json

    import numpy as np
    import pydicom

    from modeling_petct.data.synthetic.phantom import make_phantom, write_study
    from modeling_petct.web.service import download_stem, edit_result, run_study

    study = write_study(make_phantom(1, size="small", shape=(32, 32, 24), n_lesions=1), tmp_path / "dcm", fmt="dicom")
    pet_zip = _zipped_series(study / "PET", tmp_path / "patient7 PET.zip")
    ct_zip = _zipped_series(study / "CT", tmp_path / "patient7 CT.zip")
    session, segmenter = page.handlers.sessions.get("visitor"), page.shelf.get("tiny")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()

    result = run_study(pet_zip, ct_zip, segmenter, page.shelf.facts["tiny"], session)
    stem = f"patient7-PET_model_{today}"
    assert result.download_stem == stem == download_stem("patient7 PET.zip", "model")
    files = result.files
    assert {p.name for p in files.paths().values()} == {f"{stem}_lesions{s}" for s in
                                                        (".nii.gz", ".csv", ".json", ".settings.json", "_seg.dcm")}
    assert all(p.is_file() for p in files.paths().values())
    record = json.loads(files.settings.read_text())
    assert record["uploads"] == {"PET": "patient7 PET.zip", "CT": "patient7 CT.zip"} and record["model"] == "model"
    assert record["date"].startswith(today)
    seg = pydicom.dcmread(files.dicom_seg)
    pet_series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID
                  for f in (study / "PET").rglob("*") if f.is_file()}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID in pet_series
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "model"

    session.result = result
    edited = edit_result(session, "add", tuple(int(v) for v in np.argwhere(result.editor.pet.array ==
                                                                         result.editor.pet.array.max())[0]))
    assert edited.files.dicom_seg.name == f"{stem}_edited_lesions_seg.dcm" and edited.files.dicom_seg.is_file()
    assert pydicom.dcmread(edited.files.dicom_seg).SOPInstanceUID != seg.SOPInstanceUID
    assert not files.mask.exists()  # the unedited downloads went with their folder

    nifti = run_study(page.pet, page.ct, segmenter, page.shelf.facts["tiny"], session)
    assert nifti.files.dicom_seg is None and nifti.download_stem == f"PET_model_{today}"
    assert sorted(p.name.split("-")[0] for p in session.workdir.iterdir()) == ["example", "result"]
