"""The nnU-Net v2 results folder the parity tests import, and the phantom studies they segment.

``python tests/nnunet_fixture.py`` rebuilds ``tests/fixtures/nnunet_tiny`` with nnU-Net itself: phantoms written in
nnU-Net's raw format (channel 0 CT, channel 1 PET, as autoPET), nnU-Net's fingerprint, planner and preprocessor, the
plans' network shrunk to a few thousand weights and a small patch (so several windows cover a test study), then
nnU-Net's own ``nnUNetTrainer`` for a few short epochs per fold on the CPU. Two folds, so the ensemble is exercised.
The tests never rebuild it; they run nnU-Net's predictor on it (nnunetv2 is a test dependency).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "nnunet_tiny"
DATASET = "Dataset987_PetCtPhantom"
RESULTS = FIXTURE / "nnUNetTrainer__nnUNetPlans__3d_fullres"
PLAN_SPACING = (3.0, 2.0, 2.0)  # (z, y, x) mm of the training phantoms, so the plans' target spacing
PATCH = (16, 32, 32)
NETWORK = {"n_stages": 3, "features_per_stage": [4, 8, 16], "kernel_sizes": [[3, 3, 3]] * 3,
           "strides": [[1, 1, 1], [2, 2, 2], [1, 2, 2]], "n_conv_per_stage": [1, 1, 1],
           "n_conv_per_stage_decoder": [1, 1]}


def phantom(seed: int, shape=(30, 48, 44), spacing=PLAN_SPACING) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CT HU, PET SUV, lesion labels), arrays (z, y, x) as SimpleITK reads them: an elliptic body in air inside a
    zero-filled scanner border (so nnU-Net's crop to nonzero has work), a hot bladder-like organ and 2-4 lesions of
    10-20 mm whose PET uptake sits well above the background."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    extent = [n * s / 2 for n, s in zip(shape, spacing)]
    body = (y / (0.75 * extent[1])) ** 2 + (x / (0.85 * extent[2])) ** 2 <= 1
    ct = np.where(body, 40.0 + rng.normal(0, 15, shape), -1000.0)
    pet = np.where(body, 1.0 + rng.gamma(4, 0.1, shape), 0.05)
    organ = ((z - 0.3 * extent[0]) / 14) ** 2 + (y / 12) ** 2 + ((x + 0.3 * extent[2]) / 12) ** 2 <= 1
    pet[organ] += 6.0
    labels = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(2, 5)):
        centre = [rng.uniform(-0.6, 0.6) * e for e in extent]
        radius = rng.uniform(5, 10)
        ball = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2) & body & ~organ
        pet[ball] += rng.uniform(4, 10)
        ct[ball] += 20
        labels[ball] = 1
    border = np.zeros(shape, bool)
    border[:, :2], border[:, :, -3:] = True, True  # outside the reconstructed field of view: 0 in every channel
    ct[border], pet[border], labels[border] = 0.0, 0.0, 0
    return ct.astype(np.float32), pet.astype(np.float32), labels


def write_channels(arrays, spacing, folder: Path, case: str, origin=(-40.0, 20.0, 10.0)) -> list[Path]:
    """``<case>_0000.nii.gz``, ``_0001`` ... (nnU-Net's raw naming) with SimpleITK, spacing given as (z, y, x)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, array in enumerate(arrays):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
        image.SetOrigin(origin)
        paths.append(folder / f"{case}_{c:04d}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def _write_raw(raw: Path, n_cases: int = 8) -> None:
    import SimpleITK as sitk

    for i in range(n_cases):
        ct, pet, labels = phantom(100 + i)
        write_channels([ct, pet], PLAN_SPACING, raw / "imagesTr", f"case{i:03d}")
        seg = sitk.GetImageFromArray(labels)
        seg.SetSpacing(PLAN_SPACING[::-1])
        seg.SetOrigin((-40.0, 20.0, 10.0))
        (raw / "labelsTr").mkdir(exist_ok=True)
        sitk.WriteImage(seg, str(raw / "labelsTr" / f"case{i:03d}.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "lesion": 1},
        "numTraining": n_cases, "file_ending": ".nii.gz", "name": "PetCtPhantom",
        "licence": "Apache-2.0 (synthetic phantoms of the petct-fm test suite)"}, indent=2))


def _shrink_plans(plans_file: Path) -> None:
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = list(PATCH)
    config["batch_size"] = 2
    config["architecture"]["arch_kwargs"].update(NETWORK)
    plans["configurations"] = {"3d_fullres": config}
    plans_file.write_text(json.dumps(plans, indent=2))


def build(epochs: int = 6, iterations: int = 20) -> None:
    work = Path(tempfile.mkdtemp(prefix="nnunet_fixture_"))
    for name in ("raw", "preprocessed", "results"):
        os.environ[f"nnUNet_{name}"] = str(work / name)
    os.environ.setdefault("nnUNet_n_proc_DA", "1")
    _write_raw(work / "raw" / DATASET)

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    extract_fingerprints([987], num_processes=1)
    plan_experiments([987])
    plans_file = work / "preprocessed" / DATASET / "nnUNetPlans.json"
    _shrink_plans(plans_file)
    preprocess([987], configurations=("3d_fullres",), num_processes=(1,))
    dataset_json = json.loads((work / "preprocessed" / DATASET / "dataset.json").read_text())
    for fold in (0, 1):
        torch.manual_seed(fold)
        plans = json.loads(plans_file.read_text())
        plans["continue_training"] = False
        trainer = nnUNetTrainer(plans, "3d_fullres", fold, dataset_json, device=torch.device("cpu"))
        trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = \
            epochs, iterations, 2
        trainer.run_training()
    trained = work / "results" / DATASET / RESULTS.name
    if FIXTURE.exists():
        shutil.rmtree(FIXTURE)
    RESULTS.mkdir(parents=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(trained / name, RESULTS / name)
    for fold in (0, 1):
        (RESULTS / f"fold_{fold}").mkdir()
        shutil.copy(trained / f"fold_{fold}" / "checkpoint_final.pth", RESULTS / f"fold_{fold}")
    shutil.rmtree(work)


if __name__ == "__main__":
    build(*map(int, sys.argv[1:]))
