"""Turn fine-tuning results into the paper's outputs: a table (mean, 95% CI over test cases, paired Wilcoxon tests of
pretrained vs scratch), a Figure 4-style label-efficiency plot, and JSON for model cards.

Runs are `training.results.RunResult` records; a row names its network by ``preset`` (the preset, else the family)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from ..atomic import atomic_path
from ..training.results import INTERACTIVE_SUFFIX, RunResult


def _key(r: RunResult) -> tuple[str, str, str]:
    return r.label, r.arm, r.amount


def aggregate_results(results: list[RunResult], *, n_boot: int = 1000) -> list[dict]:
    """One row per (preset, arm, label fraction / labelled scans), test cases pooled over seeds."""
    from ..evaluation import aggregate

    groups: dict[tuple, dict] = defaultdict(dict)
    n_train: dict[tuple, set] = defaultdict(set)
    steps: dict[tuple, set] = defaultdict(set)
    for r in results:
        n_train[_key(r)].add(r.n_train)
        steps[_key(r)].add(r.steps)
        for case, metrics in r.test_cases.items():
            groups[_key(r)][f"seed{r.seed}/{case}"] = metrics
    rows = []
    for (preset, arm, amount), cases in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        stats = aggregate(cases, n_boot=n_boot)
        rows.append({"preset": preset, "arm": arm, "amount": amount, "n_train": sorted(n_train[(preset, arm, amount)]),
                     "steps": sorted(steps[(preset, arm, amount)]), **stats})
    return rows


# Arms compared case by case: (arm, reference arm)
COMPARISONS = (("pretrained", "scratch"), ("scratch-organs", "scratch"), ("pretrained-organs", "pretrained"),
               ("probe", "probe-separated"), ("probe", "probe-random"), ("probe-separated", "probe-random"),
               *((arm + INTERACTIVE_SUFFIX, arm) for arm in ("pretrained", "scratch", "pretrained-organs")))  # 0 clicks


def paired_tests(results: list[RunResult]) -> list[dict]:
    """Paired Wilcoxon signed-rank tests of per-case test Dice, per (preset, label amount): pretrained vs scratch,
    and the joint vs the separated-modality probe; only between arms trained for the same steps."""
    from ..evaluation import paired_wilcoxon

    dice: dict[tuple, dict] = defaultdict(dict)
    steps: dict[tuple, set] = defaultdict(set)
    for r in results:
        steps[(r.label, r.amount, r.arm)].add(r.steps)
        for case, metrics in r.test_cases.items():
            dice[(r.label, r.amount, r.arm)][f"seed{r.seed}/{case}"] = metrics["dice"]
    tests = []
    for preset, amount in sorted({(b, a) for b, a, _ in dice}, key=lambda t: (t[0], t[1])):
        for arm, reference in COMPARISONS:
            ours, theirs = dice.get((preset, amount, arm)), dice.get((preset, amount, reference))
            if not ours or not theirs or steps[(preset, amount, arm)] != steps[(preset, amount, reference)]:
                continue
            keys = sorted(set(ours) & set(theirs))
            test = paired_wilcoxon([ours[k] for k in keys], [theirs[k] for k in keys])
            tests.append({"preset": preset, "amount": amount, "comparison": f"{arm} vs {reference}", **test})
    return tests


def format_value(value: float, ci=None, digits: int = 3) -> str:
    """A table cell: the value (and its CI) rounded, "n/a" for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    if ci and all(c is not None and not math.isnan(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def markdown_table(rows: list[dict], tests: list[dict]) -> str:
    """The results table and the paired tests, as GitHub markdown."""
    lines = ["| preset | start | labels | train scans | steps | test Dice [95% CI] | FPV ml | FNV ml | cases (lesion+) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['arm']} | {r['amount']} | {'/'.join(map(str, r['n_train']))} | "
                     f"{'/'.join(map(str, r.get('steps', [])))} | "
                     f"{format_value(r['dice'], r['dice_ci95'])} | {format_value(r['fpv_ml'], digits=2)} | {format_value(r['fnv_ml'], digits=2)} | "
                     f"{r['n_cases']} ({r['n_lesion_positive']}) |")
    if tests:
        lines += ["", "Paired Wilcoxon signed-rank tests of per-case test Dice:", "",
                  "| preset | comparison | labels | pairs | median Dice difference | p |", "|---|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['preset']} | {t['comparison']} | {t['amount']} | {t['n']} | {format_value(t['median_difference'])} | "
                         f"{format_value(t['pvalue'], digits=3)} |")
    return "\n".join(lines) + "\n"


def label_efficiency_plot(rows: list[dict], path: Path, title: str = "Label efficiency") -> Path:
    """Figure 4 style: test Dice (95% CI) against the labelled fraction, one line per preset and start."""
    from ..plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lines: dict[tuple, list] = defaultdict(list)
    for r in rows:
        x = _as_number(r["amount"])
        if x is not None and not math.isnan(r["dice"]):
            lines[(r["preset"], r["arm"])].append((x, r["dice"], r["dice_ci95"]))
    for (preset, arm), points in sorted(lines.items()):
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        err = [[max(0.0, y - (p[2][0] if p[2][0] == p[2][0] else y)) for y, p in zip(ys, points)],
               [max(0.0, (p[2][1] if p[2][1] == p[2][1] else y) - y) for y, p in zip(ys, points)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, linestyle="-" if arm == "pretrained" else "--",
                    label=f"{preset} ({arm})")
    ax.set_xlabel("labelled fraction of the training pool")
    ax.set_ylabel("test Dice (lesion-positive cases)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _as_number(amount: str) -> float | None:
    try:
        return float(amount)
    except ValueError:
        return None


def write_results_json(path: Path, rows: list[dict], tests: list[dict], results: list[RunResult], *,
                       baselines: dict | None = None, interactive: dict | None = None) -> Path:
    """Everything a model card needs: aggregated rows, tests, and each cell's record less its per-case table and
    training history (those stay in the cell's own results.json); the threshold baselines and the interactive arm
    when scored."""
    cells = [{k: v for k, v in r.to_dict().items() if k not in ("test_cases", "history")} for r in results]
    payload = {"rows": rows, "paired_tests": tests, "cells": cells, **({"baselines": baselines} if baselines else {}),
               **({"interactive": interactive} if interactive else {})}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=1, default=str))
    return Path(path)
