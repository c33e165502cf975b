"""One Accelerate training loop for pretraining, fine-tuning and probing.

Why a loop of our own rather than `transformers.Trainer`: the paper's recipes need 3-D volumes with per-rank data
sharding, mid-epoch resume that reproduces the uninterrupted run bit for bit, selection on a validation metric
computed by sliding-window inference, and reconstruction previews. Everything distributed (DDP, mixed precision,
gradient accumulation, checkpoint files, trackers) is Accelerate's.

Reproducible resume rests on three things: (1) the data order is Accelerate's seedable sampler, a permutation seeded
by (seed, epoch), identical on every rank, sharded by Accelerate and skipped with `skip_first_batches`; (2) the dataset draws its augmentation from
(seed, epoch, index) alone (`set_epoch`, as data/transforms.py does), never from a worker's RNG; (3) Accelerate's
checkpoint (training/checkpoint.py: JSON and safetensors, never a pickle) restores model, optimizer, scheduler, the
RNG states and our `LoopState` (epoch, batch, step, best metric, history). The DataLoader gets its own generator so that creating an iterator draws nothing from the global RNG.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ..atomic import atomic_folder
from ..errors import PetCtInputError
from ..seeds import VALIDATION_SEED, data_order_seed, loader_seed
from . import checkpoint as ckpt
from .args import TrainArguments


@dataclass
class LoopState:
    """Where the loop stands: saved with every checkpoint beside model, optimizer, scheduler and RNG states."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` already consumed (per rank)
    step: int = 0  # optimizer steps
    best_metric: float | None = None
    best_step: int | None = None
    history: list = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key in asdict(self):
            setattr(self, key, state[key])


