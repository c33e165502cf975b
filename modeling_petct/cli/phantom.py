"""`petct phantom`: write a synthetic whole-body FDG PET/CT cohort with exact lesion masks."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("phantom", help="write a synthetic FDG PET/CT cohort (NIfTI or DICOM) with lesion masks")
    p.add_argument("-o", "--output", required=True, help="output folder; one sub-folder per study")
    p.add_argument("-n", "--num-studies", type=int, default=8, help="number of studies (default 8)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed; the same seed gives the same cohort")
    p.add_argument("--size", choices=("small", "autopet"), default="small",
                   help="small: PET 64x64x96 at 4 mm (fast); autopet: PET 400x400x326 at 2.04x2.04x3 mm")
    p.add_argument("--format", dest="fmt", choices=("nifti", "dicom"), default="nifti",
                   help="nifti: PET/CT/SEG.nii.gz; dicom: PET/ and CT/ DICOM series (PET in Bq/ml with SUV tags) + SEG.nii.gz")
    p.add_argument("--lesion-free-fraction", type=float, default=0.2, help="fraction of lesion-free controls (default 0.2)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..data.synthetic.phantom import write_phantom_cohort
    from ..errors import PetCtInputError

    from .checks import check_output_folder

    check_output_folder(args.output)
    if args.num_studies < 1:
        raise PetCtInputError("-n", "need at least one study")
    if not 0.0 <= args.lesion_free_fraction <= 1.0:
        raise PetCtInputError("--lesion-free-fraction", "must be between 0 and 1")

    def progress(done, total, study_id):
        print(f"[{done}/{total}] {study_id}", flush=True)

    dirs = write_phantom_cohort(args.output, args.num_studies, args.seed, size=args.size, fmt=args.fmt,
                                lesion_free_fraction=args.lesion_free_fraction, progress=progress)
    print(f"wrote {len(dirs)} {args.size} {args.fmt} studies to {args.output}")
    return 0
