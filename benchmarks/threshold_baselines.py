"""The classical threshold baselines on the 10-minute quickstart's own validation and test studies.

The same cohort seeds as `petct quickstart --seed S` (CohortPlan.pools: validation and test pools are identical; one
training study is written because a cohort needs one). Each rule's threshold and minimum volume is chosen on the
validation studies and scored once on the test studies (experiments.quickstart_baselines.threshold_results, what the
quickstart report runs), native PET grid, autoPET metrics.

    python benchmarks/threshold_baselines.py --root threshold-bench --seed 0
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from modeling_petct.experiments.cohort import CohortPlan, build_cohort
    from modeling_petct.experiments.quickstart import Budget
    from modeling_petct.experiments.quickstart_baselines import threshold_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="where the studies are written (reused when present)")
    parser.add_argument("--seed", type=int, default=0, help="the quickstart's --seed")
    args = parser.parse_args()
    start, budget = time.perf_counter(), Budget()
    plan = CohortPlan(train=1, val=budget.cohort.val, test=budget.cohort.test, held_out_test=0, unlabelled=())
    cohort = build_cohort(f"{args.root}/data", plan, args.seed, spacing=budget.spacing)
    print(f"cohort: {time.perf_counter() - start:.0f} s", flush=True)
    results = threshold_results(cohort)
    print(f"chosen and scored: {time.perf_counter() - start:.0f} s\n")
    print("| method | chosen on validation | validation score | test Dice [95% CI] | sensitivity | FP / study | cases (lesion+) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        a = r["aggregate"]
        print(f"| {name} | {r['label']} | {r['selection_score']:.3f} | {a['dice']:.3f} [{a['dice_ci95'][0]:.3f}, "
              f"{a['dice_ci95'][1]:.3f}] | {a['lesion_sensitivity']:.2f} | {a['fp_per_case']:.2f} | "
              f"{a['n_cases']} ({a['n_lesion_positive']}) |")
    with open(f"{args.root}/baselines.json", "w") as f:
        json.dump({m: {k: v for k, v in r.items() if k != "per_case"} for m, r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
