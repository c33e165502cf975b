"""Organ maps: TotalSegmentator's two output forms, organ geometry through harmonisation, cache and crops
exactly like lesion labels, the organ-aware model's second head and loss, and the lesion table's organ column."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import EXACT_GRIDS, SHAPE, centred_affine, make_study, world
from modeling_petct import PetCtConfig, PetCtForSegmentation
from modeling_petct.data import organs as org
from modeling_petct.data.cache import StudyCache
from modeling_petct.data.harmonize import harmonize
from modeling_petct.data.io import write_volume
from modeling_petct.data.transforms import SegCropDataset
from modeling_petct.data.volume import Volume
from modeling_petct.errors import PetCtInputError
from modeling_petct.inference.segment import suppress_physiological
from modeling_petct.outputs.lesions import lesion_table, write_lesion_csv

# TotalSegmentator v2 'total' ids from its class map (totalsegmentator/map_to_binary.py), written out here on purpose
TS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5, "pancreas": 7, "urinary_bladder": 21,
      "vertebrae_L1": 31, "heart": 51, "brain": 90, "rib_left_1": 92, "sternum": 116, "costal_cartilages": 117}


def test_class_ids_match_totalsegmentator_class_map():
    assert {k: org.TOTALSEG_TOTAL_IDS[k] for k in TS} == TS
    assert org.TOTALSEG_MAX_ID == 117 and len(set(org.TOTALSEG_TOTAL_IDS.values())) == 117
    assert org.ORGANS[:3] == ("brain", "heart", "liver")


def ts_ids_volume(shape=(20, 18, 16), aff=None):
    """A multilabel map in TotalSegmentator ids: slabs of liver, both kidneys, heart, brain, pancreas (not an organ of
    the PET vocabulary) and a rib; uint8 on the given grid."""
    ids = np.zeros(shape, np.uint8)
    for i, name in enumerate(["liver", "kidney_left", "kidney_right", "heart", "brain", "pancreas", "rib_left_1"]):
        ids[2 * i + 1: 2 * i + 3, 2:-2, 3:-3] = TS[name]
    return Volume(ids, np.diag([-1.5, -1.5, 2.0, 1.0]) if aff is None else aff, "ts.nii.gz")


def expected_pet_labels(ids):
    want = {TS["liver"]: "liver", TS["kidney_left"]: "kidneys", TS["kidney_right"]: "kidneys", TS["heart"]: "heart",
            TS["brain"]: "brain", TS["rib_left_1"]: "skeleton"}
    out = np.zeros_like(ids)
    for i, name in want.items():
        out[ids == i] = org.ORGANS.index(name) + 1
    return out


def test_multilabel_file_reads_as_pet_organ_labels(tmp_path):
    vol = ts_ids_volume()
    write_volume(vol, tmp_path / "organs.nii.gz")
    organ_map = org.read_organ_map(tmp_path / "organs.nii.gz")
    assert organ_map.array.dtype == np.uint8 and np.allclose(organ_map.affine, vol.affine)
    np.testing.assert_array_equal(organ_map.array, expected_pet_labels(vol.array))
    assert not np.any(organ_map.array[vol.array == TS["pancreas"]])  # outside the vocabulary -> other


def test_folder_of_class_masks_reads_like_the_multilabel_file(tmp_path):
    vol = ts_ids_volume()
    folder = tmp_path / "segmentations"
    folder.mkdir()
    for name, i in TS.items():  # TotalSegmentator writes every class, empty ones too
        nib.save(nib.Nifti1Image((vol.array == i).astype(np.uint8), vol.affine), folder / f"{name}.nii.gz")
    assert org.is_totalsegmentator_folder(folder)
    organ_map = org.read_organ_map(folder)
    np.testing.assert_array_equal(organ_map.array, expected_pet_labels(vol.array))
    np.testing.assert_allclose(organ_map.affine, vol.affine)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), folder / "heart.nii.gz")
    with pytest.raises(PetCtInputError, match="heart.nii.gz"):
        org.read_organ_map(folder)  # masks on different grids are refused, naming the file


def test_bad_organ_maps_are_refused_in_one_line(tmp_path):
    write_volume(Volume(np.full((4, 4, 4), 200, np.uint8), np.eye(4)), tmp_path / "big.nii.gz")
    with pytest.raises(PetCtInputError, match="ids 200..200"):
        org.read_organ_map(tmp_path / "big.nii.gz")
    write_volume(Volume(np.full((4, 4, 4), 2.5, np.float32), np.eye(4)), tmp_path / "float.nii.gz")
    with pytest.raises(PetCtInputError, match="non-integer"):
        org.read_organ_map(tmp_path / "float.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PetCtInputError, match="not a TotalSegmentator output folder"):
        org.read_organ_map(tmp_path / "empty")


def test_vocabulary_is_configurable():
    ids = ts_ids_volume().array
    custom = org.organs_from_totalsegmentator_ids(ids, {"kidneys": ["kidney_left", "kidney_right"],
                                                        "pancreas": ["pancreas"]})
    assert set(np.unique(custom)) == {0, 1, 2}
    assert np.all(custom[ids == TS["pancreas"]] == 2) and np.all(custom[ids == TS["liver"]] == 0)
    picked = org.organs_from_totalsegmentator_ids(ids, ["liver"])
    np.testing.assert_array_equal(picked, (ids == TS["liver"]).astype(np.uint8))
    with pytest.raises(ValueError, match="unknown organ"):
        org.vocabulary(["appendix"])
    with pytest.raises(ValueError, match="unknown classes"):
        org.vocabulary({"x": ["not_a_class"]})
    np.testing.assert_array_equal(org.relabel(np.array([0, 3, 5, 1]), org.ORGANS, ("kidneys", "liver")), [0, 2, 1, 0])


# --- geometry: organ maps follow exactly the lesion label's path --------------------------------------------------

@pytest.mark.parametrize("name", ["LPS", "flipped", "permuted"])
def test_organs_round_trip_exactly_on_aligned_grids(name):
    pet, ct, label = make_study(EXACT_GRIDS[name], SHAPE)
    kidneys, liver = org.ORGANS.index("kidneys") + 1, org.ORGANS.index("liver") + 1
    organs = label.with_array(np.where(label.array > 0, kidneys, 0).astype(np.uint8))
    organs.array[: SHAPE[0] // 2][organs.array[: SHAPE[0] // 2] == 0] = liver  # plus a 'liver' half-volume
    h = harmonize(pet, ct, label, organs=organs, normalization="none", crop_body=False)
    assert h.organs.dtype == np.uint8 and h.organ_names == org.ORGANS
    np.testing.assert_array_equal(h.to_native(h.organs), organs.array)


@pytest.mark.parametrize("columns", [np.diag([2.0, -2.0, -3.0]),
                                     np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0],
                                               [0, 0, 1]]) @ np.diag([2.0, 2.0, 3.0])], ids=["flipped", "oblique"])
def test_organs_are_resampled_exactly_like_lesion_labels(columns):
    pet, ct, label = make_study(centred_affine(columns, SHAPE), SHAPE)
    h = harmonize(pet, ct, label, organs=label.with_array(label.array * 5), normalization="none")
    np.testing.assert_array_equal(h.organs, h.label * 5)  # same nearest-neighbour path, voxel for voxel


def test_organs_on_the_ct_grid_land_by_world_coordinates():
    """TotalSegmentator's map lives on the CT grid (here finer, permuted and shifted): every harmonised voxel gets
    the organ of the world point it covers, up to one CT voxel at the organ border."""
    pet_aff = centred_affine(np.diag([-4.0, -4.0, 3.0]), SHAPE)
    ct_shape = (80, 70, 30)
    ct_aff = centred_affine([[0, 0, 1.2], [1.1, 0, 0], [0, 0.9, 0]], ct_shape)
    ct_aff[:3, 3] += [1.0, 2.0, -3.0]
    pet, ct, label = make_study(pet_aff, SHAPE, ct_affine=ct_aff, ct_shape=ct_shape)
    x0 = float(world(ct_aff, ct_shape)[0].mean())
    organ_map = Volume(np.where(world(ct_aff, ct_shape)[0] > x0, 3, 0).astype(np.uint8), ct_aff, "organs.nii.gz")
    h = harmonize(pet, ct, label, organs=organ_map, normalization="none", crop_body=False)
    x = world(h.grid_affine, h.shape)[0]
    pts = world(h.grid_affine, h.shape).reshape(3, -1)
    idx = (np.linalg.inv(ct_aff)[:3, :3] @ pts + np.linalg.inv(ct_aff)[:3, 3:4]).reshape(3, *h.shape)
    inside = np.all((idx >= 0) & (idx <= np.reshape(ct_shape, (3, 1, 1, 1)) - 1), axis=0)
    expect = np.where(x > x0, 3, 0)
    wrong = inside & (h.organs != expect)
    assert inside.mean() > 0.2 and (h.organs[inside] == 3).mean() > 0.2
    assert np.all(np.abs(x[wrong] - x0) < 1.2)  # only where the border falls inside one CT voxel
    outside = np.any((idx < -0.51) | (idx > np.reshape(ct_shape, (3, 1, 1, 1)) - 0.49), axis=0)
    assert outside.any() and np.all(h.organs[outside] == 0)  # beyond the CT's field of view: other


def test_cache_and_crops_carry_organs_aligned_with_labels(tmp_path):
    pet, ct, label = make_study(EXACT_GRIDS["LPS"], SHAPE)
    organs = label.with_array(label.array * 5)  # 'kidneys' exactly where the lesions are
    cache = StudyCache(tmp_path / "cache")
    cache.write("s1", harmonize(pet, ct, label, organs=organs))
    cache.write("s0", harmonize(pet, ct, label))
    assert cache.info("s1")["has_organs"] and cache.info("s1")["organ_names"] == list(org.ORGANS)
    assert not cache.info("s0")["has_organs"] and cache.load("s0").organs is None
    crops = SegCropDataset(cache, ["s1"] * 6, crop_size=(16, 16, 16), fg_prob=1.0, zoom_prob=1.0,
                           organ_labels=("liver", "kidneys"))
    for i in range(6):
        s = crops[i]
        assert s["organ_labels"].shape == s["labels"].shape and s["organ_labels"].dtype == torch.int64
        torch.testing.assert_close(s["organ_labels"], s["labels"] * 2)  # kidneys = 2 in the model's order
    with pytest.raises(ValueError, match="no organ map"):
        SegCropDataset(cache, ["s0"], crop_size=(16, 16, 16), organ_labels=("kidneys",))[0]


def test_adapters_find_organ_maps(tmp_path):
    from modeling_petct.data.adapters import discover

    for sid in ("a", "b", "c"):
        (tmp_path / "data" / sid).mkdir(parents=True)
        for f in ("PET.nii.gz", "CT.nii.gz"):
            (tmp_path / "data" / sid / f).write_bytes(b"")
    (tmp_path / "data" / "a" / "organs.nii.gz").write_bytes(b"")
    (tmp_path / "data" / "b" / "segmentations").mkdir()
    (tmp_path / "data" / "b" / "segmentations" / "liver.nii.gz").write_bytes(b"")
    rows = {r["study_id"]: r["organ_path"] for r in discover(tmp_path / "data", "folder")}
    assert rows["a"].endswith("a/organs.nii.gz") and rows["b"].endswith("b/segmentations") and rows["c"] == ""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.nii.gz").write_bytes(b"")
    rows = {r["study_id"]: r["organ_path"] for r in discover(tmp_path / "data", "folder", tmp_path / "elsewhere")}
    assert rows["c"].endswith("elsewhere/c.nii.gz") and rows["a"] == ""


# --- the organ-aware model --------------------------------------------------------------------------------------

def test_lesion_only_stays_the_default():
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet"))
    assert model.organ_head is None and not any(k.startswith("organ") for k in model.state_dict())
    out = model(torch.randn(1, 2, 32, 32, 32), labels=torch.zeros(1, 32, 32, 32, dtype=torch.long))
    assert out.organ_logits is None and out.organ_loss is None and torch.equal(out.loss, out.lesion_loss)
    with pytest.raises(ValueError, match="no organ head"):
        model(torch.randn(1, 2, 32, 32, 32), organ_labels=torch.zeros(1, 32, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="organ_labels"):
        PetCtConfig.from_preset("tiny-unet", organ_labels=("liver", "liver"))


def test_organ_loss_is_added_with_its_weight_and_trains_the_organ_head(tmp_path):
    torch.manual_seed(0)
    config = PetCtConfig.from_preset("tiny-unet", **org.organ_aware_overrides(("brain", "kidneys"), weight=0.5))
    model = PetCtForSegmentation(config)
    x = torch.randn(2, 2, 32, 32, 32)
    labels = torch.zeros(2, 32, 32, 32, dtype=torch.long)
    labels[:, 10:14, 10:14, 10:14] = 1
    organs = torch.zeros_like(labels)
    organs[:, :8], organs[:, 20:] = 1, 2
    out = model(x, labels=labels, organ_labels=organs)
    assert out.organ_logits.shape == (2, 3, 32, 32, 32) and out.logits.shape == (2, 2, 32, 32, 32)
    torch.testing.assert_close(out.loss, out.lesion_loss + 0.5 * out.organ_loss)
    out.loss.backward()
    assert model.organ_head.weight.grad.abs().sum() > 0
    # the lesion head and loss are those of the lesion-only model with the same weights
    plain = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet"))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("organ_head.")})
    torch.testing.assert_close(plain(x, labels=labels).loss, out.lesion_loss)
    # a few steps on the organ term alone lower it (its gradient reaches the organ head and the backbone)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(8):
        opt.zero_grad()
        loss = model(x, organ_labels=organs).loss
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first
    model.save_pretrained(tmp_path / "m")
    again = PetCtForSegmentation.from_pretrained(tmp_path / "m")
    assert again.config.organ_labels == ("brain", "kidneys") and again.config.organ_loss_weight == 0.5
    model.freeze_backbone()
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"segmentation_head",
                                                                                        "organ_head"}


def test_sliding_window_returns_the_organ_map():
    from modeling_petct.inference import InferenceSettings, predict_probabilities, predict_with_organs

    torch.manual_seed(0)
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", organ_labels=("brain", "liver"))).eval()
    with torch.no_grad():
        model.organ_head.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # every voxel 'liver'
    image = np.random.default_rng(0).normal(size=(2, 40, 36, 33)).astype(np.float32)
    probs, organ_map = predict_with_organs(model, image, InferenceSettings(overlap=0.25))
    assert probs.shape == (2, 40, 36, 33) and organ_map.dtype == np.uint8 and np.all(organ_map == 2)
    np.testing.assert_allclose(predict_probabilities(model, image, InferenceSettings(overlap=0.25)), probs)
    lesion_only = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet")).eval()
    assert predict_with_organs(lesion_only, image)[1] is None


# --- the organ column -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom():
    from modeling_petct.data.synthetic.phantom import make_phantom

    study = make_phantom(11, n_lesions=6)
    organs_ts = study.organs
    organ_map = org.organ_map_on(organs_ts.with_array(org.organs_from_totalsegmentator_ids(organs_ts.array)),
                                 study.pet)
    return study, organ_map


def pet_index(study, centre_mm):
    ijk = np.linalg.inv(study.pet.affine) @ np.r_[centre_mm, 1.0]
    return tuple(int(round(v)) for v in ijk[:3])


def test_lesions_are_placed_in_the_phantoms_organs(phantom, tmp_path):
    from modeling_petct.outputs.lesions import lesion_components

    study, organ_map = phantom
    rows, totals = lesion_table(study.label, study.pet, organ_map)
    components = lesion_components(study.label)
    expected = {"liver": "liver", "lung": "lungs"}
    checked = 0
    for les in study.lesions:
        at = components[pet_index(study, les["centre_mm"])]
        if les["site"] in expected and at:
            row = next(r for r in rows if r["id"] == at)
            assert row["organ"] == expected[les["site"]], les
            assert row["physiological"] is False and 0.5 <= row["organ_fraction"] <= 1.0
            checked += 1
    assert checked >= 1
    assert totals["physiological_count"] == sum(r["physiological"] for r in rows)
    write_lesion_csv(tmp_path / "l.csv", rows)
    with open(tmp_path / "l.csv") as f:
        back = list(csv.DictReader(f))
    assert [r["organ"] for r in back] == [r["organ"] for r in rows] and "physiological" in back[0]
    assert json.loads(json.dumps(rows))[0]["organ"] == rows[0]["organ"]


def test_physiological_uptake_is_flagged_and_optionally_suppressed(phantom):
    study, organ_map = phantom
    brain = np.asarray(organ_map.array) == org.ORGANS.index("brain") + 1
    bladder = np.asarray(organ_map.array) == org.ORGANS.index("urinary_bladder") + 1
    assert brain.any() and bladder.any()
    mask = study.label.with_array(((study.label.array > 0) | brain | bladder).astype(np.uint8))
    rows, totals = lesion_table(mask, study.pet, organ_map)
    by_organ = {r["organ"]: r for r in rows}
    assert by_organ["brain"]["physiological"] and by_organ["urinary_bladder"]["physiological"]
    assert by_organ["brain"]["organ_fraction"] == 1.0
    kept, removed = suppress_physiological(mask, organ_map)
    assert removed == 2
    np.testing.assert_array_equal(kept.array > 0, study.label.array > 0)  # the true lesions all stay
    # a component reaching well beyond the bladder (< 90 % of it inside) stays
    from scipy import ndimage

    grown = ndimage.binary_dilation(bladder, iterations=2)
    assert (grown & bladder).sum() / grown.sum() < org.SUPPRESS_FRACTION
    assert suppress_physiological(mask.with_array(grown.astype(np.uint8)), organ_map)[1] == 0


def test_dicom_seg_has_one_segment_per_organ_with_its_anatomic_region(phantom, tmp_path):
    import highdicom as hd

    from modeling_petct.data.io import read_pet
    from modeling_petct.data.synthetic.phantom import write_study
    from modeling_petct.outputs.dicom_seg import ORGAN_SNOMED, build_dicom_seg

    study, organ_map = phantom
    write_study(study, tmp_path / "s", "dicom")
    pet = read_pet(next(p for p in (tmp_path / "s").iterdir() if p.is_dir() and p.name.upper().startswith("PET")))
    mask, organs = (org.organ_map_on(v, pet) for v in (study.label, organ_map))
    rows, _ = lesion_table(mask, pet, organs)
    build_dicom_seg(mask, pet, organs=organs).save_as(tmp_path / "seg.dcm")
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    labels = {d.SegmentLabel: d for d in seg.SegmentSequence}
    assert set(labels) == {f"FDG-avid lesion ({r['organ'].replace('_', ' ')})" for r in rows}
    for organ in {r["organ"] for r in rows} & set(ORGAN_SNOMED):
        item = labels[f"FDG-avid lesion ({organ.replace('_', ' ')})"]
        assert item.AnatomicRegionSequence[0].CodeValue == ORGAN_SNOMED[organ][0]
    assert int(np.asarray(seg.pixel_array).astype(bool).sum()) == int(mask.array.sum())


def test_segment_cli_organ_flags(phantom, tmp_path, monkeypatch, capsys):
    """--organs FILE (TotalSegmentator form) adds the organ columns; --organs-out writes the organ map on the PET
    grid; --suppress-physiological removes what lies in brain/bladder/kidneys; refusals exit 2 in one line."""
    import modeling_petct.inference as inference
    from modeling_petct.cli import main
    from modeling_petct.data.synthetic.phantom import write_study

    study, _ = phantom
    d = write_study(study, tmp_path / "s")
    brain_on_pet = org.organ_map_on(study.organs, study.pet).array == TS["brain"]
    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", features_per_stage=(4, 8, 8, 8))).eval()
    aware = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", features_per_stage=(4, 8, 8, 8),
                                                         organ_labels=org.ORGANS)).eval()
    monkeypatch.setattr(inference, "load_segmentation_model", lambda path, device: aware if path == "aware" else model)
    common = ["segment", "--pet", str(d / "PET.nii.gz"), "--ct", str(d / "CT.nii.gz"), "--fast", "--device", "cpu"]
    monkeypatch.setattr("modeling_petct.inference.segmenter.to_native_mask",
                        lambda h, p, min_ml=0.0: (brain_on_pet | (study.label.array > 0)).astype(np.uint8))  # brain 'lesion'
    code = main([*common, "-o", str(tmp_path / "a.nii.gz"), "--model", "x", "--organs", str(d / "organs.nii.gz"),
                 "--stats", str(tmp_path / "a.csv"), "--stats-json"])
    assert code == 0
    data = json.loads((tmp_path / "a.json").read_text())
    assert any(r["organ"] == "brain" and r["physiological"] for r in data["lesions"])
    assert data["totals"]["organ_labels"]["1"] == "brain" and data["totals"]["physiological_count"] >= 1
    code = main([*common, "-o", str(tmp_path / "b.nii.gz"), "--model", "x", "--organs", str(d / "organs.nii.gz"),
                 "--suppress-physiological"])
    assert code == 0 and "removed" in capsys.readouterr().out
    assert not np.any(nib.load(tmp_path / "b.nii.gz").get_fdata()[brain_on_pet])
    code = main([*common, "-o", str(tmp_path / "c.nii.gz"), "--model", "aware", "--organs-out", str(tmp_path / "o.nii.gz")])
    organs_img = nib.load(tmp_path / "o.nii.gz")
    assert code == 0 and organs_img.shape == study.pet.shape
    assert np.asarray(organs_img.dataobj).max() <= len(org.ORGANS)
    capsys.readouterr()
    for extra, message in ((["--organs-out", str(tmp_path / "x.nii.gz")], "organ-aware model or --organs"),
                           (["--organs", str(tmp_path / "missing.nii.gz")], "no such file")):
        code = main([*common, "-o", str(tmp_path / "bad" / "m.nii.gz"), "--model", "x", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad").exists() and not (tmp_path / "x.nii.gz").exists()


def test_harmonize_cli_carries_organ_maps_into_the_cache(phantom, tmp_path, capsys):
    from modeling_petct.cli import main
    from modeling_petct.data.synthetic.phantom import write_study

    study, _ = phantom
    d = write_study(study, tmp_path / "data" / "p1")
    elsewhere = tmp_path / "ts"
    elsewhere.mkdir()
    (d / "organs.nii.gz").rename(elsewhere / "p1.nii.gz")
    assert main(["harmonize", "--input", str(tmp_path / "data"), "--organs-dir", str(elsewhere), "-o",
                 str(tmp_path / "cache"), "--no-progress"]) == 0
    cache = StudyCache(tmp_path / "cache")
    assert cache.info("p1")["has_organs"] and cache.load("p1").organs.max() == len(org.ORGANS)
    capsys.readouterr()
    code = main(["harmonize", "--input", str(tmp_path / "data"), "--organs-dir", str(tmp_path / "nope"), "-o",
                 str(tmp_path / "cache2"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--organs-dir is not a folder" in err and err.count("\n") == 1


def test_organs_auto_says_clearly_when_totalsegmentator_is_absent(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "totalsegmentator" else real(name, *a))
    with pytest.raises(PetCtInputError, match="TotalSegmentator is not installed.*--organs organs.nii.gz"):
        org.run_totalsegmentator("CT.nii.gz")
