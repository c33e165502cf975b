"""The quickstart's report.md: what ran, what it reached, and what that does and does not show."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

from ..atomic import atomic_path
from .report import format_value


def write_report(out: Path, *, budget, split, mae, study: dict, case: dict, timings: dict, total_s: float) -> Path:
    figures = out / "report"
    figures.mkdir(exist_ok=True)
    shutil.copy(study["figure"], figures / "label_efficiency.png")
    previews = sorted((mae.output_dir / "previews").glob("*.png"))
    if previews:
        shutil.copy(previews[-1], figures / "mae_reconstruction.png")
    cells = json.loads(Path(study["json"]).read_text())["cells"]
    _learning_curves(study, figures / "learning_curves.png")
    rows, tests = study["rows"], study["tests"]
    mae_history = mae.state.history

    lines = [
        "# petct-fm quickstart report", "",
        f"Generated {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} in {total_s:.0f} s on CPU; every number and figure "
        "below was computed in this run. Synthetic data and a tiny network: this shows that the pipeline works and "
        "learns, not how the paper's models perform on patients.", "",
        "## What ran", "",
        f"- **Cohort**: {len(split.pool) + len(split.val) + len(split.test)} synthetic FDG PET/CT studies "
        "(`modeling_petct.data.synthetic.phantom`: anatomy, physiological uptake, 0-8 lesions, ~20% lesion-free), written as NIfTI, "
        f"read back, harmonised ({'x'.join(f'{v:g}' for v in budget.spacing)} mm, the phantom PET's own voxel size; CT on "
        "the PET grid, body crop, z-score) into a cache.",
        f"- **Split** (subject-wise, seeded): {len(split.pool)} training pool / {len(split.val)} validation / "
        f"{len(split.test)} test studies. Test studies were never seen in pretraining or fine-tuning.",
        f"- **Pretraining**: `{budget.preset}` masked autoencoder (block masks per channel, zero imputation, weighted "
        f"reconstruction loss), {mae.state.step} steps of batch {budget.batch_size} crops {list(budget.crop_size)} on the "
        f"training pool; validation loss {format_value(mae_history[0]['val_loss'])} at step {mae_history[0]['step']} -> "
        f"{format_value(mae_history[-1]['val_loss'])} at step {mae_history[-1]['step']}." if mae_history else "",
        f"- **Fine-tuning**: {budget.finetune_steps} steps each (equal-steps control), AdamW + cosine, DiceCE"
        f"{' with batch Dice over the lesion class (nnU-Net)' if budget.batch_dice else ''}; labelled "
        f"fractions {list(budget.fractions)} of the pool, from the MAE weights and from scratch; the checkpoint is "
        "selected on validation Dice, test metrics computed once at the end.", "",
        "## Results on the held-out test studies", "",
        "autoPET metrics on each test study's native PET grid (the prediction mapped back as `petct segment` does, "
        "against the study's own label file): Dice over lesion-positive studies, false-positive and false-negative "
        "volumes (ml); 95% bootstrap CIs over test studies.", "",
        Path(study["table"]).read_text(),
        "![label efficiency](label_efficiency.png)", "",
        "Validation Dice during fine-tuning (the pipeline learning):", "",
        "![learning curves](learning_curves.png)", "",
        "## Does pretraining help here?", "",
        *_verdict(rows, tests), "",
        "## One held-out study, segmented from its NIfTI files", "",
        f"`petct segment`'s code path (`inference.segment_study`) on test study `{case['study_id']}` with the "
        f"model of best validation Dice ({case['arm']}, fraction {case['fraction']:g}, validation Dice "
        f"{format_value(case['val_dice'])}). Left: ground truth, right: prediction (coronal PET MIP, "
        "outlines). The mask is written on the native PET grid: "
        f"`{Path(case['mask']).name}`.", "",
        "![PET MIP with lesions](held_out_mip.png)", "",
        f"Native-grid autoPET metrics: Dice {format_value(case['metrics']['dice'])}, FPV {format_value(case['metrics']['fpv_ml'], digits=2)} ml, "
        f"FNV {format_value(case['metrics']['fnv_ml'], digits=2)} ml; {len(case['lesions'])} predicted lesions for "
        f"{case['true_lesions']} true lesion(s); segmentation took {case['timings'].get('total_s', math.nan):.1f} s.", "",
        *_lesion_table(case["lesions"]), "",
        "## MAE reconstruction (validation crop, coronal slice)", "",
        "![MAE reconstruction](mae_reconstruction.png)" if previews else "(no preview)", "",
        "## Time per stage", "",
        "| stage | seconds |", "|---|---|",
        *[f"| {name} | {secs:.0f} |" for name, secs in timings.items()], "",
        f"Cells: {len(cells)} fine-tuning runs under `study/cells/`; full results in `study/results.json`; MAE run in `mae/`"
        " (TensorBoard logs in `mae/logs`).", "",
    ]
    path = figures / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def _verdict(rows: list[dict], tests: list[dict]) -> list[str]:
    """Plain sentences read off the numbers: who wins at each fraction, and whether the test says it is real."""
    by_key = {(r["arm"], r["amount"]): r for r in rows}
    out = []
    best = max((r for r in rows if not math.isnan(r["dice"])), key=lambda r: r["dice"], default=None)
    if best:
        out.append(f"- Best test Dice: **{best['dice']:.3f}** ({best['arm']}, fraction {best['amount']}).")
    for t in tests:
        pre, scr = by_key.get(("pretrained", t["amount"])), by_key.get(("scratch", t["amount"]))
        if not pre or not scr:
            continue
        diff = pre["dice"] - scr["dice"]
        verdict = "better" if diff > 0 else "worse" if diff < 0 else "equal"
        significant = t["pvalue"] == t["pvalue"] and t["pvalue"] < 0.05
        out.append(f"- Fraction {t['amount']}: MAE-initialised {pre['dice']:.3f} vs scratch {scr['dice']:.3f} "
                   f"({verdict} by {abs(diff):.3f}); paired Wilcoxon p = {format_value(t['pvalue'])} over {t['n']} studies: "
                   + ("a significant difference." if significant else "not significant at this scale."))
    out.append("- At this scale (tiny network, a couple of minutes of pretraining, a few dozen synthetic studies) the "
               "benefit of pretraining is not expected to be reliable; the paper's claim concerns ~5,000 real scans and "
               "full-size backbones. Use `petct study` on real data to test it.")
    return out


def _lesion_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["No lesion predicted."]
    lines = ["Predicted lesions, largest first:", "", "| lesion | volume ml | SUVmax | SUVmean | SUVpeak | TLG |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["volume_ml"])[:12]:
        lines.append(f"| {r['id']} | {r['volume_ml']:.2f} | {r['suv_max']:.2f} | {r['suv_mean']:.2f} | "
                     f"{format_value(r['suv_peak'], digits=2)} | {r['tlg']:.2f} |")
    if len(rows) > 12:
        lines.append(f"| ... {len(rows) - 12} more | | | | | |")
    return lines


def _learning_curves(study: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for cell_dir in sorted(Path(study["json"]).parent.glob("cells/*/*/*/*/results.json")):
        r = json.loads(cell_dir.read_text())
        hist = [(h["step"], h["val_dice"]) for h in r["history"] if h.get("val_dice") == h.get("val_dice")]
        if hist:
            arm = cell_dir.parts[-4]
            ax.plot(*zip(*hist), marker="o", linestyle="-" if arm == "pretrained" else "--",
                    label=f"{arm}, {cell_dir.parts[-3]}")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no lesion-positive validation study", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
