"""Time the synthetic cohort and the readers: phantom generation (small, autopet), NIfTI writing, DICOM SUV reading.

Prints one JSON line per measurement (median of --repeats).

    .venv/bin/python benchmarks/data_phantom.py [--repeats 3] [--skip-autopet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-autopet", action="store_true", help="skip the 400x400x326 / 512x512x326 study")
    args = ap.parse_args()

    from modeling_petct.data.synthetic.dicom_writer import write_phantom_dicom
    from modeling_petct.data.io import read_ct, read_pet, write_volume
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    def report(what, seconds, **extra):
        print(json.dumps({"benchmark": what, "seconds": round(seconds, 3), **extra}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = make_phantom(0)
        report("make_phantom small (PET 64x64x96, CT 128x128x96)", _time(lambda: make_phantom(0), args.repeats))
        report("write small study as NIfTI (PET, CT, SEG .nii.gz)", _time(lambda: write_study(small, tmp / "s"), args.repeats))
        report("write small study as DICOM (96 PET + 96 CT slices)", _time(lambda: write_phantom_dicom(small, tmp / "d"), 1))
        report("read_pet DICOM -> SUVbw (96 slices, BQML/START)", _time(lambda: read_pet(tmp / "d" / "PET"), args.repeats))
        report("read_ct DICOM (96 slices 128x128)", _time(lambda: read_ct(tmp / "d" / "CT"), args.repeats))
        if not args.skip_autopet:
            big = make_phantom(0, size="autopet")
            report("make_phantom autopet (PET 400x400x326, CT 512x512x326)", _time(lambda: make_phantom(0, size="autopet"), 1))
            report("write_volume PET 400x400x326 float32 .nii.gz", _time(lambda: write_volume(big.pet, tmp / "p.nii.gz"), 1))
            report("read_pet PET 400x400x326 .nii.gz", _time(lambda: read_pet(tmp / "p.nii.gz"), args.repeats))


if __name__ == "__main__":
    main()
