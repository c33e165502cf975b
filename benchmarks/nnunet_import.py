"""nnU-Net's own predictor against `petct segment` with the same imported model, on an AutoPET-size phantom.

    python benchmarks/nnunet_import.py                 # AutoPET size: nnU-Net's run alone took > 33 min on a shared box
    python benchmarks/nnunet_import.py --shape 48 96 96 --patch 32 64 64   # the BENCHMARKS.md rows

The model is the parity tests' nnU-Net results folder (tests/fixtures/nnunet_tiny: trained by nnunetv2 on phantoms,
fold 0) with its plans' patch enlarged to --patch (the network is fully convolutional; a realistic window count). The
study is one AutoPET-size phantom (PET 400x400x326 at 2.04x2.04x3 mm, CT resampled onto it: nnU-Net's raw format).
Three runs, each a fresh process timed end to end (start, read, predict, write): `nnUNetv2_predict_from_modelfolder`
(CPU, its defaults: step 0.5, mirroring), `petct segment` (nnU-Net's recipe) and `petct segment --fast` (the
approximate recipe). Printed: seconds, speed-up over nnU-Net, Dice of each mask against nnU-Net's and voxels that
differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _model_folder(work: Path, patch) -> Path:
    from nnunet_fixture import RESULTS

    folder = work / "results"
    shutil.copytree(RESULTS, folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = list(patch)
    (folder / "plans.json").write_text(json.dumps(plans))
    return folder


def _study(work: Path, shape) -> tuple[Path, Path]:
    """PET and CT (on the PET grid) as nnU-Net raw files case_0001 / case_0000."""
    from modeling_petct.data.io import write_volume
    from modeling_petct.data.synthetic.phantom import make_phantom
    from modeling_petct.inference.nnunet import ct_on_pet_grid

    study = make_phantom(11, size="autopet", shape=shape[::-1] if shape else None)
    raw = work / "raw"
    raw.mkdir()
    ct = write_volume(ct_on_pet_grid(study.ct, study.pet), raw / "case_0000.nii.gz")
    pet = write_volume(study.pet, raw / "case_0001.nii.gz")
    return pet, ct


def _timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _dice(a, b) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="PET (z, y, x); default AutoPET 326x400x400")
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 128, 128), help="window (z, y, x)")
    args = parser.parse_args()

    from modeling_petct.data.io import read_volume
    from modeling_petct.hub.nnunet_import import import_to_folder

    work = Path(tempfile.mkdtemp(prefix="nnunet_bench_"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = _model_folder(work, args.patch)
    pet, ct = _study(work, args.shape)
    model = import_to_folder(results, work / "imported", folds=["0"])
    bin_dir = Path(sys.executable).parent
    seconds = {"nnunet": _timed([str(bin_dir / "nnUNetv2_predict_from_modelfolder"), "-i", str(pet.parent), "-o",
                                 str(work / "nnunet"), "-m", str(results), "-f", "0", "-device", "cpu"], env)}
    petct = [sys.executable, "-c", "import sys; from modeling_petct.cli import main; sys.exit(main())", "segment",
             "--model", str(model), "--pet", str(pet), "--ct", str(ct), "--device", "cpu", "-q"]
    seconds["parity"] = _timed([*petct, "-o", str(work / "parity.nii.gz")], env)
    seconds["fast"] = _timed([*petct, "--fast", "-o", str(work / "fast.nii.gz")], env)
    reference = read_volume(work / "nnunet" / "case.nii.gz").array > 0
    shape = read_volume(pet).shape
    print(f"study {shape} at {tuple(round(s, 2) for s in read_volume(pet).spacing)} mm, patch {tuple(args.patch)}, "
          f"nnU-Net mask {int(reference.sum())} voxels, {os.cpu_count()} CPUs")
    print("| run | seconds | speed-up over nnU-Net | Dice vs nnU-Net's mask | voxels that differ |")
    print("|---|---|---|---|---|")
    for name, label in (("nnunet", "nnUNetv2_predict (step 0.5, mirroring)"), ("parity", "petct segment"),
                        ("fast", "petct segment --fast (approximate)")):
        mask = reference if name == "nnunet" else read_volume(work / f"{name}.nii.gz").array > 0
        print(f"| {label} | {seconds[name]:.0f} | {seconds['nnunet'] / seconds[name]:.2f}x | "
              f"{_dice(reference, mask):.4f} | {int((reference != mask).sum())} |")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
