"""A CLI that starts fast: `petct --help`, `petct segment --help` and the data-only commands import no torch,
transformers or MONAI; `import modeling_petct` stays light yet registers the Auto classes, whichever of it and
transformers is imported first. Each check runs in a fresh interpreter (this process has imported everything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "monai")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

# Runs `petct ARGV` in-process (as the console script does) and reports the exit code and the heavy modules loaded.
PROBE = """
import json, sys
from modeling_petct.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _petct(argv: list[str], cwd: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], cwd=cwd, env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["segment", "--help"], ["harmonize", "--help"], ["evaluate", "--help"]],
                         ids=" ".join)
def test_help_imports_no_heavy_library(argv, tmp_path):
    result = _petct(argv, tmp_path)
    assert result == {"code": 0, "heavy": []}


def test_phantom_and_evaluate_import_no_heavy_library(tmp_path):
    result = _petct(["phantom", "-o", str(tmp_path / "cohort"), "-n", "1", "--lesion-free-fraction", "0"], tmp_path)
    assert result == {"code": 0, "heavy": []}
    (study,) = sorted((tmp_path / "cohort").iterdir())
    assert (study / "PET.nii.gz").exists() and (study / "SEG.nii.gz").exists()
    # the phantom's own label as the prediction: a perfect score, computed without torch
    result = _petct(["evaluate", "--pred", str(study / "SEG.nii.gz"), "--gt", str(study / "SEG.nii.gz"),
                     "--json", str(tmp_path / "metrics.json"), "--bootstrap", "10"], tmp_path)
    assert result == {"code": 0, "heavy": []}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics[next(k for k in metrics if k != "aggregate")]["dice"] == pytest.approx(1.0)


def test_import_modeling_petct_imports_no_heavy_library():
    code = "import sys, modeling_petct; print(sorted(m for m in %r if m in sys.modules))" % (HEAVY,)
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, Path]:
    from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling, PetCtForSegmentation

    root = tmp_path_factory.mktemp("saved")
    config = PetCtConfig.from_preset("tiny-unet", features_per_stage=(4, 8, 8, 8))
    PetCtForSegmentation(config).save_pretrained(root / "seg")
    PetCtForMaskedImageModeling(config).save_pretrained(root / "mae")
    return {"seg": root / "seg", "mae": root / "mae"}


LOAD = """
import sys
{first}
{second}
from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation
seg = AutoModelForSemanticSegmentation.from_pretrained(sys.argv[1])
mae = AutoModel.from_pretrained(sys.argv[2])
print(type(AutoConfig.from_pretrained(sys.argv[1])).__name__, type(seg).__name__, type(mae).__name__)
"""


@pytest.mark.slow
@pytest.mark.parametrize("order", ["modeling_petct first", "transformers first"])
def test_import_then_auto_from_pretrained_in_a_fresh_process(order, saved_models):
    lines = ["import modeling_petct", "import transformers"]
    first, second = lines if order == "modeling_petct first" else lines[::-1]
    run = subprocess.run([sys.executable, "-c", LOAD.format(first=first, second=second), str(saved_models["seg"]),
                          str(saved_models["mae"])], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-3:] == ["PetCtConfig", "PetCtForSegmentation", "PetCtModel"]


def test_segment_help_lists_dashed_flags_only():
    """One flag spelling: every petct sub-command takes dashed flags."""
    from modeling_petct.cli import build_parser

    parser = build_parser()
    for name, command in parser._subparsers._group_actions[0].choices.items():
        for action in command._actions:
            long = [o for o in action.option_strings if o.startswith("--")]
            assert all("_" not in o for o in long), (name, long)


def test_petct_pretrain_and_finetune_are_the_training_scripts(capsys):
    from modeling_petct.cli import main

    for command, prog in (("pretrain", "petct pretrain"), ("finetune", "petct finetune")):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: {prog}") and "--num-train-epochs" in text and "--cache-dir" in text
    assert main(["finetune", "--cache-dir", "no-such-cache", "--output-dir", "x"]) == 2
    assert capsys.readouterr().err.startswith("petct finetune: error: no-such-cache")

