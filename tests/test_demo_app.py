"""The demo end to end, served on 127.0.0.1 by this test: through gradio_client, and in a real headless Chromium.

The model is a tiny randomly initialised PetCtForSegmentation saved with save_pretrained (no trained weights exist
offline): its lesions are noise, but every step a visitor triggers (upload checks, segmentation, quantification,
rendering, downloads) runs for real, and the UI says which model it is.
"""

from __future__ import annotations

import csv
import re
import socket
import time
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest

MODEL_LABEL = "tiny-random-unet (random weights: a test model)"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    folder = write_study(make_phantom(3, size="small", n_lesions=3), tmp_path_factory.mktemp("upload") / "study")
    return folder / "PET.nii.gz", folder / "CT.nii.gz"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.web.service import ModelShelf
    from modeling_petct.web.app import build_demo, launch

    model_dir = tmp_path_factory.mktemp("model") / "tiny-random-unet"
    torch.manual_seed(0)
    PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", crop_size=(64, 64, 64))).save_pretrained(model_dir)
    workroot = tmp_path_factory.mktemp("sessions")
    demo = build_demo(ModelShelf({MODEL_LABEL: str(model_dir)}, device="cpu"), workroot=workroot)
    _, url, _ = launch(demo, server_port=_free_port(), block=False)
    yield url, workroot
    demo.close()


def test_gradio_client_upload_segment_download(server, study):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = server
    pet, ct = study
    client = Client(url, verbose=False)
    outputs = client.predict(handle_file(str(pet)), handle_file(str(ct)), MODEL_LABEL, api_name="/segment")
    summary, model_info, *_images, table, mask_file, csv_file = outputs
    assert MODEL_LABEL in model_info and "plain-conv-unet" in model_info

    mask_img, pet_img = nib.load(mask_file), nib.load(str(pet))
    assert Path(mask_file).name == "lesion_mask.nii.gz"
    assert mask_img.shape == pet_img.shape
    assert np.array_equal(mask_img.affine, pet_img.affine)
    mask = np.asarray(mask_img.dataobj)
    n_lesions = cc3d.connected_components(mask > 0, connectivity=18, return_N=True)[1]
    assert f"**{n_lesions} lesion(s)**" in summary

    with open(csv_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(table["data"]) == n_lesions
    assert table["headers"][:3] == ["Lesion", "Volume (ml)", "SUVmax"]
    voxel_ml = float(np.prod(pet_img.header.get_zooms()[:3])) / 1000
    assert sum(float(r["volume_ml"]) for r in rows) == pytest.approx(mask.astype(bool).sum() * voxel_ml)

    from PIL import Image

    middle_axial = np.asarray(Image.open(_images[1]))
    lower_axial = np.asarray(Image.open(client.predict(5, api_name="/axial_slice")))  # the session remembers the study
    assert lower_axial.shape == middle_axial.shape and not np.array_equal(lower_axial, middle_axial)

    example_pet, example_ct = client.predict("Synthetic phantom, seed 0", api_name="/load_example")
    assert nib.load(example_pet).ndim == 3 and nib.load(example_ct).ndim == 3

    not_an_image = pet.parent / "notes.nii.gz"
    not_an_image.write_text("a text file with an image's name\n" * 20)
    with pytest.raises(AppError, match="notes.nii.gz: not an image this demo reads"):
        client.predict(handle_file(str(not_an_image)), handle_file(str(ct)), MODEL_LABEL, api_name="/segment")
    session_dirs = list(server[1].glob("session-*"))
    assert len(session_dirs) == 1
    # one result folder per session (the newest), no scratch folder left by the refused request
    assert sorted(p.name.split("-")[0] for p in session_dirs[0].iterdir()) == ["example", "result"]


def test_browser_upload_segment_table_screenshot(server, study, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, workroot = server
    pet, ct = study
    earlier_sessions = set(workroot.glob("session-*"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text(MODEL_LABEL).first).to_be_visible(timeout=30_000)
            page.locator("#pet-upload input[type=file]").set_input_files(str(pet))
            page.locator("#ct-upload input[type=file]").set_input_files(str(ct))
            # an upload is complete when the server hands back a download link for it
            expect(page.locator('#pet-upload a[download="PET.nii.gz"]')).to_be_visible(timeout=30_000)
            expect(page.locator('#ct-upload a[download="CT.nii.gz"]')).to_be_visible(timeout=30_000)
            page.locator("#segment").click()
            expect(page.locator("#summary")).to_contain_text("lesion(s)", timeout=120_000)
            n_lesions = int(re.search(r"(\d+) lesion\(s\)", page.locator("#summary").inner_text()).group(1))
            first_row = page.locator('#lesion-table [role="row"]').nth(1)  # row 0 holds the column titles
            if n_lesions:
                expect(first_row.locator('[role="gridcell"]').first).to_have_text("1")
            expect(page.locator('#mask-download a[download="lesion_mask.nii.gz"]')).to_be_visible()
            expect(page.locator('#csv-download a[download="lesions.csv"]')).to_be_visible()
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

            axial = page.locator("#axial img")
            before = axial.get_attribute("src")
            page.locator("#axial-index input[type=number]").fill("10")
            page.locator("#axial-index input[type=number]").press("Enter")
            expect(axial).not_to_have_attribute("src", before, timeout=30_000)
            sessions = set(workroot.glob("session-*")) - earlier_sessions
            assert len(sessions) == 1 and any(next(iter(sessions)).glob("result-*/lesion_mask.nii.gz"))

            not_an_image = tmp_path / "holiday.nii.gz"
            not_an_image.write_text("a text file with an image's name\n" * 20)
            page.locator("#pet-upload button[aria-label='Clear']").click()
            page.locator("#pet-upload input[type=file]").set_input_files(str(not_an_image))
            expect(page.locator('#pet-upload a[download="holiday.nii.gz"]')).to_be_visible(timeout=30_000)
            page.locator("#segment").click()
            expect(page.get_by_text("holiday.nii.gz: not an image this demo reads")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    for _ in range(100):  # closing the page ends the session: its folder goes
        if not (sessions & set(workroot.glob("session-*"))):
            break
        time.sleep(0.1)
    assert not (sessions & set(workroot.glob("session-*")))
