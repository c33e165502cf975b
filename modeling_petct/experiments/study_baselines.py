"""The threshold baselines of a label-efficiency study: for each grid seed's split, each rule's t and minimum volume
chosen on that split's validation studies and scored on its test studies (native PET grid, read through the files the
cache recorded), test studies pooled over seeds as the networks' rows pool them; then the best network arm by
validation against the organ-excluded (else plain) threshold, paired by (seed, test study)."""

from __future__ import annotations

from dataclasses import asdict

from ..errors import PetCtInputError
from ..inference.threshold import METHODS


def baseline_methods(values: list[str]) -> tuple[str, ...]:
    """`--baselines`: "all" (the default), "none", or threshold methods by name."""
    lowered = [v.lower() for v in values]
    if lowered == ["all"]:
        return METHODS
    if lowered in (["none"], []):
        return ()
    unknown = [v for v in values if v not in METHODS]
    if unknown:
        raise PetCtInputError("--baselines", f"unknown method(s) {unknown}: give all, none, or among {', '.join(METHODS)}")
    return tuple(dict.fromkeys(values))


def study_baselines(results: list, cache, methods, *, n_boot: int = 1000, log=print) -> dict:
    """{"methods": {method: record or {"skipped": why}}, "reference": method or None, "unread": [ids]}: each rule
    chosen on each split's validation ids only, scored on its test ids; test cases keyed "seed<s>/<study>"."""
    from .baselines import cached_study, chosen_and_scored, reference_of

    splits = {}
    for r in results:
        splits.setdefault(r.split_seed, (tuple(r.split.get("val", ())), tuple(r.split.get("test", ()))))
    unread: set[str] = set()

    def studies(ids):
        for study_id in ids:
            study = cached_study(cache, study_id)
            if study is None:
                unread.add(study_id)
            else:
                yield study

    done, per_seed = {}, {}
    for seed, split in sorted(splits.items()):
        if split not in done:
            log(f"threshold baselines: chosen on {len(split[0])} validation studies, scored on {len(split[1])} test "
                "studies")
            done[split] = chosen_and_scored(studies(split[0]), studies(split[1]), methods)
        per_seed[seed] = done[split]
    pooled = {m: _pooled({seed: b[m] for seed, b in per_seed.items()}, n_boot) for m in methods}
    return {"methods": pooled, "reference": reference_of(pooled), "unread": sorted(unread)}


def _pooled(runs: dict, n_boot: int) -> dict:
    """One method's per-seed results as one record: its rule per seed, test cases of every seed, their aggregate."""
    from ..evaluation import aggregate

    skipped = sorted({b["skipped"] for b in runs.values() if "skipped" in b})
    if skipped:
        return {"skipped": "; ".join(skipped)}
    labels = {seed: b["rule"].label for seed, b in runs.items()}
    per_case = {f"seed{seed}/{sid}": m for seed, b in runs.items() for sid, m in b["per_case"].items()}
    return {"label": next(iter(labels.values())) if len(set(labels.values())) == 1 else
            "; ".join(f"seed {seed}: {label}" for seed, label in labels.items()),
            "rules": {seed: asdict(b["rule"]) for seed, b in runs.items()},
            "selection_scores": {seed: b["selection_score"] for seed, b in runs.items()},
            "per_case": per_case, "aggregate": aggregate(per_case, n_boot=n_boot)}


def best_arm_versus_reference(baselines: dict, rows: list[dict], results: list) -> dict | None:
    """The fine-tuning group (preset, arm, labels) of best mean validation score against the reference baseline,
    paired by (grid seed, test study); None without a reference or a fine-tuning cell."""
    from .baselines import paired_difference
    from .quickstart_report import arm_candidates

    name = baselines["reference"]
    candidates = [{**c, "preset": preset} for preset in dict.fromkeys(r["preset"] for r in rows)
                  for c in arm_candidates({"rows": [r for r in rows if r["preset"] == preset],
                                           "results": [c for c in results if c.label == preset]})]
    if name is None or not candidates:
        return None
    best = max(candidates, key=lambda c: c["val"])
    cases = {f"seed{c.split_seed}/{sid}": m for c in best["cells"] for sid, m in c.test_cases.items()}
    return {"preset": best["preset"], "arm": best["arm"], "amount": best["amount"], "validation_score": best["val"],
            "seeds": len(best["cells"]), "reference": name,
            **paired_difference(cases, baselines["methods"][name]["per_case"])}


def study_lines(baselines: dict, versus: dict | None) -> list[str]:
    """The baselines' section of the study's table.md."""
    from .baselines import MIN_ML_GRID
    from .baselines_report import REFERENCE_TEXT, baseline_table, difference_text
    from .report import format_value

    lines = ["", "## Classical threshold baselines, same test studies", "",
             "Each rule's SUV threshold t and minimum lesion volume chosen on each grid seed's validation studies (grid "
             f"in `experiments.baselines`; minimum volumes {', '.join(f'{v:g}' for v in MIN_ML_GRID)} ml) by the "
             "networks' own selection score, then scored once on that seed's test studies, native PET grid, same "
             "metrics as the networks; test studies pooled over seeds as in the rows above. Organs come from each "
             "study's organ map.", "", *baseline_table(baselines["methods"])]
    if baselines["unread"]:
        lines += ["", f"{len(baselines['unread'])} studies left out of the baselines (no PET or label file on the "
                      f"native PET grid recorded in the cache), e.g. {baselines['unread'][0]}."]
    if versus and versus["n"]:
        reference = baselines["methods"][versus["reference"]]
        lines += ["", f"Best network arm by validation (each fine-tuning group ranked by its cells' mean validation "
                      f"score): **{versus['preset']} {versus['arm']} at {versus['amount']}** ({versus['seeds']} "
                      f"seed(s), validation score {format_value(versus['validation_score'])}); against the "
                      f"{REFERENCE_TEXT[versus['reference']]} ({reference['label']}), paired by test study, network "
                      f"minus threshold: {difference_text(versus)}."]
    return lines + [""]


def study_baseline_report(methods, cache_dir: str, rows: list[dict], results: list, *, log=print) -> dict | None:
    """{"json": what results.json keeps, "lines": the table.md section}; None when no baseline was asked for."""
    if not methods:
        return None
    from ..data.cache import open_cache

    baselines = study_baselines(results, open_cache(cache_dir, labelled=True), methods, log=log)
    versus = best_arm_versus_reference(baselines, rows, results)
    return {"json": {**baselines, "best_arm_versus_reference": versus}, "lines": study_lines(baselines, versus)}
