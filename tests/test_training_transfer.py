"""The transfer recipe: head initialisation, encoder-only transfer, LP-FT schedule, selection that counts
false positives on lesion-free studies, a seed per cell, the random-feature probe, and MAE data never holding test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import save_tiny
from modeling_petct import PetCtForMaskedImageModeling, PetCtForSegmentation
from modeling_petct.training.args import ModelArguments, SegArguments, TrainArguments
from modeling_petct.training.loop import build_optimizer, build_scheduler
from modeling_petct.training.segmentation import LESION_PRIOR, apply_transfer_recipe, check_arguments, summarize

SHAPE = (32, 32, 32)


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("mae") / "mae", "mae")


def _segmenter(mae_dir, **seg):
    torch.manual_seed(1)
    model = PetCtForSegmentation.from_pretrained(mae_dir, num_labels=2)
    apply_transfer_recipe(model, ModelArguments(preset="tiny-unet", pretrained=str(mae_dir)), SegArguments(**seg))
    return model


@pytest.mark.parametrize("head_init", ["zero", "small"])
def test_zero_and_small_heads_start_every_voxel_at_the_lesion_prior(mae_dir, head_init):
    model = _segmenter(mae_dir, head_init=head_init).eval()
    with torch.no_grad():
        p = model(pixel_values=torch.randn(1, 2, *SHAPE) * 3).logits.softmax(1)[:, 1]
    tolerance = 1e-6 if head_init == "zero" else 0.02
    assert float((p - LESION_PRIOR).abs().max()) < tolerance


def test_random_head_is_left_alone(mae_dir):
    assert _segmenter(mae_dir).segmentation_head.weight.abs().sum() > 0
    assert _segmenter(mae_dir).segmentation_head.bias.abs().sum() < 10  # the default draw, not the prior


def test_encoder_only_transfer_redraws_the_decoder_and_keeps_the_encoder(mae_dir):
    mae = PetCtForMaskedImageModeling.from_pretrained(mae_dir).state_dict()
    whole, encoder = _segmenter(mae_dir).state_dict(), _segmenter(mae_dir, transfer="encoder").state_dict()
    enc_keys = [k for k in encoder if k.startswith("petct.") and ".decoder" not in k]
    dec_keys = [k for k in encoder if ".decoder" in k and k.endswith("weight") and encoder[k].ndim > 1]
    assert enc_keys and dec_keys
    for k in enc_keys:
        torch.testing.assert_close(encoder[k], mae[k])
    for k in dec_keys:
        torch.testing.assert_close(whole[k], mae[k])
        assert not torch.equal(encoder[k], mae[k]), k


def test_lp_ft_holds_the_backbone_at_lr_zero_then_warms_it_up(mae_dir):
    model = _segmenter(mae_dir)
    args = TrainArguments(output_dir="unused", warmup_steps=4, min_learning_rate=1e-6)
    optimizer = build_optimizer(model, args, 1e-2, torch.device("cpu"), head_only_steps=10)
    head, rest = optimizer.param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in model.segmentation_head.parameters()}
    scheduler = build_scheduler(optimizer, args, 1e-2, 50, 1, head_only_steps=10)
    lrs = []
    for _ in range(50):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    head_lr, rest_lr = np.array(lrs).T
    assert (rest_lr[:10] == 0).all() and head_lr[5] > 0  # head alone first
    assert 0 < rest_lr[11] < rest_lr[14] == pytest.approx(1e-2, rel=0.05)  # then the backbone warms up
    assert head_lr[-1] < 1e-3 and rest_lr[-1] < 2e-3  # both decay by the cosine
    # a real step: the head moves, the backbone (lr 0) does not
    model2 = _segmenter(mae_dir)
    no_warmup = TrainArguments(output_dir="unused")
    opt2 = build_optimizer(model2, no_warmup, 1e-2, torch.device("cpu"), head_only_steps=10)
    sched2 = build_scheduler(opt2, no_warmup, 1e-2, 50, 1, head_only_steps=10)
    before = [p.detach().clone() for g in opt2.param_groups for p in g["params"]]
    batch = {"pixel_values": torch.randn(1, 2, *SHAPE), "labels": (torch.rand(1, 1, *SHAPE) > 0.9).long()}
    model2(**batch).loss.backward()
    opt2.step()
    sched2.step()
    n_head = len(opt2.param_groups[0]["params"])
    after = [p.detach() for g in opt2.param_groups for p in g["params"]]
    assert not all(torch.equal(a, b) for a, b in zip(before[:n_head], after[:n_head]))
    assert all(torch.equal(a, b) for a, b in zip(before[n_head:], after[n_head:]))


def test_without_lp_ft_one_group_and_the_usual_cosine(mae_dir):
    model = _segmenter(mae_dir)
    optimizer = build_optimizer(model, TrainArguments(output_dir="unused"), 1e-3, torch.device("cpu"))
    assert len(optimizer.param_groups) == 1


def test_a_faster_head_gets_its_own_peak_lr(mae_dir):
    args = TrainArguments(output_dir="unused")
    optimizer = build_optimizer(_segmenter(mae_dir), args, 1e-3, torch.device("cpu"), head_lr_factor=10.0)
    scheduler = build_scheduler(optimizer, args, 1e-3, 20, 1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2, 1e-3])  # no head-only phase: both learn
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] < 1e-4


def test_selection_score_counts_false_positives_on_lesion_free_studies():
    def case(dice, gt, pred_cc, fp):
        return {"dice": dice, "fpv_ml": float(fp), "fnv_ml": 0.0, "gt_lesions": gt, "pred_components": pred_cc,
                "false_positive_components": fp}

    clean = {"a": case(0.8, 2, 2, 0), "b": case(math.nan, 0, 0, 0)}
    noisy = {"a": case(0.8, 2, 2, 0), "b": case(math.nan, 0, 3, 3)}
    assert summarize(clean, "val")["val_dice"] == summarize(noisy, "val")["val_dice"] == 0.8  # the authors' Dice is blind
    assert summarize(clean, "val")["val_dice_fp"] == pytest.approx(0.8)
    assert summarize(noisy, "val")["val_dice_fp"] == pytest.approx(0.8 - 3 * 0.05)  # 3 FP lesions on the lesion-free one
    empty = {"a": case(0.0, 2, 0, 0), "b": case(math.nan, 0, 0, 0)}
    assert summarize(empty, "val")["val_dice_fp"] < summarize(noisy, "val")["val_dice_fp"]  # empty never wins
    assert summarize(noisy, "val")["val_fp_per_case"] == 1.5


@pytest.mark.parametrize("field,value", [("transfer", "decoder"), ("head_init", "ones"), ("selection_metric", "loss"),
                                         ("select_on", "train"), ("head_steps", -1), ("zoom_prob", 2.0)])
def test_bad_recipe_values_are_refused(field, value):
    from modeling_petct.errors import PetCtInputError

    with pytest.raises(PetCtInputError):
        check_arguments(TrainArguments(output_dir="x"), SegArguments(**{field: value}))


def test_study_gives_every_cell_its_own_seed_and_a_random_feature_probe(tmp_path):
    from modeling_petct.experiments.study import StudyArguments, cell_arguments, cell_seed, grid

    args = StudyArguments(cache_dir=str(tmp_path), output_dir=str(tmp_path / "s"), presets=["tiny-unet"],
                          pretrained=["mae"], fractions=[0.1, 0.3, 1.0], seeds=[0, 1], probe_k=5,
                          head_steps=30, warmup_steps=20, head_init="zero", transfer="encoder")
    cells = grid(args)
    assert {c.arm for c in cells} == {"pretrained", "scratch", "probe", "probe-random"}
    finetuned = [c for c in cells if not c.arm.startswith("probe")]
    seeds = {(c.fraction, c.seed): cell_seed(c) for c in finetuned}
    assert len(set(seeds.values())) == len(seeds) == 6  # no two amounts or grid seeds share a draw
    pre = next(c for c in cells if c.arm == "pretrained" and c.fraction == 0.1 and c.seed == 1)
    scr = next(c for c in cells if c.arm == "scratch" and c.fraction == 0.1 and c.seed == 1)
    (_, _, t1, s1), (_, _, t2, s2) = cell_arguments(args, pre), cell_arguments(args, scr)
    assert t1.seed == t2.seed and s1.split_seed == s2.split_seed == 1  # paired: same crops and labelled subset
    assert (s1.head_steps, s1.head_init, s1.transfer, t1.warmup_steps) == (30, "zero", "encoder", 20)
    rand = next(c for c in cells if c.arm == "probe-random")
    model, _, _, seg = cell_arguments(args, rand)
    assert model.pretrained is None and seg.linear_probe


def test_pretraining_without_id_files_leaves_the_test_studies_out(tmp_path):
    from modeling_petct.experiments.cohort import phantom_cache
    from modeling_petct.training.args import DataArguments
    from modeling_petct.training.mae import default_test_ids, study_ids

    cache, _ = phantom_cache(tmp_path, 8, seed=5, spacing=(8.0, 8.0, 8.0))
    test = default_test_ids(cache)
    train, val = study_ids(cache, DataArguments(cache_dir=str(cache.root), val_fraction=0.2), seed=0)
    assert test and not set(test) & set(train + val)
    assert set(train) | set(val) | set(test) == set(cache.ids())
