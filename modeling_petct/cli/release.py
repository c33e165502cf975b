"""`petct release`: build the released phantom foundation models and segmenter (the folders shipped in the package)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("release", help="Rebuild the released phantom models (joint, PET-only and CT-only MAEs and the "
                                       "segmenter) on a synthetic cohort of their own (~35 min on 2 CPU cores).")
    p.add_argument("-o", "--work-dir", default="petct-release", help="where the cohort and the training runs go")
    p.add_argument("--into", default=None, help="where the model folders go (default: the package's released/ folder)")
    p.add_argument("--plan", choices=("full", "tiny"), default="full",
                   help="full (default): the plan the shipped models were built with; tiny: a seconds-long smoke run")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.release import RELEASED_DIR, build_release

    command = "petct release" + (" --plan tiny" if args.plan == "tiny" else "")
    for name, folder in build_release(args.work_dir, args.into or RELEASED_DIR, plan=args.plan, command=command).items():
        print(f"{name}: {folder}")
    return 0
