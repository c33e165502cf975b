"""End-to-end `petct segment` speed against the authors' inference recipe, on one phantom study.

    python benchmarks/inference_segment.py --size autopet            # 400x400x326 at 2.04x2.04x3 mm, nnunet-v2-3d
    python benchmarks/inference_segment.py --size small --model DIR  # trained weights: agreement is then meaningful

Each recipe runs end to end (read -> harmonise -> infer -> write the mask) in its own fresh process, so the peak
resident memory of each is measured alone. Recipes: reference = MONAI sliding_window_inference, roi = the model's
crop (96x128x128), overlap 0.5, constant blending, fp32 (METHOD.md); default and fast = what `petct segment` and
`petct segment --fast` run. Agreement = Dice between each recipe's mask and the reference's (same weights). With no
--model the weights are random (seeded): fine for speed, but then the agreement only says how much window placement
moves a random network's output; use trained weights for the agreement figure.
Prints one summary line per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = ("reference", "default", "fast")


def worker(args) -> None:
    """One recipe, end to end, in this process; prints a JSON line with its timings and peak memory."""
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.data.io import write_volume
    from modeling_petct.inference import InferenceSettings, load_segmentation_model, segment_study

    if args.model:
        model = load_segmentation_model(args.model, args.device)
    else:
        torch.manual_seed(0)
        model = PetCtForSegmentation(PetCtConfig.from_preset(args.preset)).to(args.device).eval()
    settings = {"reference": InferenceSettings.reference(), "default": InferenceSettings(),
                "fast": InferenceSettings.fast()}[args.recipe]  # fmt: skip
    runs = []
    for study in args.study:
        t0 = time.perf_counter()
        result = segment_study(study / "PET.nii.gz", study / "CT.nii.gz", model, device=args.device, settings=settings)
        write_volume(result.mask, args.out / f"{study.name}.nii.gz")
        runs.append({"total_s": time.perf_counter() - t0, "crop": list(result.harmonized.shape), **result.timings})
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    print(json.dumps({"recipe": args.recipe, "runs": runs, "peak_rss_gb": peak_gb, "peak_gpu_gb": gpu}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("small", "autopet"), default="small")
    p.add_argument("--preset", default="nnunet-v2-3d", help="model preset when no --model (random weights)")
    p.add_argument("--model", help="trained PetCtForSegmentation folder (for a meaningful agreement figure)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--seed", type=int, default=1, help="phantom seed of the first study")
    p.add_argument("--studies", type=int, default=1, help="phantom studies (seeds seed, seed+1, ...); times are of the first")
    p.add_argument("--recipe", help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--study", type=Path, nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.recipe:
        return worker(args)

    import nibabel as nib
    import numpy as np

    from modeling_petct.data.synthetic.phantom import make_phantom, write_study
    from modeling_petct.evaluation import autopet_case_metrics

    recipes = args.recipes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = [write_study(make_phantom(args.seed + i, size=args.size, n_lesions=6), tmp / f"study{i}")
                   for i in range(args.studies)]  # fmt: skip
        runs, masks = {}, {}
        for recipe in recipes:
            (tmp / recipe).mkdir()
            cmd = [sys.executable, __file__, "--recipe", recipe, "--study", *map(str, studies), "--out", str(tmp / recipe),
                   "--device", args.device, "--preset", args.preset] + (["--model", args.model] if args.model else [])
            line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout.strip()
            runs[recipe] = json.loads(line.splitlines()[-1])
            masks[recipe] = [np.asarray(nib.load(tmp / recipe / f"{s.name}.nii.gz").dataobj) > 0 for s in studies]
        truth = [np.asarray(nib.load(s / "SEG.nii.gz").dataobj) > 0 for s in studies]

    def mean_dice(a, b):
        return float(np.nanmean([autopet_case_metrics(x, y, 1.0)["dice"] for x, y in zip(a, b)]))

    weights = args.model or f"random-init {args.preset}"
    machine = f"{os.cpu_count()} CPU cores" if args.device == "cpu" else args.device
    first = runs[recipes[0]]["runs"][0]
    print(f"# size={args.size} crop={first['crop']} weights={weights} device={args.device} ({machine}) "
          f"studies={args.studies}")  # fmt: skip
    ref = runs.get("reference")
    for recipe in recipes:
        r, t = runs[recipe], runs[recipe]["runs"][0]
        extra = ""
        if ref and recipe != "reference":
            extra = (f", {ref['runs'][0]['total_s'] / t['total_s']:.2f}x faster than reference, "
                     f"Dice vs reference mask {mean_dice(masks[recipe], masks['reference']):.4f}")  # fmt: skip
        gpu = f", peak GPU {r['peak_gpu_gb']:.2f} GB" if r["peak_gpu_gb"] is not None else ""
        print(f"{recipe}: end-to-end {t['total_s']:.1f} s (read {t['read_s']:.1f}, harmonise {t['harmonize_s']:.1f}, "
              f"inference {t['inference_s']:.1f}, to-native {t['to_native_s']:.1f}){extra}, "
              f"mean Dice vs phantom truth {mean_dice(masks[recipe], truth):.4f}, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB{gpu}")  # fmt: skip


if __name__ == "__main__":
    main()
