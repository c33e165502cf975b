"""Editing a result in the Space without a browser: a click on a slice picture finds its PET voxel, edits add, remove
and undo lesions (41%-SUVmax for models without click inputs, the model itself for click-guided ones), and the table
and the downloaded mask follow the edited mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from conftest import make_affine
from modeling_petct.data.volume import Volume
from modeling_petct.outputs.pictures import OUTLINE, fused_slice, slice_voxel, to_ras


@pytest.mark.parametrize("columns", [np.diag([-4.0, -4.0, 3.0]), np.diag([2.0, 3.0, 4.0]),
                                     np.array([[0, 3.0, 0], [-2.0, 0, 0], [0, 0, 4.0]])])
def test_a_pixel_of_a_slice_picture_maps_back_to_its_voxel(columns):
    shape, voxel = (30, 24, 20), (7, 5, 12)
    affine = make_affine(columns, origin=(5, 6, 7))
    mask = np.zeros(shape, np.uint8)
    mask[voxel] = 1
    pet, m = Volume(np.zeros(shape, np.float32), affine), Volume(mask, affine)
    ras_voxel = np.argwhere(to_ras(m).array > 0)[0]
    for plane, axis in (("axial", 2), ("coronal", 1)):
        picture = fused_slice(pet, pet, m, plane=plane, index=int(ras_voxel[axis]))
        outline = np.argwhere(np.all(picture == OUTLINE, -1))  # drawn around the voxel
        y, x = outline.mean(0)
        assert slice_voxel(pet, plane, int(ras_voxel[axis]), x, y) == voxel
        assert slice_voxel(pet, plane, int(ras_voxel[axis]), x, picture.shape[0] + 5) is None  # on the colour bar


@pytest.fixture(scope="module")
def phantom():
    from modeling_petct.data.synthetic.phantom import make_phantom

    return make_phantom(3, size="small", n_lesions=3)


def _lesions(label: np.ndarray) -> list[np.ndarray]:
    import cc3d

    parts = cc3d.connected_components((label > 0).astype(np.uint8), connectivity=18)
    return [parts == k for k in range(1, int(parts.max()) + 1)]


def test_without_click_inputs_add_is_the_41_percent_region_and_edits_undo_exactly(phantom):
    from modeling_petct.web.editing import MaskEditor

    lesions = _lesions(phantom.label.array)
    target = max(lesions, key=lambda m: m.sum())
    peak = np.unravel_index(np.argmax(np.where(target, phantom.pet.array, -1)), target.shape)
    editor = MaskEditor(phantom.pet, np.zeros(phantom.pet.shape, np.uint8))
    editor.apply("add", peak)
    added = editor.mask() > 0
    dice = 2 * (added & target).sum() / (added.sum() + target.sum())
    assert added[peak] and dice > 0.4, dice
    editor.apply("false positive", peak)
    assert not editor.mask().any()
    editor.undo()
    assert np.array_equal(editor.mask() > 0, added)
    editor.reset()
    assert not editor.mask().any() and editor.undo() is None


def test_a_click_guided_model_reruns_with_the_clicks_and_the_downloads_follow(phantom, tmp_path):
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.data.io import write_volume
    from modeling_petct.web.service import DemoSession, edit_result, lesion_voxel, read_model_facts, run_study

    write_volume(phantom.pet, tmp_path / "PET.nii.gz")
    write_volume(phantom.ct, tmp_path / "CT.nii.gz")
    torch.manual_seed(0)
    config = PetCtConfig.from_preset("tiny-unet", crop_size=(64, 64, 64), guidance_channels=2)
    model = PetCtForSegmentation(config).eval()
    seen = []
    session = DemoSession.open(tmp_path / "sessions")
    from modeling_petct.inference import Segmenter

    result = run_study(tmp_path / "PET.nii.gz", tmp_path / "CT.nii.gz", Segmenter(model), read_model_facts("m", "m"),
                       session)
    session.result = result  # as the page's handler keeps it
    refine = result.editor.refine
    result.editor.refine = lambda clicks: seen.append(list(clicks)) or refine(clicks)
    target = max(_lesions(phantom.label.array), key=lambda m: m.sum())
    voxel = tuple(int(v) for v in np.argwhere(target)[0])
    edited = edit_result(session, "add", voxel)
    assert len(seen) == 1 and [c.kind for c in seen[0]] == ["tumor"]
    near = tuple(slice(max(0, v - 2), v + 3) for v in voxel)  # the model's lesion, or the 41% region where it misses
    assert result.editor.mask()[near].any()
    assert np.allclose(seen[0][0].world, phantom.pet.affine[:3, :3] @ voxel + phantom.pet.affine[:3, 3])
    saved = np.asarray(nib.load(edited.files.mask).dataobj)  # voxel values: the table's lesion numbers
    assert np.array_equal(saved > 0, result.editor.mask() > 0) and saved.max() == len(edited.rows)
    assert sum(r["voxels"] for r in edited.rows) == int((saved > 0).sum())
    import json

    from modeling_petct.outputs.files import settings_path

    record = json.loads(settings_path(edited.files.mask).read_text())
    assert [e["kind"] for e in record["edits"]] == ["add"]  # the settings record says the mask was edited
    assert edited.files.mask.name == result.files.mask.name.replace("_lesions", "_edited_lesions")
    from modeling_petct.web.app import Handlers, downloads

    shown = Handlers(None, None, None).edited(session, "Added:", 10, 0.0, "Volume", 5, 5)  # what the page then shows
    assert len(shown) == 10 and shown[1] == edited.summary() and shown[-4:] == downloads(edited)
    assert len(shown[5].value["data"]) == len(edited.rows)
    if edited.rows:  # a row's "remove" takes that lesion away, whatever the model says
        first = edited.rows[0]["id"]
        removed = edit_result(session, "remove", lesion_voxel(edited, first))
        assert len(removed.rows) == len(edited.rows) - 1
    undone = edit_result(session, "undo")
    undone = edit_result(session, "undo") if edited.rows else undone
    assert np.array_equal(np.asarray(nib.load(undone.files.mask).dataobj) > 0, result.editor.base > 0)
    assert len(seen) == 1  # the undone clicks were not re-run
    session.close()


def test_a_method_without_a_harmonised_study_re_runs_whole_on_a_click():
    """nnU-Net imports (their own preprocessing, no harmonised study) keep the whole re-run; no windowed refiner."""
    from types import SimpleNamespace

    from modeling_petct.web.service import _refiner

    class Imported:
        accepts_clicks = True

        def click_refiner(self, study, probabilities):
            raise AssertionError("a windowed refiner needs a harmonised study")

    result = SimpleNamespace(harmonized=None, probabilities=np.zeros((2, 3, 3, 3), np.float32))
    assert callable(_refiner(Imported(), result)) and result.probabilities is not None


def test_the_spaces_rule_keeps_a_guided_models_answer_and_fills_only_what_it_leaves_empty(phantom):
    """isocontour_edit(where_missed=True), the rule the Space applies after a click-guided model: an "add" on a lesion
    the model found (even on its rim, outside the model's outline) changes nothing; one on a lesion it left empty gets
    the 41% region."""
    from modeling_petct.inference.isocontour import isocontour_edit, isocontour_region

    suv, spacing = np.asarray(phantom.pet.array, np.float32), phantom.pet.spacing
    found, missed = sorted(_lesions(phantom.label.array), key=lambda m: -m.sum())[:2]
    peaks = [tuple(np.unravel_index(np.argmax(np.where(m, suv, -1)), m.shape)) for m in (found, missed)]
    model_mask = found.astype(np.uint8)  # the model found the first lesion (its own outline), missed the second
    edited = isocontour_edit(model_mask, suv, [(0, p) for p in peaks], spacing, where_missed=True)
    assert np.array_equal(edited > 0, found | isocontour_region(suv, peaks[1], spacing))
    dot = np.zeros_like(model_mask)
    dot[peaks[0]] = 1  # a one-voxel answer stands with the rule, also after a click beside it, and grows without it
    rim = tuple(np.argwhere(isocontour_region(suv, peaks[0], spacing) & ~dot.astype(bool))[0])
    assert isocontour_edit(dot, suv, [(0, rim)], spacing, where_missed=True).sum() == 1
    assert isocontour_edit(dot, suv, [(0, rim)], spacing).sum() > 1
    assert not isocontour_edit(edited, suv, [(1, peaks[1])], spacing, where_missed=True)[missed].any()
