"""Training with simulated interaction: autoPET IV click rules on the ground truth, corrective clicks on the model's
own errors, random click counts, and train_seg.py --interactive end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_petct.data.simulated_clicks import BACKGROUND, FOREGROUND, centre, error_clicks, ground_truth_clicks
from modeling_petct.training.interaction import ClickCrops, ClickSimulation, CorrectiveClicks


def _crop():
    """Two lesions (one large, one small) and a hot non-lesion region (bladder-like) on a warm background."""
    label = np.zeros((24, 24, 24), np.uint8)
    label[3:9, 3:9, 3:9] = 1
    label[15:18, 4:7, 15:18] = 1
    pet = np.full(label.shape, 1.0, np.float32)
    pet[label > 0] = 8.0
    pet[14:20, 14:20, 3:9] = 12.0  # hot, not a lesion
    return label, pet


def test_ground_truth_clicks_follow_the_autopet_iv_rules():
    label, pet = _crop()
    rng = np.random.default_rng(0)
    clicks = ground_truth_clicks(label, pet, 2, 1, rng, hot_quantile=0.95)
    fg = [zyx for channel, zyx in clicks if channel == FOREGROUND]
    bg = [zyx for channel, zyx in clicks if channel == BACKGROUND]
    assert sorted(fg) == [(5, 5, 5), (16, 5, 16)]  # the deepest voxel of each component (the first of ties)
    assert len(bg) == 1 and 14 <= bg[0][0] < 20 and 14 <= bg[0][1] < 20 and 3 <= bg[0][2] < 9  # the hot region
    more = ground_truth_clicks(label, pet, 7, 9, rng, hot_quantile=0.95)
    assert sum(c == FOREGROUND for c, _ in more) == 7 and sum(c == BACKGROUND for c, _ in more) == 9
    assert all((label[zyx] > 0) == (channel == FOREGROUND) for channel, zyx in more)
    assert ground_truth_clicks(label, pet, 0, 0, rng) == []
    assert ground_truth_clicks(np.zeros_like(label), pet, 3, 0, rng) == []  # no lesion: no foreground click


def test_the_centre_of_a_non_convex_component_lies_inside_it():
    ring = np.zeros((5, 21, 21), bool)
    yy, xx = np.ogrid[:21, :21]
    ring[:, ((yy - 10) ** 2 + (xx - 10) ** 2 <= 64) & ((yy - 10) ** 2 + (xx - 10) ** 2 >= 25)] = True
    box = tuple(slice(0, n) for n in ring.shape)
    assert ring[centre((box, ring))] and not ring[2, 10, 10]  # the centre of mass would be in the hole


def test_error_clicks_mark_the_largest_miss_and_the_largest_false_positive():
    label, _ = _crop()
    prediction = label.copy()
    prediction[3:9, 3:9, 3:9] = 0  # the large lesion missed
    prediction[20:23, 20:23, 20:23] = 1  # a false positive
    prediction[0, 0, 0] = 1  # a smaller one
    assert error_clicks(prediction, label) == [(FOREGROUND, (5, 5, 5)), (BACKGROUND, (21, 21, 21))]
    assert error_clicks(label, label) == []


class _Crops(torch.utils.data.Dataset):
    def __init__(self):
        label, pet = _crop()
        self.item = {"pixel_values": torch.from_numpy(np.stack([pet, pet])), "labels": torch.from_numpy(label).long()}

    def __len__(self):
        return 40

    def set_epoch(self, epoch):
        pass

    def __getitem__(self, index):
        return self.item


def test_click_crops_draw_0_to_max_clicks_reproducibly_after_the_image_channels():
    crops = ClickCrops(_Crops(), ClickSimulation("ball", 2.0, max_clicks=3), pet_channel=0, seed=5)
    items = [crops[i] for i in range(len(crops))]
    assert all(item["pixel_values"].shape == (4, 24, 24, 24) for item in items)
    assert torch.equal(items[0]["pixel_values"][:2], _Crops().item["pixel_values"])
    assert torch.equal(crops[7]["pixel_values"], items[7]["pixel_values"])  # (seed, epoch, index) alone
    peaks = [int((item["pixel_values"][c + 2] == 1).sum()) for item in items for c in (0, 1)]
    assert set(peaks) <= {0, 1, 2, 3} and 0 in peaks and max(peaks) >= 2  # 0..3 clicks, none included
    crops.set_epoch(1)
    assert not all(torch.equal(crops[i]["pixel_values"], items[i]["pixel_values"]) for i in range(10))


def test_corrective_clicks_go_where_the_model_is_wrong():
    class Blind(torch.nn.Module):  # predicts background everywhere
        def forward(self, pixel_values):
            logits = torch.zeros(pixel_values.shape[0], 2, *pixel_values.shape[2:])
            logits[:, 0] = 1
            return type("Out", (), {"logits": logits})

    label, pet = _crop()
    batch = {"pixel_values": torch.zeros(1, 4, 24, 24, 24), "labels": torch.from_numpy(label)[None].long()}
    hook = CorrectiveClicks(ClickSimulation("gaussian", 1.0, corrective_prob=1.0), 2)
    out = hook(Blind(), batch, step=0)
    assert out["pixel_values"][0, 2, 5, 5, 5] == 1  # the largest miss
    assert not out["pixel_values"][0, 3].any() and not out["pixel_values"][0, :2].any()  # no false positive
    never = CorrectiveClicks(ClickSimulation(corrective_prob=0.0), 2)
    fresh = {"pixel_values": torch.zeros(1, 4, 24, 24, 24), "labels": batch["labels"]}
    assert not never(Blind(), fresh, step=0)["pixel_values"].any()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from modeling_petct.experiments.cohort import phantom_cache

    cache, _ = phantom_cache(tmp_path_factory.mktemp("cohort"), 5, seed=0, spacing=(4.0, 4.0, 4.0))
    return cache


def test_train_seg_interactive_trains_a_click_guided_model(cache, tmp_path, capsys):
    from modeling_petct import PetCtForSegmentation
    from modeling_petct.training import segmentation

    out = tmp_path / "run"
    code = segmentation.main(["--cache-dir", str(cache.root), "--output-dir", str(out), "--preset", "tiny-unet",
                              "--crop-size", "32", "32", "32", "--num-workers", "0", "--report-to", "none",
                              "--progress-bar", "false", "--per-device-train-batch-size", "2", "--max-steps", "2",
                              "--eval-steps", "2", "--sw-overlap", "0", "--interactive", "--guidance-encoding", "ball",
                              "--corrective-prob", "1"])
    assert code == 0, capsys.readouterr().err
    model = PetCtForSegmentation.from_pretrained(out / "best")
    assert (model.config.guidance_channels, model.config.guidance_encoding) == (2, "ball")
    weights = [p for p in model.parameters() if p.ndim == 5 and p.shape[1] == 4]
    assert weights and all(w[:, 2:].abs().sum() > 0 for w in weights)  # the click weights learnt
    code = segmentation.main(["--cache-dir", str(cache.root), "--output-dir", str(tmp_path / "bad"), "--interactive",
                              "--linear-probe", "--preset", "tiny-unet"])
    assert code == 2 and "--interactive" in capsys.readouterr().err
