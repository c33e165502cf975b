"""Every seed derived from another, in one place: the rule, and the random stream it feeds.

A run is given one seed; everything random beneath it draws from seeds derived here, so that two streams never share
a draw by accident. The numbers are part of the record (released models' cards, cached cohorts and reported results
were made with exactly these rules): add a rule, never change one.

| rule | derived seed | feeds |
|---|---|---|
| `cohort_pool_seed` | 16 seed + k (train 1, val 2, test 3, held_out_test 4, unlabelled 5 + i) | a phantom pool |
| `phantom_study_seed` | SeedSequence([pool seed, n]) | study n of a phantom pool |
| `run_seed` | seed + k (joint MAE 0, PET-only 1, CT-only 2, segmenter 3) | a quickstart's or release's runs |
| `grid_seeds` | seed + offset | a study's grid seeds (its labelled subsets) |
| `cell_seed` | STRIDE grid seed + label amount | a study cell's training (init, head, crops) |
| `data_order_seed` | STRIDE seed (Accelerate adds the epoch) | the sampler's permutation of each epoch |
| `loader_seed` | 7919 seed + epoch | the DataLoader's own generator |
| `VALIDATION_SEED` | 12345 | masks and crops of every evaluation |
| `holdout_seed` | seed + 7777 (a labelled subset draws with the seed itself) | a subject-wise hold-out |
| `validation_split_seed` | seed + 1 (the test hold-out uses the seed) | the validation hold-out of a split |
| `crop_rng` | SeedSequence([seed, epoch, index]) | a training crop's position and augmentation |
| `crop_clicks_rng` | SeedSequence([seed, epoch, index, 24]) | the simulated clicks of that crop |
| `batch_clicks_rng` | SeedSequence([seed, step, rank, 25]) | a batch's corrective clicks |
| `foreground_seed` | len(study id) | the lesion voxels a cache keeps for crop sampling |

A pool's seed also names its studies (`phantom_<pool seed>_<n>`): pools never share a seed, so ids never clash.
"""

from __future__ import annotations

STRIDE = 100_003  # a prime above any label amount or epoch count: seed s + anything never reaches seed s + 1
POOL_STRIDE = 16  # pools per cohort seed (4 labelled roles + up to 11 unlabelled centres, k = 0 unused)
POOLS = {"train": 1, "val": 2, "test": 3, "held_out_test": 4, "unlabelled": 5}
RUNS = {"joint": 0, "pet": 1, "ct": 2, "segmenter": 3}
LOADER_STRIDE = 7919
VALIDATION_SEED = 12345
HOLDOUT_OFFSET = 7_777
CROP_CLICKS, BATCH_CLICKS = 24, 25  # the last key of a click stream's SeedSequence (crops have none)


def cohort_pool_seed(seed: int, role: str, i: int = 0) -> int:
    """The phantom seed of pool `role` (the i-th unlabelled centre) of cohort seed `seed`."""
    k = POOLS[role] + i
    if not 0 <= i < POOL_STRIDE - POOLS["unlabelled"] or (i and role != "unlabelled"):
        raise ValueError(f"a cohort has at most {POOL_STRIDE - POOLS['unlabelled']} unlabelled pools, and one per "
                         f"labelled role (got {role} {i})")
    return POOL_STRIDE * int(seed) + k


def phantom_study_seed(pool_seed: int, index: int) -> int:
    """Study `index` of a phantom pool: independent of its neighbours."""
    import numpy as np

    return int(np.random.SeedSequence([int(pool_seed), int(index)]).generate_state(1)[0])


def run_seed(seed: int, run: str) -> int:
    """The training seed of one run ("joint", "pet", "ct", "segmenter") of a quickstart or release with `seed`."""
    return seed + RUNS[run]


def grid_seeds(seed: int, offsets) -> list[int]:
    """The study grid seeds of a quickstart with `seed`."""
    return [seed + s for s in offsets]


def cell_seed(grid_seed: int, amount: int) -> int:
    """The training seed of the study cell with `amount` labels (a fraction in thousandths, or k shots)."""
    return grid_seed * STRIDE + amount


def data_order_seed(seed: int) -> int:
    """Accelerate's `data_seed`: epoch e is permuted with this + e."""
    return seed * STRIDE


def loader_seed(seed: int, epoch: int) -> int:
    return seed * LOADER_STRIDE + epoch


def holdout_seed(seed: int) -> int:
    return seed + HOLDOUT_OFFSET


def validation_split_seed(seed: int) -> int:
    return seed + 1


def crop_rng(seed: int, epoch: int, index: int):
    """numpy Generator of one training crop: a function of (seed, epoch, index) alone, whichever worker draws it."""
    return _rng(seed, epoch, index)


def crop_clicks_rng(seed: int, epoch: int, index: int):
    return _rng(seed, epoch, index, CROP_CLICKS)


def batch_clicks_rng(seed: int, step: int, rank: int):
    return _rng(seed, step, rank, BATCH_CLICKS)


def _rng(*key: int):
    import numpy as np

    return np.random.default_rng([int(k) for k in key])


def foreground_seed(study_id: str) -> int:
    return len(study_id)
