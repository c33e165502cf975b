"""Training options as dataclasses, parsed by transformers' `HfArgumentParser` (flags, a JSON/YAML file, or both).

A config file may come first on the command line; flags after it override its values, so
`train_mae.py recipe.yaml --learning-rate 3e-4` works as in transformers' example scripts. Every flag is accepted
dashed (`--learning-rate`, the spelling `petct` uses) and with underscores (HfArgumentParser adds both); where
transformers' TrainingArguments spell an option differently, its name is an alias (`--num-train-epochs`,
`--per-device-train-batch-size`, `--resume-from-checkpoint`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data.cache import LESION_CROP_PROB
from .results import FP_PENALTY

LESION_PRIOR = 0.1  # p(lesion) a zero/small head starts at (RetinaNet's prior init, milder: short schedules here)

SWIN_LR, CNN_LR = 1e-4, 5e-4  # METHOD.md: the authors' per-backbone AdamW learning rates


def default_learning_rate(backbone: str) -> float:
    """The paper's learning rate for a backbone (pretraining and fine-tuning use the same)."""
    return SWIN_LR if "swin" in backbone.lower() else CNN_LR


def _aliases(transformers_name: str) -> list[str]:
    """transformers' TrainingArguments spelling of an option, with underscores and dashed."""
    return [f"--{transformers_name}", f"--{transformers_name.replace('_', '-')}"]


@dataclass
class ModelArguments:
    preset: str = field(default="swinunetr-v2-small", metadata={"help": "PetCtConfig preset (e.g. swinunetr-v2-base, nnunet-v2-3d, tiny-unet)."})
    config_overrides: str | None = field(default=None, metadata={"help": 'JSON of PetCtConfig fields, e.g. \'{"mask_ratio": 0.6}\'.'})
    pretrained: str | None = field(default=None, metadata={"help": "Segmentation: MAE/segmentation model dir or Hub id to start from (none = scratch)."})
    separated_pretrained: list[str] = field(default_factory=list, metadata={"help": "Linear probe only: a PET-only and a CT-only MAE dir (in that order); their frozen features are concatenated."})

    def overrides(self) -> dict:
        return json.loads(self.config_overrides) if self.config_overrides else {}


@dataclass
class DataArguments:
    cache_dir: str = field(default="", metadata={"help": "StudyCache root holding harmonised studies (`petct harmonize`)."})
    train_ids: str | None = field(default=None, metadata={"help": "Text file of training study ids (default: every cached study not used for validation)."})
    val_ids: str | None = field(default=None, metadata={"help": "Text file of validation study ids."})
    val_fraction: float = field(default=0.1, metadata={"help": "Without --val_ids: this fraction of subjects (seeded) is held out for validation."})
    crop_size: list[int] = field(default_factory=lambda: [96, 128, 128], metadata={"help": "Training crop (z y x) in voxels."})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per rank."})
    val_crops_per_study: int | None = field(default=None, metadata={"help": "MAE validation: at most this many tiles per study (default all)."})


