"""`petct segment`: lesion mask of one PET/CT study on the PET's own grid, with optional lesion table and DICOM SEG."""

from __future__ import annotations

import contextlib


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment FDG-avid lesions of one PET/CT study")
    p.add_argument("--pet", required=True, help="PET (SUV): NIfTI/MHA file or DICOM series folder")
    p.add_argument("--ct", required=True, help="CT (HU): NIfTI/MHA file or DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="mask to write (.nii.gz, .nii, .mha), on the PET grid")
    p.add_argument("--model", help="model folder (config.json + model.safetensors) or Hugging Face Hub id in the cache")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--stats", metavar="CSV", help="write one row per lesion (SUVmax/mean/peak, volume, TLG, centroid)")
    p.add_argument("--stats-json", nargs="?", const=True, metavar="JSON",
                   help="lesion table and study totals as JSON (default path: the --stats CSV with .json)")
    p.add_argument("--dicom-seg", metavar="DCM", help="write a DICOM Segmentation referencing the PET series (DICOM PET only)")
    p.add_argument("--fast", action="store_true", help="no window overlap: fastest, slightly less accurate at seams")
    p.add_argument("--tta", action="store_true", help="average over in-plane flips (4x the compute)")
    p.set_defaults(run=run)


def _stats_json_path(args):
    from pathlib import Path

    from ..errors import PetCtInputError

    if args.stats_json is True:
        if not args.stats:
            raise PetCtInputError("--stats-json", "give a path, or --stats CSV to put the JSON beside it")
        return Path(args.stats).with_suffix(".json")
    return args.stats_json


def run(args) -> int:
    from pathlib import Path

    import torch
    from transformers.utils import logging as hf_logging

    from ..errors import PetCtInputError
    from ..inference import load_segmentation_model, segment_study
    from ..outputs.files import write_outputs

    stats_json = _stats_json_path(args)
    for path in (args.pet, args.ct):  # before the model loads: the cheapest mistakes first
        if not Path(path).exists():
            raise PetCtInputError(path, "no such file or folder")
    if args.dicom_seg and not Path(args.pet).is_dir():
        raise PetCtInputError(args.pet, "--dicom-seg needs the PET as a DICOM series folder (it references that series)")
    hf_logging.disable_progress_bar()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_segmentation_model(args.model, device)
    with _progress_bar() as progress:
        result = segment_study(args.pet, args.ct, model, device=device, fast=args.fast, tta=args.tta, progress=progress)
    totals = write_outputs(
        result, args.output, stats_csv=args.stats, stats_json=stats_json, dicom_seg=args.dicom_seg,
        model_name=str(args.model),
    )
    t = result.timings
    print(
        f"{args.output}: {totals['lesion_count']} lesion(s), total MTV {totals['total_mtv_ml']:.1f} ml, "
        f"total TLG {totals['total_tlg']:.1f} (read {t['read_s']:.1f} s, harmonise {t['harmonize_s']:.1f} s, "
        f"inference {t['inference_s']:.1f} s)"
    )
    return 0


@contextlib.contextmanager
def _progress_bar():
    """A percent bar on stderr when it is a terminal (CPU inference takes minutes); silent in logs and pipes."""
    import sys

    from tqdm.auto import tqdm

    layout = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}"
    with tqdm(total=100, unit="%", disable=not sys.stderr.isatty(), bar_format=layout) as bar:

        def progress(fraction: float, message: str) -> None:  # a few dozen calls: redraw each one
            bar.n = round(100 * fraction)
            bar.set_description_str(message)

        yield progress
