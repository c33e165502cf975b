"""`petct segment`: lesion mask of one PET/CT study (or of every study in a folder) on the PET's own grid, with
optional lesion table and DICOM SEG.

Order of work: every argument and output path is checked, then the model is loaded, then the headers are sized
against memory, and only then are voxels read. The parser is built from small groups so other flags slot in.
"""

from __future__ import annotations

import contextlib
import math

from ..inference.settings import BACKENDS
from .checks import DISK_FULL, IMAGE_INPUTS, IMAGE_OUTPUTS

SUMMARY_FILE = "segment_summary.json"  # folder mode: per-study totals and failures


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment FDG-avid lesions of one PET/CT study or a folder of studies")
    where = p.add_argument_group("inputs (one study: --pet and --ct; many: -i)")
    where.add_argument("--pet", help=f"PET in SUV: {IMAGE_INPUTS}")
    where.add_argument("--ct", help=f"CT in HU: {IMAGE_INPUTS}")
    where.add_argument("-i", "--input", metavar="STUDIES", help="folder of studies, in a layout `petct harmonize "
                       "--input` reads (--source); writes OUT/<study>/lesions.{nii.gz,csv,json,settings.json}, model loaded once")
    where.add_argument("--source", choices=("autopet", "deeppsma", "vimed", "folder"), default="folder",
                       help="layout of -i (default folder: one sub-folder per study with PET/CT files, or nnU-Net)")
    where.add_argument("--continue", dest="resume", action="store_true",
                       help="with -i: skip studies whose outputs exist (an interrupted run goes on)")
    p.add_argument("-o", "--output", required=True, help="mask to write (.nii.gz, .nii, .mha, .nrrd) on the PET grid; "
                   "with -i the output folder")
    p.add_argument("--method", choices=("model", "threshold"), default="model",
                   help="model (default): a network (--model); threshold: the TMTV workflow, SUV >= --suv-threshold "
                        "and components >= --min-lesion-ml (default 3 ml) on the PET grid, no network")
    p.add_argument("--suv-threshold", type=_suv, default=4.0, metavar="SUV", help="--method threshold: the SUV cut "
                   "(default 4, the international TMTV benchmark's)")
    p.add_argument("--model", help="model folder (config.json + model.safetensors), a training run folder, or a "
                   "Hugging Face Hub id in the cache")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.add_argument("--stats", metavar="CSV", help="write one row per lesion (SUVmax/mean/peak, volume, TLG, centroid)")
    p.add_argument("--stats-json", nargs="?", const=True, metavar="JSON",
                   help="lesion table and study totals as JSON (default path: the --stats CSV with .json)")
    p.add_argument("--dicom-seg", metavar="DCM", help="write a DICOM Segmentation referencing the PET series (DICOM PET only)")
    p.add_argument("--fast", action="store_true", help="no window overlap: fastest, slightly less accurate at seams")
    p.add_argument("--tta", action="store_true", help="average over in-plane flips (4x the compute); only "
                   "for a model trained with flips: petct-fm's recipes, like the authors', do not flip, and on such a "
                   "model it lowered Dice (0.62 -> 0.43 on validation phantoms, measured)")
    p.add_argument("--min-lesion-ml", type=_volume_ml, metavar="ML", help="drop lesion components smaller than this "
                   "(ml); default: the model's own (config.min_lesion_ml, chosen on validation in training); 0 keeps all")
    p.add_argument("--min-lesion-confidence", type=_probability, metavar="P", help="drop lesion components whose "
                   "peak lesion probability is below P; default: the model's own (config.min_lesion_confidence, chosen "
                   "on validation in training); 0 keeps all")
    suv = p.add_argument_group("PET in Bq/ml (NIfTI/MHA/NRRD): convert to SUVbw (recorded in the JSON totals)")
    suv.add_argument("--weight-kg", type=float, help="patient weight in kg")
    suv.add_argument("--dose-mbq", type=float, help="injected F-18 activity in MBq (at --injection-time)")
    suv.add_argument("--injection-time", metavar="HH:MM[:SS]", help="injection clock time (or ISO date-time)")
    suv.add_argument("--scan-time", metavar="HH:MM[:SS]", help="scan start the PET is decay-corrected to")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="CPU runtime. auto: the fastest exported one that passed its accuracy check against PyTorch "
                        "(needs pip install 'petct-fm[cpu-fast]'; exported once per model), else torch")
    # organs: where each lesion lies; see modeling_petct/data/organs.py
    p.add_argument("--organs", metavar="FILE_OR_FOLDER", help="TotalSegmentator output for this CT (multilabel "
                   "file or its folder of masks), or 'auto' to run TotalSegmentator if installed; default: the "
                   "organ-aware model's own organ map. Adds organ/physiological columns to the lesion table")
    p.add_argument("--organs-out", metavar="FILE", help="write the organ map on the PET grid (labels as in the JSON "
                   "totals' organ_labels; organ-aware model or --organs)")
    p.add_argument("--clicks", metavar="JSON", help="click-guided model: a Grand Challenge 'Multiple points' file "
                   "(points named tumor or background, autoPET IV's format) refining the mask; one study only")
    p.add_argument("--clicks-space", choices=("voxel", "world", "world-lps"), default="voxel",
                   help="coordinates of --clicks: PET voxel indices in the file's array order (i, j, k; nibabel's, "
                        "the default), world RAS mm (NIfTI), or world LPS mm (DICOM/ITK)")
    p.add_argument("--suppress-physiological", action="store_true", help="drop lesions with >= 90%% of their voxels "
                   "in brain, urinary bladder or kidneys (off by default; needs organs)")
    p.set_defaults(run=run)


