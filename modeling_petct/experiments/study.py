"""The label-efficiency study: {backbone} x {pretrained, scratch} x {label fraction} x {seed}, plus a k-shot linear
probe of each pretrained backbone and, given PET-only and CT-only MAEs, the same probe on their concatenated features
("probe-separated": joint vs separated-modality pretraining). Each cell is one `finetune` run in its own folder; a
cell whose `results.json` exists is skipped and an interrupted cell resumes from its last checkpoint, so re-running
the command finishes a half-done grid."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..training.args import DataArguments, ModelArguments, SegArguments, TrainArguments


@dataclass
class StudyArguments:
    cache_dir: str = field(default="", metadata={"help": "StudyCache with labelled harmonised studies."})
    output_dir: str = field(default="", metadata={"help": "Where cells, table.md, label_efficiency.png and results.json go."})
    backbones: list[str] = field(default_factory=lambda: ["swinunetr-v2-small"], metadata={"help": "PetCtConfig presets."})
    config_overrides: str | None = field(default=None, metadata={"help": "JSON of PetCtConfig fields for every cell."})
    pretrained: list[str] = field(default_factory=list, metadata={"help": "One MAE dir or Hub id per backbone, same order ('none' = scratch only)."})
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    split_csv: str | None = field(default=None, metadata={"help": "The paper's AutoPET split CSV (else a seeded subject-wise split of the cache)."})
    probe_k: int = field(default=5, metadata={"help": "k for the k-shot linear probe of each pretrained backbone (0 = none)."})
    separated_pretrained: list[str] = field(default_factory=list, metadata={"help": "Two dirs per backbone, same order: a PET-only then a CT-only MAE ('none none' = skip); adds a k-shot 'probe-separated' cell."})
    schedule: str = field(default="epochs", metadata={"help": "epochs (paper) | equal_steps."})
    num_epochs: int = 100
    equal_steps: int = 5000
    per_device_batch_size: int = 4
    learning_rate: float | None = None
    crop_size: list[int] = field(default_factory=lambda: [96, 128, 128])
    mixed_precision: str = "no"
    eval_steps: int = 0
    checkpointing_steps: int = 500
    num_workers: int = 2
    fg_prob: float = 0.5
    sw_overlap: float = 0.25
    report_to: str = "none"
    progress_bar: bool = True


@dataclass(frozen=True)
class Cell:
    backbone: str
    arm: str  # pretrained | scratch | probe | probe-separated
    pretrained: str | None
    fraction: float | None
    k_shot: int | None
    seed: int
    separated: tuple[str, str] | None = None  # (PET-only MAE, CT-only MAE) of a probe-separated cell

    @property
    def name(self) -> str:
        amount = f"{self.k_shot}shot" if self.k_shot else f"frac{self.fraction:g}"
        return f"{self.backbone}/{self.arm}/{amount}/seed{self.seed}"


def grid(args: StudyArguments) -> list[Cell]:
    """Every cell of the study, in run order."""
    if args.pretrained and len(args.pretrained) != len(args.backbones):
        raise ValueError("--pretrained needs one entry per backbone (use 'none' for scratch only)")
    sources = args.pretrained or ["none"] * len(args.backbones)
    pairs = separated_pairs(args)
    cells = []
    for backbone, source, pair in zip(args.backbones, sources, pairs):
        source = None if source.lower() == "none" else source
        for seed in args.seeds:
            for fraction in args.fractions:
                if source:
                    cells.append(Cell(backbone, "pretrained", source, fraction, None, seed))
                cells.append(Cell(backbone, "scratch", None, fraction, None, seed))
            if source and args.probe_k:
                cells.append(Cell(backbone, "probe", source, None, args.probe_k, seed))
            if pair and args.probe_k:
                cells.append(Cell(backbone, "probe-separated", None, None, args.probe_k, seed, separated=pair))
    return cells


def separated_pairs(args: StudyArguments) -> list[tuple[str, str] | None]:
    """(PET-only MAE, CT-only MAE) per backbone, None where skipped or not given."""
    given = args.separated_pretrained
    if not given:
        return [None] * len(args.backbones)
    if len(given) != 2 * len(args.backbones):
        raise ValueError("--separated_pretrained needs two entries per backbone: PET-only MAE, CT-only MAE "
                         "('none none' to skip one)")
    pairs = [tuple(given[i : i + 2]) for i in range(0, len(given), 2)]
    skipped = [sum(p.lower() == "none" for p in pair) for pair in pairs]
    if 1 in skipped:
        raise ValueError("--separated_pretrained: give both MAEs of a backbone, or 'none none'")
    return [None if n else pair for n, pair in zip(skipped, pairs)]


def cell_arguments(args: StudyArguments, cell: Cell):
    """The four train_seg.py argument dataclasses of one cell."""
    out = Path(args.output_dir) / "cells" / cell.name
    model = ModelArguments(preset=cell.backbone, pretrained=cell.pretrained, config_overrides=args.config_overrides,
                           separated_pretrained=list(cell.separated or []))
    data = DataArguments(cache_dir=args.cache_dir, crop_size=list(args.crop_size), num_workers=args.num_workers)
    train = TrainArguments(
        output_dir=str(out), seed=cell.seed, num_epochs=args.num_epochs, per_device_batch_size=args.per_device_batch_size,
        learning_rate=args.learning_rate, mixed_precision=args.mixed_precision, eval_steps=args.eval_steps,
        checkpointing_steps=args.checkpointing_steps, checkpoints_total_limit=1, resume=True,
        report_to=args.report_to, progress_bar=args.progress_bar)
    seg = SegArguments(
        label_fraction=cell.fraction, k_shot=cell.k_shot, split_csv=args.split_csv, split_seed=cell.seed,
        linear_probe=cell.arm in ("probe", "probe-separated"), schedule=args.schedule, equal_steps=args.equal_steps,
        fg_prob=args.fg_prob, sw_overlap=args.sw_overlap)
    return model, data, train, seg


def run_study(args: StudyArguments, *, log=print) -> dict:
    """Run the missing cells, then write table.md, label_efficiency.png and results.json; returns their paths."""
    from .report import aggregate_results, label_efficiency_plot, markdown_table, paired_tests, write_results_json
    from ..training.segmentation import finetune

    if not args.cache_dir or not args.output_dir:
        raise ValueError("--cache_dir and --output_dir are required")
    out = Path(args.output_dir)
    results = []
    cells = grid(args)
    for i, cell in enumerate(cells, 1):
        model, data, train, seg = cell_arguments(args, cell)
        done = Path(train.output_dir) / "results.json"
        if done.exists():
            log(f"[{i}/{len(cells)}] {cell.name}: done earlier, skipped")
        else:
            log(f"[{i}/{len(cells)}] {cell.name}")
            finetune(model, data, train, seg)
        results.append({**json.loads(done.read_text()), **asdict(cell), "backbone_name": cell.backbone})
    rows, tests = aggregate_results(results), paired_tests(results)
    table = out / "table.md"
    table.write_text(markdown_table(rows, tests))
    return {
        "table": table,
        "figure": label_efficiency_plot(rows, out / "label_efficiency.png"),
        "json": write_results_json(out / "results.json", rows, tests, results),
        "rows": rows,
        "tests": tests,
    }


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from ..training.args import parse

    (args,) = parse((StudyArguments,), argv, prog=prog)
    paths = run_study(args)
    print(Path(paths["table"]).read_text())
    print(f"table: {paths['table']}\nfigure: {paths['figure']}\nresults: {paths['json']}")
    return 0
