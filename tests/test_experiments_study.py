"""The label-efficiency study's grid, its arguments (train_seg.py's own), refusals and statistics (no training here:
see test_experiments_quickstart.py for a real run)."""

from __future__ import annotations

import math

import pytest

from modeling_petct.experiments.report import aggregate_results, markdown_table, paired_tests
from modeling_petct.experiments.study import PER_CELL, StudyArguments, cell_arguments, grid, parse_study_arguments
from modeling_petct.training.args import DataArguments, ModelArguments, SegArguments, TrainArguments
from modeling_petct.training.results import RunResult


def test_grid_covers_backbones_starts_fractions_seeds_and_the_probe():
    args = StudyArguments(backbones=["a", "b"], pretrained=["mae_a", "none"], fractions=[0.1, 1.0], seeds=[0, 1], probe_k=5)
    cells = grid(args)
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    # a: (pretrained + scratch) x 2 fractions x 2 seeds + a 5-shot probe and its random-feature control per seed;
    # b: scratch only
    assert sum(c.preset == "a" for c in cells) == 2 * 2 * 2 + 2 * 2
    assert {c.arm for c in cells if c.preset == "b"} == {"scratch"}
    assert "a/probe/5shot/seed1" in names and "a/pretrained/frac0.1/seed0" in names


def test_the_organ_aware_arm_repeats_every_fine_tuning_cell_with_organ_labels_and_the_same_draw():
    import json

    from modeling_petct.data.organs import ORGANS
    from modeling_petct.experiments.study import cell_seed

    args = StudyArguments(backbones=["a"], pretrained=["mae_a"], fractions=[0.1, 1.0], seeds=[0], probe_k=0,
                          organ_aware=True, config_overrides='{"batch_dice": true}')
    cells = grid(args)
    assert sorted(c.arm for c in cells) == sorted(["pretrained", "scratch", "pretrained-organs", "scratch-organs"] * 2)
    for organ_cell in (c for c in cells if c.arm.endswith("-organs")):
        twin = next(c for c in cells if c.arm == organ_cell.arm[: -len("-organs")] and c.fraction == organ_cell.fraction)
        model, _, train, seg = cell_arguments(args, organ_cell)
        assert json.loads(model.config_overrides) == {"batch_dice": True, "organ_labels": list(ORGANS),
                                                      "organ_loss_weight": 1.0}
        assert model.pretrained == twin.pretrained and cell_seed(organ_cell) == cell_seed(twin)
        assert json.loads(cell_arguments(args, twin)[0].config_overrides) == {"batch_dice": True}


def test_arms_keep_only_the_named_arms_of_the_grid_and_refuse_unknown_ones(tmp_path):
    from modeling_petct.errors import PetCtInputError
    from modeling_petct.experiments.study import check_study

    args = StudyArguments(backbones=["tiny-unet"], pretrained=["mae_a"], fractions=[0.1, 1.0], seeds=[0], probe_k=5,
                          organ_aware=True, arms=["pretrained-organs", "probe"])
    cells = grid(args)
    assert sorted((c.arm, c.fraction) for c in cells) == [("pretrained-organs", 0.1), ("pretrained-organs", 1.0)] + [
        ("probe", None)] and cell_arguments(args, cells[0])[0].pretrained == "mae_a"
    args.grid.arms, args.train.output_dir = ["pretrained-organ"], str(tmp_path / "out")
    with pytest.raises(PetCtInputError, match="unknown arm.*pretrained-organ'"):
        check_study(args)


def test_physiological_fpv_counts_false_positive_voxels_inside_uptake_organs_only():
    import numpy as np

    from modeling_petct.evaluation import physiological_fpv_ml

    organs, names = np.zeros((10, 10, 10), np.uint8), ("brain", "liver")
    organs[:5] = 1  # brain (physiological uptake) above, liver below
    organs[5:] = 2
    gt = np.zeros_like(organs)
    gt[7, 7, 7] = 1
    pred = np.zeros_like(organs)
    pred[3:7, 1, 1] = 1  # a false positive: 2 voxels in brain, 2 in liver
    pred[7, 7, 6:8] = 1  # touches the lesion: not a false positive even where it spills over
    assert physiological_fpv_ml(pred, gt, organs, names, 0.5) == 1.0
    assert physiological_fpv_ml(pred, gt, organs, names, 0.5, physiological=("liver",)) == 1.0
    assert physiological_fpv_ml(pred, gt, organs, ("spleen", "liver"), 0.5) == 0.0