def _number(text: str, top: float, what: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= top):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _volume_ml(text: str) -> float:
    return _number(text, math.inf, "a volume >= 0 in ml")


def _suv(text: str) -> float:
    return _number(text, math.inf, "an SUV >= 0")


def _probability(text: str) -> float:
    return _number(text, 1.0, "a probability in [0, 1]")


CONVERSION_FLAGS = ("weight_kg", "dose_mbq", "injection_time", "scan_time")


def run(args) -> int:
    from ..errors import PetCtInputError

    if args.input and (args.pet or args.ct):
        raise PetCtInputError("-i", "give either -i STUDIES or --pet and --ct, not both")
    if args.input:
        return _run_folder(args)
    if not args.pet or not args.ct:
        raise PetCtInputError("--pet" if not args.pet else "--ct", "one study needs --pet and --ct (or -i STUDIES)")
    if args.resume:
        raise PetCtInputError("--continue", "only with -i STUDIES (a folder of studies)")
    return _run_one(args)


def _check_single_outputs(args) -> dict:
    """Every output of one study: known suffix, writable, distinct, and never one of the inputs."""
    from pathlib import Path

    from ..errors import PetCtInputError
    from ..outputs.files import settings_path
    from .checks import check_inputs_exist, check_output_file

    check_inputs_exist(args.pet, args.ct)
    organs = args.organs if args.organs not in (None, "auto") else None
    check_inputs_exist(organs)
    if args.clicks:
        from ..data.clicks import load_click_file

        load_click_file(args.clicks, args.clicks_space)  # a broken click file stops here, before the model loads
    outputs = {"-o": args.output, "--stats": args.stats, "--stats-json": _stats_json_path(args),
               "--dicom-seg": args.dicom_seg, "--organs-out": args.organs_out, "the settings record": None}
    outputs["the settings record"] = settings_path(args.output) if args.output else None
    suffixes = {"--stats": (".csv",), "--stats-json": (".json",), "--dicom-seg": (".dcm",),
                "the settings record": (".json",)}
    inputs = (args.pet, args.ct, organs, args.model, args.clicks)
    for flag, path in outputs.items():
        check_output_file(path, suffixes=suffixes.get(flag, IMAGE_OUTPUTS), inputs=inputs,
                          what=f"{flag} output")
    given = [(flag, Path(p).expanduser().resolve()) for flag, p in outputs.items() if p is not None]
    for i, (flag, path) in enumerate(given):
        for other, again in given[:i]:
            if path == again:
                raise PetCtInputError(path, f"given as both {other} and {flag}: each output needs its own file")
    if args.dicom_seg and not (Path(args.pet).is_dir() or str(args.pet).lower().endswith(".zip")):
        raise PetCtInputError(args.pet, "--dicom-seg needs the PET as a DICOM series folder (it references that series)")
    return outputs


