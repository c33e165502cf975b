"""`petct release`: build the released phantom models once, by one command, and write them as Hub-format folders.

A synthetic multi-centre cohort of its own cohort seeds (never the quickstart's) -> the joint PET+CT masked
autoencoder and the PET-only and CT-only ones, pretrained in the paper's regime (a large unlabelled pool, pretraining
compute many times one quickstart fine-tuning run) -> a segmenter fine-tuned long from the joint one (organ-aware),
checkpoint and post-processing chosen on its own validation studies, scored once on its own test studies -> each model
as `<into>/<name>/{config.json, model.safetensors, README.md, release.json}`. The quickstart's network settings
(preset, voxel size, crop) are used, so the released models transfer into the quickstart's cells.

The folders shipped in the package (``modeling_petct/released/``) were made by ``petct release`` with the default
plan; their ``release.json`` records how (cohort seeds, counts, steps, wall time, machine, sha256 of the weights).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .cohort import CohortPlan
from .quickstart import TINY, Budget

from ..atomic import file_sha256
from ..released import RECORD, RELEASED_DIR, released_models
from ..seeds import run_seed

FOUNDATION, FOUNDATION_PET, FOUNDATION_CT, SEGMENTER = ("petct-phantom-fm", "petct-phantom-fm-pet",
                                                        "petct-phantom-fm-ct", "petct-phantom-segmenter")


@dataclass(frozen=True)
class ReleasePlan:
    """What `petct release` builds. `seed` sets the cohort seeds (seeds.cohort_pool_seed): 1000 keeps them apart
    from every quickstart seed below 1000."""

    cohort: CohortPlan = CohortPlan(train=300, val=40, test=60, held_out_test=0,
                                    unlabelled=(("A", 500), ("B", 500), ("C", 500)))
    seed: int = 1000
    network: Budget = Budget()  # preset, voxel size, crop, batch, lr, precision: the quickstart's
    mae_steps: int = 2400  # 4.3x one quickstart fine-tuning run (560 steps, same batch and crop): what a shared
    # 2-core box allowed in one session (BENCHMARKS.md); the paper's regime is 14-140x
    separated_mae_steps: int = 1200  # each of PET-only and CT-only: the joint MAE's compute in total
    segmenter_steps: int = 1500
    segmenter_eval_every: int = 500


# The paper's pretraining regime: 20x one quickstart fine-tuning cell. Built and measured (BENCHMARKS.md): it validated
# below the shipped plan (segmenter 0.716 vs 0.757 on the release's validation studies), so it is not what ships.
PAPER_REGIME = ReleasePlan(mae_steps=11200, separated_mae_steps=5600)
TINY_RELEASE = ReleasePlan(cohort=CohortPlan(train=4, val=2, test=2, held_out_test=0, unlabelled=(("B", 2), ("C", 2))),
                           network=TINY, mae_steps=2, separated_mae_steps=1, segmenter_steps=2, segmenter_eval_every=2)
PLANS = {"full": ReleasePlan(), "20x": PAPER_REGIME, "tiny": TINY_RELEASE}


def build_release(work_dir: str | os.PathLike, into: str | os.PathLike = RELEASED_DIR, *, plan: str = "full",
                  command: str = "petct release", log=print) -> dict[str, Path]:
    """Build every released model of PLANS[plan] under `work_dir` and write their folders into `into`; returns
    name -> folder."""
    import torch

    from .cohort import build_cohort
    from .quickstart import _quiet_libraries

    spec = PLANS[plan]
    work, t0 = Path(work_dir), time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    _quiet_libraries()
    timings = {}
    cohort = build_cohort(work / "data", spec.cohort, spec.seed, spacing=spec.network.spacing)
    timings["cohort_s"] = time.perf_counter() - t0
    log(f"[{timings['cohort_s']:5.0f} s] cohort: {', '.join(f'{r} {len(v)}' for r, v in cohort.roles.items())}")
    maes = pretrain_foundations(work, cohort, spec)
    timings["pretraining_s"] = time.perf_counter() - t0 - timings["cohort_s"]
    log(f"[{time.perf_counter() - t0:5.0f} s] joint, PET-only and CT-only MAEs pretrained")
    common = {"plan": plan, "command": command, "cohort_seed": spec.seed, "cohort": cohort_record(spec),
              "machine": machine()}
    runs = {FOUNDATION: (maes["joint"], "joint PET+CT masked autoencoder", spec.mae_steps),
            FOUNDATION_PET: (maes["pet"], "PET-only masked autoencoder", spec.separated_mae_steps),
            FOUNDATION_CT: (maes["ct"], "CT-only masked autoencoder", spec.separated_mae_steps)}
    out = {name: export(Path(into) / name, fit.model_dir, {
        **common, **_clock(timings, t0), "name": name, "kind": kind, "steps": steps, "seed": fit_seed(spec, name),
        "wall_s": fit.wall_s}) for name, (fit, kind, steps) in runs.items()}  # released before the segmenter starts
    segmenter = finetune_segmenter(work, cohort, spec, maes["joint"])
    timings["segmenter_s"] = time.perf_counter() - t0 - timings["cohort_s"] - timings["pretraining_s"]
    log(f"[{time.perf_counter() - t0:5.0f} s] segmenter fine-tuned: test Dice {segmenter.test.get('test_dice', float('nan')):.3f}")
    out[SEGMENTER] = export(Path(into) / SEGMENTER, Path(segmenter.selected_model), {
        **common, **_clock(timings, t0), "name": SEGMENTER,
        "kind": "lesion segmenter (organ-aware), fine-tuned from " + FOUNDATION, "steps": spec.segmenter_steps,
        "seed": segmenter.seed, "selected_step": segmenter.selected_step, "validation_score": segmenter.best_val_score,
        "test": segmenter.test, "n_train": segmenter.n_train, "wall_s": round(timings["segmenter_s"], 1)})
    return out


def _clock(timings: dict, t0: float) -> dict:
    """The build's stage times so far, its total and the date, for a record."""
    return {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "total_s": round(time.perf_counter() - t0, 1),
            "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


RUNS = {FOUNDATION: "joint", FOUNDATION_PET: "pet", FOUNDATION_CT: "ct", SEGMENTER: "segmenter"}


def fit_seed(spec: ReleasePlan, name: str) -> int:
    return run_seed(spec.seed, RUNS[name])


def pretrain_foundations(work: Path, cohort, spec: ReleasePlan) -> dict:
    """The joint, PET-only and CT-only MAEs (FitResults with wall_s), each in its own process with one thread."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    jobs = {"joint": (FOUNDATION, ("PET", "CT"), spec.mae_steps), "pet": (FOUNDATION_PET, ("PET",), spec.separated_mae_steps),
            "ct": (FOUNDATION_CT, ("CT",), spec.separated_mae_steps)}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(jobs), mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {key: pool.submit(_timed_pretrain, work / name, cohort.cache.root, cohort.id_files["mae_train"],
                                    cohort.id_files["mae_val"], spec.network, fit_seed(spec, name), modalities, steps)
                   for key, (name, modalities, steps) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def _timed_pretrain(run_dir, cache_root, train_ids, val_ids, budget: Budget, seed: int, modalities, steps: int):
    from types import SimpleNamespace

    from .quickstart import _pretrain

    start = time.perf_counter()
    cohort = SimpleNamespace(cache=SimpleNamespace(root=cache_root), id_files={"mae_val": val_ids})
    fit = _pretrain(Path(run_dir), cohort, train_ids, budget, seed, modalities, steps)
    return SimpleNamespace(model_dir=fit.model_dir, wall_s=round(time.perf_counter() - start, 1))


def finetune_segmenter(work: Path, cohort, spec: ReleasePlan, joint):
    """The released segmenter: the quickstart's corrected recipe, organ-aware, from the joint MAE, all training
    studies, `segmenter_steps` steps; checkpoint and post-processing on validation; test scored once."""
    from ..training.segmentation import finetune
    from .quickstart import Recipe, study_arguments
    from .study import Cell, cell_arguments

    budget = replace(spec.network, eval_every=spec.segmenter_eval_every)
    args = study_arguments(work / "segmenter", cohort, budget, Recipe(), steps=spec.segmenter_steps, fractions=[1.0],
                           seeds=[0], pretrained=[str(joint.model_dir)], probe_k=0, organ_aware=True)
    cell = Cell(budget.preset, "pretrained-organs", str(joint.model_dir), 1.0, None, 0)
    model, data, train, seg = cell_arguments(args, cell)
    return finetune(model, data, replace(train, seed=fit_seed(spec, SEGMENTER)), seg)


def cohort_record(spec: ReleasePlan) -> list[dict]:
    """Each pool of the release cohort: role, centre, count, cohort seed, labelled."""
    return [{"role": role, "centre": centre, "n": n, "cohort_seed": seed, "labelled": labelled}
            for role, centre, n, seed, labelled in spec.cohort.pools(spec.seed)]


def machine() -> str:
    """The CPU model and core count (lscpu), for the card's compute line."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "")
    except (OSError, subprocess.CalledProcessError):
        name = platform.processor()
    return f"{name or 'unknown CPU'}, {os.cpu_count()} cores, {platform.system()}"


def export(folder: Path, model_dir: Path, record: dict) -> Path:
    """config.json + model.safetensors of `model_dir` into `folder`, with release.json and a model card."""
    from .release_card import render_card

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(Path(model_dir) / name, folder / name)
    record = {**record, "sha256": {"model.safetensors": file_sha256(folder / "model.safetensors")}}
    (folder / RECORD).write_text(json.dumps(record, indent=1, default=str) + "\n")
    (folder / "README.md").write_text(render_card(record))
    return folder


def released_cohort_seeds(root: Path = RELEASED_DIR) -> set[int]:
    """Every cohort seed behind the released models (their release.json)."""
    return {pool["cohort_seed"] for folder in released_models(root).values()
            for pool in json.loads((folder / RECORD).read_text())["cohort"]}
