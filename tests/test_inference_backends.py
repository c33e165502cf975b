"""CPU runtimes (inference/backends.py): each backend's mask against eager PyTorch's, the export cache, and auto's choice.

Tolerances (random-init tiny-unet, small phantom; a random network's probabilities sit near 0.5 over much of the body,
so they are the worst case for mask agreement; the trained model's agreement is in BENCHMARKS.md):
OpenVINO fp32: foreground Dice vs torch >= 0.99 and mean |p - p_torch| <= 0.005; int8: Dice >= 0.85, mean <= 0.05.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import build_tiny
from modeling_petct import PetCtForSegmentation
from modeling_petct.cli import main
from modeling_petct.data.synthetic.phantom import make_phantom
from modeling_petct.inference import InferenceSettings, Segmenter
from modeling_petct.inference import backends

EXTRA = "needs the cpu-fast extra (pip install 'petct-fm[cpu-fast]'): openvino"
TOLERANCE = {"openvino": (0.99, 0.005), "openvino-int8": (0.85, 0.05)}  # (min Dice vs torch, max mean |dp|)


def tiny_model() -> PetCtForSegmentation:
    return build_tiny(crop_size=(32, 64, 64))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PETCT_BACKEND_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, size="small", n_lesions=6)


@pytest.fixture(scope="module")
def torch_result(phantom):
    return Segmenter(tiny_model(), InferenceSettings(backend="torch"))(phantom.pet, phantom.ct,
                                                                       keep_probabilities=True)  # fmt: skip


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "openvino-int8"])
def test_backend_mask_matches_torch_within_tolerance(backend, phantom, torch_result, cache, monkeypatch):
    pytest.importorskip("openvino", reason=EXTRA)
    monkeypatch.setattr(backends, "AGREEMENT_FLOOR", 0.0)  # a random tiny network: measured here against TOLERANCE
    if backend == "openvino-int8":
        pytest.importorskip("nncf", reason=EXTRA.replace("openvino", "nncf"))
    result = Segmenter(tiny_model(), InferenceSettings(backend=backend))(phantom.pet, phantom.ct,
                                                                         keep_probabilities=True)  # fmt: skip
    min_dice, max_mean_dp = TOLERANCE[backend]
    assert torch_result.mask.array.sum() > 1000  # a real comparison, not two empty masks
    assert dice(result.mask.array, torch_result.mask.array) >= min_dice
    assert float(np.abs(result.probabilities - torch_result.probabilities).mean()) <= max_mean_dp
    assert result.mask.array.shape == torch_result.mask.array.shape
    (export,) = cache.iterdir()  # one export, keyed by backend, weights, window and runtime version
    check = json.loads((export / "check.json").read_text())
    assert export.name.startswith(f"{backend}-") and "ov" in export.name and "2x32x64x64-auto-ov" in export.name
    assert check["calibration"] == "the first study segmented" and check["check_windows"] >= 1
    assert 0.0 <= check["dice_vs_torch"] <= 1.0


@pytest.mark.slow
def test_export_is_paid_once(phantom, cache, monkeypatch):
    pytest.importorskip("openvino", reason=EXTRA)
    model, image = tiny_model(), np.random.default_rng(0).normal(scale=0.1, size=(2, 40, 70, 70)).astype(np.float32)
    image[0, 10:20, 20:40, 20:40] += 5.0  # noise: a constant region makes instance norm divide by ~0
    folder = backends.export_backend(model, "openvino", [image], calibration="test image", precision="fp32")
    assert json.loads((folder / "check.json").read_text())["runtime_precision"] == "f32"
    monkeypatch.setattr(backends, "_convert", lambda *a: pytest.fail("exported twice"))
    assert backends.export_backend(model, "openvino", [image], precision="fp32") == folder
    forward, used = backends.window_forward(model, "openvino", image, (32, 64, 64), precision="fp32")
    assert used == "openvino"
    window = torch.from_numpy(backends.grid_windows(image, (32, 64, 64))[0])
    with torch.inference_mode():  # fp32 OpenVINO reproduces eager's logits (OpenVINO's default may be bf16)
        assert np.allclose(forward(window)[0].numpy(), model(window).logits.numpy(), atol=2e-3)
    with torch.no_grad():
        next(model.parameters()).add_(0.1)  # new weights: a new key
    assert backends.cache_dir(model, "openvino", (2, 32, 64, 64), precision="fp32") != folder


@pytest.mark.slow
def test_auto_takes_the_fastest_backend_that_passed(cache, monkeypatch):
    pytest.importorskip("openvino", reason=EXTRA)
    pytest.importorskip("nncf", reason=EXTRA.replace("openvino", "nncf"))
    model, image = tiny_model(), np.random.default_rng(0).normal(size=(2, 32, 64, 64)).astype(np.float32)
    monkeypatch.setattr(backends, "AUTO_MIN_PARAMETERS", 0)
    for name in backends.FASTEST_FIRST:
        backends.export_backend(model, name, [image])

    def set_passed(name, passed):
        path = backends.cache_dir(model, name, (2, 32, 64, 64)) / "check.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "passed": passed}))

    set_passed("openvino-int8", True)
    assert backends.window_forward(model, "auto", image, (32, 64, 64))[1] == "openvino-int8"
    set_passed("openvino-int8", False)
    assert backends.window_forward(model, "auto", image, (32, 64, 64))[1] == "openvino"
    set_passed("openvino", False)
    assert backends.window_forward(model, "auto", image, (32, 64, 64))[1] == "torch"
    with pytest.raises(backends.BackendError, match="failed its accuracy check"):  # asked for by name: refused
        backends.window_forward(model, "openvino-int8", image, (32, 64, 64))
    set_passed("openvino-int8", True)
    assert backends.window_forward(model, "openvino-int8", image, (32, 64, 64))[1] == "openvino-int8"


def test_a_corrupt_export_cache_is_rebuilt_or_named(cache):
    pytest.importorskip("openvino", reason=EXTRA)
    model, image = tiny_model(), np.random.default_rng(0).normal(size=(2, 32, 64, 64)).astype(np.float32)
    folder = backends.export_backend(model, "openvino", [image], precision="fp32")
    (folder / "check.json").write_text('{"passed": tr')  # killed mid-write
    assert backends.window_forward(model, "openvino", image, (32, 64, 64), precision="fp32")[1] == "openvino"
    assert json.loads((folder / "check.json").read_text())["passed"] in (True, False)  # exported anew
    (folder / "model.xml").write_text("<net><broken")
    with pytest.raises(backends.BackendError, match=f"{folder.name} cannot be loaded.*delete that folder"):
        backends.window_forward(model, "openvino", image, (32, 64, 64), precision="fp32")


def test_auto_keeps_small_networks_and_other_devices_on_torch(monkeypatch):
    model = tiny_model()
    assert backends.resolve(model, "auto") == ["torch"]  # < 1 M parameters: export would cost more than it saves
    monkeypatch.setattr(backends, "AUTO_MIN_PARAMETERS", 0)
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    assert backends.resolve(model, "auto") == ["torch"]  # extra missing
    with pytest.raises(backends.BackendError, match="cpu-fast extra"):
        backends.require("openvino")
    with pytest.raises(backends.BackendError, match="CPU only"):
        backends.require("openvino-int8", "cuda")
    with pytest.raises(backends.BackendError, match="unknown backend"):
        backends.require("tensorrt")


def test_cache_beside_a_writable_model_folder_else_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("PETCT_BACKEND_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    model = PetCtForSegmentation.from_pretrained(folder)
    assert backends.cache_root(model) == folder / ".petct-backends"
    real_access = backends.os.access
    monkeypatch.setattr(backends.os, "access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode))
    assert backends.cache_root(model) == tmp_path / "user-cache" / "petct-fm" / "backends"  # read-only model folder
    assert backends.cache_root(tiny_model()) == tmp_path / "user-cache" / "petct-fm" / "backends"  # in memory only


def test_calibration_windows_cover_hot_and_cold_and_leave_check_windows_out():
    image = np.zeros((2, 64, 128, 128), np.float32)
    for i in range(8):  # 8 grid windows, window i with PET maximum i
        z, y, x = (i // 4) * 32, ((i // 2) % 2) * 64, (i % 2) * 64
        image[0, z, y, x] = float(i)
    calib, check = backends.split_windows([image], (32, 64, 64), n_calib=4, n_check=2)
    peaks = lambda ws: sorted(float(w[0, 0].max()) for w in ws)  # noqa: E731
    assert len(calib) == 4 and len(check) == 2 and not set(peaks(calib)) & set(peaks(check))
    assert max(peaks(calib)) == 7.0 and min(peaks(calib)) == 0.0


def test_cli_refuses_a_backend_it_cannot_run_before_reading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    pet, ct = tmp_path / "PET.nii.gz", tmp_path / "CT.nii.gz"
    pet.write_bytes(b"not read"), ct.write_bytes(b"not read")
    code = main(["segment", "--pet", str(pet), "--ct", str(ct), "-o", str(tmp_path / "m.nii.gz"), "--model",
                 str(tmp_path / "no-model"), "--device", "cpu", "--backend", "openvino"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--backend" in err[0] and "cpu-fast" in err[0]
    assert not (tmp_path / "m.nii.gz").exists()
