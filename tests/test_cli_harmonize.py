"""`petct harmonize` from the command line: builds manifest + cache, resumes, reports broken studies, clear errors."""

from __future__ import annotations

import json

from modeling_petct.cli import main
from modeling_petct.data.cache import StudyCache
from modeling_petct.data.io import write_volume
from modeling_petct.data.manifest import load_manifest
from modeling_petct.data.synthetic.phantom import make_phantom


def cohort(root, n=2):
    for i in range(n):
        p = make_phantom(i, shape=(16, 16, 24))
        d = root / f"study{i}"
        d.mkdir(parents=True)
        write_volume(p.pet, d / "PET.nii.gz")
        write_volume(p.ct, d / "CT.nii.gz")
        write_volume(p.label, d / "SEG.nii.gz")
    return root


def test_folder_input_builds_manifest_and_cache_then_resumes(tmp_path, capsys):
    src = cohort(tmp_path / "src")
    out = tmp_path / "cache"
    assert main(["harmonize", "--input", str(src), "-o", str(out), "--normalization", "clinical",
                 "--dtype", "float16", "--no-progress"]) == 0
    assert StudyCache(out).ids() == ["study0", "study1"]
    info = StudyCache(out).info("study0")
    assert info["normalization"] == "clinical" and info["dtype"] == "float16" and info["has_label"]
    assert len(load_manifest(out / "_manifest")) == 2
    summary = json.loads((out / "_harmonize_summary.json").read_text())
    assert sorted(summary["written"]) == ["study0", "study1"] and summary["failed"] == {}

    assert main(["harmonize", "--manifest", str(out / "_manifest"), "-o", str(out), "--no-progress"]) == 0
    assert "already in cache 2" in capsys.readouterr().out


def test_broken_study_is_reported_and_others_finish(tmp_path, capsys):
    src = cohort(tmp_path / "src", 2)
    (src / "study1" / "PET.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "cache"
    assert main(["harmonize", "--input", str(src), "-o", str(out), "--workers", "2", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "skipped study1" in text and "PET.nii.gz" in text
    assert StudyCache(out).ids() == ["study0"]


def test_single_study_and_clear_errors(tmp_path, capsys):
    src = cohort(tmp_path / "src", 1)
    out = tmp_path / "one"
    assert main(["harmonize", "--pet", str(src / "study0" / "PET.nii.gz"), "--ct", str(src / "study0" / "CT.nii.gz"),
                 "-o", str(out), "--no-progress"]) == 0
    assert StudyCache(out).ids() == ["study0"]

    assert main(["harmonize", "--input", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert main(["harmonize", "--input", str(src), "--source", "autopet", "-o", str(out)]) == 2
    assert "no studies found in the 'autopet' layout" in capsys.readouterr().err
    assert main(["harmonize", "--pet", str(src / "study0" / "PET.nii.gz"), "-o", str(out)]) == 2
    assert "needs --ct" in capsys.readouterr().err
    assert main(["harmonize", "--manifest", str(src), "-o", str(out)]) == 2
    assert "not a saved manifest" in capsys.readouterr().err
    assert main(["harmonize", "--input", str(src), "-o", str(out), "--shard", "2/2"]) == 2
    assert "--shard: expected I/N" in capsys.readouterr().err


def test_shards_split_the_rows_between_nodes(tmp_path):
    src = cohort(tmp_path / "src", 2)
    out = tmp_path / "shared_cache"
    for shard in ("0/2", "1/2"):
        assert main(["harmonize", "--input", str(src), "-o", str(out), "--shard", shard, "--no-progress"]) == 0
        assert len(StudyCache(out).ids()) == int(shard[0]) + 1
    for shard in (0, 1):  # each node keeps its own summary: the last one to finish does not erase the other's
        summary = json.loads((out / f"_harmonize_summary_shard{shard}of2.json").read_text())
        assert summary["written"] == [f"study{shard}"]
