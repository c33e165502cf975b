"""`petct harmonize`: build a manifest of studies and harmonise them into a training cache (resumable, parallel)."""

from __future__ import annotations

from ..data.conventions import DEFAULT_NORMALIZATION, HARMONISED_SPACING_MM, NORMALIZATIONS

MANIFEST_DIR = "_manifest"  # inside the cache folder; a leading '_' can never be a study id
SUMMARY_FILE = "_harmonize_summary.json"


def register(sub) -> None:
    p = sub.add_parser("harmonize", help="harmonise PET/CT studies (3x2x2 mm, body crop, normalised) into a cache")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="a manifest folder saved by an earlier run (CACHE/_manifest) or build_manifest")
    src.add_argument("--input", help="dataset root folder, read in the layout of --source")
    src.add_argument("--pet", help="one study: PET file or DICOM folder (with --ct)")
    p.add_argument("--source", choices=("autopet", "deeppsma", "spade", "vimed", "folder"), default="folder",
                   help="layout of --input (default folder: one sub-folder per study, or an nnU-Net imagesTr set)")
    p.add_argument("--ct", help="one study: CT file or DICOM folder")
    p.add_argument("--label", help="one study: lesion mask on the PET grid (optional)")
    p.add_argument("--study-id", help="one study: its id in the cache (default: the PET's folder name)")
    # organ maps: found beside each PET by default (organs.nii.gz or a TotalSegmentator folder)
    p.add_argument("--organs", help="one study: TotalSegmentator output for its CT (multilabel file or mask folder)")
    p.add_argument("--organs-dir", help="with --input: organ maps as ORGANS_DIR/<study_id>.nii.gz or <study_id>/")
    p.add_argument("-o", "--output", required=True, help="cache folder (created; finished studies are skipped)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=DEFAULT_NORMALIZATION,
                   help="zscore: per volume and channel, as the paper; clinical: nnU-Net AutoPET CT window and SUV clip")
    p.add_argument("--spacing", type=float, nargs=3, default=HARMONISED_SPACING_MM, metavar=("Z", "Y", "X"),
                   help="target voxel size in mm (default 3 2 2)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="stored image type; float16 halves disk and read bandwidth")
    p.add_argument("--splits", help="AutoPET split CSV (subject,study,role,in_10pct,in_30pct,in_100pct) for autopet rows")
    p.add_argument("--exclude-test", action="store_true", help="leave the AutoPET test split out (pretraining corpus)")
    p.add_argument("--shard", metavar="I/N", help="harmonise only shard I of N (0-based) of the manifest rows, e.g. one "
                   "per node writing into one shared cache")
    p.add_argument("--overwrite", action="store_true", help="redo studies already in the cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none in logs and pipes anyway)")
    p.set_defaults(run=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from ..atomic import atomic_path
    from ..data.adapters import check_study_ids, safe_id
    from ..data.cache import StudyCache, harmonize_many
    from ..data.manifest import build_manifest, load_manifest, save_manifest
    from ..errors import PetCtInputError
    from .checks import check_inputs_exist, check_not_over_inputs, check_output_folder, positive_finite, progress_wanted

    if args.workers < 1:
        raise PetCtInputError("--workers", "must be at least 1")
    args.spacing = positive_finite(args.spacing, "--spacing")
    out = Path(args.output)
    check_inputs_exist(args.manifest, args.input, args.pet, args.ct, args.label, args.splits)
    check_output_folder(out, inputs=[args.input, args.pet, args.ct, args.label])  # CACHE/_manifest may stay
    if args.organs and (not args.pet or not Path(args.organs).exists()):
        raise PetCtInputError(args.organs, "--organs: no such file or folder" if args.pet else
                              "--organs is for one study (--pet); with --input use --organs-dir")
    if args.organs_dir and not args.input:
        raise PetCtInputError("--organs-dir", "only with --input (a dataset folder)")
    if args.manifest:
        manifest = load_manifest(args.manifest)
        if args.exclude_test:
            manifest = manifest.filter(lambda r: r["split"] != "test")
    elif args.input:
        manifest = build_manifest((args.source, args.input), splits_csv=args.splits, exclude_test=args.exclude_test,
                                  organs_dir=args.organs_dir)
    else:
        if not args.ct:
            raise PetCtInputError("--pet", "a single study needs --ct as well")
        study_id = args.study_id or safe_id(Path(args.pet).resolve().parent.name)
        row = {"study_id": study_id, "source": "folder", "subject": study_id, "study": study_id, "pet_path": args.pet,
               "ct_path": args.ct, "label_path": args.label or "", "suv_status": "", "organ_path": args.organs or ""}
        manifest = build_manifest(rows=[row])
    check_study_ids(manifest, args.manifest or args.input or "--study-id")
    if args.shard:
        index, count = _shard(args.shard)
        if count > len(manifest):
            raise PetCtInputError("--shard", f"{count} shards of {len(manifest)} studies: shard {index} would be "
                                             f"empty; use at most {len(manifest)} shards")
        manifest = manifest.shard(num_shards=count, index=index, contiguous=True)
    if len(manifest) == 0:
        raise PetCtInputError(args.manifest or args.input, "no studies to harmonise")
    for row in manifest.select_columns(["pet_path", "ct_path", "label_path"]):  # a cache over a source deletes it
        check_not_over_inputs(out, [row["pet_path"], row["ct_path"], row["label_path"] or None])
    cache = StudyCache(out)
    cache.check_replaceable(manifest["study_id"])
    out.mkdir(parents=True, exist_ok=True)
    if not args.manifest and not args.shard:
        save_manifest(manifest, out / MANIFEST_DIR)
    print(f"{len(manifest)} studies -> {out} ({args.normalization}, {args.dtype}, {args.workers} worker(s))", flush=True)

    summary = harmonize_many(manifest, cache, workers=args.workers, normalization=args.normalization,
                             spacing=args.spacing, dtype=args.dtype, overwrite=args.overwrite,
                             progress=not args.no_progress and progress_wanted(args.quiet))
    record = {"written": summary.written, "already_done": summary.already_done, "failed": summary.failed,
              "normalization": args.normalization, "spacing": list(args.spacing), "dtype": args.dtype}
    with atomic_path(out / _summary_name(args.shard)) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    print(summary.report())
    return 1 if summary.failed else 0


def _shard(text: str) -> tuple[int, int]:
    from ..errors import PetCtInputError

    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise PetCtInputError("--shard", f"expected I/N with 0 <= I < N, got {text!r}")
    return index, count


def _summary_name(shard: str | None) -> str:
    """Each shard of a multi-node run keeps its own summary (one file would hold only the last node's failures)."""
    if not shard:
        return SUMMARY_FILE
    index, count = _shard(shard)
    return SUMMARY_FILE.replace(".json", f"_shard{index}of{count}.json")
