"""Threshold baselines beside the predictions `petct evaluate` scores, on the same studies and ground truth. Evaluate
has no validation split of its own, so each rule is either given (``METHOD:T:MIN_ML``) or chosen on other labelled
studies (``--baseline-val``), never on the scored ones; the output says which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import PetCtInputError
from ..inference.threshold import METHODS, ThresholdRule


def parse_baselines(specs: list[str]) -> tuple[dict[str, ThresholdRule], tuple[str, ...]]:
    """(rules given as METHOD:T:MIN_ML, methods to choose: METHOD or all)."""
    given, to_choose = {}, []
    for spec in specs:
        method, *numbers = spec.split(":")
        if method == "all" and not numbers:
            to_choose += METHODS
        elif method not in METHODS or len(numbers) not in (0, 2):
            raise PetCtInputError("--baseline", f"{spec!r} is not METHOD, METHOD:T:MIN_ML or all (methods: "
                                                f"{', '.join(METHODS)}; e.g. suv-organs:3.5:2)")
        elif numbers:
            try:
                given[method] = ThresholdRule(method, float(numbers[0] or 0), float(numbers[1]))
            except ValueError as err:
                raise PetCtInputError("--baseline", f"{spec!r}: {err}") from None
        else:
            to_choose.append(method)
    both = sorted(set(given) & set(to_choose))
    if both:
        raise PetCtInputError("--baseline", f"{', '.join(both)} both given as a rule and to be chosen: pick one")
    return given, tuple(dict.fromkeys(to_choose))


@dataclass
class BaselinePlan:
    """What `petct evaluate --baseline` will read, checked before any voxel is: the rules, the scored studies' images
    (case -> manifest row) and the studies the other rules are chosen on."""

    given: dict
    to_choose: tuple
    scored: dict
    val_rows: list
    val_root: str | None


def plan_baselines(specs: list[str], val_root, studies_root, cases) -> BaselinePlan:
    """Refuses, one line each: a rule to choose without --baseline-val (or --baseline-val with nothing to choose),
    a scored case without a study folder, an unlabelled validation study, and a validation study that is scored."""
    from ..data.adapters import discover

    given, to_choose = parse_baselines(specs)
    if to_choose and not val_root:
        raise PetCtInputError("--baseline", f"{', '.join(to_choose)}: t and the minimum volume are chosen on other "
                                            "labelled studies (--baseline-val), never on the scored ones; or give the "
                                            "rule as METHOD:T:MIN_ML")
    if val_root and not to_choose:
        raise PetCtInputError("--baseline-val", "nothing to choose on it: every --baseline rule is given")
    if not Path(studies_root).is_dir():
        raise PetCtInputError(studies_root, "is not a folder of study folders: --baseline reads each scored study's "
                                            "PET from one (give --studies)")
    rows = {r["study"]: r for r in discover(studies_root, "folder")}
    missing = [c for c in cases if c not in rows]
    if missing:
        raise PetCtInputError(studies_root, f"no study folder (PET in SUV, CT) for case(s) {', '.join(missing[:5])}: "
                                            "--baseline reads each scored study's PET and organ map from a folder of "
                                            "study folders named like the cases (--studies, default --gt)")
    val_rows = discover(val_root, "folder") if val_root else []
    unlabelled = [r["study"] for r in val_rows if not r["label_path"]]
    if unlabelled:
        raise PetCtInputError(val_root, f"study {unlabelled[0]} has no label (SEG): rules are chosen on labelled studies")
    scored_pets = {Path(rows[c]["pet_path"]).resolve() for c in cases}
    shared = [r["study"] for r in val_rows if r["study"] in cases or Path(r["pet_path"]).resolve() in scored_pets]
    if shared:
        raise PetCtInputError(val_root, f"holds scored studies ({', '.join(shared[:5])}): choose the rules on other "
                                        "studies than the ones scored")
    return BaselinePlan(given, to_choose, {c: rows[c] for c in cases}, val_rows, str(val_root) if val_root else None)


def _studies(rows_and_labels):
    """Studies read one at a time from (study id, manifest row, label file)."""
    from ..data.io import read_pet, read_volume
    from .baselines import study_of

    for study_id, row, label in rows_and_labels:
        yield study_of(study_id, read_pet(row["pet_path"]), read_volume(label, modality="SEG"), row.get("organ_path"))


def score_baselines(plan: BaselinePlan, pairs: dict, per_case: dict, *, n_boot: int = 2000) -> dict:
    """Each baseline on the scored studies against their ground truth (``pairs``: case -> (prediction, truth)): an
    ``experiments.baselines.entry`` saying how its rule was chosen, with the predictions' (``per_case``) paired Dice
    difference from it; or {"skipped": why}."""
    from ..training.results import SELECTION_SHORT
    from .baselines import SELECTION, choose_rules, entry, paired_difference, score_rules

    val = [(r["study"], r, r["label_path"]) for r in plan.val_rows]
    chosen, skipped = choose_rules(plan.to_choose, _studies(val), "validation studies") if plan.to_choose else ({}, {})
    rules = {**plan.given, **{m: rule for m, (rule, _) in chosen.items()}}
    scored, more = score_rules(rules, _studies((c, plan.scored[c], gt) for c, (_, gt) in pairs.items()))
    skipped.update(more)
    out = {}
    for method in [*plan.given, *plan.to_choose]:
        if method in skipped:
            out[method] = {"skipped": skipped[method]}
            continue
        how = {"chosen": "given on the command line"} if method in plan.given else {
            "chosen": f"chosen on {len(val)} validation studies in {plan.val_root} by {SELECTION_SHORT[SELECTION]}",
            "selection_score": chosen[method][1], "validation_studies": [v[0] for v in val]}
        out[method] = {**entry(rules[method], scored[method], n_boot=n_boot, **how),
                       "predictions_minus_baseline": paired_difference(per_case, scored[method])}
    return out
