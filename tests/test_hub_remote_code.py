"""The standard Hugging Face path: plain ``save_pretrained`` + ``push_to_hub`` to a local Hub, then
``from_pretrained(..., trust_remote_code=True)`` in an interpreter that has only what the model card's install lines
bring in (tests/hub_user_env.py: ``python -I -S`` on a site folder of exactly those distributions; petct-fm is not
one of them). CNN, Swin and the separated-modality probe; outputs compared with the publisher's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from hub_user_env import clean_site, distributions_for
from local_hub import LocalHub

from modeling_petct.hub.card import CardInputs, render_model_card, validate_model_card
from modeling_petct.models.backbones import install_lines

KINDS = ("cnn", "swin", "separated")

PUBLISHER = r"""
import sys, torch
from modeling_petct import PetCtConfig, PetCtForSegmentation, PetCtForSeparatedModalityProbe, PetCtSeparatedConfig

folder_root, io_path = sys.argv[1], sys.argv[2]

def build(kind):
    torch.manual_seed(0)
    if kind in ("cnn", "swin"):
        return PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet" if kind == "cnn" else "tiny-swin"))
    pet = PetCtConfig.from_preset("tiny-unet", modalities=("PET",))
    ct = PetCtConfig.from_preset("tiny-swin", modalities=("CT",))
    return PetCtForSeparatedModalityProbe(PetCtSeparatedConfig.from_backbone_configs(pet, ct, crop_size=(32, 64, 64)))

x = torch.randn(1, 2, 32, 64, 64, generator=torch.Generator().manual_seed(1))
out = {"x": x}
for kind in ("cnn", "swin", "separated"):
    model = build(kind).eval()
    with torch.no_grad():
        out[kind] = model(x).logits
    model.save_pretrained(f"{folder_root}/{kind}")  # the standard calls, nothing petct-specific
    model.push_to_hub(f"user/petct-{kind}")
torch.save(out, io_path)
"""

CONSUMER = r"""
import importlib.util, sys
site, repo, io_path = sys.argv[1:4]
sys.path.append(site)
if importlib.util.find_spec("modeling_petct") is not None:
    sys.exit("modeling_petct is importable: the test would prove nothing")
import torch
from transformers import AutoModelForSemanticSegmentation

model = AutoModelForSemanticSegmentation.from_pretrained(repo, trust_remote_code=True).eval()
x = torch.load(io_path, weights_only=True)["x"]
with torch.no_grad():
    logits = model(x).logits
torch.save({"logits": logits, "module": type(model).__module__, "labels": dict(model.config.id2label)},
           io_path + "." + repo.split("/")[-1])
"""


def _env(tmp_path, hub_url) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "PYTHON"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", HF_TOKEN="local-hub-token")
    return env


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(hub, folders, io file): the three models saved and pushed by a user's script with plain transformers calls."""
    root = tmp_path_factory.mktemp("publish")
    with LocalHub() as hub:
        proc = subprocess.run([sys.executable, "-c", PUBLISHER, str(root / "saved"), str(root / "io.pt")], cwd=root,
                              env=_env(root, hub.url), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield hub, root


def _card_install_lines(folder, repo_id) -> list[str]:
    """The pip lines of the card petct-fm writes for this saved model (its 'How to use' bash block)."""
    config = json.loads((folder / "config.json").read_text())
    card = validate_model_card(str(render_model_card(CardInputs(repo_id, folder), config)))
    block = re.search(r"## How to use\n.*?```bash\n(.*?)```", card.text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _consume(root, hub, kind, lines, name):
    site = clean_site(lines, root / f"site-{name}")
    return subprocess.run([sys.executable, "-I", "-S", "-c", CONSUMER, str(site), f"user/petct-{kind}",
                           str(root / "io.pt")], cwd=root, env=_env(root / name, hub.url), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("kind", KINDS)
def test_plain_push_to_hub_loads_with_only_the_cards_install_lines(published, kind):
    hub, root = published
    folder = root / "saved" / kind
    stored = hub.files("model", f"user/petct-{kind}")
    config = json.loads(stored["config.json"])
    shipped = {"configuration_petct.py", "modeling_petct.py", "backbones.py", "masking.py"} | (
        {"modeling_separated.py"} if kind == "separated" else set())
    assert shipped <= set(stored) and "model.safetensors" in stored
    arch = "PetCtForSeparatedModalityProbe" if kind == "separated" else "PetCtForSegmentation"
    module = "modeling_separated" if kind == "separated" else "modeling_petct"
    assert config["auto_map"]["AutoModelForSemanticSegmentation"] == f"{module}.{arch}"
    assert config["id2label"] == {"0": "background", "1": "lesion"}

    lines = _card_install_lines(folder, f"user/petct-{kind}")
    needs = {"cnn": ["plain-conv-unet"], "swin": ["swinunetr-v2"], "separated": ["plain-conv-unet", "swinunetr-v2"]}
    assert lines == install_lines(needs[kind])
    dists = distributions_for(lines)
    assert ("einops" in dists) == (kind != "cnn") and ("dynamic-network-architectures" in dists) == (kind != "swin")
    assert not {"timm", "torchvision", "petct-fm", "scipy"} & set(dists)  # --no-deps kept timm/torchvision out

    proc = _consume(root, hub, kind, lines, kind)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = torch.load(root / f"io.pt.petct-{kind}", weights_only=True)
    assert remote["module"].startswith("transformers_modules")
    assert remote["labels"] == {0: "background", 1: "lesion"}
    assert torch.equal(remote["logits"], torch.load(root / "io.pt", weights_only=True)[kind])


@pytest.mark.parametrize("kind, drop, install_line", [
    ("cnn", "dynamic-network-architectures", "pip install --no-deps dynamic-network-architectures==0.4.4"),
    ("swin", "einops", 'pip install "torch>=2.4" "transformers>=5.0,<6" "monai>=1.5,<1.7" "einops>=0.7"'),
])
def test_a_missing_backbone_package_fails_at_load_with_the_install_line(published, kind, drop, install_line):
    hub, root = published
    lines = _card_install_lines(root / "saved" / kind, f"user/petct-{kind}")
    without = [" ".join(w for w in line.split() if drop not in w) for line in lines]
    without = [line for line in without if line.split()[2:] and line.split()[2:] != ["--no-deps"]]
    proc = _consume(root, hub, kind, without, f"no-{drop}")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and drop.replace("-", "_") in last and install_line in last, last
