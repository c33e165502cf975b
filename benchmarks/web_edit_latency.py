"""Click-to-updated-mask latency of the Space's edits (web/service.edit_result: the edit, the lesion table, the files
written), for a model without click inputs (41%-of-SUVmax add) and a click-guided one (the windows around the click
re-run, inference.ClickRefiner), on one phantom of ``--size``. The click-guided model is ``--model`` (a trained
interactive model folder), else the released segmenter's architecture with random click weights. Each "add" clicks
another lesion voxel after the previous clicks (as a user adds lesions one by one); the first includes the one-time
measurement of the click's reach (see all_s).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/web_edit_latency.py --size small --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def models(model_dir: Path | None):
    """(name, model) of the two arms: without click inputs, and click-guided."""
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.released import released_models

    start = released_models()["petct-phantom-segmenter"]
    plain = PetCtForSegmentation.from_pretrained(start).eval()
    if model_dir is None:
        torch.manual_seed(0)
        guided = PetCtForSegmentation(PetCtConfig.from_pretrained(start, guidance_channels=2,
                                                                  guidance_encoding="ball", guidance_size=2.0)).eval()
    else:
        guided = PetCtForSegmentation.from_pretrained(model_dir).eval()
    return (("41% add (no click inputs)", plain), ("click-guided model, windows around the click", guided))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", help="phantom size (data.synthetic.phantom.SIZES)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", type=Path, default=None, help="a click-guided model folder")
    args = p.parse_args(argv)
    import torch

    from modeling_petct.data.io import write_volume
    from modeling_petct.data.simulated_clicks import centre, components
    from modeling_petct.data.synthetic.phantom import make_phantom
    from modeling_petct.inference import InferenceSettings, Segmenter
    from modeling_petct.web.service import DemoSession, edit_result, read_model_facts, run_study

    phantom = make_phantom(3, size=args.size, n_lesions=max(3, args.repeats))
    peaks = [centre(part) for part in components(np.asarray(phantom.label.array) > 0)]  # PET voxel indices
    out = {"size": args.size, "pet_shape": list(phantom.pet.shape), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_volume(phantom.pet, tmp / "PET.nii.gz")
        write_volume(phantom.ct, tmp / "CT.nii.gz")
        for name, model in models(args.model):
            segmenter = Segmenter(model, InferenceSettings(precision="fp32", backend="torch"))
            session = DemoSession.open(tmp / "sessions")
            started = time.perf_counter()
            session.result = run_study(tmp / "PET.nii.gz", tmp / "CT.nii.gz", segmenter, read_model_facts("m", "m"),
                                       session)
            first = time.perf_counter() - started
            seconds = []
            for k in range(args.repeats):
                started = time.perf_counter()
                i, j, z = peaks[k % len(peaks)]  # each click on another voxel: a repeated click re-runs nothing
                edit_result(session, "add", (i, j, z + k // len(peaks)))
                seconds.append(time.perf_counter() - started)
            out[name] = {"median_s": statistics.median(seconds), "all_s": seconds, "first_pass_s": first}
            refiner = session.result.editor.refine
            if hasattr(refiner, "margin"):
                out[name]["click_reach_voxels"] = list(refiner.margin)
            session.close()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
