"""MAE pretraining throughput (crops/s) and peak memory per backbone: our recipe vs the authors' on the same machine.

ours:    bf16 autocast where the device has fast bf16 kernels (CUDA, AVX512-BF16/AMX CPUs; else fp32), channels_last_3d on CUDA, fused AdamW on CUDA, torch.compile on CUDA (``--compile`` forces it)
authors: fp16 AMP with GradScaler on CUDA (fp32 on CPU, where fp16 autocast is not their setting), plain AdamW, no compile

    python benchmarks/train_throughput.py --device cpu --backbone tiny-unet --batch-size 2 --crop 32 32 32
    python benchmarks/train_throughput.py --device cuda --backbone swinunetr-v2-base --batch-size 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import time

import torch


def recipe_settings(recipe: str, device: str, compile_flag: str) -> dict:
    cuda = device == "cuda"
    if recipe == "ours":
        from modeling_petct.inference import use_bf16

        compiled = cuda if compile_flag == "auto" else compile_flag == "on"
        return {"dtype": torch.bfloat16 if use_bf16("auto", device) else None, "channels_last": cuda, "fused": cuda, "compile": compiled, "scaler": False}
    return {"dtype": torch.float16 if cuda else None, "channels_last": False, "fused": False, "compile": False,
            "scaler": cuda}


def measure(preset: str, recipe: str, device: str, batch_size: int, crop, steps: int, warmup: int, compile_flag: str) -> dict:
    from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling

    s = recipe_settings(recipe, device, compile_flag)
    torch.manual_seed(0)
    model = PetCtForMaskedImageModeling(PetCtConfig.from_preset(preset, crop_size=tuple(crop))).to(device).train()
    memory_format = torch.channels_last_3d if s["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5, fused=s["fused"])
    scaler = torch.amp.GradScaler("cuda") if s["scaler"] else None
    step_model = torch.compile(model) if s["compile"] else model
    x = torch.randn(batch_size, model.config.num_channels, *crop, device=device).contiguous(memory_format=memory_format)

    def step():
        ctx = torch.autocast(device, dtype=s["dtype"]) if s["dtype"] is not None else contextlib.nullcontext()
        with ctx:
            loss = step_model(pixel_values=x).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # CPU: process peak so far (run one recipe per process for exact figures)
    return {"backbone": preset, "recipe": recipe, "device": device, "batch_size": batch_size, "crop": list(crop),
            "crops_per_s": round(steps * batch_size / elapsed, 3), "s_per_step": round(elapsed / steps, 4),
            "peak_memory_gib": round(peak / 2**30, 3), "peak_memory_kind": "cuda allocated" if device == "cuda" else "process RSS",
            **{k: str(v) for k, v in s.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", nargs="+", default=["swinunetr-v2-small"], help="PetCtConfig presets")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=3, default=None, help="default: the preset's crop (96 128 128)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--recipe", choices=("ours", "authors", "both"), default="both")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--json", help="also append the rows to this JSON-lines file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from modeling_petct import PRESETS

    recipes = ("authors", "ours") if args.recipe == "both" else (args.recipe,)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""))
    for preset in args.backbone:
        crop = args.crop or list(PRESETS[preset].get("crop_size", (96, 128, 128)))
        rows = [measure(preset, r, args.device, args.batch_size, crop, args.steps, args.warmup, args.compile) for r in recipes]
        for row in rows:
            print(json.dumps(row))
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
        if len(rows) == 2:
            print(f"{preset}: ours / authors = {rows[1]['crops_per_s'] / rows[0]['crops_per_s']:.2f}x crops/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
