"""`petct quickstart`: the whole method, end to end, offline, on 2 CPU cores in about ten minutes.

multi-centre synthetic cohort (NIfTI) -> harmonise -> masked-autoencoder pretraining on the unlabelled pool plus the
labelled pool's images (joint PET+CT, and PET-only + CT-only for the separated-modality claim) -> fine-tuning with
10% and 100% of the labels from the MAE and from scratch (equal steps, 3 seeds where a claim is tested), a long
organ-aware arm from the MAE -> 5-shot linear
probes (joint, separated, random features) -> autoPET metrics on held-out test studies (and a held-out centre) ->
segment the median test study from its files with both arms -> report.md answering both claims of the paper.

Two protocols (``--protocol``): ``corrected`` (default) and ``faithful`` (the authors' notebooks: pretraining on
every scan including the test studies, epoch schedule, random head, no warm-up, checkpoint chosen on the test set).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..seeds import grid_seeds, run_seed
from ..training.results import QUICKSTART_MARKER
from .cohort import CohortPlan

PROTOCOLS = ("corrected", "faithful")


@dataclass(frozen=True)
class Recipe:
    """The transfer recipe (SegArguments / TrainArguments fields). `corrected` is what the quickstart uses."""

    schedule: str = "equal_steps"
    warmup_steps: int = 20
    head_steps: int = 30  # LP-FT: the head alone first (pretrained starts only)
    head_init: str = "zero"
    head_lr_factor: float = 10.0  # the new head learns 10x faster (with a zero head at lr 5e-3, Adam moves its bias
    # ~0.005 a step: 3 of 3 MAE runs at 10% stayed empty for 160 steps at p(lesion) 1%, measured)
    transfer: str = "whole"
    selection_metric: str = "val_dice_fp"  # lesion-free validation studies count: false positives cost
    select_on: str = "val"
    min_lesion_ml: str = "auto"  # drop predicted specks under a volume chosen on validation (0 to 1 ml) ...
    min_lesion_confidence: str = "auto"  # ... or whose peak probability is under one chosen with it (0 to 0.99)
    pretrain_on_test: bool = False


FAITHFUL = Recipe(schedule="epochs", warmup_steps=0, head_steps=0, head_init="random", head_lr_factor=1.0, transfer="whole",
                  selection_metric="val_dice", select_on="test", min_lesion_ml="0", min_lesion_confidence="0",
                  pretrain_on_test=True)


@dataclass(frozen=True)
class Budget:
    """Sized for ~10 minutes on 2 quiet CPU cores (see BENCHMARKS.md for the measured stages).

    The cells that test a claim (MAE and scratch at 10%, scratch at 100%, the three probes) run `claim_seeds`; the
    others one seed. Every cell has its own training seed (study.cell_seed)."""

    # 10% of 40 scans was 4, often one lesion-positive scan: every arm stayed near Dice 0 there (measured); 80 gives 8.
    # 20 validation studies (10 lesion-positive): with 10, checkpoint, post-processing and best arm rested on 5.
    # 30 test studies (15 lesion-positive): 10 left a +-0.1 CI on every Dice.
    cohort: CohortPlan = CohortPlan(train=80, val=20, test=30, held_out_test=10,
                                    unlabelled=(("A", 60), ("B", 60), ("C", 60)))
    preset: str = "tiny-unet"
    spacing: tuple = (4.0, 4.0, 4.0)  # the phantom PET's own voxel size: whole-body context in small crops
    crop_size: tuple = (32, 32, 48)
    batch_size: int = 2
    mae_steps: int = 240
    separated_mae_steps: int = 120  # each of the PET-only and CT-only MAEs: equal pretraining compute in total
    finetune_steps: int = 560  # a tiny-unet still improves at 1000 (BENCHMARKS.md); what the cells fit in ~10 min
    long_steps: int = 1500  # the long arm: from the joint MAE, organ-aware, all labels, one seed: the network a user
    # would train for use (the released segmenter's steps); no claim rests on it (its steps are not the others')
    fractions: tuple = (0.1, 1.0)  # what the claims compare; 0.3 runs in the hour-long budget
    interactive: bool = True  # the interactive arm: the MAE cell at the lowest fraction (one seed, or all_seeds) again
    # with click inputs, scored under simulated clicks beside the 41%-of-SUVmax tool (few labels leave room for clicks)
    claim_seeds: tuple = (0, 1, 2)
    probe_k: int = 5
    probe_steps: int = 60
    learning_rate: float = 5e-3
    eval_every: int = 280  # validation at mid-run and at the end
    batch_dice: bool = True
    val_crops: int = 8
    organ_aware_seeds: int = 1  # the organ-aware arm at the highest fraction, over this many claim seeds
    all_seeds: bool = False  # every cell over claim_seeds (not only the cells a claim rests on)
    mixed_precision: str = "auto"  # bf16 where the CPU has fast bf16 kernels (AVX512-BF16/AMX), else fp32
    parallel_cells: int = 2  # cells trained at once, sharing the CPU threads
    channels_last: bool = True  # 1.1x a 1-thread tiny-unet step (BENCHMARKS.md, benchmarks/train_step.py)
    foundation: str = "released"  # released: the MAEs shipped with the package (experiments/release.py); in-run:
    # pretrained here with mae_steps (the faithful protocol always pretrains in the run: it includes the test studies)

    def summary(self) -> str:
        """What the budget runs, in one line: the --budget help and docs/quickstart.md (checked) are built from it."""
        c = self.cohort
        return (f"{c.train}/{c.val}/{c.test} training/validation/test studies + {c.held_out_test} from a held-out "
                f"centre, {sum(n for _, n in c.unlabelled)} unlabelled; fine-tuning {self.finetune_steps} steps a cell "
                f"at {'/'.join(f'{100 * f:g}' for f in self.fractions)}% of the labels, "
                f"{'every cell' if self.all_seeds else 'the claim cells'} over {len(self.claim_seeds)} seeds"
                f"{f', the long arm {self.long_steps} steps' if self.long_steps else ''}"
                f"{f', the interactive arm at {100 * self.fractions[0]:g}%' if self.interactive else ''}; {self.probe_k}-shot probes; with --foundation in-run, MAE pretraining of {self.mae_steps} joint + "
                f"{self.separated_mae_steps} PET-only + {self.separated_mae_steps} CT-only steps")


TINY = Budget(cohort=CohortPlan(train=4, val=2, test=2, held_out_test=1, unlabelled=(("B", 2),)),
              crop_size=(32, 32, 32), mae_steps=2, separated_mae_steps=1, finetune_steps=2, long_steps=3, fractions=(0.5, 1.0),
              claim_seeds=(0, 1), probe_k=1, probe_steps=1, eval_every=2, val_crops=2, parallel_cells=1,
              organ_aware_seeds=2, foundation="in-run")


# The hour-long study on 2 CPU cores: 2x the unlabelled pool, 5x the pretraining, fine-tuning to the plateau measured
# on a separate cohort (~1000 steps), every cell over 3 seeds.
PHANTOM_1H = Budget(cohort=CohortPlan(train=80, val=20, test=30, held_out_test=10,
                                      unlabelled=(("A", 120), ("B", 120), ("C", 120))),
                    mae_steps=1200, separated_mae_steps=600, finetune_steps=1000, long_steps=3000, eval_every=250,
                    probe_steps=200, fractions=(0.1, 0.3, 1.0),
                    all_seeds=True, organ_aware_seeds=3)
BUDGETS = {"10min": Budget(), "phantom-1h": PHANTOM_1H, "tiny": TINY}  # the CLI offers all but tiny (--tiny)
DEFAULT_BUDGET = "10min"


def run_quickstart(out_dir: str | os.PathLike = "petct-quickstart", *, tiny: bool = False, seed: int = 0,
                   protocol: str = "corrected", budget: str = DEFAULT_BUDGET, foundation: str | None = None,
                   log=print) -> Path:
    """Run the pipeline into `out_dir` (replacing an earlier quickstart there) with one of BUDGETS (``tiny`` = the
    "tiny" budget; ``foundation`` overrides its Budget.foundation); returns the report path."""
    import torch

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}")
    budget = BUDGETS["tiny" if tiny else budget]
    recipe = FAITHFUL if protocol == "faithful" else Recipe()
    if foundation is not None or recipe.pretrain_on_test:
        budget = replace(budget, foundation="in-run" if recipe.pretrain_on_test else foundation)
    if budget.foundation not in FOUNDATIONS:
        raise ValueError(f"foundation must be one of {FOUNDATIONS}")
    out = _fresh_dir(Path(out_dir))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    _quiet_libraries()
    t0 = time.perf_counter()
    timings = {}

    def stage(name):
        timings[name] = time.perf_counter() - sum(timings.values()) - t0
        log(f"[{time.perf_counter() - t0:5.0f} s] {name} done")

    from .cohort import build_cohort

    plan = budget.cohort
    log(f"1/6 multi-centre synthetic cohort: {sum(p[2] for p in plan.pools(seed))} PET/CT studies (NIfTI) -> cache")
    cohort = build_cohort(out / "data", plan, seed, spacing=budget.spacing)
    stage("cohort")

    if budget.foundation == "released":
        log("2/6 the released phantom foundation models (joint, PET-only, CT-only MAEs shipped with the package)")
        maes = released_foundations()
    else:
        log(f"2/6 MAE pretraining ({budget.preset}: joint {budget.mae_steps} steps, PET-only and CT-only "
            f"{budget.separated_mae_steps} each; {'test studies INCLUDED (faithful)' if recipe.pretrain_on_test else 'test studies excluded'})")
        maes = _pretrain_all(out, cohort, budget, recipe, seed)
    stage("pretraining")

    log(f"3/6 fine-tuning at label fractions {list(budget.fractions)}, MAE vs scratch ({protocol} protocol), and "
        f"{budget.probe_k}-shot linear probes: joint MAE, PET-only + CT-only MAEs, random features")
    from .study import cell_results, run_cells

    parts = _label_efficiency(out, cohort, maes, budget, recipe, seed) + _probes(out, cohort, maes, budget, recipe, seed)
    run_cells(parts, workers=budget.parallel_cells, log=lambda msg: log("    " + msg))
    results = list({r.selected_model: r for part in parts for r in cell_results(part)}.values())  # one table: below
    stage("fine-tuning, probes and their evaluation")

    log("4/6 threshold baselines and the released segmenter on the test studies; the held-out centre; segmenting "
        "the median test study with both arms")
    from .held_out import held_out_centre
    from .quickstart_baselines import released_segmenter_result, threshold_results
    from .quickstart_report import summarise_study

    study = summarise_study(out / "study", results, str(cohort.cache.root))
    study["baselines"] = threshold_results(cohort)
    study["released"] = released_segmenter_result(out, cohort, budget)
    stage("baselines + released segmenter")
    centre = held_out_centre(out, cohort, study, budget)
    cases = _segment_examples(out, cohort, study)
    stage("held-out centre + segmentation")

    log("5/6 writing the report")
    from .quickstart_report import write_report

    report = write_report(out, budget=budget, recipe=recipe, protocol=protocol, cohort=cohort, maes=maes, study=study,
                          centre=centre, cases=cases, timings=timings, total_s=time.perf_counter() - t0)
    stage("report")
    log(f"6/6 done in {time.perf_counter() - t0:.0f} s. Report: {report}")
    return report


FOUNDATIONS = ("released", "in-run")


def released_foundations() -> dict:
    """The released joint, PET-only and CT-only MAEs as the quickstart uses its own: model_dir, output_dir and the
    steps they were pretrained for (their release.json)."""
    from types import SimpleNamespace

    from ..errors import PetCtInputError
    from .release import FOUNDATION, FOUNDATION_CT, FOUNDATION_PET, RECORD, released_models

    shipped = released_models()
    missing = [n for n in (FOUNDATION, FOUNDATION_PET, FOUNDATION_CT) if n not in shipped]
    if missing:
        raise PetCtInputError(missing[0], "not shipped with this install: rebuild with `petct release`, or run "
                                          "`petct quickstart --foundation in-run`")
    out = {}
    for key, name in (("joint", FOUNDATION), ("pet", FOUNDATION_PET), ("ct", FOUNDATION_CT)):
        record = json.loads((shipped[name] / RECORD).read_text())
        out[key] = SimpleNamespace(model_dir=shipped[name], output_dir=shipped[name], released=True,
                                   state=SimpleNamespace(step=record["steps"]))
    return out


def _fresh_dir(out: Path) -> Path:
    from ..errors import PetCtInputError

    if out.is_symlink():  # replacing it would delete (or write through) whatever the link points at
        raise PetCtInputError(out, "is a symbolic link: give a real folder for -o (it is replaced on the next run)")
    if out.exists() and not out.is_dir():
        raise PetCtInputError(out, "exists and is not a folder; choose another -o")
    if out.exists() and any(out.iterdir()):
        if not (out / QUICKSTART_MARKER).exists():
            raise PetCtInputError(out, "exists and is not an earlier quickstart output; choose another -o")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / QUICKSTART_MARKER).write_text("written by petct quickstart; the folder is replaced on the next run\n")
    return out


def _quiet_libraries() -> None:
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pretrain_all(out: Path, cohort, budget: Budget, recipe: Recipe, seed: int) -> dict:
    """Joint, PET-only and CT-only MAEs (FitResults by name). Faithful: the corpus holds every scan, test included."""
    train_ids = cohort.id_files["mae_train"]
    if recipe.pretrain_on_test:
        everything = sorted(set(cohort.cache.ids()) - set(cohort.roles["val"]))
        train_ids = out / "data" / "splits" / "mae_train_with_test.txt"
        train_ids.write_text("\n".join(everything) + "\n")
    runs = {"joint": (("PET", "CT"), budget.mae_steps), "pet": (("PET",), budget.separated_mae_steps),
            "ct": (("CT",), budget.separated_mae_steps)}
    return {name: _pretrain(out / f"mae_{name}" if name != "joint" else out / "mae", cohort, train_ids, budget,
                            run_seed(seed, name), modalities, steps)
            for name, (modalities, steps) in runs.items()}


def _pretrain(run_dir: Path, cohort, train_ids: Path, budget: Budget, seed: int, modalities, steps: int):
    from ..training.args import DataArguments, ModelArguments, TrainArguments
    from ..training.mae import pretrain

    return pretrain(
        ModelArguments(preset=budget.preset, config_overrides=_overrides(budget, modalities=list(modalities))),
        DataArguments(cache_dir=str(cohort.cache.root), train_ids=str(train_ids), val_ids=str(cohort.id_files["mae_val"]),
                      crop_size=list(budget.crop_size), num_workers=0, val_crops_per_study=budget.val_crops),
        TrainArguments(output_dir=str(run_dir), seed=seed, max_steps=steps, per_device_batch_size=budget.batch_size,
                       learning_rate=budget.learning_rate, warmup_steps=min(20, steps // 10),
                       mixed_precision=budget.mixed_precision,
                       eval_steps=max(1, steps // 2), checkpointing_steps=steps, checkpoints_total_limit=1,
                       logging_steps=10, report_to="tensorboard", progress_bar=False),
    )


def study_arguments(out: Path, cohort, budget: Budget, recipe: Recipe, *, steps: int, **grid):
    """`petct study`'s arguments for a part of the quickstart grid (same cohort, ids and recipe for every part)."""
    from .study import StudyArguments

    epochs = max(1, round(steps * budget.batch_size / max(1, budget.cohort.train)))  # faithful: 100% gets `steps`
    return StudyArguments(
        cache_dir=str(cohort.cache.root), output_dir=str(out / "study"), presets=[budget.preset],
        train_ids=str(cohort.id_files["train"]), val_ids=str(cohort.id_files["val"]),
        test_ids=str(cohort.id_files["test"]), config_overrides=_overrides(budget, batch_dice=budget.batch_dice),
        schedule=recipe.schedule, equal_steps=steps, num_epochs=epochs, per_device_batch_size=budget.batch_size,
        learning_rate=budget.learning_rate, warmup_steps=recipe.warmup_steps, head_steps=recipe.head_steps,
        head_init=recipe.head_init, head_lr_factor=recipe.head_lr_factor, transfer=recipe.transfer, selection_metric=recipe.selection_metric,
        select_on=recipe.select_on, min_lesion_ml=recipe.min_lesion_ml,
        min_lesion_confidence=recipe.min_lesion_confidence, crop_size=list(budget.crop_size),
        eval_steps=budget.eval_every, mixed_precision=budget.mixed_precision, parallel_cells=budget.parallel_cells,
        channels_last=budget.channels_last,
        checkpointing_steps=steps, num_workers=0, sw_overlap=0.0, progress_bar=False, report_to="none", **grid)


