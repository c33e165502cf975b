"""The standard Hugging Face path: plain ``save_pretrained`` + ``push_to_hub`` to a local Hub, then
``from_pretrained(..., trust_remote_code=True)`` with ``AutoModel`` and the task's Auto class, and the model card's
own snippet, in an interpreter that has only what the model card's install lines bring in (tests/hub_user_env.py:
``python -I -S`` on a site folder of exactly those distributions; petct-fm is not one of them). Every kind of model
the package saves (MAE, segmenter, organ-aware segmenter, separated probe; CNN and Swin); outputs compared with the
publisher's. Kinds with the same install lines share one interpreter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_user_env import clean_site, distributions_for
from local_hub import LocalHub

from modeling_petct.hub.card import CardInputs, render_model_card, validate_model_card
from modeling_petct.models.backbones import install_lines

pytestmark = pytest.mark.slow  # end to end: every test here takes more than a few seconds

ROOT = Path(__file__).resolve().parents[1]
# kind -> (task Auto class, backbones the card's install lines must cover)
KINDS = {
    "cnn": ("AutoModelForSemanticSegmentation", ["plain-conv-unet"]),
    "swin": ("AutoModelForSemanticSegmentation", ["swinunetr-v2"]),
    "separated": ("AutoModelForSemanticSegmentation", ["plain-conv-unet", "swinunetr-v2"]),
    "mae": ("AutoModelForMaskedImageModeling", ["plain-conv-unet"]),
    "organs": ("AutoModelForSemanticSegmentation", ["plain-conv-unet"]),
    "guided": ("AutoModelForSemanticSegmentation", ["plain-conv-unet"]),  # click-guidance input channels
    "ensemble": ("AutoModelForSemanticSegmentation", ["plain-conv-unet"]),  # an imported nnU-Net's folds
}

PUBLISHER = r"""
import sys, torch
from modeling_petct import (PetCtConfig, PetCtEnsembleConfig, PetCtEnsembleForSegmentation,
                            PetCtForMaskedImageModeling, PetCtForSegmentation, PetCtForSeparatedModalityProbe,
                            PetCtSeparatedConfig)

folder_root, io_path = sys.argv[1], sys.argv[2]

def build(kind):
    torch.manual_seed(0)
    if kind in ("cnn", "swin"):
        return PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet" if kind == "cnn" else "tiny-swin"))
    if kind == "mae":
        return PetCtForMaskedImageModeling(PetCtConfig.from_preset("tiny-unet"))
    if kind == "organs":
        return PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", organ_labels=("liver", "kidney")))
    if kind == "guided":
        return PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", guidance_channels=2))
    if kind == "ensemble":
        return PetCtEnsembleForSegmentation(PetCtEnsembleConfig.from_preset("tiny-unet", ensemble_size=2))
    pet = PetCtConfig.from_preset("tiny-unet", modalities=("PET",))
    ct = PetCtConfig.from_preset("tiny-swin", modalities=("CT",))
    return PetCtForSeparatedModalityProbe(PetCtSeparatedConfig.from_backbone_configs(pet, ct, crop_size=(32, 64, 64)))

