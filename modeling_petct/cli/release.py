"""`petct release`: build the released phantom foundation models and segmenter (the folders shipped in the package)."""

from __future__ import annotations

PLAN_HELP = {"full": "the plan the shipped models were built with (default)",
             "20x": "the paper's pretraining regime, 20x one quickstart fine-tuning cell (built and measured; it "
                    "validated below the shipped plan)",
             "tiny": "a seconds-long smoke run"}


def register(sub) -> None:
    from ..experiments.release import PLANS

    p = sub.add_parser("release", help="Rebuild the released phantom models (joint, PET-only and CT-only MAEs and the "
                                       "segmenter) on a synthetic cohort of their own (about 45 min on 2 CPU cores).")
    p.add_argument("-o", "--work-dir", default="petct-release", help="where the cohort and the training runs go")
    p.add_argument("--into", default=None, help="where the model folders go (default: the package's released/ folder)")
    p.add_argument("--plan", choices=list(PLANS), default="full",
                   help="; ".join(f"{name}: {PLAN_HELP[name]}" for name in PLANS))
    p.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.release import RELEASED_DIR, build_release

    command = "petct release" + (f" --plan {args.plan}" if args.plan != "full" else "")
    for name, folder in build_release(args.work_dir, args.into or RELEASED_DIR, plan=args.plan, command=command).items():
        print(f"{name}: {folder}")
    return 0
