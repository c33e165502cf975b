"""`petct quickstart`: synthetic cohort -> harmonise -> MAE -> fine-tune (MAE vs scratch) -> probes -> evaluate -> segment -> report."""

from __future__ import annotations


from ..experiments.quickstart import BUDGETS, DEFAULT_BUDGET  # argparse-cheap: no torch, no numpy


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="Run the whole method offline on a synthetic cohort (~10 min on 2 CPU cores) and write a report.")
    p.add_argument("-o", "--output", default="petct-quickstart", help="output folder (replaced if it holds an earlier quickstart)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", choices=("corrected", "faithful"), default="corrected",
                   help="corrected (default): test studies kept out of pretraining and selection, equal steps, LP-FT + "
                        "warm-up + zero head; faithful: the authors' notebooks (pretrain on every scan, epoch schedule, "
                        "random head, checkpoint chosen on the test set)")
    p.add_argument("--budget", choices=[name for name in BUDGETS if name != "tiny"], default=DEFAULT_BUDGET,
                   help="; ".join(f"{name}{' (default)' * (name == DEFAULT_BUDGET)}: {budget.summary()}"
                                  for name, budget in BUDGETS.items() if name != "tiny").replace("%", "%%"))
    p.add_argument("--foundation", choices=("released", "in-run"), default=None,
                   help="released (default): fine-tune from the phantom foundation models shipped with the package "
                        "(built once by `petct release`); in-run: pretrain the MAEs in this run (the faithful protocol "
                        "always does)")
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (tests): too small to learn anything")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.quickstart import run_quickstart

    report = run_quickstart(args.output, tiny=args.tiny, seed=args.seed, protocol=args.protocol, budget=args.budget,
                            foundation=args.foundation)
    print(report)
    return 0