@dataclass
class Selection:
    """Which validation number picks the best model."""

    metric: str = "val_loss"
    greater_is_better: bool = False

    def improves(self, value: float, best: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return best is None or (value > best if self.greater_is_better else value < best)


def check_trackers(report_to: str) -> None:
    """--report_to names Accelerate trackers that are installed, else one line saying how to install them
    (Accelerate itself would only warn and train without tracking). Checked with the other arguments."""
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    from ..errors import PetCtInputError

    names = [n.strip() for n in report_to.split(",") if n.strip() not in ("", "none", "all")]
    known, available = {t.value for t in LoggerType}, {str(getattr(t, "value", t)) for t in get_available_trackers()}
    for name in names:
        if name not in known:
            raise PetCtInputError("--report_to", f"{name!r} is not an Accelerate tracker (one of {sorted(known)})")
        if name not in available:
            raise PetCtInputError("--report_to", f"{name} is not installed: pip install {name.replace('_', '-')} "
                                                 "(or --report_to none)")


def make_accelerator(args: TrainArguments):
    """An Accelerator configured from the arguments; also seeds every RNG (call before building the model)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    project = ProjectConfiguration(
        project_dir=args.output_dir,
        logging_dir=os.path.join(args.output_dir, "logs"),
    )
    mixed_precision = resolve_mixed_precision(args.mixed_precision, args.cpu)
    _allow_new_precision(mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        project_config=project,
        log_with=None if args.report_to in ("", "none") else args.report_to.split(","),
        cpu=args.cpu,
        dynamo_backend="inductor" if args.torch_compile else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.ddp_find_unused_parameters)],
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=data_order_seed(args.seed)),
    )
    set_seed(args.seed)
    return accelerator


def _allow_new_precision(mixed_precision: str) -> None:
    """Accelerate keeps one process-wide state and refuses a second Accelerator with another precision; a single
    process running runs one after another (the quickstart's bf16 cells, then an fp32 run) starts a fresh state.
    Under a distributed launch the state is the launcher's and is left alone."""
    from accelerate.state import AcceleratorState, DistributedType

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mixed_precision) and \
            state.get("distributed_type") == DistributedType.NO:
        AcceleratorState._reset_state()


def resolve_mixed_precision(mixed_precision: str, cpu: bool) -> str:
    """``auto``: bf16 where the training device runs it fast (the inference rule: on AVX2-only CPUs bf16 convolutions
    are ~25x slower than fp32, on AVX512-BF16 ones ~1.5x faster for a training step, measured), else no."""
    if mixed_precision != "auto":
        return mixed_precision
    from ..inference.sliding_window import use_bf16

    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    return "bf16" if use_bf16("auto", device) else "no"


HEAD_PREFIXES = ("segmentation_head.", "organ_head.")  # the output 1x1x1 convs of a segmentation model


def build_optimizer(model: torch.nn.Module, args: TrainArguments, learning_rate: float, device: torch.device,
                    head_only_steps: int = 0, head_lr_factor: float = 1.0):
    """AdamW over trainable parameters; the fused CUDA kernel when on a GPU. With ``head_only_steps`` (LP-FT) or a
    ``head_lr_factor`` the output heads are the first parameter group (lr x head_lr_factor: a new layer learns faster)
    and the rest the second, which the scheduler holds at lr 0 for the first ``head_only_steps``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("no trainable parameters")
    head = [p for n, p in named if n.startswith(HEAD_PREFIXES)]
    rest = [p for n, p in named if not n.startswith(HEAD_PREFIXES)]
    if (head_only_steps > 0 or head_lr_factor != 1.0) and head and rest:
        groups = [{"params": head, "lr": learning_rate * head_lr_factor}, {"params": rest}]
    else:
        groups = [{"params": [p for _, p in named]}]
    return torch.optim.AdamW(groups, lr=learning_rate, weight_decay=args.weight_decay, fused=device.type == "cuda")


def build_scheduler(optimizer, args: TrainArguments, learning_rate: float, total_steps: int, num_processes: int,
                    head_only_steps: int = 0):
    """Warm-up then cosine decay to `min_learning_rate` (the paper's 1e-6). Accelerate steps a prepared scheduler once
    per process per optimizer step, hence the scaling. With two parameter groups (LP-FT) the second starts its own
    warm-up and cosine at ``head_only_steps``."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    if len(optimizer.param_groups) == 1:
        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer,
            num_warmup_steps=args.warmup_steps * num_processes,
            num_training_steps=max(total_steps, 1) * num_processes,
            min_lr=min(args.min_learning_rate, learning_rate),
        )
    floor = min(args.min_learning_rate, learning_rate) / learning_rate  # of each group's own peak lr
    n = num_processes
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [
        _WarmupCosine(0, args.warmup_steps * n, max(total_steps, 1) * n, floor),
        _WarmupCosine(head_only_steps * n, args.warmup_steps * n, max(total_steps, 1) * n, floor)])


