"""Downstream lesion segmentation (`train_seg.py`): fine-tuning or k-shot linear probing at any label fraction.

Selection uses the validation split only (mean autoPET Dice over lesion-positive validation studies), scored on the
harmonised grid of the cache (cheap, and only compared with itself). The test split is scored once, at the end, with
the selected model, the way autoPET scores it: the prediction is mapped back to the native PET grid (as `petct segment`
does) and compared with the study's own label file, voxel volume from its header. A test study whose label file is
not recorded in the cache, or is not on the PET grid, is scored on the harmonised grid instead, and its "grid" key
says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..inference.loading import resolve_model_dir
from .args import (LESION_PRIOR, DataArguments, ModelArguments, SegArguments, TrainArguments, default_learning_rate,
                   read_id_file)
from .loop import HEAD_PREFIXES, FitResult, Selection, check_trackers, fit, make_accelerator
from .mae import ModalitySelect, subjects_of
from .results import FP_PENALTY, SELECTION_SCORES, RunResult, arm_of, data_sources
from .splits import Split, label_subset, paper_split, random_split

PROBE_LR_FACTOR = 10  # a lone 1x1x1 conv learns slowly at the backbone's fine-tuning lr (our choice; paper silent)


def build_segmenter(model_args: ModelArguments, crop_size, linear_probe: bool):
    from .. import PetCtConfig, PetCtForSegmentation, PetCtForSeparatedModalityProbe

    if model_args.separated_pretrained:
        if len(model_args.separated_pretrained) != 2 or model_args.pretrained or not linear_probe:
            raise ValueError("--separated_pretrained takes two dirs (PET-only MAE, CT-only MAE), with --linear_probe "
                             "and without --pretrained")
        pet_dir, ct_dir = (resolve_model_dir(p) for p in model_args.separated_pretrained)
        return PetCtForSeparatedModalityProbe.from_pretrained_pair(pet_dir, ct_dir, num_labels=2,
                                                                   **model_args.overrides())
    if model_args.pretrained:
        model = PetCtForSegmentation.from_pretrained(resolve_model_dir(model_args.pretrained), num_labels=2,
                                                     **model_args.overrides())
    else:
        config = PetCtConfig.from_preset(model_args.preset,
                                         **{"crop_size": tuple(crop_size), "num_labels": 2, **model_args.overrides()})
        model = PetCtForSegmentation(config)
    if linear_probe:
        model.freeze_backbone()
    return model


def make_split(cache, data_args: DataArguments, seg_args: SegArguments) -> Split:
    """Train (labelled subset) / validation / test study ids; see SegArguments for the options."""
    n_scans = seg_args.k_shot or seg_args.num_train_scans
    fraction = None if n_scans else seg_args.label_fraction
    labelled = [i for i in cache.ids() if cache.info(i).get("has_label")]
    if seg_args.split_csv:
        split, _ = paper_split(seg_args.split_csv, labelled, fraction=fraction or 1.0, seed=seg_args.split_seed,
                               n_scans=n_scans)
        return split
    subject_of = subjects_of(cache, labelled)
    train, val, test = (read_id_file(p) for p in (data_args.train_ids, data_args.val_ids, seg_args.test_ids))
    if train is not None:
        split = Split(train=train, val=val or [], test=test or [], pool=train)
    else:
        split = random_split(labelled, subject_of, seed=seg_args.split_seed)
    return label_subset(split, subject_of, seed=seg_args.split_seed, fraction=fraction, n_scans=n_scans)


def score_studies(accelerator, model, cache, ids: list[str], seg_args: SegArguments, *, native: bool = False
                  ) -> dict[str, dict]:
    """Per-study autoPET metrics (harmonised grid, or the native PET grid where the label file allows); studies are
    shared out over the ranks and gathered."""
    from ..evaluation import case_metrics
    from ..inference import LesionFilter, to_native_mask

    lesion_filter = LesionFilter.of(model.config)
    mine = {}
    for study_id, study, probs in predicted_studies(accelerator, model, cache, ids, seg_args):
        label = native_label(study) if native else None
        if label is None:
            mine[study_id] = {**harmonised_case_metrics(study, probs, lesion_filter), "grid": "harmonised"}
        else:
            mask = to_native_mask(study, probs, lesion_filter)
            mine[study_id] = {**case_metrics(mask, label.array, label.voxel_volume_ml), "grid": "native"}
        mine[study_id].update(organ_false_positives(study, probs, lesion_filter))
    return _gathered(mine)


def organ_false_positives(study, probs: np.ndarray, lesion_filter) -> dict:
    """FPV inside physiological-uptake organs (harmonised grid, the cached organ map), when the study has one."""
    if study.organs is None:
        return {}
    from ..data.organs import organ_names
    from ..evaluation import physiological_fpv_ml

    mask, voxel_ml = harmonised_mask(study, probs, lesion_filter)
    return {"fpv_physiological_ml": physiological_fpv_ml(mask, study.label, study.organs,
                                                         organ_names(study.organ_names), voxel_ml)}


def predicted_studies(accelerator, model, cache, ids: list[str], seg_args: SegArguments):
    """(study id, cached study, class probabilities on its harmonised grid) for this rank's share of ``ids``."""
    from ..inference import InferenceSettings, predict_probabilities

    settings = InferenceSettings(overlap=seg_args.sw_overlap, sw_batch_size=seg_args.sw_batch_size,
                                 precision="bf16" if accelerator.mixed_precision == "bf16" else "fp32")
    for study_id in ids[accelerator.process_index :: accelerator.num_processes]:
        study = cache.load(study_id)
        yield study_id, study, predict_probabilities(model, study.image, settings, device=accelerator.device)