def _label_efficiency(out: Path, cohort, maes: dict, budget: Budget, recipe: Recipe, seed: int) -> list:
    """The fine-tuning grid as studies: the long arm first (it runs beside the short cells, not after them); every
    seed where a claim is tested (MAE and scratch at the lowest fraction, scratch at the highest, and there the
    organ-aware arm), one seed elsewhere (a cell in two parts runs once)."""
    seeds = grid_seeds(seed, budget.claim_seeds)
    lo, hi = budget.fractions[0], budget.fractions[-1]
    mae = str(maes["joint"].model_dir)
    long_arm = [study_arguments(out, cohort, budget, recipe, steps=budget.long_steps, fractions=[hi], seeds=seeds[:1],
                                pretrained=[mae], probe_k=0, organ_aware=True, arms=[LONG_ARM])] * bool(budget.long_steps)
    clicks = [study_arguments(out, cohort, budget, recipe, steps=budget.finetune_steps, fractions=[lo],
                              seeds=seeds if budget.all_seeds else seeds[:1],
                              pretrained=[mae], probe_k=0, interactive=True, arms=[INTERACTIVE_ARM],
                              guidance_encoding=CLICK_ENCODING[0], guidance_size=CLICK_ENCODING[1])] * budget.interactive
    parts = [([lo], seeds, mae, False), ([hi], seeds, "none", False),
             ([hi], seeds[: budget.organ_aware_seeds], "none", bool(budget.organ_aware_seeds)),
             (list(budget.fractions), seeds if budget.all_seeds else seeds[:1], mae, False)]
    cells = [study_arguments(out, cohort, budget, recipe, steps=budget.finetune_steps, fractions=fractions,
                             seeds=part_seeds, pretrained=[source], probe_k=0, organ_aware=organs)
             for fractions, part_seeds, source, organs in parts]
    return long_arm + clicks + cells


