"""Masked-autoencoder pretraining (`train_mae.py`): data from a StudyCache, Accelerate loop, validation-loss selection."""

from __future__ import annotations

from pathlib import Path

import torch

from .args import DataArguments, ModelArguments, TrainArguments, default_learning_rate, read_id_file
from .loop import FitResult, Selection, check_trackers, fit, make_accelerator
from .results import data_sources, save_pretraining_record
from .splits import holdout


class ModalitySelect(torch.utils.data.Dataset):
    """Keeps the input channels a model takes (``config.input_channels``): PET-only or CT-only models."""

    def __init__(self, dataset, channels: list[int]):
        self.dataset = dataset
        self.channels = list(channels)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int):
        item = dict(self.dataset[index])
        item["pixel_values"] = item["pixel_values"][self.channels]
        return item


def subjects_of(cache, ids: list[str]) -> dict[str, str]:
    """Study id -> patient id (from the harmonised study's provenance; the study id when absent)."""
    return {i: str(cache.load(i).meta.get("patient_id") or i) for i in ids}


def study_ids(cache, data_args: DataArguments, seed: int) -> tuple[list[str], list[str]]:
    """(train, val) study ids: from the id files, or a seeded subject-wise hold-out of the cache. Without a train id
    file the default test split of fine-tuning (`default_test_ids`) is left out: pretraining never sees test studies."""
    train = read_id_file(data_args.train_ids)
    val = read_id_file(data_args.val_ids)
    if train is None:
        test = set(default_test_ids(cache))
        train = [i for i in sorted(cache.ids()) if i not in test and i not in set(val or [])]
    if val is None:
        return holdout(train, subjects_of(cache, train), fraction=data_args.val_fraction, seed=seed)
    return train, val


def default_test_ids(cache) -> list[str]:
    """The test studies `train_seg.py` uses when given no id files or split CSV (split seed 0, labelled studies)."""
    from .splits import random_split

    labelled = [i for i in cache.ids() if cache.info(i).get("has_label")]
    return random_split(labelled, subjects_of(cache, labelled), seed=0).test if labelled else []


def build_mae(model_args: ModelArguments, crop_size):
    from .. import PetCtConfig, PetCtForMaskedImageModeling

    if model_args.pretrained:
        return PetCtForMaskedImageModeling.from_pretrained(model_args.pretrained)
    config = PetCtConfig.from_preset(model_args.preset, **{"crop_size": tuple(crop_size), **model_args.overrides()})
    return PetCtForMaskedImageModeling(config)


def validation_loss(accelerator, model, dataset, batch_size: int) -> dict:
    """Mean masked-reconstruction loss over the validation crops; each rank takes every n-th crop."""
    indices = list(range(accelerator.process_index, len(dataset), accelerator.num_processes))
    total = torch.zeros(2, device=accelerator.device)
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        pixel_values = torch.stack([it["pixel_values"] for it in items]).to(accelerator.device)
        with accelerator.autocast():
            loss = model(pixel_values=pixel_values).loss
        total += torch.stack([loss.float() * len(items), torch.tensor(float(len(items)), device=total.device)])
    total = accelerator.reduce(total, "sum")
    return {"val_loss": (total[0] / total[1].clamp_min(1)).item()}


def preview_crop(dataset, candidates: int = 16) -> torch.Tensor:
    """The validation crop with the most structure (largest intensity spread) among the first few."""
    crops = [dataset[i]["pixel_values"] for i in range(min(candidates, len(dataset)))]
    return max(crops, key=lambda c: float(c.std()))


def pretrain(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments) -> FitResult:
    """Pretrain a PetCtForMaskedImageModeling; returns where the selected (`best/`) and `last/` models are."""
    from ..data.cache import open_cache
    from ..data.transforms import MaeCropDataset, ValCropDataset
    from ..errors import PetCtInputError

    if not train_args.output_dir:
        raise PetCtInputError("--output_dir", "required: the run folder")
    check_trackers(train_args.report_to)
    cache = open_cache(data_args.cache_dir)
    accelerator = make_accelerator(train_args)
    train_ids, val_ids = study_ids(cache, data_args, train_args.seed)
    model = build_mae(model_args, data_args.crop_size)
    modalities = tuple(model.config.modalities)
    crop = tuple(data_args.crop_size)
    train_set = ModalitySelect(MaeCropDataset(cache, train_ids, crop_size=crop, augment=True, seed=train_args.seed),
                              model.config.input_channels)
    lr = train_args.learning_rate or default_learning_rate(model.config.backbone)
    evaluate = on_evaluate = None
    if val_ids:
        val_set = ModalitySelect(ValCropDataset(cache, val_ids, crop_size=crop, with_labels=False,
                                                max_per_study=data_args.val_crops_per_study),
                                model.config.input_channels)

        def evaluate(unwrapped):
            return validation_loss(accelerator, unwrapped, val_set, train_args.per_device_batch_size)

        def on_evaluate(unwrapped, step, metrics):
            from .previews import reconstruction_preview

            reconstruction_preview(unwrapped, preview_crop(val_set), Path(train_args.output_dir) / "previews" / f"step_{step:07d}.png",
                                   accelerator=accelerator, step=step, modalities=modalities)

    accelerator.print(f"MAE pretraining: {len(train_ids)} train / {len(val_ids)} validation studies, lr {lr:g}")
    fitted = fit(accelerator, train_args, model, train_set, learning_rate=lr, evaluate=evaluate,
                 selection=Selection("val_loss", greater_is_better=False), on_evaluate=on_evaluate,
                 num_workers=data_args.num_workers)
    if accelerator.is_main_process:
        save_pretraining_record(train_args.output_dir, {
            "network": model.config.backbone, "preset": getattr(model.config, "preset", None),
            "modalities": list(modalities), "seed": train_args.seed, "steps": fitted.state.step, "learning_rate": lr,
            "selected_step": fitted.state.best_step, "best_val_loss": fitted.state.best_metric,
            "split": {"train": train_ids, "val": val_ids}, "data_sources": data_sources(cache, train_ids + val_ids)})
    accelerator.print(f"pretrained model: {fitted.model_dir}")
    return fitted


ARGUMENTS = (ModelArguments, DataArguments, TrainArguments)  # train_mae.py's options


def main(argv: list[str] | None = None, prog: str = "train_mae.py") -> int:
    from .args import run_main

    return run_main(_main, argv, prog)


def _main(argv: list[str] | None, prog: str) -> int:
    from .args import parse

    model_args, data_args, train_args = parse(ARGUMENTS, argv, prog=prog)
    pretrain(model_args, data_args, train_args)
    return 0
