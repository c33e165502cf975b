"""The "Publish, step by step" section of docs/hub.md, run as written: every bash command and Python snippet in
order, in a folder holding the files the commands name, against a local Hub (HF_ENDPOINT)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import save_tiny
from local_hub import LocalHub
from monai.networks.nets import SwinUNETR

from modeling_petct.training.results import RunResult

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "hub.md"
SECTION = "## Publish, step by step"


def guide_steps(guide: Path = GUIDE) -> list[tuple[str, str]]:
    """("bash", one command) / ("python", a snippet) in the order the section shows them (it ends at the next one)."""
    text = guide.read_text()
    section = text[text.index(SECTION):].split("\n## ")[0]
    steps = []
    for lang, block in re.findall(r"```(bash|python)\n(.*?)```", section, re.S):
        if lang == "python":
            steps.append(("python", block))
            continue
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                steps.append(("bash", command))
    return steps


def _authors_swin_small(path: Path) -> None:
    """swinunetr_v2_small.pth as the authors' MAEv2.ipynb saves it (random weights)."""
    torch.manual_seed(0)
    net = SwinUNETR(in_channels=2, out_channels=2, feature_size=24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                    norm_name="instance", downsample="mergingv2", use_v2=True, normalize=True)
    weights = {f"module.encoder_decoder.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 200, "model_state_dict": weights, "best_loss": 0.1}, path)


def _run_folder(root: Path) -> None:
    """runs/seg as fine-tuning leaves it: best/ and the run record, plus the files the push command names."""
    save_tiny(root / "runs/seg/best")
    ids = [f"phantom_000_{i:04d}" for i in range(8)]
    RunResult(network="plain-conv-unet", preset="tiny-unet", arm="scratch", pretrained=None, linear_probe=False,
              schedule="epochs", k_shot=None, label_fraction=None, n_train=4, seed=0, split_seed=0, steps=40,
              learning_rate=1e-3, selected_model=str(root / "runs/seg/best"), selected_step=40, best_val_score=0.2,
              split={"train": ids[:4], "val": ids[4:6], "test": ids[6:]},
              test={"test_dice": 0.25, "test_fpv_ml": 1.0, "test_fnv_ml": 2.0},
              data_sources={"synthetic-phantom": 8}).save(root / "runs/seg")
    (root / "recipe.yaml").write_text("preset: tiny-unet\nlearning_rate: 0.001\n")
    (root / "eval_test.json").write_text(json.dumps({"aggregate": {"dice": 0.25, "fpv_ml": 1.0, "fnv_ml": 2.0,
                                                                   "n_cases": 2}}))


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "hub_scripts").symlink_to(ROOT / "hub_scripts")
    _authors_swin_small(tmp_path / "swinunetr_v2_small.pth")
    _run_folder(tmp_path)
    return tmp_path


def test_guide_section_has_the_publishing_sequence():
    kinds = [(kind, step.split()[1] if kind == "bash" else "snippet") for kind, step in guide_steps()]
    assert kinds == [("bash", "hub_scripts/convert_original_checkpoint.py"), ("bash", "hub_scripts/push_model.py"),
                     ("bash", "hub_scripts/push_model.py"), ("python", "snippet"),
                     ("bash", "hub_scripts/push_space.py"), ("bash", "hub_scripts/push_space.py")]


@pytest.mark.slow
def test_guide_publishing_commands_run_in_order_as_written(workdir):
    with LocalHub() as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="local-hub-token", HF_HOME=str(workdir / "hf_home"),
                   HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
        for kind, step in guide_steps():
            argv = [sys.executable, "-c", step] if kind == "python" else [sys.executable, *shlex.split(step)[1:]]
            proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{step}\n{proc.stderr[-3000:]}"
            if kind == "python":
                assert "{0: 'background', 1: 'lesion'}" in proc.stdout
        model_files = hub.files("model", "you/petct-swin-small-autopet")
        space_files = hub.files("space", "you/petct-demo")
    conversion = json.loads((workdir / "converted/swinunetr-v2-small/conversion.json").read_text())
    assert conversion["preset"] == "swinunetr-v2-small" and conversion["swin_downsample"] == "mergingv2"
    card = model_files["README.md"].decode()
    assert "**The data are synthetic.**" in card and "AutoPET FDG (paper test split)" in card
    assert "auto_map" in json.loads(model_files["config.json"]) and "modeling_petct.py" in model_files
    assert "app.py" in space_files
