"""Parallel harmonisation into the cache: resumable, and one broken study does not stop the others."""

from __future__ import annotations

import numpy as np

from modeling_petct.data.cache import StudyCache, harmonize_many
from modeling_petct.data.synthetic.phantom import write_phantom_cohort


def test_parallel_run_skips_broken_and_resumes(tmp_path):
    dirs = write_phantom_cohort(tmp_path / "src", 3, seed=1, lesion_free_fraction=0.0)
    rows = [{"study_id": d.name, "pet_path": str(d / "PET.nii.gz"), "ct_path": str(d / "CT.nii.gz"),
             "label_path": str(d / "SEG.nii.gz")} for d in dirs]
    broken = dirs[1] / "CT.nii.gz"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated download
    cache = StudyCache(tmp_path / "cache")

    summary = harmonize_many(rows, cache, workers=2, progress=False)
    assert sorted(summary.written) == sorted([dirs[0].name, dirs[2].name])
    assert list(summary.failed) == [dirs[1].name] and "CT.nii.gz" in summary.failed[dirs[1].name]
    assert dirs[1].name in summary.report() and cache.ids() == sorted(summary.written)
    study = cache.load(dirs[0].name)
    assert study.image.shape[0] == 2 and study.label.sum() > 0 and study.normalization == "zscore"
    assert study.meta["study_id"] == dirs[0].name

    # an interrupted writer left a temporary folder; a second run redoes nothing that is finished
    (cache.root / f".tmp-{dirs[1].name}-deadhost-1-x").mkdir()
    before = (cache.path(dirs[0].name) / "image.npy").stat().st_mtime_ns
    again = harmonize_many([(r["study_id"], r["pet_path"], r["ct_path"], r["label_path"]) for r in rows], cache,
                           workers=1, progress=False, normalization="clinical")
    assert sorted(again.already_done) == sorted(summary.written) and again.written == []
    assert list(again.failed) == [dirs[1].name]
    assert (cache.path(dirs[0].name) / "image.npy").stat().st_mtime_ns == before
    assert cache.ids() == sorted(summary.written)
    import nibabel as nib

    seg = np.asarray(nib.load(dirs[2] / "SEG.nii.gz").dataobj) > 0
    stored = cache.load(dirs[2].name)
    back = stored.to_native(stored.label) > 0
    assert back.shape == seg.shape and 2 * (back & seg).sum() / (back.sum() + seg.sum()) > 0.9