def _stats_json_path(args):
    from pathlib import Path

    from ..errors import PetCtInputError

    if args.stats_json is True:
        if not args.stats:
            raise PetCtInputError("--stats-json", "give a path, or --stats CSV to put the JSON beside it")
        return Path(args.stats).with_suffix(".json")
    return args.stats_json


def _conversion(args) -> dict | None:
    """The Bq/ml -> SUV flags, all four or none."""
    from ..errors import PetCtInputError

    given = {k: getattr(args, k) for k in CONVERSION_FLAGS if getattr(args, k) is not None}
    if not given:
        return None
    if len(given) < len(CONVERSION_FLAGS):
        missing = [f"--{k.replace('_', '-')}" for k in CONVERSION_FLAGS if k not in given]
        raise PetCtInputError(missing[0], f"converting a Bq/ml PET needs all of --weight-kg, --dose-mbq, "
                                          f"--injection-time and --scan-time (missing {', '.join(missing)})")
    from ..data.plausibility import uptake_seconds
    from .checks import positive_finite

    positive_finite([given["weight_kg"]], "--weight-kg")
    positive_finite([given["dose_mbq"]], "--dose-mbq")
    uptake_seconds(given["injection_time"], given["scan_time"])
    return given


def _segmenter(args):
    """Device, backend and model, checked in that order (cheapest first), bound into one Segmenter; no voxel read."""
    from ..errors import PetCtInputError
    from ..inference import InferenceSettings, Segmenter, load_segmentation_model
    from ..inference.backends import require as require_backend
    from ..inference.loading import model_label
    from .checks import resolve_device

    if args.method == "threshold":
        return _threshold_segmenter(args)
    device = resolve_device(args.device)
    require_backend(args.backend, device)  # before the model loads: the extra may be missing
    model = load_segmentation_model(args.model, device)
    if args.clicks and not model.config.guidance_channels:
        raise PetCtInputError("--clicks", f"{args.model} takes no clicks (config.guidance_channels is 0): use a "
                                          "click-guided model (train_seg.py --interactive)")
    if (args.organs_out or args.suppress_physiological) and not args.organs and not model.config.organ_labels:
        raise PetCtInputError("--organs-out" if args.organs_out else "--suppress-physiological",
                              "needs an organ-aware model or --organs FILE (this model segments lesions only)")
    settings = InferenceSettings.recipe(
        "fast" if args.fast else "default", tta=args.tta, backend=args.backend, min_lesion_ml=args.min_lesion_ml,
        min_lesion_confidence=args.min_lesion_confidence, suppress_physiological=args.suppress_physiological)
    return Segmenter(model, settings, device, name=model_label(args.model))


TMTV_MIN_ML = 3.0  # the international TMTV benchmark's minimum volume


def _threshold_segmenter(args):
    """`--method threshold`: no model; the flags that only a network uses are refused."""
    from ..errors import PetCtInputError
    from ..inference import InferenceSettings
    from ..inference.threshold import ThresholdRule, ThresholdSegmenter

    network_only = {"--model": args.model, "--clicks": args.clicks, "--tta": args.tta, "--fast": args.fast,
                    "--min-lesion-confidence": args.min_lesion_confidence}
    given = [flag for flag, value in network_only.items() if value]
    if given:
        raise PetCtInputError(given[0], "is for --method model (a network); --method threshold uses no model")
    if (args.organs_out or args.suppress_physiological) and not args.organs:
        raise PetCtInputError("--organs-out" if args.organs_out else "--suppress-physiological",
                              "needs --organs FILE with --method threshold")
    min_ml = TMTV_MIN_ML if args.min_lesion_ml is None else args.min_lesion_ml
    return ThresholdSegmenter(ThresholdRule("suv", args.suv_threshold, min_ml),
                              InferenceSettings(suppress_physiological=args.suppress_physiological))


