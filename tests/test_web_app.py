"""The demo end to end, served on 127.0.0.1 by this test: through gradio_client, and in a real headless Chromium.

The models are tiny randomly initialised PetCtForSegmentation saved with save_pretrained inside a folder marked as a
quickstart output (so the demo reports them as trained on synthetic data, with the validation score their
training_summary.json records): their lesions are noise, but every step a visitor triggers (upload checks,
segmentation, quantification, rendering, downloads, cleanup) runs for real, and the UI says which model it is.

The browser test saves screenshots of the final page (1440x900 and 1024x768) under ``$PETCT_DEMO_ARTEFACTS``
(default: the test's tmp folder, ``artefacts/``) and prints where.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest
from conftest import browser_page, fetch, free_port

pytestmark = pytest.mark.slow  # end to end: every test here takes more than a few seconds

MODELS = {  # label -> (seed, validation Dice written in training_summary.json)
    "tiny-random-unet A (test model)": (0, 0.432),
    "tiny-random-unet B (test model)": (1, 0.321),
}
MODEL_A, MODEL_B = MODELS


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    folder = write_study(make_phantom(3, size="small", n_lesions=3), tmp_path_factory.mktemp("upload") / "study")
    return folder / "PET.nii.gz", folder / "CT.nii.gz"


def _tiny_models(root: Path) -> dict[str, str]:
    import torch

    from modeling_petct import PetCtForSegmentation  # noqa: I001  (the model class first)
    from modeling_petct import PetCtConfig

    (root / ".petct-quickstart").write_text("a quickstart output: trained on synthetic phantoms\n")
    folders = {}
    for label, (seed, dice) in MODELS.items():
        torch.manual_seed(seed)
        folder = root / f"model-{seed}" / "best"
        PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", crop_size=(64, 64, 64))).save_pretrained(folder)
        (folder / "training_summary.json").write_text(json.dumps({"selected_on": "val_dice", "value": dice}))
        folders[label] = str(folder)
    return folders


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from modeling_petct.web.app import build_demo, launch
    from modeling_petct.web.service import ModelShelf

    models = _tiny_models(tmp_path_factory.mktemp("quickstart"))
    workroot = tmp_path_factory.mktemp("sessions")
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR")
    demo = build_demo(ModelShelf(models, device="cpu"), workroot=workroot)  # sets GRADIO_TEMP_DIR to workroot
    _, url, _ = launch(demo, server_port=free_port(), block=False)
    yield url, workroot, demo
    demo.close()
    if gradio_cache is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = gradio_cache


def test_gradio_client_upload_segment_download(server, study, capfd):
    from gradio_client import Client, handle_file

    url, workroot, _ = server
    pet, ct = study
    client = Client(url, verbose=False)
    outputs = client.predict(handle_file(str(pet)), handle_file(str(ct)), MODEL_A, 10, 0, "Volume", api_name="/segment")
    message, header, summary, mip, axial, _, _, _, table, mask_file, csv_file, seg_file, records = outputs
    assert "Segmented PET.nii.gz + CT.nii.gz" in message
    assert MODEL_A in header and "synthetic phantoms" in header and "validation Dice 0.432" in header

    mask_img, pet_img = nib.load(mask_file), nib.load(str(pet))
    stem = f"PET_model-0-best_{time.strftime('%Y-%m-%d', time.gmtime())}"  # study_model_date
    assert Path(mask_file).name == f"{stem}_lesions.nii.gz" and Path(csv_file).name == f"{stem}_lesions.csv"
    assert seg_file is None  # a NIfTI PET: no DICOM SEG (it would reference a DICOM series)
    record = json.loads(Path(next(r for r in records if r.endswith(".settings.json"))).read_text())
    assert record["model"] == "model-0/best" and record["uploads"] == {"PET": "PET.nii.gz", "CT": "CT.nii.gz"}
    assert mask_img.shape == pet_img.shape
    assert np.array_equal(mask_img.affine, pet_img.affine)
    mask = np.asarray(mask_img.dataobj)
    n_lesions = cc3d.connected_components(mask > 0, connectivity=18, return_N=True)[1]
    assert f"**{n_lesions} lesion(s)**" in summary

    with open(csv_file, newline="") as f:
        text = f.read()
    rows = list(csv.DictReader(text.splitlines()))
    table = table.get("value", table)  # a component update: {"headers", "value": {"headers", "data"}}
    assert len(rows) == len(table["data"]) == n_lesions
    assert not re.search(r"\d\.\d{4,}", text)  # no 3.8399999999999985: the demo's decimals
    assert table["headers"][:3] == ["#", "Volume (ml)", "SUVmax"] and table["headers"][-1] == "Location (patient mm)"
    voxel_ml = float(np.prod(pet_img.header.get_zooms()[:3])) / 1000
    assert sum(int(r["voxels"]) for r in rows) == mask.astype(bool).sum()
    assert sum(float(r["volume_ml"]) for r in rows) == pytest.approx(mask.astype(bool).sum() * voxel_ml, abs=0.01 * n_lesions)
    volumes = [row[1] for row in table["data"]]
    assert all(re.fullmatch(r"\d+\.\d\d", v) for v in volumes)  # one format: 912.70 beside 2.05
    assert [float(v) for v in volumes] == sorted((float(v) for v in volumes), reverse=True)  # largest first

    from PIL import Image

    middle_axial = np.asarray(Image.open(axial))
    lower_axial = np.asarray(Image.open(client.predict(5, 10, 0, api_name="/axial_slice")))  # the session remembers
    assert lower_axial.shape == middle_axial.shape and not np.array_equal(lower_axial, middle_axial)

    example_pet, example_ct, note = client.predict("Phantom, seed 0", api_name="/load_example")
    assert nib.load(example_pet).ndim == 3 and nib.load(example_ct).ndim == 3 and "Loaded" in note

    capfd.readouterr()
    not_an_image = pet.parent / "notes.nii.gz"
    not_an_image.write_text("a text file with an image's name\n" * 20)
    refused = client.predict(handle_file(str(not_an_image)), handle_file(str(ct)), MODEL_A, 10, 0, "Volume",
                             api_name="/segment")  # fmt: skip
    assert "PET notes.nii.gz: not an image this demo reads" in refused[0] and list(refused[-4:]) == [None] * 4
    assert not refused[1]
    assert "Traceback" not in "".join(capfd.readouterr())  # an ordinary user error is one log line, not a stack
    session_dirs = list(workroot.glob("session-*"))
    assert len(session_dirs) == 1
    # one result folder per session (the newest), no scratch folder left by the refused request
    assert sorted(p.name.split("-")[0] for p in session_dirs[0].iterdir()) == ["example", "pictures", "result"]


def _session(demo, workroot_sessions_before, workroot):
    (session_dir,) = set(workroot.glob("session-*")) - workroot_sessions_before
    sessions = demo.petct_handlers.sessions
    return next(s for s in sessions._open.values() if s.workdir == session_dir)


def _artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PETCT_DEMO_ARTEFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_browser_error_then_success_provenance_numbering_row_jump_stale_clearing_cleanup(server, study, tmp_path):
    from playwright.sync_api import expect
    from PIL import Image

    url, workroot, demo = server
    pet, ct = study
    before = set(workroot.glob("session-*"))
    artefacts = _artefacts(tmp_path)
    not_an_image = tmp_path / "holiday.nii.gz"
    not_an_image.write_text("a text file with an image's name\n" * 20)
    other_ct = tmp_path / "CT_followup.nii.gz"
    shutil.copyfile(ct, other_ct)
    with browser_page(url, last_screenshot=artefacts / "demo-last.png") as page:
        message = page.locator("#message")
        expect(page.locator("#model-info")).to_contain_text("validation Dice 0.432", timeout=30_000)
        expect(page.locator("#model-info")).to_contain_text("synthetic phantoms only")

        # each upload has its own name for screen readers (Gradio calls both "File upload")
        for role, box in (("PET", "#pet-upload"), ("CT", "#ct-upload")):
            expect(page.get_by_role("button", name=f"{role} upload", exact=True)).to_be_visible()
            expect(page.locator(f"{box} input[type=file]")).to_have_attribute("aria-label", f"{role} upload")
        expect(page.locator("#pet-upload, #ct-upload").get_by_label("File upload", exact=True)).to_have_count(0)

        # a file over the size limit: refused before it is sent, in the message box (not a vanishing pop-up)
        huge = tmp_path / "whole_body_PET.nii.gz"
        with open(huge, "wb") as f:
            f.truncate(513 * 2**20)  # sparse: no disk used
        page.locator("#pet-upload input[type=file]").set_input_files(str(huge))
        too_big = "PET whole_body_PET.nii.gz: file is 513 MiB; the limit is 512 MiB"
        expect(message).to_contain_text(too_big, timeout=30_000)
        expect(message.locator(".petct-error")).to_be_visible()
        page.wait_for_timeout(6_000)
        expect(message).to_contain_text(too_big)
        expect(page.locator(".toast-body")).to_have_count(0)
        expect(page.locator("#pet-upload a[download]")).to_have_count(0)  # nothing was uploaded
        expect(page.locator("#pet-upload input[type=file]")).to_have_attribute("aria-label", "PET upload")
        page.evaluate("""() => {  // dropped, not picked: a small file that says it is 600 MiB
            const file = new File(["x"], "dropped_CT.nii.gz");
            Object.defineProperty(file, "size", {value: 600 * 2 ** 20});
            const files = new DataTransfer();
            files.items.add(file);
            document.querySelector("#ct-upload button").dispatchEvent(
                new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: files}));
        }""")
        expect(message).to_contain_text("CT dropped_CT.nii.gz: file is 600 MiB; the limit is 512 MiB")
        expect(page.locator("#ct-upload a[download]")).to_have_count(0)

        # "Load example" without an example: a message, and the upload boxes still take files afterwards
        page.locator("#load-example").click()
        expect(message).to_contain_text("Pick an example in the list first", timeout=30_000)

        # an error: it stays (no 10 s pop-up), with nothing else flagged
        page.locator("#pet-upload input[type=file]").set_input_files(str(not_an_image))
        page.locator("#ct-upload input[type=file]").set_input_files(str(ct))
        expect(page.locator('#pet-upload a[download="holiday.nii.gz"]')).to_be_visible(timeout=30_000)
        expect(page.locator('#ct-upload a[download="CT.nii.gz"]')).to_be_visible(timeout=30_000)
        expect(message).to_contain_text("are ready: press Segment", timeout=30_000)
        page.locator("#segment").click()
        refusal = "PET holiday.nii.gz: not an image this demo reads"
        expect(message).to_contain_text(refusal, timeout=60_000)
        page.wait_for_timeout(12_000)
        expect(message).to_contain_text(refusal)
        expect(message.locator(".petct-error")).to_be_visible()

        # then a success: the error message is replaced
        page.locator("#pet-upload button[aria-label='Clear']").click()
        expect(message).to_contain_text("the PET is missing", timeout=30_000)
        page.locator("#pet-upload input[type=file]").set_input_files(str(pet))
        expect(page.locator('#pet-upload a[download="PET.nii.gz"]')).to_be_visible(timeout=30_000)
        page.locator("#segment").click()
        expect(message.locator(".progress-text")).to_be_visible(timeout=10_000)  # progress: in one place only
        everywhere, in_message = page.evaluate(  # one snapshot: the progress text comes and goes between two counts
            "() => ['.progress-text', '#message .progress-text'].map(s => document.querySelectorAll(s).length)")
        assert everywhere == in_message
        expect(message).to_contain_text("Segmented PET.nii.gz + CT.nii.gz", timeout=180_000)
        expect(message).not_to_contain_text(refusal)
        header = page.locator("#result-model")
        expect(header).to_contain_text(MODEL_A)
        expect(header).to_contain_text("validation Dice 0.432")
        expect(header).to_contain_text("synthetic phantoms only")
        stem = f"PET_model-0-best_{time.strftime('%Y-%m-%d', time.gmtime())}"
        expect(page.locator(f'#mask-download a[download="{stem}_lesions.nii.gz"]')).to_be_visible()
        expect(page.locator(f'#record-download a[download="{stem}_lesions.settings.json"]')).to_be_visible()
        expect(page.locator("#seg-download a[download]")).to_have_count(0)  # a NIfTI PET: no DICOM SEG
        session = _session(demo, before, workroot)
        result = session.result

        # the minimum-volume control hides specks from the table (and the pictures)
        big = [r for r in result.rows if r["volume_ml"] >= 1.0]
        page.locator("#min-volume input").fill("1")
        page.locator("#min-volume input").press("Enter")
        rows = page.locator('#lesion-table [role="row"]')  # row 0 holds the column titles
        expect(rows).to_have_count(len(big) + 1, timeout=30_000)
        first_id = rows.nth(1).locator('[role="gridcell"]').first.inner_text().strip()
        assert int(first_id) == max(big, key=lambda r: r["volume_ml"])["id"]

        # lesion numbers on the MIP: the page shows the picture the server drew with the table's ids
        expect(page.locator("#summary")).to_contain_text("hidden from the table", timeout=30_000)
        mip_src = page.locator("#mip img").get_attribute("src")
        shown_mip = np.asarray(Image.open(fetch(page, mip_src, tmp_path / "mip.png")).convert("RGB"))
        from modeling_petct.outputs.pictures import OUTLINE, pet_mip_overlay

        plain = pet_mip_overlay(result.view.suv, result.view.shown(result.visible(1.0)))
        assert shown_mip.shape[0] > plain.shape[0]  # with the SUV colour bar below
        numbers = (np.abs(shown_mip[: plain.shape[0]].astype(int) - OUTLINE).sum(-1) < 60) & ~np.all(plain == OUTLINE, -1)
        assert numbers.sum() > 10 * len(big)

        # a row click jumps both slice views to that lesion
        target = big[-1] if len(big) > 1 else big[0]
        axial_before = page.locator("#axial img").get_attribute("src")
        row = next(i for i in range(1, len(big) + 1)
                   if rows.nth(i).locator('[role="gridcell"]').first.inner_text().strip() == str(target["id"]))
        rows.nth(row).locator('[role="gridcell"]').nth(1).click()
        axial_index, coronal_index = result.view.slices_through(target["id"])
        expect(message).to_contain_text(f"Showing lesion {target['id']}", timeout=30_000)
        expect(page.locator("#axial-index input[type=number]")).to_have_value(str(axial_index))
        expect(page.locator("#coronal-index input[type=number]")).to_have_value(str(coronal_index))
        if axial_index != result.view.count("axial") // 2:
            expect(page.locator("#axial img")).not_to_have_attribute("src", axial_before)

        page.locator("#example input").click()  # a long choice, to see that it is not clipped
        page.get_by_role("option", name="Phantom, seed 1").click()
        for width, height in ((1440, 900), (1024, 768)):
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            for element in ("#segment", "#message", "#result-model"):
                box = page.locator(element).bounding_box()
                assert box and box["y"] + box["height"] <= height, f"{element} below the fold at {width}x{height}"
            page.screenshot(path=str(artefacts / f"demo-{width}x{height}.png"))
        page.set_viewport_size({"width": 1440, "height": 900})
        page.screenshot(path=str(artefacts / "demo-full-page.png"), full_page=True)

        # the model list changes: the result keeps its model and says so
        page.locator("#model input").click()
        page.get_by_role("option", name=MODEL_B).click()
        expect(page.locator("#model-info")).to_contain_text("validation Dice 0.321", timeout=30_000)
        expect(header).to_contain_text(f"this result is still from {MODEL_A}")
        expect(header).to_contain_text("validation Dice 0.432")

        # a new upload: the old result goes
        page.locator("#ct-upload button[aria-label='Clear']").click()
        page.locator("#ct-upload input[type=file]").set_input_files(str(other_ct))
        expect(page.locator('#ct-upload a[download="CT_followup.nii.gz"]')).to_be_visible(timeout=30_000)
        expect(message).to_contain_text("CT CT_followup.nii.gz are ready: press Segment", timeout=30_000)
        expect(header).to_have_text("")
        expect(rows).to_have_count(1)  # the column titles only
        expect(page.locator('#mask-download a[download$="_lesions.nii.gz"]')).to_have_count(0)
        expect(page.locator("#mip img")).to_have_count(0)
        uploads = set(session.uploads)
        assert uploads and all(p.is_relative_to(workroot) for p in uploads)  # Gradio's copies, in our folder
    print(f"\ndemo screenshots: {artefacts}")
    for _ in range(100):  # closing the page ends the session: its folder and Gradio's copies of its uploads go
        if not session.workdir.exists() and not any(p.exists() for p in uploads):
            break
        time.sleep(0.1)
    assert not session.workdir.exists()
    assert not [p for p in uploads if p.exists()]


def _slow_shelf(shelf, monkeypatch) -> threading.Event:
    """The shelf's segmenters take ~12 s, reporting progress as the sliding window does; the event says one started."""
    started, real_get = threading.Event(), shelf.get

    class Slow:
        def __init__(self, real):
            self.real, self.device = real, real.device

        def __call__(self, pet, ct, progress=None):
            started.set()
            for step in range(60):
                progress(step / 60, "window")
                time.sleep(0.2)
            return self.real(pet, ct, progress=progress)

    monkeypatch.setattr(shelf, "get", lambda label: Slow(real_get(label)))
    return started