def _result(arm, fraction, seed, dice_by_case):
    cases = {c: {"dice": d, "fpv_ml": 0.0, "fnv_ml": 0.0 if d == d else math.nan, "gt_lesions": int(d == d),
                 "detected_lesions": int(d == d and d > 0), "pred_components": 1, "false_positive_components": 0}
             for c, d in dice_by_case.items()}
    return RunResult(network="plain-conv-unet", preset="net", arm=arm, pretrained="mae" if arm == "pretrained" else None,
                     linear_probe=False, schedule="epochs", k_shot=None, label_fraction=fraction,
                     n_train=int(10 * fraction), seed=seed, split_seed=seed, steps=1, learning_rate=1e-3,
                     selected_model="m", selected_step=1, best_val_score=0.5, test_cases=cases)


def test_table_pools_seeds_and_pairs_pretrained_with_scratch_case_by_case():
    cases = [f"c{i}" for i in range(8)]
    results = [
        _result("pretrained", 0.1, s, {c: 0.6 + 0.01 * i + 0.001 * s for i, c in enumerate(cases)}) for s in (0, 1)
    ] + [
        _result("scratch", 0.1, s, {c: 0.4 + 0.01 * i for i, c in enumerate(cases)}) for s in (0, 1)
    ]
    results[0].test_cases["c7"]["dice"] = math.nan  # a lesion-free test case: no Dice
    rows = aggregate_results(results, n_boot=200)
    pre = next(r for r in rows if r["arm"] == "pretrained")
    assert pre["n_cases"] == 16 and pre["dice_ci95"][0] <= pre["dice"] <= pre["dice_ci95"][1]
    (test,) = paired_tests(results)
    assert test["n"] == 15 and test["median_difference"] > 0.19 and test["pvalue"] < 0.001
    table = markdown_table(rows, [test])
    assert "| net | pretrained | 0.1 |" in table and "Wilcoxon" in table


def test_study_parses_train_segs_own_options_with_the_same_defaults():
    """Failure 5: the study re-declared train_seg.py's options and four defaults differed."""
    args = parse_study_arguments([])
    for cls, parsed in ((ModelArguments, args.model), (DataArguments, args.data), (TrainArguments, args.train),
                        (SegArguments, args.seg)):
        assert parsed == cls(), cls.__name__  # every shared option at train_seg.py's default
    args = parse_study_arguments(["--cache-dir", "c", "--output_dir", "o", "--backbones", "tiny-unet", "--seeds", "1",
                                  "--num-train-epochs", "3", "--per-device-train-batch-size", "5", "--fg-prob", "0.2"])
    assert args.grid.presets == ["tiny-unet"] and args.grid.seeds == [1]
    assert (args.train.num_epochs, args.train.per_device_batch_size, args.seg.fg_prob) == (3, 5, 0.2)
    (cell,) = [c for c in grid(args) if c.fraction == 0.1]
    model, data, train, seg = cell_arguments(args, cell)
    # the training seed is the cell's own (one seed for every cell made the head draw the result)
    from modeling_petct.experiments.study import cell_seed

    assert (model.preset, train.seed, train.resume, seg.label_fraction, seg.split_seed) == ("tiny-unet", cell_seed(cell), True, 0.1, 1)
    assert (train.num_epochs, seg.fg_prob, data.cache_dir) == (3, 0.2, "c")
    assert train.output_dir == "o/cells/tiny-unet/scratch/frac0.1/seed1"


@pytest.mark.parametrize("flag", sorted({f"--{name}" for names in PER_CELL.values() for name in names}
                                         - {"--pretrained", "--separated_pretrained", "--interactive"}))  # grid options too