@dataclass
class _WarmupCosine:
    """lr factor: 0 before `start`, linear warm-up over `warmup` steps, then cosine to `floor` at `total`."""

    start: int
    warmup: int
    total: int
    floor: float

    def __call__(self, step: int) -> float:
        s = step - self.start
        if s < 0:
            return 0.0
        if s < self.warmup:
            return s / max(1, self.warmup)
        progress = min(1.0, (s - self.warmup) / max(1, self.total - self.start - self.warmup))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def save_model(accelerator, model, directory: Path, extra: dict | None = None) -> None:
    """`save_pretrained` of the unwrapped model into `directory`, replaced atomically (main process only)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_folder(directory, overwrite=True) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, save_function=accelerator.save)
            if extra is not None:
                (tmp / "training_summary.json").write_text(json.dumps(extra, indent=2, default=float))
    accelerator.wait_for_everyone()


@dataclass
class FitResult:
    state: LoopState
    output_dir: Path
    best_dir: Path | None
    last_dir: Path
    total_steps: int

    @property
    def model_dir(self) -> Path:
        return self.best_dir or self.last_dir


@dataclass
class _Run:
    """What one `fit` holds while it trains (built by `_setup`, stepped by `_train_epoch`)."""

    accelerator: object
    args: TrainArguments
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: DataLoader
    loader_generator: torch.Generator
    dataset: Dataset
    total_steps: int
    state: LoopState = field(default_factory=LoopState)
    next_checkpoint: int = 0  # number of the next checkpoints/checkpoint_N
    progress: object = None
    window: dict = field(default_factory=dict)
    prepare_batch: Callable | None = None

    @property
    def out(self) -> Path:
        return Path(self.args.output_dir)


def fit(
    accelerator,
    args: TrainArguments,
    model: torch.nn.Module,
    train_dataset: Dataset,
    *,
    learning_rate: float,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    selection: Selection = Selection(),
    on_evaluate: Callable[[torch.nn.Module, int, dict], None] | None = None,
    total_steps: int | None = None,
    num_workers: int = 0,
    head_only_steps: int = 0,
    head_lr_factor: float = 1.0,
    prepare_batch: Callable | None = None,
) -> FitResult:
    """Train `model` (whose forward(**batch) returns `.loss`) on `train_dataset`; see the module docstring.

    `evaluate(unwrapped_model)` runs on every rank and returns numbers, including `selection.metric`; the best model
    goes to `output_dir/best`, the final weights to `output_dir/last` (`FitResult.model_dir`: best, else last).
    `total_steps` overrides the epoch budget (equal-steps control); epochs then repeat as needed.
    `head_only_steps` > 0: only the output heads learn for that many steps, then everything (LP-FT); the heads'
    lr is `head_lr_factor` x `learning_rate`. `prepare_batch(model, batch, step, rank)` may change a batch before its
    training step (corrective clicks from the model's own prediction, training/interaction.py).
    """
    run = _setup(accelerator, args, prepare_model(model, args), train_dataset, learning_rate, total_steps, num_workers,
                 head_only_steps, head_lr_factor)
    run.prepare_batch = prepare_batch
    _resume_or_refuse(run)
    if args.report_to not in ("", "none"):
        accelerator.init_trackers("petct", config=_flat_config(args, learning_rate, run.total_steps))
    run.progress = _progress(accelerator, args, run.total_steps, run.state.step)
    run.window = _new_window()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)

    def after_step():
        _after_step(run, evaluate, selection, on_evaluate)

    while run.state.step < run.total_steps:
        _train_epoch(run, after_step)
    run.progress.close()
    return _finish(run, selection)


def prepare_model(model: torch.nn.Module, args: TrainArguments) -> torch.nn.Module:
    """Gradient checkpointing and memory format, as the arguments ask (before Accelerate wraps the model)."""
    if args.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
        model.activation_checkpointing_enable()  # transformers' current name (gradient_checkpointing_*: deprecated)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def _setup(accelerator, args: TrainArguments, model, dataset, learning_rate: float, total_steps: int | None,
           num_workers: int, head_only_steps: int = 0, head_lr_factor: float = 1.0) -> _Run:
    """Loader, optimizer and scheduler prepared by Accelerate; the step budget; the loop state registered for
    checkpointing. The order of these calls is part of bit-exact resume: keep it."""
    if not accelerator.dataloader_config.use_seedable_sampler:
        raise ValueError("fit needs the Accelerator of make_accelerator (a seedable sampler: resume reproduces the "
                         "data order)")
    sampler = RandomSampler(dataset)  # Accelerate's prepare makes it its SeedableRandomSampler
    loader_generator = torch.Generator()  # keeps DataLoader from drawing on the global RNG (resume equality)
    loader = DataLoader(dataset, batch_size=args.per_device_batch_size, sampler=sampler, num_workers=num_workers,
                        drop_last=False, generator=loader_generator)
    optimizer = build_optimizer(model, args, learning_rate, accelerator.device, head_only_steps, head_lr_factor)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    if total_steps is None:
        total_steps = args.max_steps if args.max_steps > 0 else steps_per_epoch * args.num_epochs
    scheduler = accelerator.prepare(build_scheduler(optimizer, args, learning_rate, total_steps, accelerator.num_processes,
                                                    head_only_steps))
    return _Run(accelerator, args, model, optimizer, scheduler, loader, loader_generator, dataset, total_steps)


def _resume_or_refuse(run: _Run) -> None:
    """--resume continues the newest complete checkpoint; without it, a folder with checkpoints is refused."""
    checkpoints = run.out / "checkpoints"
    if run.args.resume:
        _resume(run)
    elif checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise PetCtInputError(run.out, "holds checkpoints of an earlier run: add --resume to continue it, or choose "
                                       "another output_dir")


def _train_epoch(run: _Run, after_step: Callable[[], None]) -> None:
    """The rest of the current epoch (from `state.batch` on a resumed run), or until the step budget is spent."""
    accelerator, args, state = run.accelerator, run.args, run.state
    if hasattr(run.dataset, "set_epoch"):
        run.dataset.set_epoch(state.epoch)
    run.loader_generator.manual_seed(loader_seed(args.seed, state.epoch))
    batches = accelerator.skip_first_batches(run.loader, state.batch) if state.batch else run.loader
    batches.set_epoch(state.epoch)  # Accelerate's loaders count epochs themselves, from 0 for a skipping loader
    for batch in batches:
        loss = _train_batch(run, batch)
        state.batch += 1
        _count(run.window, loss, batch, accelerator.num_processes)
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        run.progress.update(1)
        after_step()
        if state.step >= run.total_steps:
            return
    state.epoch += 1
    state.batch = 0


def _train_batch(run: _Run, batch: dict) -> torch.Tensor:
    """Forward, backward, clip, optimizer and scheduler step (a no-op step while gradients accumulate)."""
    accelerator, args = run.accelerator, run.args
    if args.channels_last:
        batch = {k: _channels_last(v) for k, v in batch.items()}
    if run.prepare_batch is not None:
        batch = run.prepare_batch(run.model, batch, run.state.step, accelerator.process_index)
    with accelerator.accumulate(run.model):
        loss = run.model(**batch).loss
        accelerator.backward(loss)
        if accelerator.sync_gradients and args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(run.model.parameters(), args.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss


def _after_step(run: _Run, evaluate, selection: Selection, on_evaluate) -> None:
    """Logging, validation and checkpointing due after optimizer step `state.step`."""
    args, state, last = run.args, run.state, run.state.step == run.total_steps
    if state.step % args.logging_steps == 0 or last:
        _log_window(run.accelerator, state, run.scheduler, run.window, run.progress)
    end_of_epoch = state.batch >= len(run.loader)
    due = (state.step % args.eval_steps == 0) if args.eval_steps else end_of_epoch
    if evaluate is not None and (due or last):
        _evaluate(run.accelerator, run.model, evaluate, selection, on_evaluate, state, run.out)
    if state.step % args.checkpointing_steps == 0 or last:
        _checkpoint(run)


def _finish(run: _Run, selection: Selection) -> FitResult:
    """Save the final weights to `last/` (with a training summary) and close the trackers."""
    state, last_dir = run.state, run.out / "last"
    summary = {"steps": state.step, "epochs": state.epoch, "best_step": state.best_step,
               "best_" + selection.metric: state.best_metric, "history": state.history}
    save_model(run.accelerator, run.model, last_dir, summary)
    run.accelerator.end_training()
    best_dir = run.out / "best" if state.best_step is not None else None
    return FitResult(state=state, output_dir=run.out, best_dir=best_dir, last_dir=last_dir, total_steps=run.total_steps)


def _new_window() -> dict:
    return {"loss": 0.0, "count": 0, "samples": 0, "t0": time.perf_counter()}


def _count(window: dict, loss: torch.Tensor, batch: dict, num_processes: int) -> None:
    window["loss"] += loss.detach().float().item()
    window["count"] += 1
    window["samples"] += batch["pixel_values"].shape[0] * num_processes


def _resume(run: _Run) -> None:
    """Load the newest complete checkpoint (JSON and safetensors only: a pickle planted in a run folder is never
    read); the next save numbers on from it."""
    accelerator, found = run.accelerator, ckpt.complete_checkpoints(run.out)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ckpt.drop_incomplete(run.out)
    accelerator.wait_for_everyone()
    if not found:
        accelerator.print(f"--resume: no complete checkpoint in {run.out / 'checkpoints'}; starting fresh")
        return
    latest = found[-1]
    training = ckpt.read_state(latest, "training")
    try:
        accelerator.unwrap_model(run.model).load_state_dict(ckpt.read_state(latest, "model"))
        run.optimizer.load_state_dict(training["optimizer"])
        run.scheduler.load_state_dict(training["scheduler"])
        run.state.load_state_dict(training["loop"])
        if accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(training["scaler"])
        accelerator.step = training["accelerator_step"]
        ckpt.set_rng_state(ckpt.read_state(latest, f"rng_{accelerator.process_index}"))
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise PetCtInputError(latest, f"does not fit this run ({str(err).splitlines()[0]}): resume with the "
                                      "arguments that made it, or choose another output_dir") from None
    run.next_checkpoint = int(latest.name.rsplit("_", 1)[1]) + 1
    accelerator.print(f"resumed from {latest}")


def _checkpoint(run: _Run) -> None:
    """The full training state into checkpoints/checkpoint_N; COMPLETE is written last (a killed save is ignored)."""
    accelerator = run.accelerator
    folder = run.out / "checkpoints" / f"{ckpt.PREFIX}{run.next_checkpoint}"
    run.next_checkpoint += 1
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        ckpt.write_state(folder, "model", accelerator.unwrap_model(run.model).state_dict())
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        ckpt.write_state(folder, "training", {
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "loop": run.state.state_dict(), "accelerator_step": accelerator.step, "scaler": scaler})
    accelerator.wait_for_everyone()
    ckpt.write_state(folder, f"rng_{accelerator.process_index}", ckpt.rng_state())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / ckpt.COMPLETE_MARKER).write_text("ok\n")
        ckpt.keep_newest(run.out, run.args.checkpoints_total_limit)
    accelerator.wait_for_everyone()


def _evaluate(accelerator, model, evaluate, selection, on_evaluate, state: LoopState, out: Path) -> None:
    model.eval()
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(VALIDATION_SEED)
        metrics = evaluate(accelerator.unwrap_model(model))
    model.train()
    metrics = {k: float(v) for k, v in metrics.items()}
    state.history.append({"step": state.step, "epoch": state.epoch, **metrics})
    accelerator.log(metrics, step=state.step)
    accelerator.print(f"step {state.step}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    value = metrics.get(selection.metric)
    if selection.improves(value, state.best_metric):
        state.best_metric, state.best_step = value, state.step
        save_model(accelerator, model, out / "best", {"selected_on": selection.metric, "value": value, "step": state.step})
    if on_evaluate is not None and accelerator.is_main_process:
        on_evaluate(accelerator.unwrap_model(model), state.step, metrics)


def _log_window(accelerator, state: LoopState, scheduler, window: dict, progress) -> None:
    elapsed = max(time.perf_counter() - window["t0"], 1e-9)
    loss = accelerator.reduce(torch.tensor(window["loss"] / max(window["count"], 1), device=accelerator.device), "mean")
    logs = {"train_loss": loss.item(), "lr": scheduler.get_last_lr()[0], "crops_per_s": window["samples"] / elapsed,
            "epoch": state.epoch}
    if accelerator.device.type == "cuda":
        logs["gpu_mem_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
    accelerator.log(logs, step=state.step)
    progress.set_postfix(loss=f"{logs['train_loss']:.4f}", lr=f"{logs['lr']:.2e}", crops_s=f"{logs['crops_per_s']:.2f}")
    window.update(_new_window())


def _progress(accelerator, args: TrainArguments, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step",
                disable=not (args.progress_bar and accelerator.is_local_main_process))


def _channels_last(value):
    if isinstance(value, torch.Tensor) and value.dim() == 5:
        return value.contiguous(memory_format=torch.channels_last_3d)
    return value


def _flat_config(args: TrainArguments, learning_rate: float, total_steps: int) -> dict:
    flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(args).items()}
    flat.update(effective_learning_rate=learning_rate, total_steps=total_steps)
    return flat
