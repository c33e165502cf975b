"""End-to-end `petct segment` speed and accuracy of each recipe and CPU runtime against the authors' recipe, on phantoms.

    python benchmarks/inference_segment.py --size autopet --model DIR   # the whole BENCHMARKS speed table (~12 min)
    python benchmarks/inference_segment.py --size autopet               # random-init nnunet-v2-3d: speed only
    python benchmarks/inference_segment.py --size small --model DIR --studies 12 --runs reference default fast

Runs are RECIPE[:BACKEND]: recipe reference = MONAI sliding_window_inference, roi = the model's crop (96x128x128),
overlap 0.5, constant blending, fp32, eager PyTorch (METHOD.md); default / fast = what `petct segment` /
`petct segment --fast` run (precision auto); backend torch (default), openvino or openvino-int8 (the cpu-fast extra).
Each run is end to end (read -> harmonise -> infer -> write the mask) in its own fresh process, so its peak resident
memory is its own. OpenVINO exports are made first, once, in a fresh cache (their cost is printed), int8 calibrated on
--calibration-seeds phantoms (the seeds benchmarks/inference_finetune.py trains on: the model's own cohort); each
export's check against eager PyTorch on held-out windows is printed with what `--backend auto` would pick.
Per run: end-to-end time, speed-up over the reference, Dice of its mask against the reference's mask, mean Dice
against phantom truth, truth lesions found, reference lesions lost (components of the reference mask the run's mask
does not touch), peak RSS. Also: how many windows hold no PET above each SUV floor (what skipping them would save).
With no --model the weights are random (seeded): fine for speed, meaningless for accuracy.
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

DEFAULT_RUNS = ("reference", "default", "fast", "default:openvino", "fast:openvino", "default:openvino-int8",
                "fast:openvino-int8")  # fmt: skip
SUV_FLOORS = (1.0, 2.5)


def load_model(args):
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.inference import load_segmentation_model

    if args.model:
        return load_segmentation_model(args.model, args.device)
    torch.manual_seed(0)
    return PetCtForSegmentation(PetCtConfig.from_preset(args.preset)).to(args.device).eval()


def settings_of(run: str):
    from modeling_petct.inference import InferenceSettings

    recipe, _, backend = run.partition(":")
    return InferenceSettings.recipe(recipe, backend=backend or "torch")


def worker(args) -> None:
    """One run, end to end, in this process; prints a JSON line with its timings and peak memory."""
    import torch

    from modeling_petct.data.io import write_volume
    from modeling_petct.inference import Segmenter

    segmenter = Segmenter(load_model(args), settings_of(args.run), args.device)
    runs = []
    for study in args.study:
        t0 = time.perf_counter()
        result = segmenter(study / "PET.nii.gz", study / "CT.nii.gz")
        write_volume(result.mask, args.out / f"{study.name}.nii.gz")
        runs.append({"total_s": time.perf_counter() - t0, "crop": list(result.harmonized.shape), **result.timings})
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    print(json.dumps({"run": args.run, "runs": runs, "peak_rss_gb": peak_gb, "peak_gpu_gb": gpu}))


def exporter(args) -> None:
    """Export each backend once (fresh cache), calibrated on the calibration phantoms; prints a JSON line each."""
    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.synthetic.phantom import make_phantom
    from modeling_petct.inference import backends
    from modeling_petct.inference.loading import weights_checksum

    model = load_model(args)
    config = model.config
    images = []
    for seed in args.calibration_seeds:
        ph = make_phantom(seed, size=args.size, n_lesions=6)
        images.append(harmonize(ph.pet, ph.ct, spacing=config.target_spacing, normalization=config.normalization)
                      .image[config.input_channels])  # fmt: skip
    digest = weights_checksum(model)
    for backend in args.export:
        t0 = time.perf_counter()
        folder = backends.export_backend(model, backend, images, calibration=f"phantom seeds {args.calibration_seeds}",
                                         digest=digest)  # fmt: skip
        check = backends.check_result(folder)
        print(json.dumps({"backend": backend, "export_s": time.perf_counter() - t0, **check}), flush=True)


def skippable_windows(study_dir: Path, config) -> str:
    """Windows (per recipe) whose PET holds nothing above each SUV floor (3x3x3 mean, so noise does not count)."""
    from monai.data.utils import dense_patch_slices
    from scipy import ndimage

    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.io import read_ct, read_pet

    study = harmonize(read_pet(study_dir / "PET.nii.gz"), read_ct(study_dir / "CT.nii.gz"),
                      spacing=config.target_spacing, normalization=config.normalization)  # fmt: skip
    suv, roi = ndimage.uniform_filter(study.suv, 3), tuple(int(r) for r in config.crop_size)
    parts = []
    for name, overlap in (("reference", 0.5), ("default", 0.25), ("fast", 0.0)):
        padded = [max(n, r) for n, r in zip(study.shape, roi)]
        interval = [r if n == r else max(1, int(r * (1 - overlap))) for n, r in zip(padded, roi)]
        slices = dense_patch_slices(padded, roi, interval)
        skip = {floor: sum(float(suv[s].max(initial=0.0)) < floor for s in slices) for floor in SUV_FLOORS}
        parts.append(f"{name} " + ", ".join(f"{n}/{len(slices)} below SUV {f:g}" for f, n in skip.items()))
    return "; ".join(parts)


def subprocess_json(cmd: list[str]) -> list[dict]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def header(args) -> str:
    import torch

    weights = args.model or f"random-init {args.preset}"
    extra = ""
    try:
        import nncf
        import openvino

        extra = f", OpenVINO {openvino.__version__.split('-')[0]}, NNCF {nncf.__version__}"
    except ImportError:
        extra = ", cpu-fast extra not installed"
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return (f"# size={args.size} weights={weights} device={args.device} ({os.cpu_count()} CPU cores, "
            f"{torch.backends.cpu.get_cpu_capability()}, mkldnn bf16 {bf16}, torch threads {torch.get_num_threads()}), "
            f"torch {torch.__version__}{extra}; load average at start {os.getloadavg()[0]:.1f}")  # fmt: skip


def summarise(runs, masks, truth, ref_name="reference") -> list[str]:
    import numpy as np

    from modeling_petct.evaluation.metrics import case_metrics

    def mean(values):
        return float(np.nanmean(values))

    ref = runs.get(ref_name)
    lines = []
    for name, r in runs.items():
        t = r["runs"][0]
        vs_truth = [case_metrics(m, g, 1.0) for m, g in zip(masks[name], truth)]
        found = sum(m["detected_lesions"] for m in vs_truth)
        n_truth = sum(m["gt_lesions"] for m in vs_truth)
        extra = ""
        if ref and name != ref_name:
            vs_ref = [case_metrics(m, g, 1.0) for m, g in zip(masks[name], masks[ref_name])]
            lost = sum(m["gt_lesions"] - m["detected_lesions"] for m in vs_ref)
            extra = (f", {ref['runs'][0]['total_s'] / t['total_s']:.2f}x the reference, Dice vs reference mask "
                     f"{mean([m['dice'] for m in vs_ref]):.4f}, reference lesions lost {lost}")  # fmt: skip
        gpu = f", peak GPU {r['peak_gpu_gb']:.2f} GB" if r["peak_gpu_gb"] is not None else ""
        lines.append(f"{name}: end-to-end {t['total_s']:.1f} s (read {t['read_s']:.1f}, harmonise {t['harmonize_s']:.1f}, "
                     f"inference {t['inference_s']:.1f}, to-native {t['to_native_s']:.1f}){extra}, mean Dice vs phantom "
                     f"truth {mean([m['dice'] for m in vs_truth]):.4f}, truth lesions found {found}/{n_truth}, "
                     f"peak RSS {r['peak_rss_gb']:.2f} GB{gpu}")  # fmt: skip
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("small", "autopet"), default="autopet")
    p.add_argument("--preset", default="nnunet-v2-3d", help="model preset when no --model (random weights)")
    p.add_argument("--model", help="trained PetCtForSegmentation folder (for meaningful accuracy figures)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", nargs="+", default=None, help=f"RECIPE[:BACKEND] (default: {' '.join(DEFAULT_RUNS)}; "
                   "the OpenVINO ones only when the cpu-fast extra is installed)")
    p.add_argument("--seed", type=int, default=1, help="phantom seed of the first study (training uses 100+)")
    p.add_argument("--studies", type=int, default=1, help="phantom studies (seeds seed, seed+1, ...); times are of the first")
    p.add_argument("--calibration-seeds", type=int, nargs="+", default=[100], help="int8 calibration phantoms")
    p.add_argument("--run", help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--export", nargs="+", help=argparse.SUPPRESS)  # export mode
    p.add_argument("--study", type=Path, nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run:
        return worker(args)
    if args.export:
        return exporter(args)

    import nibabel as nib
    import numpy as np

    from modeling_petct.data.synthetic.phantom import make_phantom, write_study
    from modeling_petct.inference.backends import installed

    t_start = time.perf_counter()
    runs_wanted = args.runs or [r for r in DEFAULT_RUNS if installed(r.partition(":")[2] or "torch")]
    print(header(args), flush=True)
    common = ["--device", args.device, "--preset", args.preset, "--size", args.size] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PETCT_BACKEND_CACHE"] = str(tmp / "backend-cache")  # fresh: the export cost is measured
        studies = [write_study(make_phantom(args.seed + i, size=args.size, n_lesions=6), tmp / f"study{i}")
                   for i in range(args.studies)]  # fmt: skip
        exports = sorted({r.partition(":")[2] for r in runs_wanted} - {"", "torch", "auto"})
        if exports:
            seeds = [str(s) for s in args.calibration_seeds]
            for e in subprocess_json([sys.executable, __file__, "--export", *exports, "--calibration-seeds", *seeds, *common]):
                print(f"export {e['backend']}: {e['export_s']:.0f} s once (calibration: {e['calibration']}, "
                      f"{e['calibration_windows']} windows; runtime precision {e['runtime_precision']}); check on "
                      f"{e['check_windows']} held-out windows ({e.get('foreground_voxels')} foreground voxels): "
                      f"foreground Dice vs torch {e['dice_vs_torch']:.4f}, max |dp| {e['max_prob_diff']:.3f} -> "
                      f"{'passed: auto uses it' if e['passed'] else 'FAILED: auto skips it'}", flush=True)  # fmt: skip
        runs, masks = {}, {}
        for run in runs_wanted:
            out = tmp / run.replace(":", "_")
            out.mkdir()
            cmd = [sys.executable, __file__, "--run", run, "--study", *map(str, studies), "--out", str(out), *common]
            runs[run] = subprocess_json(cmd)[-1]
            masks[run] = [np.asarray(nib.load(out / f"{s.name}.nii.gz").dataobj) > 0 for s in studies]
            print(f"  ({run} done at {time.perf_counter() - t_start:.0f} s)", flush=True)
        truth = [np.asarray(nib.load(s / "SEG.nii.gz").dataobj) > 0 for s in studies]
        print(f"crop {runs[runs_wanted[0]]['runs'][0]['crop']}, studies {args.studies}")
        for line in summarise(runs, masks, truth):
            print(line)
        print("windows with no PET above the floor:", skippable_windows(studies[0], load_model(args).config))
    print(f"# wall {time.perf_counter() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
