"""Time harmonising one AutoPET-size study (400 x 400 x 326 PET at 2.0364 x 2.0364 x 3 mm).

Two inputs, both from the package's phantom: the AutoPET layout (SUV.nii.gz + CTres.nii.gz on the PET grid +
SEG.nii.gz) and a raw pair (CT at its own 512 x 512 x 326 grid). Times reading (.nii.gz, nibabel), harmonising, and
writing the cache entry separately, as wall-clock and as this process's CPU seconds (all threads; on a machine shared
with other jobs the CPU figure divided by the thread count is the unloaded wall time); one JSON line per case.

    .venv/bin/python benchmarks/data_harmonize.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="SimpleITK threads (the target is 2 cores)")
    ap.add_argument("--normalization", default="zscore")
    args = ap.parse_args()

    import SimpleITK as sitk

    from modeling_petct.data.cache import StudyCache
    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.io import read_ct, read_pet, read_volume, volume_to_sitk, sitk_to_volume, write_volume
    from modeling_petct.data.synthetic.phantom import make_phantom

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = make_phantom(0, size="autopet")
        ctres = sitk.Resample(volume_to_sitk(study.ct), volume_to_sitk(study.pet), sitk.Transform(), sitk.sitkLinear, -1024.0)
        write_volume(study.pet, tmp / "SUV.nii.gz")
        write_volume(sitk_to_volume(ctres), tmp / "CTres.nii.gz")
        write_volume(study.ct, tmp / "CT.nii.gz")
        write_volume(study.label, tmp / "SEG.nii.gz")
        cache = StudyCache(tmp / "cache")
        for case, ct_name in (("autopet-layout CTres on PET grid", "CTres.nii.gz"), ("CT on its own 512x512 grid", "CT.nii.gz")):
            wall = {"read": [], "harmonize": [], "cache_write": []}
            cpu = {k: [] for k in wall}
            for _ in range(args.repeats):
                marks = [(time.perf_counter(), time.process_time())]
                pet, ct, seg = read_pet(tmp / "SUV.nii.gz"), read_ct(tmp / ct_name), read_volume(tmp / "SEG.nii.gz")
                marks.append((time.perf_counter(), time.process_time()))
                h = harmonize(pet, ct, seg, normalization=args.normalization)
                marks.append((time.perf_counter(), time.process_time()))
                cache.write("bench", h)
                marks.append((time.perf_counter(), time.process_time()))
                for i, k in enumerate(wall):
                    wall[k].append(marks[i + 1][0] - marks[i][0])
                    cpu[k].append(marks[i + 1][1] - marks[i][1])
            med = {k: round(statistics.median(v), 2) for k, v in wall.items()}
            med_cpu = {k: round(statistics.median(v), 2) for k, v in cpu.items()}
            print(json.dumps({
                "case": case, "pet_shape": list(pet.shape), "ct_shape": list(ct.shape), "harmonized_shape": list(h.image.shape),
                "wall_s": med, "wall_total_s": round(sum(med.values()), 2), "cpu_s": med_cpu,
                "cpu_total_s": round(sum(med_cpu.values()), 2), "sitk_threads": args.threads,
                "cache_mb": round(h.image.nbytes / 2**20, 1),
            }))


if __name__ == "__main__":
    main()