def _run_one(args) -> int:
    from ..outputs.files import StudyFiles, write_study

    outputs = _check_single_outputs(args)
    conversion = _conversion(args)
    segmenter = _segmenter(args)
    files = StudyFiles.beside(args.output, csv=args.stats, json=outputs["--stats-json"], dicom_seg=args.dicom_seg,
                              organs=args.organs_out)
    with contextlib.ExitStack() as scratch:
        pet, ct = (_unzipped(path, scratch) for path in (args.pet, args.ct))
        result = _segment(args, segmenter, pet, ct, conversion)
        _, totals = write_study(result, files)
    print(_summary_line(args.output, totals, result))
    if result.suppressed is not None:
        print(f"--suppress-physiological removed {result.suppressed} lesion(s) lying >= 90% in brain/bladder/kidneys")
    return 0


def _segment(args, segmenter, pet, ct, conversion):
    """One study: memory sized from the headers, the PET converted to SUV when asked, then the segmenter."""
    segmenter.check_memory(pet, ct)  # before the conversion reads the PET
    if conversion is not None:
        pet = _converted_pet(pet, conversion)
    organs = args.organs
    if organs == "auto":
        from ..data.organs import run_totalsegmentator

        organs = run_totalsegmentator(ct, device=segmenter.device)
    with _progress_bar(args) as progress:
        return segmenter(pet, ct, organs=organs, clicks=args.clicks, clicks_space=args.clicks_space,
                         progress=progress)


def _converted_pet(path, conversion: dict):
    from ..data.io import read_pet
    from ..data.plausibility import suv_from_bq_ml
    from ..errors import PetCtInputError

    pet = read_pet(path)
    if pet.meta.get("format") == "dicom":
        raise PetCtInputError(path, "a DICOM PET is converted to SUV from its own tags: drop --weight-kg, --dose-mbq, "
                                    "--injection-time and --scan-time")
    pet = suv_from_bq_ml(pet, **conversion)
    print(f"{path}: converted from Bq/ml to SUVbw (factor {pet.meta['suv_conversion']['suv_factor']:.4g}, "
          f"{pet.meta['suv_conversion']['minutes_after_injection']:g} min after injection)")
    return pet


def _unzipped(path, scratch: contextlib.ExitStack):
    """A .zip of one DICOM series is unpacked (with the zip-bomb and path checks of data/archives.py) into a scratch
    folder that lives as long as ``scratch`` (the DICOM SEG reads the source files at the end)."""
    import tempfile
    from pathlib import Path

    if not str(path).lower().endswith(".zip"):
        return path
    from ..data.archives import UploadLimits, dicom_series_folder, safe_extract_zip

    work = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="petct-zip-")))
    scratch.enter_context(_named_in_zip(work / Path(path).stem, path))
    limits = UploadLimits(max_file_bytes=2**40, max_unzipped_bytes=16 * 2**30)
    return dicom_series_folder(safe_extract_zip(path, work / Path(path).stem, limits), path, limits)


@contextlib.contextmanager
def _named_in_zip(unpacked, zip_path):
    """An error about an unpacked file names the zip and its member, not a temporary path gone by the time it is read."""
    import os

    from ..errors import PetCtInputError

    try:
        yield
    except PetCtInputError as err:
        if not err.source.startswith(str(unpacked)):
            raise
        member = os.path.relpath(err.source, unpacked)
        where = zip_path if member == "." else f"{zip_path} (member {member})"
        raise PetCtInputError(where, err.problem.replace(f"{unpacked}{os.sep}", "")) from None