@dataclass
class TrainArguments:
    output_dir: str = field(default="", metadata={"help": "Run directory: checkpoints/, logs/, previews/, the selected model and last/."})
    seed: int = 0
    num_epochs: int = field(default=200, metadata={"help": "Epochs (one crop per study per epoch, as the paper).",
                                                   "aliases": _aliases("num_train_epochs")})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: total optimizer steps, overriding num_epochs (equal-steps control)."})
    per_device_batch_size: int = field(default=2, metadata={"help": "Crops per device per step.",
                                                            "aliases": _aliases("per_device_train_batch_size")})
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = field(default=None, metadata={"help": "Peak lr (default: 1e-4 Swin, 5e-4 CNN as the paper)."})
    min_learning_rate: float = 1e-6
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16 (fp16 needs a GPU) | auto (bf16 where the device has fast bf16 kernels: CUDA, CPUs with AVX512-BF16/AMX; else no)."})
    gradient_checkpointing: bool = False
    channels_last: bool = field(default=False, metadata={"help": "channels_last_3d memory format: faster convolutions on GPU, and on CPU with oneDNN (a tiny-unet step 1.2-1.4x faster with 2 threads, 1.1x with 1, measured)."})
    torch_compile: bool = False
    checkpointing_steps: int = field(default=500, metadata={"help": "Save the full training state every N optimizer steps."})
    checkpoints_total_limit: int = field(default=3, metadata={"help": "Keep only the last K training-state checkpoints."})
    eval_steps: int = field(default=0, metadata={"help": "Validate every N steps (0 = at the end of every epoch)."})
    logging_steps: int = 10
    resume: bool = field(default=False, metadata={"help": "Continue from the latest complete checkpoint in output_dir.",
                                                  "aliases": _aliases("resume_from_checkpoint")})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate trackers, comma-separated (tensorboard, wandb, ...; one not installed is refused with its pip line), or none."})
    cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is present."})
    ddp_find_unused_parameters: bool = field(default=False, metadata={"help": "Needed by backbones with unused layers under DDP."})
    progress_bar: bool = True


@dataclass
class SegArguments:
    label_fraction: float | None = field(default=None, metadata={"help": "Fraction of the training pool with labels (0.1/0.3/1.0 use the paper's subsets when the split CSV is given)."})
    num_train_scans: int | None = field(default=None, metadata={"help": "Alternatively an exact number of labelled scans (drawn subject-wise with --split_seed)."})
    split_csv: str | None = field(default=None, metadata={"help": "The paper's split CSV (subject, study, role, in_10pct, ...). Without it: ids from the cache, split subject-wise."})
    split_seed: int = 0
    linear_probe: bool = field(default=False, metadata={"help": "Freeze the network; train only the output 1x1x1 convolution."})
    k_shot: int | None = field(default=None, metadata={"help": "k labelled scans (e.g. 5) for few-shot probing/fine-tuning."})
    schedule: str = field(default="epochs", metadata={"help": "epochs (as the paper) | equal_steps (same optimizer steps whatever the label fraction)."})
    equal_steps: int = field(default=5000, metadata={"help": "Optimizer steps for --schedule equal_steps."})
    fg_prob: float = field(default=LESION_CROP_PROB, metadata={"help": "Probability that a training crop is centred on a lesion."})
    sw_overlap: float = field(default=0.5, metadata={"help": "Sliding-window overlap for validation/test inference."})
    sw_batch_size: int = 2
    test_ids: str | None = field(default=None, metadata={"help": "Text file of test study ids (evaluated once, at the end)."})
    # The transfer recipe. Defaults are the authors' protocol; experiments/quickstart.py names both recipes.
    transfer: str = field(default="whole", metadata={"help": "What a pretrained start keeps: whole (encoder + decoder, the authors') | encoder (decoder re-initialised)."})
    head_init: str = field(default="random", metadata={"help": "Output 1x1x1 head of a pretrained start or probe: random (the authors') | zero (weights 0) | small (random x 0.01); "
                                                              f"zero/small start p(lesion) at {LESION_PRIOR:.0%}."})
    head_steps: int = field(default=0, metadata={"help": "LP-FT: from a pretrained start, only the output head learns for this many steps (the backbone's lr is 0), then the whole network; counted in the total."})
    head_lr_factor: float = field(default=1.0, metadata={"help": "From a pretrained start: the output head's lr = this x the lr (a new layer learns faster; the authors: 1)."})
    zoom_prob: float = field(default=0.0, metadata={"help": "Probability of random zoom 0.9-1.1 on training crops (the authors fine-tune on plain random crops)."})
    selection_metric: str = field(default="val_dice", metadata={"help": "Checkpoint selection: val_dice (lesion-positive studies, the authors' Dice) | "
                                                                            f"val_dice_fp (Dice less {FP_PENALTY} per false-positive lesion on a lesion-free study: false positives count)."})
    min_lesion_ml: str = field(default="0", metadata={"help": "Post-processing stored in the model (config.min_lesion_ml): predicted lesion components under this volume (ml) are dropped from every mask it makes; auto = the candidate among MIN_LESION_ML_CANDIDATES (0-1 ml) that scores best by --selection_metric on the selection split, chosen after the checkpoint (the authors: 0)."})
    min_lesion_confidence: str = field(default="0", metadata={"help": "Post-processing stored in the model (config.min_lesion_confidence): predicted lesion components whose peak lesion probability is below this are dropped; auto = chosen among MIN_LESION_CONFIDENCE_CANDIDATES (0-0.99) like --min_lesion_ml, jointly with it when both are auto (the authors: 0)."})
    select_on: str = field(default="val", metadata={"help": "Split that selects the checkpoint: val | test (the authors' notebooks; optimistic, never for claims)."})
    # Interactive segmentation (training/interaction.py)
    interactive: bool = field(default=False, metadata={"help": "Click-guided model: foreground and background click maps after PET and CT (zero input weights on a start without them), trained with simulated clicks (autoPET IV rules, 0..--max_clicks of each kind per crop, corrective clicks on the model's own errors). Validation scores the automatic pass (no clicks)."})
    guidance_encoding: str = field(default="gaussian", metadata={"help": "Interactive: how a click is drawn, gaussian (the autoPET IV baseline) | ball (distance-transform ball, LesionLocator's)."})
    guidance_size: float = field(default=3.0, metadata={"help": "Interactive: the Gaussian's sigma or the ball's radius, in voxels of the model grid."})
    max_clicks: int = field(default=10, metadata={"help": "Interactive: each crop gets 0..max_clicks clicks of each kind, uniformly."})
    corrective_prob: float = field(default=0.5, metadata={"help": "Interactive: probability that a batch also gets corrective clicks on the model's own largest miss and false positive."})


