"""The interactive protocols (autoPET IV's and error-driven), lesion-level F1 at IoU >= 0.1, and `petct evaluate
--model` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from modeling_petct.evaluation import lesion_f1
from modeling_petct.evaluation.interactive import run_protocol, summarize


def _scene():
    """Lesion A (27 voxels), lesion B (8 voxels), and a first prediction that misses A and has an 8-voxel FP."""
    label = np.zeros((20, 20, 20), np.uint8)
    label[2:5, 2:5, 2:5] = 1  # A
    label[10:12, 10:12, 10:12] = 1  # B
    first = label.copy()
    first[2:5, 2:5, 2:5] = 0
    first[15:17, 15:17, 15:17] = 1  # false positive
    return label, first


def _oracle(label, first):
    """A perfect responder: a foreground click adds the true lesion under it, a background click removes the
    predicted component under it."""
    def mask_for(clicks):
        mask = first.copy()
        for channel, zyx in clicks:
            if channel == 0:
                parts, _ = ndimage.label(label)
                mask[parts == parts[zyx]] = 1
        for channel, zyx in clicks:
            if channel == 1 and mask[zyx]:
                parts, _ = ndimage.label(mask)
                mask[parts == parts[zyx]] = 0
        return mask
    return mask_for


def test_lesion_f1_matches_components_at_iou_one_tenth():
    gt = np.zeros((30, 30, 30), np.uint8)
    gt[0:4, 0:4, 0:4] = 1  # 64 voxels, matched by a 10-voxel overlap: IoU 10/64 >= 0.1
    gt[10:14, 10:14, 10:14] = 1  # 64 voxels, touched by 5 of a 60-voxel component: IoU 5/119 < 0.1
    pred = np.zeros_like(gt)
    pred[0:1, 0:2, 0:4] = 1
    pred[0:1, 2:3, 0:2] = 1
    pred[13:18, 13:14, 13:14] = 1  # 1 voxel in gt B ...
    pred[16:20, 13:16, 13:18] = 1  # ... 60 more outside (one component)
    pred[25:27, 25:27, 25:27] = 1  # a false positive
    precision, recall = 1 / 3, 1 / 2
    assert lesion_f1(pred, gt) == pytest.approx(2 * precision * recall / (precision + recall))
    assert lesion_f1(gt, gt) == 1.0 and lesion_f1(np.zeros_like(gt), gt) == 0.0
    assert math.isnan(lesion_f1(np.zeros_like(gt), np.zeros_like(gt)))


def test_the_error_driven_protocol_clicks_the_largest_error_first():
    label, first = _scene()
    curve = run_protocol(_oracle(label, first), label, None, 0.001, "error-driven", steps=4)
    assert [s["clicks"] for s in curve] == [0, 1, 2, 2]  # the miss (27) first, then the FP (8), then nothing left
    assert curve[0]["dice"] == pytest.approx(2 * 8 / (35 + 16))
    assert curve[1]["fnv_ml"] == 0.0 and curve[1]["fpv_ml"] == pytest.approx(0.008)
    assert curve[2]["dice"] == 1.0 and curve[2]["fpv_ml"] == 0.0 and curve[2]["lesion_f1"] == 1.0


def test_the_autopet_iv_protocol_adds_one_click_of_each_kind_per_step():
    label, first = _scene()
    pet = np.ones(label.shape, np.float32)
    pet[15:17, 15:17, 15:17] = 9.0  # the false positive is the hot non-lesion region
    curve = run_protocol(_oracle(label, first), label, pet, 0.001, "autopet-iv", steps=11)
    assert [s["clicks"] for s in curve] == [2 * s for s in range(11)]
    assert curve[0]["fpv_ml"] > 0 and curve[1]["fpv_ml"] == 0.0  # the first background click is on the hot FP
    assert curve[-1]["dice"] == 1.0
    summary = summarize({"a": curve, "b": curve})
    assert summary["n_cases"] == 2 and summary["final"]["dice"] == 1.0
    assert summary["auc_dice"] == pytest.approx(np.trapezoid([s["dice"] for s in curve]))
    assert summary["auc_dice"] <= 10.0


def test_summaries_leave_undefined_lesion_free_dice_out():
    perfect = [{"dice": 1.0, "fpv_ml": 0.0, "fnv_ml": 0.0, "lesion_f1": 1.0, "clicks": 0}] * 11
    free = [{"dice": math.nan, "fpv_ml": 2.0, "fnv_ml": math.nan, "lesion_f1": 0.0, "clicks": 0}] * 11
    summary = summarize({"pos": perfect, "free": free})
    assert summary["auc_dice"] == 10.0 and summary["final"]["fpv_ml"] == 1.0 and summary["final"]["lesion_f1"] == 0.5


def test_petct_evaluate_runs_both_protocols_on_a_guidance_model(tmp_path, capsys):
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.cli import main
    from modeling_petct.experiments.cohort import phantom_cache

    cache, _ = phantom_cache(tmp_path / "cohort", 2, seed=3, spacing=(4.0, 4.0, 4.0), lesion_free_fraction=0.0)
    torch.manual_seed(0)
    plain = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", num_labels=2))
    plain.save_pretrained(tmp_path / "plain")
    plain.with_guidance(2, "ball", 3.0).save_pretrained(tmp_path / "guided")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tmp_path / "guided"), "--cache-dir", str(cache.root), "--out", str(out),
                 "--steps", "3", "--device", "cpu"]) == 0
    results = json.loads((out / "interactive.json").read_text())
    assert set(results) == {"autopet-iv", "error-driven"}
    for protocol, result in results.items():
        assert len(result["cases"]) == 2 and all(len(c) == 3 for c in result["cases"].values())
        assert [s["clicks"] for s in result["summary"]["steps"]][0] == 0
    assert (out / "dice_vs_clicks.png").stat().st_size > 1000
    assert "autopet-iv (2 studies, 3 steps)" in capsys.readouterr().out
    edited = tmp_path / "edited"
    assert main(["evaluate", "--model", str(tmp_path / "guided"), "--cache-dir", str(cache.root), "--out",
                 str(edited), "--steps", "3", "--device", "cpu", "--space-edits", "--protocol", "autopet-iv"]) == 0
    both = json.loads((edited / "interactive.json").read_text())
    assert set(both) == {"autopet-iv", "autopet-iv + Space edits"}
    assert both["autopet-iv"]["cases"] == results["autopet-iv"]["cases"]  # the network's own scores are unchanged
    for case, curve in both["autopet-iv + Space edits"]["cases"].items():  # no click, no edit
        assert curve[0] == both["autopet-iv"]["cases"][case][0] and len(curve) == 3
    code = main(["evaluate", "--model", str(tmp_path / "plain"), "--cache-dir", str(cache.root), "--out",
                 str(tmp_path / "no"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "takes no clicks" in err and err.count("\n") == 0 and not (tmp_path / "no").exists()
