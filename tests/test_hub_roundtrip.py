"""push_model.py against a local Hub-compatible server, then download and load it back.

The remote-code check runs in a fresh interpreter where ``import modeling_petct`` is impossible (a meta-path finder
refuses it, and ``-I`` keeps the checkout off sys.path), so only the files in the Hub repo can provide the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import build_tiny
from huggingface_hub import ModelCard, snapshot_download
from local_hub import LocalHub, load_hub_script

from modeling_petct import PetCtForMaskedImageModeling
from modeling_petct.errors import PetCtInputError
from modeling_petct.hub.export import remote_code_files
from modeling_petct.hub.upload import EXPORT_MARKER
from modeling_petct.models.registry import REMOTE_CODE_FILES

MAE_CODE = set(REMOTE_CODE_FILES) - {"modeling_separated.py", "modeling_ensemble.py"}  # what an MAE save copies

REPO = "user/petct-tiny"

REMOTE_CONSUMER = r"""
import importlib.abc, sys

class RefusePetct(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_petct" or name.startswith("modeling_petct."):
            raise ImportError(name + " is blocked: petct-fm is not installed here")

sys.meta_path.insert(0, RefusePetct())
try:
    import modeling_petct
    sys.exit("modeling_petct is importable: the test would prove nothing")
except ImportError:
    pass

import torch
from huggingface_hub import snapshot_download
from transformers import AutoModelForMaskedImageModeling

repo, io_path = sys.argv[1], sys.argv[2]
snapshot = snapshot_download(repo)
mim = AutoModelForMaskedImageModeling.from_pretrained(repo, trust_remote_code=True).eval()
base = mim.petct  # the backbone (PetCtModel) inside
x = torch.load(io_path, weights_only=True)["x"]
with torch.no_grad():
    out = {"reconstruction": mim(x, mask=torch.zeros_like(x)).reconstruction,
           "hidden": base(x).last_hidden_state, "weights": mim.state_dict()}
torch.save(out, io_path)
print(type(mim).__module__, type(base).__name__, snapshot)
"""


@pytest.fixture(scope="module")
def hub():
    with LocalHub() as server:
        yield server


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    model = build_tiny("mae")
    folder = tmp_path_factory.mktemp("model") / "mae"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A training options file and the evaluation JSON written by `petct evaluate --json` on two cases."""
    from modeling_petct.cli import main as petct

    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    for folder in ("pred", "gt"):
        (root / folder).mkdir()
    for case in ("case_a", "case_b"):
        gt = np.zeros((16, 16, 16), np.uint8)
        gt[4:9, 4:9, 4:9] = 1
        pred = np.roll(gt, int(rng.integers(1, 3)), axis=0)
        for folder, arr in (("pred", pred), ("gt", gt)):
            nib.save(nib.Nifti1Image(arr, np.diag([2.0, 2.0, 3.0, 1.0])), root / folder / f"{case}.nii.gz")
    assert petct(["evaluate", "--pred", str(root / "pred"), "--gt", str(root / "gt"), "--json",
                  str(root / "eval.json"), "--bootstrap", "200"]) == 0
    (root / "recipe.json").write_text(json.dumps({"preset": "tiny-unet", "learning_rate": 5e-4, "num_epochs": 3}))
    return root, json.loads((root / "eval.json").read_text())["aggregate"]


def _push_args(model_dir, out, run_dir, hub_url=None):
    args = [str(model_dir), "--repo-id", REPO, "--out-dir", str(out), "--training-config", str(run_dir / "recipe.json"),
            "--eval", str(run_dir / "eval.json"), "--eval-dataset", "synthetic phantom cohort"]
    return args + (["--endpoint", hub_url] if hub_url else ["--dry-run"])


def test_dry_run_writes_a_valid_folder_and_uploads_nothing(hub, tiny_model, run_files, tmp_path):
    _, model_dir = tiny_model
    run_dir, aggregate = run_files
    push_model = load_hub_script("push_model")
    requests_before = len(hub.requests)
    assert push_model.main(_push_args(model_dir, tmp_path / "out", run_dir)) == 0
    assert len(hub.requests) == requests_before  # --dry-run never talks to the Hub
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"README.md", "config.json", "model.safetensors", EXPORT_MARKER,
                                               *MAE_CODE}
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_petct.PetCtConfig", "AutoModel": "modeling_petct.PetCtModel",
                                  "AutoModelForMaskedImageModeling": "modeling_petct.PetCtForMaskedImageModeling"}

    card = ModelCard.load(out / "README.md", ignore_metadata_errors=False)
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["dice"].metric_value == pytest.approx(aggregate["dice"], abs=1e-4)
    assert results["false_positive_volume"].metric_value == pytest.approx(aggregate["fpv_ml"], abs=1e-4)
    assert results["dice"].dataset_name == "synthetic phantom cohort" and results["dice"].dataset_split == "test"
    for needle in ("Not a medical device", "arXiv:2605.21835", "no claim about the training data",
                   "learning_rate: 0.0005", "AutoModelForMaskedImageModeling.from_pretrained(", "Out-of-scope use",
                   "pip install --no-deps dynamic-network-architectures==0.4.4"):
        assert needle in str(card), needle
    assert "4,997" not in card.text and "ViMed-PET" not in card.text  # not trained on the paper's corpus
    assert f"| {aggregate['dice']:.3f} [" in card.text  # the results table shows Dice with its bootstrap CI