def harmonised_mask(study, probs: np.ndarray, lesion_filter) -> tuple[np.ndarray, float]:
    """The model's mask on the harmonised grid (argmax, then ``lesion_filter``, an inference.LesionFilter) and its
    voxel ml."""
    voxel_ml = float(np.prod(study.spacing)) / 1000.0
    return lesion_filter.apply(probs.argmax(0).astype(np.uint8), 1.0 - probs[0], voxel_ml), voxel_ml


def harmonised_case_metrics(study, probs: np.ndarray, lesion_filter) -> dict:
    """autoPET metrics of the mask on the harmonised grid against the cached label."""
    return candidate_case_metrics(study, probs, [lesion_filter])[0]


def candidate_case_metrics(study, probs: np.ndarray, candidates: list) -> list[dict]:
    """autoPET metrics on the harmonised grid under each candidate LesionFilter; candidates keeping the same
    components are scored once (most do: a 36-candidate choice costs a few evaluations per study)."""
    from ..evaluation import case_metrics
    from ..inference.segment import component_peaks, keep_components

    mask, voxel_ml = probs.argmax(0).astype(np.uint8), float(np.prod(study.spacing)) / 1000.0
    labels, voxels, peak = component_peaks(mask, 1.0 - probs[0])
    label, scored = np.asarray(study.label), {}
    for candidate in candidates:
        kept = candidate.keeps(voxels, peak, voxel_ml)
        if kept.tobytes() not in scored:
            scored[kept.tobytes()] = case_metrics(keep_components(mask, labels, kept), label, voxel_ml)
    return [scored[c.keeps(voxels, peak, voxel_ml).tobytes()] for c in candidates]


def _gathered(mine: dict) -> dict:
    from accelerate.utils import gather_object

    merged = {}
    for part in gather_object([mine]):
        merged.update(part)
    return dict(sorted(merged.items()))


def native_label(study):
    """The study's label Volume on its native PET grid, from the file recorded at harmonisation; None when there is
    none or it lies on another grid (then only the harmonised label can be scored)."""
    from ..data.geometry import same_grid
    from ..data.io import read_volume

    path = study.meta.get("label_path")
    if not path or not Path(path).exists():
        return None
    label = read_volume(path, modality="SEG")
    return label if same_grid(label.shape, label.affine, study.pet_shape, study.pet_affine) else None


def summarize(per_case: dict[str, dict], prefix: str) -> dict:
    """Mean Dice (lesion-positive studies), FPV and FNV; false-positive lesions per study; and `dice_fp`, the Dice less
    FP_PENALTY per false-positive lesion on an average lesion-free study, so that selection sees what the Dice cannot.
    (Scoring an empty lesion-free study as 1, MONAI's ignore_empty=False, made an empty model win: measured.)"""
    out = {}
    for key in ("dice", "fpv_ml", "fnv_ml"):
        values = [c[key] for c in per_case.values() if not math.isnan(c[key])]
        out[f"{prefix}_{key}"] = float(np.mean(values)) if values else float("nan")
    cases = list(per_case.values())
    free = [c["false_positive_components"] for c in cases if not c["gt_lesions"]]
    dice = out[f"{prefix}_dice"] if out[f"{prefix}_dice"] == out[f"{prefix}_dice"] else 0.0
    out[f"{prefix}_dice_fp"] = dice - FP_PENALTY * (float(np.mean(free)) if free else 0.0)
    out[f"{prefix}_fp_per_case"] = float(np.mean([c["false_positive_components"] for c in cases])) if cases else float("nan")
    return out


