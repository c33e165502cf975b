"""The interactive arm of a study: each click-guided cell (``--interactive`` in the grid) scored by the interactive
protocols on its test studies (evaluation/interactive.py), as the network gives it and as the Space shows it (with
the classical edits where the network leaves a clicked lesion empty), beside the same network trained without click
inputs (its automatic pass) and the classical 41%-of-SUVmax tool alone under the same simulated clicks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..evaluation.interactive import (EDITED, PROTOCOLS, evaluate_interactive, evaluate_isocontour_tool,
                                      plot_dice_vs_clicks)
from ..evaluation.statistics import bootstrap_ci, paired_wilcoxon
from ..training.results import INTERACTIVE_SUFFIX, RunResult

CLICKS_FILE = "interactive.json"  # in a click-guided cell's folder: {protocol: {"summary", "cases"}}
TOOL_FILE = "interactive_41pct.json"  # in the study folder: the 41% tool's curves, per test study
PROTOCOL_NAMES = {"autopet-iv": "autoPET IV (10 + 10 clicks)", "error-driven": "error-driven (10 clicks)"}


def score_clicks(cell_dir: str | Path, cache_dir: str, *, overlap: float, device: str = "cpu") -> Path:
    """The selected model of a trained click-guided cell under the interactive protocols on its test studies ->
    ``CLICKS_FILE`` in the cell folder (kept: a finished cell is not scored again)."""
    from ..data.cache import open_cache
    from ..inference import InferenceSettings
    from ..models.modeling_petct import PetCtForSegmentation

    out = Path(cell_dir) / CLICKS_FILE
    if not out.exists():
        result = RunResult.load(Path(cell_dir))
        model = PetCtForSegmentation.from_pretrained(result.selected_model).eval()
        scores = evaluate_interactive(model, open_cache(cache_dir), result.split["test"],
                                      settings=InferenceSettings(overlap=overlap), device=device, space_edits=True)
        with atomic_path(out) as tmp:
            Path(tmp).write_text(json.dumps(scores, default=float))
    return out


def cell_folder(result: RunResult) -> Path:
    """A cell's folder: the one holding its selected model (best/ or last/)."""
    return Path(result.selected_model).parent


def interactive_report(results: list[RunResult], study_dir: Path, cache_dir: str) -> dict | None:
    """{"lines": a markdown table and its tests, "json": per group and protocol, "figure": Dice vs clicks} for the
    click-guided cells of a study, None when it has none. Per-study values are averaged over seeds; means carry
    bootstrap 95% CIs over the test studies (Dice: the lesion-positive ones)."""
    groups = {}
    for r in results:
        if r.arm.endswith(INTERACTIVE_SUFFIX):
            groups.setdefault((r.label, r.arm, r.amount), []).append(r)
    if not groups:
        return None
    lines, rows, curves = _header(), {}, {}
    for (label, arm, amount), cells in sorted(groups.items()):
        ids = cells[0].split["test"]
        scored = [json.loads((cell_folder(r) / CLICKS_FILE).read_text()) for r in cells]
        twin = [r for r in results if (r.label, r.arm, r.amount) == (label, arm[: -len(INTERACTIVE_SUFFIX)], amount)
                and r.split_seed in {c.split_seed for c in cells}]
        tool = _tool_curves(study_dir, cache_dir, ids)
        for protocol in PROTOCOLS:
            row = {"network": _summary([s[protocol]["cases"] for s in scored], ids, twin),
                   "network + Space edits": _summary([s[protocol + EDITED]["cases"] for s in scored], ids, twin),
                   "41% tool": _summary([tool[protocol]["cases"]], ids, [])}
            rows[f"{label} / {arm} / {amount} / {protocol}"] = row
            lines += [_row(f"{arm}, {amount}", protocol, row["network"]),
                      _row(f"{arm}, {amount}, with the Space's edits", protocol, row["network + Space edits"]),
                      _row("41%-of-SUVmax tool alone", protocol, row["41% tool"])]
            curves[f"{arm}, {amount}, {protocol}"] = {"summary": _mean_curve([s[protocol] for s in scored])}
            curves[f"{arm}, {amount}, {protocol}, Space edits"] = {
                "summary": _mean_curve([s[protocol + EDITED] for s in scored])}
            curves[f"41% tool, {protocol}"] = tool[protocol]
    figure = study_dir / "dice_vs_clicks.png"
    plot_dice_vs_clicks(curves, figure)
    lines += ["", _note(rows)]
    return {"lines": lines, "json": rows, "figure": figure}


def table_section(clicks: dict | None) -> str:
    """The interactive arm's part of a study's table.md ('' when it has none)."""
    return "\n".join(["", "### Clicks: the interactive arm", "", *clicks["lines"]]) if clicks else ""