def test_study_refuses_options_its_grid_sets_per_cell(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_study_arguments([flag, "1"], prog="petct study")
    assert exit_info.value.code == 2 and f"unrecognized arguments: {flag}" in capsys.readouterr().err
    with pytest.raises(TypeError, match="per cell"):
        StudyArguments(**{flag[2:]: 1})


def test_the_lesion_crop_probability_has_one_default():
    from modeling_petct.data.transforms import SegCropDataset
    import inspect

    default = inspect.signature(SegCropDataset).parameters["fg_prob"].default
    assert SegArguments().fg_prob == default == StudyArguments().seg.fg_prob


def test_study_and_training_refuse_a_missing_or_empty_cache_with_one_line(tmp_path, capsys):
    """Failure 4: `petct study --cache_dir does-not-exist` exited 0 with an empty table."""
    from modeling_petct.cli import main
    from modeling_petct.training import mae, segmentation

    empty = tmp_path / "empty"
    empty.mkdir()
    for cache in (tmp_path / "does-not-exist", empty):
        for run, prog in ((lambda a: main(["study", *a]), "petct study"), (mae.main, "train_mae.py"),
                          (segmentation.main, "train_seg.py")):
            assert run(["--cache-dir", str(cache), "--output-dir", str(tmp_path / "out")]) == 2, prog
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and err.startswith(f"{prog}: error: {cache}") and "petct harmonize" in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_manifest_splits_subjects_with_trainings_own_draw():
    """One subject-wise splitter (data/subjects.py) behind the manifest's split and training's random split."""
    from datasets import Dataset

    from modeling_petct.data.manifest import split_by_subject
    from modeling_petct.training.splits import random_split

    rows = [{"study_id": f"s{i}", "subject": f"p{i // 2}", "split": "pretrain", "in_100pct": False} for i in range(40)]
    rows.append({"study_id": "official", "subject": "q", "split": "test", "in_100pct": False})  # already split
    out = split_by_subject(Dataset.from_list(rows), val=0.2, test=0.2, seed=3)
    split = dict(zip(out["study_id"], out["split"]))
    subject_of = {r["study_id"]: r["subject"] for r in rows[:-1]}
    expected = random_split(sorted(subject_of), subject_of, seed=3, val_fraction=0.2, test_fraction=0.2)
    for role, ids in (("train_pool", expected.train), ("val", expected.val), ("test", expected.test)):
        assert sorted(s for s, r in split.items() if r == role and s != "official") == ids and ids
    assert split["official"] == "test"
    assert all(split[f"s{2 * k}"] == split[f"s{2 * k + 1}"] for k in range(20))  # a subject's studies stay together


def test_the_interactive_arm_repeats_every_fine_tuning_cell_with_click_inputs_and_the_same_draw():
    from modeling_petct.experiments.study import cell_seed

    args = StudyArguments(backbones=["a"], pretrained=["mae_a"], fractions=[0.1], seeds=[0], probe_k=0,
                          organ_aware=True, interactive=True, guidance_encoding="ball", guidance_size=2.0)
    cells = grid(args)
    automatic = ["pretrained", "scratch", "pretrained-organs", "scratch-organs"]
    assert sorted(c.arm for c in cells) == sorted(automatic + [a + "-interactive" for a in automatic])
    for clicked in (c for c in cells if c.arm.endswith("-interactive")):
        twin = next(c for c in cells if c.arm == clicked.arm[: -len("-interactive")])
        model, _, _, seg = cell_arguments(args, clicked)
        assert seg.interactive and (seg.guidance_encoding, seg.guidance_size) == ("ball", 2.0)
        assert not cell_arguments(args, twin)[3].interactive
        assert model == cell_arguments(args, twin)[0] and cell_seed(clicked) == cell_seed(twin)  # same start, draw


def test_the_study_interactive_flag_is_the_grids_not_a_per_cell_training_option():
    args = parse_study_arguments(["--interactive", "--guidance_encoding", "ball", "--fractions", "0.1"])
    assert args.grid.interactive and not args.seg.interactive and args.seg.guidance_encoding == "ball"