def finetune(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments,
             seg_args: SegArguments) -> RunResult:
    """Train, select on validation, score the test split once; returns (and writes) the run's `results.json`."""
    from ..data.cache import open_cache

    check_arguments(train_args, seg_args)
    cache = open_cache(data_args.cache_dir, labelled=True)
    accelerator = make_accelerator(train_args)
    split = make_split(cache, data_args, seg_args)
    model = build_segmenter(model_args, data_args.crop_size, seg_args.linear_probe)
    if seg_args.interactive:
        model = model.with_guidance(2, seg_args.guidance_encoding, seg_args.guidance_size)
    apply_transfer_recipe(model, model_args, seg_args)
    lr = learning_rate(model, train_args, seg_args)
    accelerator.print(f"segmentation: {len(split.train)} labelled train / {len(split.val)} val / {len(split.test)} test "
                      f"studies, lr {lr:g}, {'linear probe' if seg_args.linear_probe else 'fine-tune'}")
    transfer = bool(model_args.pretrained) and not seg_args.linear_probe
    head = (seg_args.head_steps, seg_args.head_lr_factor) if transfer else (0, 1.0)  # LP-FT, faster new head
    fitted = train_and_select(accelerator, model, cache, split, lr, data_args, train_args, seg_args, *head)
    selected = type(model).from_pretrained(fitted.model_dir).to(accelerator.device).eval()
    scores = set_lesion_filter(accelerator, selected, fitted.model_dir, cache, split, seg_args)
    test_cases = score_studies(accelerator, selected, cache, split.test, seg_args, native=True) if split.test else {}
    result = run_result(model, fitted, split, test_cases, lr, model_args, train_args, seg_args)
    result.cache_dir, result.data_sources = str(cache.root), data_sources(cache, [*split.train, *split.val, *split.test])
    result.min_lesion_ml, result.min_lesion_confidence = selected.config.min_lesion_ml, selected.config.min_lesion_confidence
    result.lesion_filter_scores = scores
    if accelerator.is_main_process:
        result.save(train_args.output_dir)
    accelerator.wait_for_everyone()
    return result


MIN_LESION_ML_CANDIDATES = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)  # ml; 0.2 ml is 3 voxels at 4 mm, 11 at 3x2x2 mm
MIN_LESION_CONFIDENCE_CANDIDATES = (0.0, 0.8, 0.9, 0.95, 0.97, 0.99)  # peak lesion probability of a component


def lesion_filter_candidates(seg_args: SegArguments) -> list:
    """The LesionFilters to choose among: every candidate of each "auto" setting, the given value of the other."""
    from ..inference import LesionFilter

    def values(setting: str, candidates) -> tuple:
        return candidates if setting == "auto" else (float(setting),)

    return [LesionFilter(ml, confidence) for ml in values(seg_args.min_lesion_ml, MIN_LESION_ML_CANDIDATES)
            for confidence in values(seg_args.min_lesion_confidence, MIN_LESION_CONFIDENCE_CANDIDATES)]


def set_lesion_filter(accelerator, model, model_dir: Path, cache, split: Split, seg_args: SegArguments) -> dict:
    """Store the post-processing (inference.LesionFilter) in the selected model's config.json: the given values, or
    for each "auto" one the candidate scoring best by the selection metric on the selection split, chosen after the
    checkpoint, both jointly (ties: the least filtering). Returns {"<ml>,<confidence>": score} when chosen."""
    candidates = lesion_filter_candidates(seg_args)
    scores = {}
    if len(candidates) > 1:
        ids = split.test if seg_args.select_on == "test" else split.val
        if not ids:
            from ..errors import PetCtInputError

            raise PetCtInputError("--min_lesion_ml/--min_lesion_confidence auto", "needs a validation split to choose on")
        mine = {sid: candidate_case_metrics(study, probs, candidates)
                for sid, study, probs in predicted_studies(accelerator, model, cache, ids, seg_args)}
        cases = _gathered(mine)
        for k, candidate in enumerate(candidates):
            scores[candidate] = summarize({sid: per[k] for sid, per in cases.items()}, "val")[seg_args.selection_metric]
    chosen = max(candidates, key=lambda c: (scores.get(c, 0.0), -c.min_ml, -c.min_confidence))
    model.config.min_lesion_ml, model.config.min_lesion_confidence = chosen.min_ml, chosen.min_confidence
    if accelerator.is_main_process:
        model.config.save_pretrained(model_dir)
    accelerator.wait_for_everyone()
    return {f"{c.min_ml:g},{c.min_confidence:g}": score for c, score in scores.items()}


