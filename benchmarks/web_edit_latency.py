"""Click-to-updated-mask latency of the Space's edits (web/service.edit_result: the edit, the lesion table, the files
written), for a model without click inputs (41%-of-SUVmax add) and a click-guided one (the model re-run), on one
phantom. The first edit of the click-guided model includes one-time costs (see all_s).

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", help="phantom size (data.synthetic.phantom.SIZES)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.data.io import write_volume
    from modeling_petct.data.synthetic.phantom import make_phantom
    from modeling_petct.inference import Segmenter
    from modeling_petct.web.service import DemoSession, edit_result, read_model_facts, run_study

    phantom = make_phantom(3, size=args.size, n_lesions=3)
    peak = tuple(int(v) for v in np.unravel_index(np.argmax(np.where(phantom.label.array > 0, phantom.pet.array, -1)),
                                                  phantom.pet.shape))
    out = {"size": args.size, "pet_shape": list(phantom.pet.shape), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_volume(phantom.pet, tmp / "PET.nii.gz")
        write_volume(phantom.ct, tmp / "CT.nii.gz")
        for name, guidance in (("41% add (no click inputs)", 0), ("click-guided model re-run", 2)):
            torch.manual_seed(0)
            config = PetCtConfig.from_preset("tiny-unet", crop_size=(64, 64, 64), guidance_channels=guidance)
            segmenter = Segmenter(PetCtForSegmentation(config).eval())
            session = DemoSession.open(tmp / "sessions")
            session.result = run_study(tmp / "PET.nii.gz", tmp / "CT.nii.gz", segmenter, read_model_facts("m", "m"),
                                       session)
            seconds = []
            for k in range(args.repeats):  # another voxel each time: a click-guided model re-runs (no cached mask)
                started = time.perf_counter()
                edit_result(session, "add", (peak[0], peak[1], peak[2] + k))
                seconds.append(time.perf_counter() - started)
                edit_result(session, "reset")
            out[name] = {"median_s": statistics.median(seconds), "all_s": seconds}
            session.close()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