LONG_ARM = "pretrained-organs"  # the long arm's cells; no other part of the grid makes this arm
INTERACTIVE_ARM = "pretrained-interactive"
CLICK_ENCODING = ("ball", 3.0)  # radius 3 voxels of the 4 mm grid: chosen over radius 2 on the validation studies
# of another phantom cohort at 10% of the labels (benchmarks/interactive_phantoms.py, BENCHMARKS.md)


def _probes(out: Path, cohort, maes: dict, budget: Budget, recipe: Recipe, seed: int) -> list:
    """The k-shot probes (joint MAE, PET-only + CT-only MAEs, random features) as one study, if any."""
    from ..training.segmentation import PROBE_LR_FACTOR

    if not budget.probe_k:
        return []
    args = study_arguments(out, cohort, budget, replace(recipe, schedule="equal_steps", head_steps=0),
                           steps=budget.probe_steps, fractions=[], seeds=grid_seeds(seed, budget.claim_seeds),
                           pretrained=[str(maes["joint"].model_dir)], probe_k=budget.probe_k,
                           separated_pretrained=[str(maes["pet"].model_dir), str(maes["ct"].model_dir)])
    args.train.eval_steps = budget.probe_steps
    args.train.learning_rate = budget.learning_rate * PROBE_LR_FACTOR  # a lone 1x1x1 conv learns slowly
    return [args]