def check_arguments(train_args: TrainArguments, seg_args: SegArguments) -> None:
    from ..errors import PetCtInputError

    if not train_args.output_dir:
        raise PetCtInputError("--output_dir", "required: the run folder")
    check_trackers(train_args.report_to)
    if seg_args.schedule not in ("epochs", "equal_steps"):
        raise PetCtInputError("--schedule", f"must be epochs or equal_steps, got {seg_args.schedule!r}")
    for flag, value, allowed in (("--transfer", seg_args.transfer, TRANSFERS), ("--head_init", seg_args.head_init, HEAD_INITS),
                                 ("--selection_metric", seg_args.selection_metric, SELECTION_METRICS),
                                 ("--select_on", seg_args.select_on, ("val", "test"))):
        if value not in allowed:
            raise PetCtInputError(flag, f"must be one of {', '.join(allowed)}, got {value!r}")
    for flag, value, top, what in (("--min_lesion_ml", seg_args.min_lesion_ml, math.inf, "a volume >= 0 ml"),
                                   ("--min_lesion_confidence", seg_args.min_lesion_confidence, 1.0, "a probability in [0, 1]")):
        if value != "auto" and not _number_in(value, top):
            raise PetCtInputError(flag, f"must be auto or {what}, got {value!r}")
    if seg_args.interactive and seg_args.linear_probe:
        raise PetCtInputError("--interactive", "needs a trained network, not a linear probe (its click weights would "
                                               "stay frozen at zero)")
    if seg_args.max_clicks < 0 or not 0.0 <= seg_args.corrective_prob <= 1.0:
        raise PetCtInputError("--max_clicks/--corrective_prob", "max_clicks must be >= 0, corrective_prob in [0, 1]")
    if seg_args.head_steps < 0 or not 0.0 <= seg_args.zoom_prob <= 1.0 or seg_args.head_lr_factor <= 0:
        raise PetCtInputError("--head_steps/--zoom_prob/--head_lr_factor",
                              "head_steps must be >= 0, zoom_prob in [0, 1], head_lr_factor > 0")


def _number_in(text: str, top: float) -> bool:
    """Whether ``text`` is a finite number in [0, top]."""
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and 0.0 <= value <= top


TRANSFERS, HEAD_INITS = ("whole", "encoder"), ("random", "zero", "small")
SELECTION_METRICS = tuple(SELECTION_SCORES)


def apply_transfer_recipe(model, model_args: ModelArguments, seg_args: SegArguments) -> None:
    """Encoder-only transfer (decoder re-drawn from this run's seed) and the output head's initialisation (pretrained
    starts and probes; a scratch network keeps the default head).

    Why: a fresh random head on MAE decoder features, which track intensity, starts anywhere between p(lesion) 0 and
    0.99 on hot voxels depending on the seed; a zero or small head starts every run at the prior instead.
    """
    import torch

    if seg_args.transfer == "encoder" and model_args.pretrained and hasattr(model, "petct"):
        fresh = type(model)(model.config).state_dict()
        state = model.state_dict()
        decoder = {k: v for k, v in fresh.items() if ".decoder" in k and not k.startswith(HEAD_PREFIXES) and k in state}
        model.load_state_dict({**state, **decoder})
    head = getattr(model, "segmentation_head", None)
    if head is None or seg_args.head_init == "random" or not (model_args.pretrained or seg_args.linear_probe):
        return  # from scratch the features are random anyway: nnU-Net's default head (a zero head would block them)
    with torch.no_grad():
        if seg_args.head_init == "zero":
            head.weight.zero_()
        else:
            head.weight.mul_(0.01)
        head.bias.zero_()
        head.bias[1:] = math.log(LESION_PRIOR / (1.0 - LESION_PRIOR))


def learning_rate(model, train_args: TrainArguments, seg_args: SegArguments) -> float:
    """The given lr, else the paper's per-backbone lr (x PROBE_LR_FACTOR for a linear probe)."""
    factor = PROBE_LR_FACTOR if seg_args.linear_probe else 1
    return train_args.learning_rate or default_learning_rate(model.config.backbone) * factor


