"""The label-efficiency study: {preset} x {pretrained, scratch} x {label fraction} x {seed}, plus a k-shot linear
probe of each pretrained network and, given PET-only and CT-only MAEs, the same probe on their concatenated features
("probe-separated": joint vs separated-modality pretraining); ``--organ-aware`` repeats each fine-tuning cell with
organ labels, ``--interactive`` with click inputs (scored also by the interactive protocols: study_interactive.py).
Each cell is one `finetune` run in its own folder; a
cell whose `results.json` exists is skipped and an interrupted cell resumes from its last checkpoint, so re-running
the command finishes a half-done grid.

Every training option is train_seg.py's own (the four dataclasses of `training.segmentation.ARGUMENTS`, parsed by
the same HfArgumentParser, same defaults); the study adds only its grid (`StudyGrid`). The options a cell sets
itself (`PER_CELL`: preset, starting model, seed, label amount, probing, click inputs, resume) are left out of
the study's parser.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .. import seeds
from ..errors import PetCtInputError
from ..training.args import DataArguments, ModelArguments, SegArguments, TrainArguments
from ..training.results import INTERACTIVE_SUFFIX, ORGANS_SUFFIX, RESULTS_FILE, RunResult

# Options of train_seg.py that each cell sets from the grid, per dataclass.
PER_CELL = {
    ModelArguments: ("preset", "pretrained", "separated_pretrained"),
    DataArguments: (),
    TrainArguments: ("seed", "resume"),
    SegArguments: ("label_fraction", "num_train_scans", "k_shot", "split_seed", "linear_probe", "interactive"),
}
AUTOMATIC_ARMS = tuple(start + organs for organs in ("", ORGANS_SUFFIX) for start in ("pretrained", "scratch"))
ARMS = (*AUTOMATIC_ARMS, *(arm + INTERACTIVE_SUFFIX for arm in AUTOMATIC_ARMS), "probe", "probe-separated",
        "probe-random")
CELL_CHECKPOINTS = 1  # a cell keeps only its newest training-state checkpoint (a grid has many cells)


@dataclass
class StudyGrid:
    presets: list[str] = field(default_factory=lambda: ["swinunetr-v2-small"],
                               metadata={"help": "PetCtConfig presets, one network per entry.", "aliases": ["--backbones"]})
    pretrained: list[str] = field(default_factory=list, metadata={"help": "One MAE dir or Hub id per preset, same order ('none' = scratch only)."})
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0], metadata={"help": "Label fractions of the training pool."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds (training and subject-wise subset draw)."})
    probe_k: int = field(default=5, metadata={"help": "k for the k-shot linear probe of each pretrained network (0 = none)."})
    separated_pretrained: list[str] = field(default_factory=list, metadata={"help": "Two dirs per preset, same order: a PET-only then a CT-only MAE ('none none' = skip); adds a k-shot 'probe-separated' cell."})
    organ_aware: bool = field(default=False, metadata={"help": "Add the organ-aware arm: every fine-tuning cell again with organ labels (data.organs.ORGANS, the automatic TotalSegmentator vocabulary) and the organ loss, same seed and subset (arms pretrained-organs, scratch-organs); the cache must hold organ maps."})
    interactive: bool = field(default=False, metadata={"help": "Add the interactive arm: every fine-tuning cell again with click inputs (train_seg.py --interactive and its --guidance_* / --max_clicks options), same seed and subset (arms ...-interactive); each is scored without clicks like every arm, and by the interactive protocols (autoPET IV: 0..10 simulated clicks of each kind; error-driven) on the test studies, beside the classical 41%-of-SUVmax tool under the same clicks."})
    arms: list[str] = field(default_factory=list, metadata={"help": f"Run only these arms of the grid (default: every arm it makes; choose among {', '.join(ARMS)})."})
    baselines: list[str] = field(default_factory=lambda: ["all"], metadata={"help": "Classical threshold baselines scored beside the networks on the same test studies (SUV >= t; the same outside physiological-uptake organs; 41% of SUVmax; PERCIST's liver threshold), each with t and minimum volume chosen on the validation studies only: all (default), none, or any of suv suv-organs suvmax41 percist. Rules needing an organ map are skipped, with the reason, where a study has none."})
    parallel_cells: int = field(default=1, metadata={"help": "Cells trained at once, each in its own process with an equal share of the CPU threads (small networks on few cores: two 1-thread tiny-unet cells make 1.1-1.2x the training steps per second of one 2-thread cell, measured, and run their single-threaded evaluation side by side). Results do not depend on it beyond floating-point order."})


def _without_per_cell(cls):
    """`cls` as a dataclass without the options a cell sets itself (for the study's parser and --help)."""
    hints = typing.get_type_hints(cls)
    kept = [(f.name, hints[f.name], _copy_field(f)) for f in dataclasses.fields(cls) if f.name not in PER_CELL[cls]]
    return dataclasses.make_dataclass(f"Study{cls.__name__}", kept)


def _copy_field(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory, metadata=f.metadata)
    return field(default=f.default, metadata=f.metadata)


class StudyArguments:
    """The grid plus train_seg.py's four argument dataclasses (their values shared by every cell).

    Built from keywords, each going to the dataclass that declares it (``StudyArguments(presets=[...],
    num_epochs=5, fg_prob=0.5)``), or from the command line by `parse_study_arguments`. ``backbones`` is accepted as
    the old name of ``presets``."""

    def __init__(self, grid: StudyGrid | None = None, model: ModelArguments | None = None,
                 data: DataArguments | None = None, train: TrainArguments | None = None,
                 seg: SegArguments | None = None, **options):
        if "backbones" in options:
            options["presets"] = options.pop("backbones")
        parts = {StudyGrid: grid, ModelArguments: model, DataArguments: data, TrainArguments: train, SegArguments: seg}
        values = {cls: {} for cls in parts}
        for name, value in options.items():
            values[_owner(name)][name] = value
        built = {cls: dataclasses.replace(part, **values[cls]) if part is not None else cls(**values[cls])
                 for cls, part in parts.items()}
        self.grid, self.model, self.data, self.train, self.seg = built.values()


def _owner(name: str) -> type:
    """The dataclass that declares option `name`; per-cell options are refused (the grid sets them)."""
    for cls in (StudyGrid, ModelArguments, DataArguments, TrainArguments, SegArguments):
        if name in {f.name for f in dataclasses.fields(cls)}:
            if name in PER_CELL.get(cls, ()):
                raise TypeError(f"StudyArguments: {name!r} is set per cell by the grid")
            return cls
    raise TypeError(f"StudyArguments: unknown option {name!r}")


def parse_study_arguments(argv: list[str] | None, prog: str | None = None) -> StudyArguments:
    """The grid and train_seg.py's options (less the per-cell ones) from flags and/or a leading YAML/JSON file."""
    from ..training.args import parse

    grid_args, *shared = parse((StudyGrid, *map(_without_per_cell, PER_CELL)), argv, prog=prog)
    model, data, train, seg = (cls(**dataclasses.asdict(values)) for cls, values in zip(PER_CELL, shared))
    return StudyArguments(grid_args, model, data, train, seg)


@dataclass(frozen=True)
class Cell:
    preset: str
    arm: str  # pretrained | scratch (+ "-organs": organ-aware) (+ "-interactive") | probe | probe-separated | probe-random
    pretrained: str | None
    fraction: float | None
    k_shot: int | None
    seed: int
    separated: tuple[str, str] | None = None  # (PET-only MAE, CT-only MAE) of a probe-separated cell

    @property
    def name(self) -> str:
        amount = f"{self.k_shot}shot" if self.k_shot else f"frac{self.fraction:g}"
        return f"{self.preset}/{self.arm}/{amount}/seed{self.seed}"


def grid(args: StudyArguments) -> list[Cell]:
    """Every cell of the study, in run order."""
    g = args.grid
    if g.pretrained and len(g.pretrained) != len(g.presets):
        raise PetCtInputError("--pretrained", f"{len(g.pretrained)} entries for {len(g.presets)} preset(s): give one "
                                              "per preset, in order ('none' for scratch only)")
    sources = g.pretrained or ["none"] * len(g.presets)
    cells = []
    for preset, source, pair in zip(g.presets, sources, separated_pairs(g)):
        source = None if source.lower() == "none" else source
        for seed in g.seeds:
            for fraction in g.fractions:
                starts = [("pretrained", source)] * bool(source) + [("scratch", None)]
                if g.organ_aware:
                    starts += [(arm + ORGANS_SUFFIX, start) for arm, start in starts]
                if g.interactive:
                    starts += [(arm + INTERACTIVE_SUFFIX, start) for arm, start in starts]
                for arm, start in starts:
                    cells.append(Cell(preset, arm, start, fraction, None, seed))
            if source and g.probe_k:
                cells.append(Cell(preset, "probe", source, None, g.probe_k, seed))
            if pair and g.probe_k:
                cells.append(Cell(preset, "probe-separated", None, None, g.probe_k, seed, separated=pair))
            if source and g.probe_k:
                cells.append(Cell(preset, "probe-random", None, None, g.probe_k, seed))  # random-feature control
    return [c for c in cells if c.arm in g.arms] if g.arms else cells


def separated_pairs(g: StudyGrid) -> list[tuple[str, str] | None]:
    """(PET-only MAE, CT-only MAE) per preset, None where skipped or not given."""
    given = g.separated_pretrained
    if not given:
        return [None] * len(g.presets)
    if len(given) != 2 * len(g.presets):
        raise PetCtInputError("--separated_pretrained", "needs two entries per preset: PET-only MAE, CT-only MAE "
                                                        "('none none' to skip one)")
    pairs = [tuple(given[i : i + 2]) for i in range(0, len(given), 2)]
    skipped = [sum(p.lower() == "none" for p in pair) for pair in pairs]
    if 1 in skipped:
        raise PetCtInputError("--separated_pretrained", "give both MAEs of a preset, or 'none none'")
    return [None if n else pair for n, pair in zip(skipped, pairs)]


def cell_arguments(args: StudyArguments, cell: Cell):
    """The four train_seg.py argument dataclasses of one cell: the study's values plus the cell's own."""
    replace = dataclasses.replace
    model = replace(args.model, preset=cell.preset, pretrained=cell.pretrained,
                    separated_pretrained=list(cell.separated or []))
    if ORGANS_SUFFIX in cell.arm:
        from ..data.organs import organ_aware_overrides

        model = replace(model, config_overrides=json.dumps({**model.overrides(), **organ_aware_overrides()}))
    out = Path(args.train.output_dir) / "cells" / cell.name
    train = replace(args.train, output_dir=str(out), seed=cell_seed(cell), resume=True,
                    checkpoints_total_limit=min(args.train.checkpoints_total_limit, CELL_CHECKPOINTS))
    seg = replace(args.seg, label_fraction=cell.fraction, k_shot=cell.k_shot, split_seed=cell.seed,
                  linear_probe=cell.arm.startswith("probe"), interactive=cell.arm.endswith(INTERACTIVE_SUFFIX))
    return model, args.data, train, seg


def cell_seed(cell: Cell) -> int:
    """The training seed of a cell (network init, head, crops): its own per label amount and grid seed, so no two
    amounts share one random draw; the pretrained and scratch cells of one amount share it (paired crops). The
    labelled subset is drawn from the grid seed alone (`split_seed`), so it is the same for every arm."""
    amount = cell.k_shot if cell.k_shot else round(1000 * cell.fraction)
    return seeds.cell_seed(cell.seed, amount)


def run_study(args: StudyArguments, *, log=print) -> dict:
    """Run the missing cells, then write table.md, label_efficiency.png and results.json; returns their paths."""
    from .report import aggregate_results, label_efficiency_plot, markdown_table, paired_tests, write_results_json
    from .study_baselines import baseline_methods, study_baseline_report
    from .study_interactive import interactive_report, table_section

    check_study(args)
    out = Path(args.train.output_dir)
    run_cells([args], workers=args.grid.parallel_cells, log=log)
    results = cell_results(args)
    rows, tests = aggregate_results(results), paired_tests(results)
    baselines = study_baseline_report(baseline_methods(args.grid.baselines), args.data.cache_dir, rows, results, log=log)
    clicks = interactive_report(results, out, args.data.cache_dir)
    table = out / "table.md"
    table.write_text(markdown_table(rows, tests) + ("\n".join(baselines["lines"]) if baselines else "")
                     + table_section(clicks))
    return {
        "table": table,
        "figure": label_efficiency_plot(rows, out / "label_efficiency.png"),
        "json": write_results_json(out / "results.json", rows, tests, results,
                                   baselines=baselines["json"] if baselines else None,
                                   interactive=clicks["json"] if clicks else None),
        "rows": rows,
        "tests": tests,
        "results": results,
    }


def check_study(args: StudyArguments) -> None:
    """Every argument of every cell, before the first cell trains (a mistake found after hours of training costs
    those hours): the grid and its baselines, the presets and starting models, each cell's training options, the
    output folder and the cache (organ maps for the organ-aware arm)."""
    from ..data.cache import open_cache
    from ..models.configuration_petct import PRESETS
    from ..training.segmentation import check_arguments
    from .study_baselines import baseline_methods

    out = Path(args.train.output_dir)
    if not args.train.output_dir:
        raise PetCtInputError("--output_dir", "required: where the cells and the table go")
    if out.exists() and not out.is_dir():
        raise PetCtInputError(out, "exists and is not a folder: --output_dir is where the cells and the table go")
    unknown_arms = sorted(set(args.grid.arms) - set(ARMS))
    if unknown_arms:
        raise PetCtInputError("--arms", f"unknown arm(s) {unknown_arms}; choose among {', '.join(ARMS)}")
    bad = [f for f in args.grid.fractions if not 0 < f <= 1]
    if bad:
        raise PetCtInputError("--fractions", f"label fractions lie in (0, 1], got {bad}")
    unknown = [p for p in args.grid.presets if p not in PRESETS]
    if unknown or not args.grid.presets:
        raise PetCtInputError("--presets", f"unknown preset(s) {unknown}; choose among {sorted(PRESETS)}")
    baseline_methods(args.grid.baselines)
    cells = grid(args)
    if not cells:  # no fractions is a probes-only study; neither leaves nothing to run
        raise PetCtInputError("--fractions", "no cell to run: give label fractions, or a pretrained model and --probe_k"
                                             + (f", and --arms that the grid makes (asked for {', '.join(args.grid.arms)})" if args.grid.arms else ""))
    for start in {c.pretrained for c in cells if c.pretrained} | {p for c in cells for p in c.separated or ()}:
        _check_starting_model(start)
    for cell in cells:
        check_arguments(*cell_arguments(args, cell)[2:])
    cache = open_cache(args.data.cache_dir, labelled=True)
    if args.grid.organ_aware:
        missing = [i for i in cache.ids() if cache.info(i).get("has_label") and not cache.info(i).get("has_organs")]
        if missing:
            raise PetCtInputError(cache.root, f"--organ_aware needs organ maps, and {len(missing)} labelled studies "
                                              f"have none (e.g. {missing[0]}): harmonise with organ maps "
                                              "(petct harmonize --organs-dir)")


def _check_starting_model(source: str) -> None:
    """A local MAE folder or run folder must exist; a Hub id (owner/name, not a local path) is fetched by its cell."""
    import re

    path = Path(source).expanduser()
    hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith((".", "/", "~"))
    if not path.exists() and not hub_id:
        raise PetCtInputError(source, "no such MAE folder (a starting model: a local folder, a run folder or a Hub "
                                      "id owner/name)")


def cell_results(args: StudyArguments) -> list[RunResult]:
    """The results record of every cell of the study, in grid order (the cells must have run)."""
    return [RunResult.load(Path(cell_arguments(args, cell)[2].output_dir)) for cell in grid(args)]


def run_cells(studies: list[StudyArguments], *, workers: int = 1, log=print) -> None:
    """Train every cell of these studies that has no results.json yet (a cell shared by two studies runs once),
    ``workers`` at a time in spawned processes that share out this process's torch threads."""
    import torch

    todo = {}
    for args in studies:
        for cell in grid(args):
            arguments = cell_arguments(args, cell)
            if _cell_done(*arguments):
                log(f"{cell.name}: done earlier, skipped")
            else:
                todo.setdefault(arguments[2].output_dir, (cell.name, arguments))
    jobs = list(todo.values())
    if workers <= 1 or len(jobs) <= 1:
        for i, (name, arguments) in enumerate(jobs, 1):
            log(f"[{i}/{len(jobs)}] {name}")
            run_cell(*arguments)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # fork after OpenMP threads have run can deadlock
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        running = {pool.submit(run_cell, *arguments): name for name, arguments in jobs}
        log(f"{len(jobs)} cells, {workers} at a time ({threads} thread{'s' * (threads > 1)} each)")
        for i, future in enumerate(as_completed(running), 1):
            future.result()
            log(f"[{i}/{len(jobs)}] {running[future]} done")


def run_cell(model: ModelArguments, data: DataArguments, train: TrainArguments, seg: SegArguments) -> None:
    """Train one cell (resuming), then score a click-guided one by the interactive protocols."""
    import torch

    from ..training.segmentation import finetune
    from .study_interactive import score_clicks

    if not (Path(train.output_dir) / RESULTS_FILE).exists():
        finetune(model, data, train, seg)
    if seg.interactive:
        device = "cuda" if torch.cuda.is_available() and not train.cpu else "cpu"
        score_clicks(train.output_dir, data.cache_dir, overlap=seg.sw_overlap, device=device)


def _cell_done(model: ModelArguments, data: DataArguments, train: TrainArguments, seg: SegArguments) -> bool:
    from .study_interactive import CLICKS_FILE

    done = (Path(train.output_dir) / RESULTS_FILE).exists()
    return done and (not seg.interactive or (Path(train.output_dir) / CLICKS_FILE).exists())


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    paths = run_study(parse_study_arguments(argv, prog=prog))
    print(Path(paths["table"]).read_text())
    print(f"table: {paths['table']}\nfigure: {paths['figure']}\nresults: {paths['json']}")
    return 0