def _overrides(budget: Budget, **fields) -> str:
    return json.dumps({"target_spacing": list(budget.spacing), **fields})


def _segment_examples(out: Path, cohort, study: dict) -> list[dict]:
    """The held-out example, by a stated rule: the best cell by validation score; the lesion-positive test study whose
    Dice under that cell is the median; segmented from its NIfTI files by the best cell of each arm."""
    from ..training.results import best_by_arm, cells_by_validation

    best = cells_by_validation(study["results"])[0]
    positive = sorted((c["dice"], sid) for sid, c in best.test_cases.items() if c["gt_lesions"] and not math.isnan(c["dice"]))
    study_id = positive[(len(positive) - 1) // 2][1] if positive else sorted(best.test_cases)[0]
    return [_segment_one(out, cohort, cell, study_id) for cell in best_by_arm(study["results"]).values()]


def _segment_one(out: Path, cohort, cell, study_id: str) -> dict:
    import numpy as np

    from ..data.io import read_volume
    from ..evaluation import case_metrics
    from ..inference import InferenceSettings, Segmenter, load_segmentation_model
    from ..outputs.files import write_study
    from ..outputs.pictures import pet_mip_overlay

    folder = cohort.dirs[study_id]
    model = load_segmentation_model(cell.selected_model, device="cpu")
    segmenter = Segmenter(model, InferenceSettings(precision="fp32"), "cpu")  # bf16 is slower here (BENCHMARKS.md)
    result = segmenter(folder / "PET.nii.gz", folder / "CT.nii.gz")
    gt = read_volume(folder / "SEG.nii.gz", modality="SEG")
    metrics = case_metrics(result.mask.array, gt.array, gt.voxel_volume_ml)
    figures = out / "report"
    rows, totals = write_study(result, figures / f"{study_id}_{cell.arm}")  # the files `petct segment -i` writes
    mip = figures / f"held_out_mip_{cell.arm}.png"
    _save_rgb(np.concatenate([pet_mip_overlay(result.pet, gt), pet_mip_overlay(result.pet, result.mask)], axis=1), mip)
    return {"study_id": study_id, "model": cell.selected_model, "arm": cell.arm, "fraction": cell.label_fraction,
            "seed": cell.seed, "val_score": cell.best_val_score, "metrics": metrics, "lesions": rows, "totals": totals,
            "timings": result.timings, "mip": mip, "mask": figures / f"{study_id}_{cell.arm}" / "lesions.nii.gz",
            "true_lesions": metrics["gt_lesions"]}


def _save_rgb(rgb, path: Path) -> None:
    from ..atomic import atomic_path
    from ..plotting import pyplot

    with atomic_path(path) as tmp:
        pyplot().imsave(tmp, rgb, format="png")