def assert_same_weights(loaded: dict, reference: dict) -> None:
    assert loaded.keys() == reference.keys()
    assert [k for k in reference if not torch.equal(loaded[k], reference[k])] == []


@pytest.mark.slow
def test_push_then_load_in_fresh_processes(hub, tiny_model, run_files, tmp_path):
    model, model_dir = tiny_model
    run_dir, _ = run_files
    push_model = load_hub_script("push_model")
    assert push_model.main(_push_args(model_dir, tmp_path / "out", run_dir)) == 0  # --dry-run first, as README
    assert push_model.main(_push_args(model_dir, tmp_path / "out", run_dir, hub.url)) == 0  # replaces its folder
    stored = hub.files("model", REPO)
    assert {"config.json", "model.safetensors", "README.md", *MAE_CODE} <= set(stored)
    assert EXPORT_MARKER not in stored

    x = torch.randn(1, 2, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected_reconstruction = model(x, mask=torch.zeros_like(x)).reconstruction
        expected_hidden = model.petct(x).last_hidden_state

    # with petct-fm: download through the client (explicit endpoint) and load the native classes
    snapshot = snapshot_download(REPO, endpoint=hub.url, cache_dir=tmp_path / "cache")
    native = PetCtForMaskedImageModeling.from_pretrained(snapshot).eval()
    assert_same_weights(native.state_dict(), model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(native(x, mask=torch.zeros_like(x)).reconstruction, expected_reconstruction)

    # without petct-fm: a fresh interpreter that only has the Hub repo's remote code
    io_path = tmp_path / "io.pt"
    torch.save({"x": x}, io_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "PYTHON"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-I", "-c", REMOTE_CONSUMER, REPO, str(io_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transformers_modules" in proc.stdout and "PetCtModel" in proc.stdout
    remote = torch.load(io_path, weights_only=True)
    # weights bit for bit; outputs within float tolerance (this process and the child may sum in another order:
    # other thread counts, other MKL kernels)
    assert_same_weights(remote["weights"], model.state_dict())
    torch.testing.assert_close(remote["reconstruction"], expected_reconstruction, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(remote["hidden"], expected_hidden, rtol=1e-4, atol=1e-5)
    assert any(method == "HEAD" and "/resolve/" in path for method, path in hub.requests)


def test_an_existing_folder_not_written_by_an_export_is_kept(tiny_model, run_files, tmp_path, capsys):
    _, model_dir = tiny_model
    run_dir, _ = run_files
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert load_hub_script("push_model").main(_push_args(model_dir, tmp_path / "out", run_dir)) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_remote_code_check_rejects_package_imports(tmp_path):
    for path in remote_code_files():
        (tmp_path / path.name).write_text(path.read_text())
    assert len(remote_code_files(tmp_path)) == len(REMOTE_CODE_FILES)
    masking = tmp_path / "masking.py"
    masking.write_text(masking.read_text() + "\nfrom .errors import PetCtInputError\n")
    with pytest.raises(PetCtInputError, match="masking.py.*errors"):
        remote_code_files(tmp_path)


def test_local_hub_answers_like_the_hub(hub, tmp_path):
    """The client's own error types come back, so a wrong id or file fails in tests as it would on the Hub."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=hub.url)
    api.create_repo("user/errors")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="user/errors")
    assert api.file_exists("user/errors", "config.json") and not api.file_exists("user/errors", "x.bin")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/absent")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("user/errors", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("user/errors", "x.bin", endpoint=hub.url, cache_dir=tmp_path)
    assert hf_hub_download("user/errors", "config.json", endpoint=hub.url, cache_dir=tmp_path)