def _tool_curves(study_dir: Path, cache_dir: str, ids: list[str]) -> dict:
    """The 41% tool's curves on these studies, computed once per study folder."""
    from ..data.cache import open_cache

    path = study_dir / TOOL_FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("ids") != ids:
        saved = {"ids": ids, **evaluate_isocontour_tool(open_cache(cache_dir), ids)}
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(saved, default=float))
    return saved


def _summary(runs: list[dict], ids: list[str], twin: list[RunResult]) -> dict:
    """Step 0 and the last step, the gain and the AUC of Dice, per study averaged over seeds; with the twin (the
    same arm without click inputs), its automatic Dice and the tests of the last step against it and against 0
    clicks."""
    def per_study(step, key):
        return np.array([_nanmean([run[sid][step][key] for run in runs]) for sid in ids], float)

    def auc(sid):
        return _nanmean([np.trapezoid([s["dice"] for s in run[sid]]) for run in runs])

    first, last = per_study(0, "dice"), per_study(-1, "dice")
    positive = ~np.isnan(first)
    out = {"n_studies": len(ids), "n_lesion_positive": int(positive.sum()), **_mean_ci("dice_0", first),
           **_mean_ci("dice_last", last), **_mean_ci("dice_gain", last - first),
           **_mean_ci("auc_dice", np.array([auc(s) for s in ids])[positive]),
           "fpv_ml_0": _nanmean(per_study(0, "fpv_ml")), "fpv_ml_last": _nanmean(per_study(-1, "fpv_ml")),
           "fnv_ml_last": _nanmean(per_study(-1, "fnv_ml")),
           "lesion_f1_last": _nanmean(per_study(-1, "lesion_f1")),
           "last_vs_0_clicks": paired_wilcoxon(last, first)}
    if twin:
        automatic = np.array([_nanmean([r.test_cases[s]["dice"] for r in twin]) for s in ids], float)
        out |= {"twin_dice": _nanmean(automatic), "last_vs_twin": paired_wilcoxon(last, automatic)}
    return out


def _nanmean(values) -> float:
    """The mean of the defined values (Dice and F1 are undefined on a lesion-free study), NaN if none."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _mean_ci(key: str, values: np.ndarray) -> dict:
    values = values[~np.isnan(values)]
    low, high = bootstrap_ci(values) if len(values) else (float("nan"), float("nan"))
    return {key: float(np.mean(values)) if len(values) else float("nan"), f"{key}_ci95": [float(low), float(high)]}


def _mean_curve(scored: list[dict]) -> dict:
    """Mean Dice per step over seeds (for the figure)."""
    steps = [[s["dice"] for s in scored_run["summary"]["steps"]] for scored_run in scored]
    mean = np.nanmean(np.array(steps, float), axis=0)
    return {"steps": [{"dice": float(d)} for d in mean], "auc_dice": float(np.trapezoid(mean))}


def _header() -> list[str]:
    return ["| model | clicks | Dice, 0 clicks | Dice, last step | gain | FPV ml, 0 → last | FNV ml, last | "
            "lesion F1, last | AUC Dice (of 10) |", "|---|---|---|---|---|---|---|---|---|"]


def _row(name: str, protocol: str, s: dict) -> str:
    def ci(key, form=".3f"):
        low, high = s[key + "_ci95"]
        return f"{s[key]:{form}} [{low:{form.lstrip('+')}}, {high:{form.lstrip('+')}}]"

    return (f"| {name} | {PROTOCOL_NAMES[protocol]} | {ci('dice_0')} | {ci('dice_last')} | {ci('dice_gain', '+.3f')} | "
            f"{s['fpv_ml_0']:.2f} → {s['fpv_ml_last']:.2f} | {s['fnv_ml_last']:.2f} | {s['lesion_f1_last']:.3f} | "
            f"{ci('auc_dice', '.2f')} |")


def _note(rows: dict) -> str:
    """The paired tests in words, per group and protocol."""
    parts = []
    for name, row in rows.items():
        for variant in ("network", "network + Space edits"):
            s = row[variant]
            text = f"{name}, {variant}: last step vs 0 clicks {_test(s['last_vs_0_clicks'])}"
            if "twin_dice" in s:
                text += (f"; vs the same arm without click inputs (its automatic Dice {s['twin_dice']:.3f}) "
                         f"{_test(s['last_vs_twin'])}")
            parts.append(text)
    return ("Paired Wilcoxon over the lesion-positive test studies (per-study Dice averaged over seeds): "
            + "; ".join(parts) + ". Dice counts lesion-positive studies only; FPV and FNV every test study.")


def _test(t: dict) -> str:
    if not t.get("n"):
        return "(no pairs)"
    return f"median difference {t['median_difference']:+.3f}, p = {t['pvalue']:.3g}, n = {t['n']}"
