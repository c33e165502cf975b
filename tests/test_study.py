"""The label-efficiency study's grid and statistics (no training here: see test_quickstart.py for a real run)."""

from __future__ import annotations

import math

from modeling_petct.experiments.report import aggregate_results, markdown_table, paired_tests
from modeling_petct.experiments.study import StudyArguments, grid


def test_grid_covers_backbones_starts_fractions_seeds_and_the_probe():
    args = StudyArguments(backbones=["a", "b"], pretrained=["mae_a", "none"], fractions=[0.1, 1.0], seeds=[0, 1], probe_k=5)
    cells = grid(args)
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    # a: (pretrained + scratch) x 2 fractions x 2 seeds + a 5-shot probe per seed; b: scratch only
    assert sum(c.backbone == "a" for c in cells) == 2 * 2 * 2 + 2
    assert {c.arm for c in cells if c.backbone == "b"} == {"scratch"}
    assert "a/probe/5shot/seed1" in names and "a/pretrained/frac0.1/seed0" in names


def _result(arm, fraction, seed, dice_by_case):
    cases = {c: {"dice": d, "fpv_ml": 0.0, "fnv_ml": 0.0 if d == d else math.nan, "gt_lesions": int(d == d),
                 "detected_lesions": int(d == d and d > 0), "pred_components": 1, "false_positive_components": 0}
             for c, d in dice_by_case.items()}
    return {"backbone_name": "net", "arm": arm, "pretrained": "mae" if arm == "pretrained" else None,
            "label_fraction": fraction, "k_shot": None, "n_train": int(10 * fraction), "seed": seed, "test_cases": cases}


def test_table_pools_seeds_and_pairs_pretrained_with_scratch_case_by_case():
    cases = [f"c{i}" for i in range(8)]
    results = [
        _result("pretrained", 0.1, s, {c: 0.6 + 0.01 * i + 0.001 * s for i, c in enumerate(cases)}) for s in (0, 1)
    ] + [
        _result("scratch", 0.1, s, {c: 0.4 + 0.01 * i for i, c in enumerate(cases)}) for s in (0, 1)
    ]
    results[0]["test_cases"]["c7"]["dice"] = math.nan  # a lesion-free test case: no Dice
    rows = aggregate_results(results, n_boot=200)
    pre = next(r for r in rows if r["arm"] == "pretrained")
    assert pre["n_cases"] == 16 and pre["dice_ci95"][0] <= pre["dice"] <= pre["dice_ci95"][1]
    (test,) = paired_tests(results)
    assert test["n"] == 15 and test["median_difference"] > 0.19 and test["pvalue"] < 0.001
    table = markdown_table(rows, [test])
    assert "| net | pretrained | 0.1 |" in table and "Wilcoxon" in table