out = {}
for kind in ("cnn", "swin", "separated", "mae", "organs", "guided", "ensemble"):
    model = build(kind).eval()
    x = torch.randn(1, 4 if kind == "guided" else 2, 32, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        task = model(x, mask=torch.zeros_like(x)) if kind == "mae" else model(x)
        out[kind] = {"x": x, "task": task.reconstruction if kind == "mae" else task.logits}
        if kind != "ensemble":  # an ensemble is its own AutoModel: there is no single backbone
            out[kind]["features"] = model.petct(x).last_hidden_state
        if kind == "organs":
            out[kind]["organs"] = task.organ_logits
    model.save_pretrained(f"{folder_root}/{kind}")  # the standard calls, nothing petct-specific
    model.push_to_hub(f"user/petct-{kind}")
torch.save(out, io_path)
"""

CONSUMER = r"""
import importlib.util, json, sys
site, io_path, jobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.append(site)
if importlib.util.find_spec("modeling_petct") is not None:
    sys.exit("modeling_petct is importable: the test would prove nothing")
import torch
import transformers
from transformers import AutoModel

published = torch.load(io_path, weights_only=True)
for kind, (repo, auto_class, snippet) in jobs.items():
    x = published[kind]["x"]
    task_model = getattr(transformers, auto_class).from_pretrained(repo, trust_remote_code=True).eval()
    auto_model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    with torch.no_grad():
        task = task_model(x, mask=torch.zeros_like(x)) if kind == "mae" else task_model(x)
        auto_out = auto_model(x)
        out = {"task": task.reconstruction if kind == "mae" else task.logits,
               "auto": auto_out.logits if kind == "ensemble" else auto_out.last_hidden_state,
               "modules": [type(task_model).__module__, type(auto_model).__module__],
               "classes": [type(task_model).__name__, type(auto_model).__name__]}
        if kind != "mae":
            out["labels"] = dict(task_model.config.id2label)
        if kind == "organs":
            out["organs"] = task.organ_logits
    card = {}
    exec(snippet, card)  # the model card's "How to use" code, as written
    out["card"] = {"class": type(card["model"]).__name__, "outputs": sorted(k for k, v in card["out"].items()),
                   "features": "features" in card}
    torch.save(out, f"{io_path}.{kind}")
"""


def _env(tmp_path, hub_url) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "PYTHON"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", HF_TOKEN="local-hub-token")
    return env


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(hub, root): every kind saved and pushed by a user's script with plain transformers calls."""
    root = tmp_path_factory.mktemp("publish")
    with LocalHub() as hub:
        env = {**_env(root, hub.url), "PYTHONPATH": str(ROOT)}  # the publisher has this checkout's petct-fm
        proc = subprocess.run([sys.executable, "-c", PUBLISHER, str(root / "saved"), str(root / "io.pt")], cwd=root,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield hub, root


def _card(folder, repo_id):
    config = json.loads((folder / "config.json").read_text())
    return validate_model_card(str(render_model_card(CardInputs(repo_id, folder), config)))


def _card_install_lines(card) -> list[str]:
    """The pip lines of the card petct-fm writes for this saved model (its 'How to use' bash block)."""
    block = re.search(r"## How to use\n.*?```bash\n(.*?)```", card.text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _card_snippet(card) -> str:
    return re.search(r"## How to use\n.*?```python\n(.*?)```", card.text, re.S).group(1)


def _consume(root, hub, jobs: dict, lines, name):
    site = clean_site(lines, root / f"site-{name}")
    return subprocess.run([sys.executable, "-I", "-S", "-c", CONSUMER, str(site), str(root / "io.pt"),
                           json.dumps(jobs)], cwd=root, env=_env(root / name, hub.url), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def consumed(published):
    """One clean interpreter per set of install lines loads every kind that needs those lines."""
    hub, root = published
    groups: dict[tuple, dict] = {}
    for kind, (auto_class, _) in KINDS.items():
        card = _card(root / "saved" / kind, f"user/petct-{kind}")
        jobs = groups.setdefault(tuple(_card_install_lines(card)), {})
        jobs[kind] = (f"user/petct-{kind}", auto_class, _card_snippet(card))
    failures = {}
    for i, (lines, jobs) in enumerate(groups.items()):
        proc = _consume(root, hub, jobs, list(lines), f"group{i}")
        failures.update({kind: proc.stderr[-3000:] for kind in jobs if proc.returncode})
    return failures


@pytest.mark.parametrize("kind", KINDS)
def test_plain_push_to_hub_loads_with_only_the_cards_install_lines(published, consumed, kind):
    hub, root = published
    auto_class, backbones = KINDS[kind]
    stored = hub.files("model", f"user/petct-{kind}")
    config = json.loads(stored["config.json"])
    shipped = {"configuration_petct.py", "modeling_petct.py", "backbones.py", "masking.py"} | (
        {"modeling_separated.py"} if kind == "separated" else set())
    assert shipped <= set(stored) and "model.safetensors" in stored
    module = {"separated": "modeling_separated", "ensemble": "modeling_ensemble"}.get(kind, "modeling_petct")
    arch = {"separated": "PetCtForSeparatedModalityProbe", "mae": "PetCtForMaskedImageModeling",
            "ensemble": "PetCtEnsembleForSegmentation"}.get(kind, "PetCtForSegmentation")
    base = {"separated": "PetCtSeparatedModel", "ensemble": arch}.get(kind, "PetCtModel")
    config_class = {"separated": "PetCtSeparatedConfig", "ensemble": "PetCtEnsembleConfig"}.get(kind, "PetCtConfig")
    assert config["auto_map"] == {"AutoConfig": f"configuration_petct.{config_class}",
                                  "AutoModel": f"{module}.{base}", auto_class: f"{module}.{arch}"}

    card = _card(root / "saved" / kind, f"user/petct-{kind}")
    lines = _card_install_lines(card)
    assert lines == install_lines(backbones)
    dists = distributions_for(lines)
    assert ("einops" in dists) == ("swinunetr-v2" in backbones)
    assert ("dynamic-network-architectures" in dists) == ("plain-conv-unet" in backbones)
    assert not {"timm", "torchvision", "petct-fm", "scipy"} & set(dists)  # --no-deps kept timm/torchvision out

    assert kind not in consumed, consumed.get(kind)
    remote = torch.load(root / f"io.pt.{kind}", weights_only=True)
    expected = torch.load(root / "io.pt", weights_only=True)[kind]
    assert all(m.startswith("transformers_modules") for m in remote["modules"])
    assert remote["classes"] == [arch, base]
    close = dict(rtol=1e-5, atol=1e-6)  # outputs of two processes: equal threads, but never compared bit for bit
    torch.testing.assert_close(remote["task"], expected["task"], **close)
    # AutoModel: the task checkpoint's backbone (an ensemble has none: AutoModel is the ensemble itself)
    torch.testing.assert_close(remote["auto"], expected["task"] if kind == "ensemble" else expected["features"], **close)
    if kind != "mae":
        assert remote["labels"] == {0: "background", 1: "lesion"}
    if kind == "organs":
        torch.testing.assert_close(remote["organs"], expected["organs"], **close)
    assert remote["card"]["class"] == arch and ("logits" if kind != "mae" else "reconstruction") in \
        remote["card"]["outputs"]
    assert remote["card"]["features"] == (kind != "ensemble")


@pytest.mark.parametrize("kind, drop, install_line", [
    ("cnn", "dynamic-network-architectures", "pip install --no-deps dynamic-network-architectures==0.4.4"),
    ("swin", "einops", 'pip install "torch>=2.4" "transformers>=5.0,<6" "monai>=1.5,<1.7" "einops>=0.7"'),
])
def test_a_missing_backbone_package_fails_at_load_with_the_install_line(published, kind, drop, install_line):
    hub, root = published
    card = _card(root / "saved" / kind, f"user/petct-{kind}")
    without = [" ".join(w for w in line.split() if drop not in w) for line in _card_install_lines(card)]
    without = [line for line in without if line.split()[2:] and line.split()[2:] != ["--no-deps"]]
    jobs = {kind: (f"user/petct-{kind}", KINDS[kind][0], _card_snippet(card))}
    proc = _consume(root, hub, jobs, without, f"no-{drop}")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and drop.replace("-", "_") in last and install_line in last, last
