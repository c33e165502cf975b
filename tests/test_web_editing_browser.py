"""Editing in the Space in a real headless Chromium: a model that misses every lesion, then a click on a slice adds
the missed lesion (41%-SUVmax, the tool for models without click inputs), the table and the downloaded mask show
it; a false-positive click removes it, Undo brings it back, and a table row's Remove takes it away."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from conftest import browser_page, fetch, free_port

pytestmark = pytest.mark.slow  # a server and a browser


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    phantom = make_phantom(3, size="small", n_lesions=3)
    folder = write_study(phantom, tmp_path_factory.mktemp("upload") / "study")
    return folder / "PET.nii.gz", folder / "CT.nii.gz", phantom


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.web.app import build_demo, launch
    from modeling_petct.web.service import ModelShelf

    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", crop_size=(64, 64, 64)))
    with torch.no_grad():  # sees nothing: every lesion is a miss to add by hand
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.copy_(torch.tensor([10.0, -10.0]))
    folder = tmp_path_factory.mktemp("blind") / "blind"
    model.save_pretrained(folder)
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR")
    demo = build_demo(ModelShelf({"blind": str(folder)}, device="cpu"), workroot=tmp_path_factory.mktemp("sessions"))
    _, url, _ = launch(demo, server_port=free_port(), block=False)
    yield url
    demo.close()
    if gradio_cache is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = gradio_cache


def _target(phantom):
    """(PET voxel at the peak of the largest lesion, its axial slice index, the picture pixel (x, y) showing it)."""
    import cc3d

    from modeling_petct.outputs.pictures import fused_slice, slice_voxel, to_ras

    parts = cc3d.connected_components((phantom.label.array > 0).astype(np.uint8), connectivity=18)
    largest = np.argmax(np.bincount(parts.ravel())[1:]) + 1
    suv = np.where(parts == largest, phantom.pet.array, -1)
    peak = tuple(int(v) for v in np.unravel_index(np.argmax(suv), suv.shape))
    marker = np.zeros(phantom.pet.shape, np.uint8)
    marker[peak] = 1
    axial = int(np.argwhere(to_ras(phantom.pet.with_array(marker)).array)[0][2])
    height, width = fused_slice(phantom.pet, phantom.pet, plane="axial", index=axial).shape[:2]
    pixels = [(x, y) for y in range(0, height, 2) for x in range(0, width, 2)
              if slice_voxel(phantom.pet, "axial", axial, x, y) == peak]
    return peak, axial, np.mean(pixels, axis=0)


def test_click_to_add_a_missed_lesion_then_false_positive_undo_and_row_removal(server, study, tmp_path):
    from playwright.sync_api import expect

    pet, ct, phantom = study
    peak, axial, (x, y) = _target(phantom)
    with browser_page(server, height=1000) as page:
        message, rows = page.locator("#message"), page.locator('#lesion-table [role="row"]')
        page.locator("#pet-upload input[type=file]").set_input_files(str(pet))
        page.locator("#ct-upload input[type=file]").set_input_files(str(ct))
        expect(message).to_contain_text("are ready: press Segment", timeout=30_000)
        page.locator("#segment").click()
        expect(message).to_contain_text("Segmented PET.nii.gz + CT.nii.gz", timeout=180_000)
        expect(rows).to_have_count(1)  # the column titles only: the model found nothing

        before = page.locator("#axial img").get_attribute("src")
        page.locator("#axial-index input[type=number]").fill(str(axial))
        page.locator("#axial-index input[type=number]").press("Enter")
        expect(page.locator("#axial img")).not_to_have_attribute("src", before, timeout=30_000)

        def click_target(mode: str, expected: str):
            page.locator("#click-mode").get_by_text(mode).click()
            image = page.locator("#axial img")
            box = image.bounding_box()
            natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            page.mouse.click(box["x"] + (x + 0.5) * box["width"] / natural[0],
                             box["y"] + (y + 0.5) * box["height"] / natural[1])
            expect(message).to_contain_text(expected, timeout=60_000)

        click_target("Add a lesion", f"Add a lesion at PET voxel {peak}")
        expect(rows).to_have_count(2, timeout=30_000)
        href = page.locator("#mask-download a").first.get_attribute("href")
        mask = np.asarray(nib.load(fetch(page, href, tmp_path / "edited.nii.gz")).dataobj)
        assert mask.shape == phantom.pet.shape and mask[peak] == 1
        truth = phantom.label.array > 0
        assert (mask > 0)[truth].any() and (mask > 0).sum() < 20 * truth.sum()

        click_target("Mark a false positive", "Mark a false positive at PET voxel")
        expect(rows).to_have_count(1, timeout=30_000)
        page.locator("#undo").click()
        expect(message).to_contain_text("Undone: 1 lesion(s) now", timeout=60_000)
        expect(rows).to_have_count(2, timeout=30_000)

        rows.nth(1).locator('[role="gridcell"]').nth(1).click()
        expect(message).to_contain_text("Showing lesion 1", timeout=30_000)
        page.locator("#remove-lesion").click()
        expect(message).to_contain_text("Removed lesion 1: 0 lesion(s) now", timeout=60_000)
        expect(rows).to_have_count(1, timeout=30_000)