def parse(dataclass_types, argv: list[str] | None = None, prog: str | None = None):
    """Parse `argv` into the given dataclasses; a leading .json/.yaml/.yml file supplies defaults that flags override."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, prog=prog, allow_abbrev=False)  # `--seed` must not mean `--seeds`
    for action in parser._actions:  # --help shows the dashed spelling first, as every `petct` command spells flags
        action.option_strings.sort(key=lambda option: "_" in option)
        if action.help and "%(" not in action.help:
            action.help = action.help.replace("%", "%%")  # help is prose ("1%"), not an argparse format string
    argv = list(argv or [])
    if argv and Path(argv[0]).suffix.lower() in {".json", ".yaml", ".yml"}:
        config_path = argv.pop(0)
        values = read_config_file(config_path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            from ..errors import PetCtInputError

            raise PetCtInputError(config_path, f"unknown option(s) {unknown}")
        parser.set_defaults(**values)
    parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False, return_remaining_strings=True)
    *values, remaining = parsed
    if remaining:  # argparse's own way: usage, one line, exit 2
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    return tuple(values)


def run_main(entry, argv: list[str] | None, prog: str) -> int:
    """Run a training entry point; input the user can fix (a missing cache, a bad config file) is one line on stderr
    and exit status 2, as in every `petct` sub-command."""
    from ..errors import PetCtInputError

    try:
        return int(entry(argv, prog) or 0)
    except PetCtInputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def read_config_file(path: str) -> dict:
    from ..errors import PetCtInputError

    text = Path(path).read_text()
    try:
        if path.endswith(".json"):
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as err:  # a config the user can fix
        raise PetCtInputError(path, f"not valid JSON/YAML ({err})") from err
    if not isinstance(values, dict):
        raise PetCtInputError(path, "must hold a mapping of option: value")
    return values


def read_id_file(path: str | None) -> list[str] | None:
    """One study id per line (blank lines and #comments ignored)."""
    if not path:
        return None
    lines = (line.split("#")[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]
