"""Random 96x128x128x2 training crops read from the cache, on one core (torch/numpy threads = 1).

Writes a few AutoPET-size harmonised studies (2 x 326 x 190 x 310) into a temporary cache, then times
``MaeCropDataset`` without and with the paper's zoom augmentation and ``SegCropDataset`` (foreground sampling).
The cache files sit in the page cache after writing (warm reads, as in a training run whose cache fits in RAM).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_crops.py [--seconds 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def rate(ds, seconds: float) -> tuple[float, float]:
    """Crops per wall-clock second and per CPU second of this process (the latter ignores other jobs' load)."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(n // len(ds))
        ds[n % len(ds)]
        n += 1
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    args = ap.parse_args()

    import numpy as np
    import torch

    from modeling_petct.data.cache import StudyCache
    from modeling_petct.data.harmonize import HarmonizedStudy
    from modeling_petct.data.transforms import MaeCropDataset, SegCropDataset

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    shape = (326, 190, 310)
    with tempfile.TemporaryDirectory() as tmp:
        cache = StudyCache(tmp)
        for i in range(args.studies):
            label = np.zeros(shape, np.uint8)
            label[100:110, 90:100, 150:170] = 1
            study = HarmonizedStudy(rng.standard_normal((2, *shape), dtype=np.float32), np.eye(4), np.eye(4), shape,
                                    tuple((0, n) for n in shape), "zscore", {}, label=label)
            cache.write(f"s{i}", study, dtype=args.dtype)
        ids = cache.ids()
        crop = (96, 128, 128)
        cases = {
            "mae_no_aug": MaeCropDataset(cache, ids, crop, augment=False),
            "mae_zoom_p0.5": MaeCropDataset(cache, ids, crop, augment=True),
            "seg_zoom_fg0.33": SegCropDataset(cache, ids, crop, augment=True, fg_prob=0.33),
        }
        for name, ds in cases.items():
            ds[0]  # open the memory maps
            wall, cpu = rate(ds, args.seconds)
            print(json.dumps({"case": name, "crop": list(crop), "dtype": args.dtype, "crops_per_s": round(wall, 1),
                              "crops_per_cpu_s": round(cpu, 1), "threads": 1}))


if __name__ == "__main__":
    main()