def test_browser_a_run_never_outlives_its_inputs_or_its_page(server, study, tmp_path, monkeypatch):
    """Uploads replaced during a run: the old study's result never appears beside the new files. The page closed
    during a run: the run stops and no file of that session is left, then or after the run would have ended."""
    from playwright.sync_api import expect

    url, workroot, demo = server
    pet, ct = study
    other_ct = tmp_path / "CT_other.nii.gz"
    shutil.copyfile(ct, other_ct)
    started = _slow_shelf(demo.petct_handlers.shelf, monkeypatch)
    before = set(workroot.glob("session-*"))
    with browser_page(url) as page:
        message = page.locator("#message")
        page.locator("#pet-upload input[type=file]").set_input_files(str(pet))
        page.locator("#ct-upload input[type=file]").set_input_files(str(ct))
        expect(message).to_contain_text("are ready: press Segment", timeout=60_000)
        page.locator("#segment").click()
        assert started.wait(60)
        page.locator("#ct-upload button[aria-label='Clear']").click()
        page.locator("#ct-upload input[type=file]").set_input_files(str(other_ct))
        expect(message).to_contain_text("uploads changed while segmenting", timeout=120_000)
        expect(page.locator("#result-model")).to_have_text("")
        expect(page.locator('#mask-download a[download$="_lesions.nii.gz"]')).to_have_count(0)
        expect(page.locator("#mip img")).to_have_count(0)

        started.clear()
        page.locator("#segment").click()
        assert started.wait(60)
        session = _session(demo, before, workroot)
        page.close()
    for _ in range(300):
        if session.closed and not session.workdir.exists():
            break
        time.sleep(0.1)
    assert session.closed and not session.workdir.exists()
    time.sleep(15)  # longer than the run would have taken: it stopped, and wrote nothing afterwards
    assert not session.workdir.exists()
    assert not list(workroot.glob(f"{session.workdir.name}*"))
