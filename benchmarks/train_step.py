"""One segmentation training step of a small preset on CPU, in fp32 and bf16, with and without channels-last-3d.

What the quickstart's cells run: forward + DiceCE backward + AdamW step on a batch of random crops (the step's cost
does not depend on the values). Prints one JSON line per setting: median milliseconds per step over --steps timed
steps after --warmup, and the speed-up channels-last gives at that precision.

    .venv/bin/python benchmarks/train_step.py                                  # tiny-unet, 2 x 32x32x48, 2 threads
    .venv/bin/python benchmarks/train_step.py --threads 1 --crop 32 24 48
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from modeling_petct import PetCtConfig, PetCtForSegmentation
from modeling_petct.inference import use_bf16


def step_ms(preset: str, crop, batch: int, bf16: bool, channels_last: bool, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = PetCtForSegmentation(PetCtConfig.from_preset(preset, num_labels=2)).train()
    x = torch.randn(batch, 2, *crop)
    y = (torch.rand(batch, 1, *crop) > 0.9).long()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with autocast:
            loss = model(x, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny-unet")
    p.add_argument("--crop", type=int, nargs=3, default=(32, 32, 48))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    precisions = (False, True) if use_bf16("auto", "cpu") else (False,)  # bf16 only where its kernels are fast
    for bf16 in precisions:
        ms = {cl: step_ms(args.preset, args.crop, args.batch, bf16, cl, args.steps, args.warmup) for cl in (False, True)}
        print(json.dumps({"preset": args.preset, "crop": list(args.crop), "batch": args.batch, "threads": args.threads,
                          "precision": "bf16" if bf16 else "fp32", "ms_per_step": round(ms[False], 1),
                          "ms_per_step_channels_last": round(ms[True], 1),
                          "channels_last_speedup": round(ms[False] / ms[True], 2)}))


if __name__ == "__main__":
    main()
