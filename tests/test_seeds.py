"""The seed rules: today's numbers are pinned (released models' records, cached cohorts and reported results were made
with them), and the streams that claim to be apart stay apart for every seed a user plausibly passes."""

from __future__ import annotations

import json

import pytest

from modeling_petct import seeds
from modeling_petct.experiments.cohort import CohortPlan
from modeling_petct.experiments.release import PLANS, fit_seed
from modeling_petct.released import RECORD, released_models

SEEDS = range(1000)


def test_the_rules_give_todays_numbers():
    assert [seeds.cohort_pool_seed(1000, r) for r in ("train", "val", "test", "held_out_test")] == [16001, 16002,
                                                                                                    16003, 16004]
    assert [seeds.cohort_pool_seed(2, "unlabelled", i) for i in range(3)] == [37, 38, 39]
    assert (seeds.phantom_study_seed(16001, 0), seeds.phantom_study_seed(1, 3)) == (1810521944, 4010755824)
    assert [seeds.run_seed(1000, r) for r in ("joint", "pet", "ct", "segmenter")] == [1000, 1001, 1002, 1003]
    assert seeds.grid_seeds(5, (0, 1, 2)) == [5, 6, 7]
    assert (seeds.cell_seed(2, 100), seeds.data_order_seed(3), seeds.loader_seed(2, 5)) == (200_106, 300_009, 15_843)
    assert (seeds.holdout_seed(4), seeds.validation_split_seed(4), seeds.VALIDATION_SEED) == (7_781, 5, 12345)
    assert seeds.foreground_seed("phantom_000_0001") == 16
    draws = [rng.integers(1 << 30) for rng in (seeds.crop_rng(1, 2, 3), seeds.crop_clicks_rng(1, 2, 3),
                                               seeds.batch_clicks_rng(1, 2, 0))]
    assert draws == [1035103844, 824366113, 568619664]


def test_the_released_models_records_carry_the_rules_seeds():
    shipped = released_models()
    if not shipped:
        pytest.skip("no released models in this checkout")
    for name, folder in shipped.items():
        record = json.loads((folder / RECORD).read_text())
        assert record["seed"] == fit_seed(PLANS[record["plan"]], name)
        assert [p["cohort_seed"] for p in record["cohort"]] == [p[3] for p in PLANS[record["plan"]].cohort.pools(
            record["cohort_seed"])]


def test_cohort_pools_never_share_a_seed():
    roles = [("train", 0), ("val", 0), ("test", 0), ("held_out_test", 0)] + [("unlabelled", i) for i in range(11)]
    pools = [seeds.cohort_pool_seed(s, role, i) for s in SEEDS for role, i in roles]
    assert len(set(pools)) == len(pools)
    with pytest.raises(ValueError, match="unlabelled"):
        CohortPlan(unlabelled=(("B", 1),) * 12).pools(0)


def test_cells_epochs_and_holdouts_never_share_a_seed():
    cells = [seeds.cell_seed(s, amount) for s in SEEDS for amount in range(1001)]  # thousandths, or k shots
    assert len(set(cells)) == len(cells)
    orders = [seeds.data_order_seed(s) + epoch for s in SEEDS for epoch in range(200)]  # Accelerate adds the epoch
    assert len(set(orders)) == len(orders)
    loaders = [seeds.loader_seed(s, epoch) for s in SEEDS for epoch in range(200)]
    assert len(set(loaders)) == len(loaders)
    assert not {seeds.holdout_seed(s) for s in SEEDS} & set(SEEDS)  # a hold-out never repeats a label subset's draw
    assert all(len({seeds.run_seed(s, r) for r in seeds.RUNS}) == len(seeds.RUNS) for s in SEEDS)


def test_a_crop_and_its_clicks_draw_from_different_streams():
    for key in [(0, 0, 0), (1, 2, 3), (7, 0, 11)]:
        draws = [rng.random(4).tolist() for rng in (seeds.crop_rng(*key), seeds.crop_clicks_rng(*key),
                                                    seeds.batch_clicks_rng(*key))]
        assert draws[0] != draws[1] != draws[2] != draws[0]