def _summary_line(name, totals, result) -> str:
    steps = (("read", "read_s"), ("harmonise", "harmonize_s"), ("inference", "inference_s"))  # those the method ran
    took = ", ".join(f"{step} {result.timings[key]:.1f} s" for step, key in steps if key in result.timings)
    return (f"{name}: {totals['lesion_count']} lesion(s), total MTV {totals['total_mtv_ml']:.1f} ml, "
            f"total TLG {totals['total_tlg']:.1f} ({took})")


def _run_folder(args) -> int:
    """Every study of a folder with one model: a failed study is reported and skipped, the others go on."""
    import sys
    from pathlib import Path

    from ..data.adapters import discover
    from ..errors import PetCtInputError
    from ..outputs.files import StudyFiles, write_study
    from .checks import check_inputs_exist, check_output_folder

    single = [f for f in ("stats", "stats_json", "dicom_seg", "organs_out", "clicks", *CONVERSION_FLAGS)
              if getattr(args, f)]
    if single:
        raise PetCtInputError(f"--{single[0].replace('_', '-')}", "is for one study (--pet/--ct); with -i every "
                                                                  "study gets lesions.nii.gz, .csv, .json and .settings.json")
    if args.organs not in (None, "auto"):
        raise PetCtInputError("--organs", "with -i only 'auto' (TotalSegmentator per study)")
    check_inputs_exist(args.input)
    out = Path(args.output)
    check_output_folder(out, inputs=[args.input, args.model])
    rows = discover(args.input, args.source)
    done = [r["study_id"] for r in rows
            if all(p.is_file() for p in StudyFiles.in_folder(out / r["study_id"]).paths().values())]
    if done and not args.resume:
        raise PetCtInputError(out, f"holds results for {len(done)} of these studies: pass --continue to skip them, "
                                   "or choose another folder")
    segmenter = _segmenter(args)
    record = {"segmented": {}, "already_done": done, "failed": {}}
    for i, row in enumerate(r for r in rows if r["study_id"] not in done):
        sid = row["study_id"]
        try:
            with contextlib.ExitStack() as scratch:
                pet, ct = (_unzipped(str(row[k]), scratch) for k in ("pet_path", "ct_path"))
                result = _segment(args, segmenter, pet, ct, None)
                _, totals = write_study(result, out / sid)
        except Exception as err:  # noqa: BLE001 - one broken study must not stop the folder; reported below
            if isinstance(err, OSError) and err.errno in DISK_FULL:
                raise  # a full disk fails every study alike: one line, not one per study
            why = str(err) if isinstance(err, PetCtInputError) else f"{type(err).__name__}: {err}"
            record["failed"][sid] = why
            print(f"{sid}: skipped: {why}", file=sys.stderr)
            continue
        record["segmented"][sid] = totals
        print(f"[{i + 1 + len(done)}/{len(rows)}] " + _summary_line(sid, totals, result), flush=True)
    _write_summary(out, record)
    print(f"segmented {len(record['segmented'])}, already done {len(done)}, failed {len(record['failed'])} -> {out}")
    return 1 if record["failed"] else 0


def _write_summary(out, record) -> None:
    import json

    from ..atomic import atomic_path

    with atomic_path(out / SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str))


@contextlib.contextmanager
def _progress_bar(args=None):
    """A percent bar on stderr when it is a terminal (CPU inference takes minutes); silent in logs and pipes."""
    from tqdm.auto import tqdm

    from .checks import progress_wanted

    layout = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}"
    with tqdm(total=100, unit="%", disable=not progress_wanted(getattr(args, "quiet", False)), bar_format=layout) as bar:

        def progress(fraction: float, message: str) -> None:  # a few dozen calls: redraw each one
            bar.n = round(100 * fraction)
            bar.set_description_str(message)

        yield progress
