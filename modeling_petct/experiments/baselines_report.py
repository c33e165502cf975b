"""How the threshold baselines read in a report: one table (the rule each method chose and how, its metrics with
CIs, why a method was not scored) and the paired Dice difference of a network against the reference baseline."""

from __future__ import annotations

from .report import format_value

REFERENCE_TEXT = {"suv-organs": "organ-excluded threshold", "suv": "plain SUV threshold"}  # baselines.REFERENCES
HEADER = ["| method | rule | Dice [95% CI] | lesion sensitivity | FP lesions / case | FPV ml | FNV ml | studies |",
          "|---|---|---|---|---|---|---|---|"]


def table_row(name: str, rule: str, a: dict) -> str:
    return (f"| {name} | {rule} | {format_value(a['dice'], a['dice_ci95'])} | "
            f"{format_value(a['lesion_sensitivity'], digits=2)} | {format_value(a['fp_per_case'], digits=2)} | "
            f"{format_value(a['fpv_ml'], digits=2)} | {format_value(a['fnv_ml'], digits=2)} | {a['n_cases']} |")


def baseline_table(baselines: dict, extra_rows=()) -> list[str]:
    """The scored baselines (and ``extra_rows``: (name, rule text, aggregate)) as markdown, then the skipped ones."""
    rows = [table_row(m, b["label"], b["aggregate"]) for m, b in baselines.items() if "aggregate" in b]
    skipped = [f"- {m}: not scored ({b['skipped']})" for m, b in baselines.items() if "skipped" in b]
    return [*HEADER, *rows, *(table_row(*row) for row in extra_rows), *([""] + skipped if skipped else [])]


def difference_text(t: dict) -> str:
    """A paired_difference as words: "Dice +0.051 [0.010, 0.090] (p = 0.012, 40 pairs)"."""
    sign = "+" if t["diff"] >= 0 else ""
    return f"Dice {sign}{format_value(t['diff'], t['ci'])} (p = {format_value(t['p'])}, {t['n']} pairs)"