def training_crops(cache, ids: list[str], model, data_args: DataArguments, train_args: TrainArguments,
                   seg_args: SegArguments):
    """Lesion-oversampled random crops with the input channels the model takes (PET-only/CT-only models too), and the
    simulated click maps of a guidance model."""
    from ..data.transforms import SegCropDataset
    from .interaction import ClickCrops

    crops = SegCropDataset(cache, ids, crop_size=tuple(data_args.crop_size), augment=True, fg_prob=seg_args.fg_prob,
                           seed=train_args.seed, zoom_prob=seg_args.zoom_prob, organ_labels=getattr(model.config, "organ_labels", ()))  # + organ maps
    config = model.config
    crops = ModalitySelect(crops, config.input_channels)
    if not config.guidance_channels:
        return crops
    pet_channel = config.input_channels.index(0) if 0 in config.input_channels else None
    return ClickCrops(crops, click_simulation(config, seg_args), pet_channel, seed=train_args.seed)


def click_simulation(config, seg_args: SegArguments):
    from .interaction import ClickSimulation

    return ClickSimulation.of(config, max_clicks=seg_args.max_clicks, corrective_prob=seg_args.corrective_prob)


def train_and_select(accelerator, model, cache, split: Split, lr: float, data_args: DataArguments,
                     train_args: TrainArguments, seg_args: SegArguments, head_only_steps: int = 0,
                     head_lr_factor: float = 1.0) -> FitResult:
    """One `fit` on the labelled training studies, selecting on validation (`selection_metric`) when there is a
    validation split; `head_only_steps` first trains the output head alone (LP-FT)."""
    evaluate = None
    selecting = split.test if seg_args.select_on == "test" else split.val  # test: the authors' notebooks
    if selecting:
        def evaluate(unwrapped):
            return summarize(score_studies(accelerator, unwrapped, cache, selecting, seg_args), "val")

    total_steps = seg_args.equal_steps if seg_args.schedule == "equal_steps" else None
    crops = training_crops(cache, split.train, model, data_args, train_args, seg_args)
    corrective = None
    if model.config.guidance_channels:
        from .interaction import CorrectiveClicks

        corrective = CorrectiveClicks(click_simulation(model.config, seg_args), model.config.guidance_channels,
                                      seed=train_args.seed)
    return fit(accelerator, train_args, model, crops, learning_rate=lr, evaluate=evaluate,
               selection=Selection(seg_args.selection_metric, greater_is_better=True), total_steps=total_steps,
               num_workers=data_args.num_workers, head_only_steps=head_only_steps, head_lr_factor=head_lr_factor,
               prepare_batch=corrective)


def run_result(model, fitted: FitResult, split: Split, test_cases: dict, lr: float, model_args: ModelArguments,
               train_args: TrainArguments, seg_args: SegArguments) -> RunResult:
    """The results record of this run (training/results.py)."""
    separated = bool(model_args.separated_pretrained)
    return RunResult(
        network=model.config.backbone, preset=getattr(model.config, "preset", None),
        arm=arm_of(pretrained=bool(model_args.pretrained), linear_probe=seg_args.linear_probe, separated=separated,
                   organ_aware=bool(getattr(model.config, "organ_labels", ())),
                   interactive=bool(model.config.guidance_channels)),
        pretrained=list(model_args.separated_pretrained) if separated else model_args.pretrained,
        linear_probe=seg_args.linear_probe, schedule=seg_args.schedule, k_shot=seg_args.k_shot,
        label_fraction=seg_args.label_fraction, n_train=len(split.train), seed=train_args.seed,
        split_seed=seg_args.split_seed, steps=fitted.state.step, learning_rate=lr,
        selected_model=str(fitted.model_dir), selected_step=fitted.state.best_step, select_on=seg_args.select_on,
        best_val_score=fitted.state.best_metric, selection_metric=seg_args.selection_metric,
        history=fitted.state.history, split=split.to_dict(),
        test=summarize(test_cases, "test") if test_cases else {}, test_cases=test_cases)


ARGUMENTS = (ModelArguments, DataArguments, TrainArguments, SegArguments)  # train_seg.py's options; `petct study` too


def main(argv: list[str] | None = None, prog: str = "train_seg.py") -> int:
    from .args import run_main

    return run_main(_main, argv, prog)


def _main(argv: list[str] | None, prog: str) -> int:
    from accelerate import PartialState

    from .args import parse
    from .results import RESULTS_FILE

    model_args, data_args, train_args, seg_args = parse(ARGUMENTS, argv, prog=prog)
    test = finetune(model_args, data_args, train_args, seg_args).test
    PartialState().print(f"results: {Path(train_args.output_dir) / RESULTS_FILE}"
          + (f" (test Dice {test['test_dice']:.3f}, FPV {test['test_fpv_ml']:.2f} ml, FNV {test['test_fnv_ml']:.2f} ml)" if test else ""))
    return 0
