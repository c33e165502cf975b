"""A run folder made by someone else never runs code: `--resume` and `petct study` read training state from JSON and
safetensors only, and a pickle planted under any name Accelerate's `load_state` would unpickle is never opened."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from modeling_petct.cli import main

# Every file Accelerate's load_state reads with torch.load (custom_checkpoint_* with weights_only=False).
PICKLE_NAMES = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "sampler.bin",
                "scaler.pt", "pytorch_model.bin")


class _Payload:
    """Unpickling this creates the marker file (any code could run in its place)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant(folder: Path, marker: Path) -> None:
    for name in PICKLE_NAMES:
        torch.save({"state": _Payload(marker)}, folder / name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from modeling_petct.experiments.cohort import phantom_cache

    return phantom_cache(tmp_path_factory.mktemp("cohort"), 4, seed=0)[0]


def _pretrain(cache, out: Path, steps: int, *extra) -> list[str]:
    return ["pretrain", "--preset", "tiny-unet", "--cache_dir", str(cache.root), "--crop_size", "32", "32", "32",
            "--output_dir", str(out), "--max_steps", str(steps), "--per_device_batch_size", "1",
            "--checkpointing_steps", "1", "--eval_steps", "100", "--num_workers", "0", "--report_to", "none",
            "--progress_bar", "false", "--seed", "1", "--cpu", "true", *extra]


def test_resume_never_unpickles_a_planted_payload(cache, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    assert main(_pretrain(cache, out, 2)) == 0
    newest = sorted((out / "checkpoints").iterdir())[-1]
    assert not list(newest.glob("*.pkl")) and not list(newest.glob("*.bin")), "training state was pickled"
    _plant(newest, marker)
    capsys.readouterr()
    assert main(_pretrain(cache, out, 3, "--resume", "true")) == 0, capsys.readouterr().err
    assert "resumed from" in capsys.readouterr().out
    assert not marker.exists(), "--resume ran a pickle from the run folder"


def test_a_pickled_checkpoint_is_refused_in_one_line(cache, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    folder = out / "checkpoints" / "checkpoint_0"
    folder.mkdir(parents=True)
    _plant(folder, marker)
    (folder / "COMPLETE").write_text("ok\n")
    assert main(_pretrain(cache, out, 2, "--resume", "true")) == 2
    err = capsys.readouterr().err
    assert "never loaded" in err and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert not marker.exists()
    assert not (out / "last").exists()


def test_study_resumes_its_cells_without_unpickling(cache, tmp_path, capsys):
    """A received study folder re-run: the unfinished cell resumes from JSON/safetensors, its planted pickles
    stay unread."""
    out, marker = tmp_path / "study", tmp_path / "PWNED"
    argv = ["study", "--presets", "tiny-unet", "--fractions", "1.0", "--seeds", "0", "--probe_k", "0",
            "--cache_dir", str(cache.root), "--output_dir", str(out), "--crop_size", "32", "32", "32",
            "--max_steps", "2", "--checkpointing_steps", "1", "--eval_steps", "2", "--per_device_batch_size", "1",
            "--num_workers", "0", "--report_to", "none", "--progress_bar", "false", "--cpu", "true"]
    assert main(argv) == 0, capsys.readouterr().err
    cell = next((out / "cells").rglob("results.json")).parent
    (cell / "results.json").unlink()  # the cell as if interrupted after its last checkpoint
    shutil.rmtree(cell / "last")
    _plant(sorted((cell / "checkpoints").iterdir())[-1], marker)
    assert main(argv) == 0, capsys.readouterr().err
    assert "resumed from" in capsys.readouterr().out
    assert (cell / "results.json").is_file() and not marker.exists(), "petct study ran a pickle from a cell folder"
