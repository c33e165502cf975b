"""CPU runtimes for the sliding window: eager PyTorch, OpenVINO fp32, OpenVINO int8 (NNCF post-training quantisation).

Why: on the 2-core AVX2 dev box eager PyTorch already runs a 96x128x128 nnunet-v2-3d window at ~90% of the CPU's
fp32 matmul rate (BENCHMARKS.md), so the remaining speed has to come from a runtime that does less arithmetic per voxel:
OpenVINO's fused fp32 kernels (~2x) and int8 (~3.5x). Both come with the optional extra ``pip install petct-fm[cpu-fast]``.

Export is paid once: the converted (and quantised) network is saved as OpenVINO IR in a cache folder keyed by the
weights' hash, the window shape and the runtime versions, beside the model folder (``<model>/.petct-backends/``) when
that folder is writable, else in the user cache (``$PETCT_BACKEND_CACHE`` or ``~/.cache/petct-fm/backends``).
int8 is calibrated on the harmonised images given to :func:`export_backend` (the benchmark passes the phantoms the model
was trained on); when none were given, on the first study it segments (its windows, hot and cold alike).
Each export is checked against eager PyTorch on windows the calibration did not use (foreground Dice of the argmax,
max probability difference); ``auto`` picks the fastest exported backend that passed, and torch otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..atomic import remove_stale, temp_prefix
from ..errors import PetCtInputError
from .loading import weights_checksum
from .settings import BACKENDS

FASTEST_FIRST = ("openvino-int8", "openvino")
AGREEMENT_FLOOR = 0.98  # foreground Dice vs eager PyTorch on held-out windows (the mask-agreement target)
AUTO_MIN_PARAMETERS = 1_000_000  # smaller networks run a window in well under a second: export would cost more
CALIBRATION_WINDOWS = 8
CHECK_WINDOWS = 2
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # InferenceSettings.precision -> OpenVINO's; "auto": its default
BACKEND_HELP = (
    "auto: the fastest exported runtime that passed its accuracy check against PyTorch (OpenVINO int8, then fp32; "
    "needs `pip install petct-fm[cpu-fast]`), else torch; torch: eager PyTorch; openvino / openvino-int8: that runtime"
)


class BackendError(PetCtInputError):
    """A backend was asked for that cannot run here (unknown, extra not installed, not a CPU)."""

    def __init__(self, problem: str):
        super().__init__("--backend", problem)


def installed(backend: str) -> bool:
    """Whether the runtime a backend needs is importable (openvino; nncf too for int8)."""
    if backend == "torch":
        return True
    needs = ("openvino", "nncf") if backend == "openvino-int8" else ("openvino",)
    return all(importlib.util.find_spec(name) is not None for name in needs)


def require(backend: str, device="cpu") -> None:
    """Refuse, in one line, a backend that cannot run here: unknown, its extra missing, or not on the CPU."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("auto", "torch"):
        return
    if not str(device).startswith("cpu"):
        raise BackendError(f"{backend} runs on the CPU only; use --backend torch (or auto) on {device}")
    if not installed(backend):
        raise BackendError(f"{backend} needs the cpu-fast extra: pip install 'petct-fm[cpu-fast]'")


def _versions(backend: str) -> str:
    import openvino

    version = f"ov{openvino.__version__.split('-')[0]}"
    if backend == "openvino-int8":
        import nncf

        version += f"-nncf{nncf.__version__}"
    return version


def cache_root(model) -> Path:
    """Beside the model folder when it is a writable local folder outside the Hub cache, else the user cache."""
    if os.environ.get("PETCT_BACKEND_CACHE"):
        return Path(os.environ["PETCT_BACKEND_CACHE"])
    source = Path(str(getattr(model.config, "_name_or_path", "") or "."))
    in_hub_cache = "huggingface" in source.parts or "snapshots" in source.parts
    if str(source) not in ("", ".") and source.is_dir() and os.access(source, os.W_OK) and not in_hub_cache:
        return source / ".petct-backends"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "petct-fm" / "backends"


def cache_dir(model, backend: str, window_shape: Sequence[int], digest: str | None = None,
              precision: str = "auto") -> Path:
    """Folder of one export: backend, class and weights (`digest`: loading.weights_checksum), input shape (channels +
    window), precision, runtime versions."""
    shape = "x".join(str(int(n)) for n in window_shape)
    weights = (digest or weights_checksum(model))[:16]
    key = f"{backend}-{type(model).__name__}-{weights}-{shape}-{precision}-{_versions(backend)}"
    return cache_root(model) / key


def organ_aware(model) -> bool:
    return bool(getattr(model.config, "organ_labels", ()))


def torch_heads(model) -> Callable:
    """(B, C, *roi) tensor -> tuple of head logits: (lesion,) or (lesion, organ) for organ-aware models."""
    both = organ_aware(model)

    def heads(x):
        out = model(x)
        return (out.logits, out.organ_logits) if both else (out.logits,)

    return heads


def _heads_module(model):
    import torch

    class Heads(torch.nn.Module):  # the model as a plain tensor -> tensor(s) module (what the converters trace)
        def __init__(self):
            super().__init__()
            self.model, self.heads = model, torch_heads(model)

        def forward(self, x):
            return self.heads(x)

    return Heads().eval()


def grid_windows(image: np.ndarray, roi: Sequence[int]) -> list[np.ndarray]:
    """Non-overlapping roi windows (1, C, *roi) tiling ``image`` (C, Z, Y, X), zero-padded where the image is smaller."""
    shape = image.shape[1:]
    starts = [sorted({min(s, max(n - r, 0)) for s in range(0, max(n, 1), r)}) for n, r in zip(shape, roi)]
    out = []
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                w = image[:, z : z + roi[0], y : y + roi[1], x : x + roi[2]]
                pad = [(0, 0)] + [(0, r - n) for r, n in zip(roi, w.shape[1:])]
                out.append(np.ascontiguousarray(np.pad(w, pad), dtype=np.float32)[None])
    return out


def split_windows(images: Sequence[np.ndarray], roi, n_calib: int = CALIBRATION_WINDOWS, n_check: int = CHECK_WINDOWS):
    """Calibration and check windows from ``images``, ranked by PET maximum. Calibration spans hot to cold and keeps the
    hottest (its activation ranges must reach lesion uptake); check windows are held out from the second-hottest to the
    median, where lesions and the network's foreground are."""
    windows = [w for image in images for w in grid_windows(image, roi)]
    windows.sort(key=lambda w: -float(w[0, 0].max()))
    if len(windows) <= n_check:
        return windows, windows
    check_idx = set(np.linspace(1, max(1, len(windows) // 2), n_check).round().astype(int).tolist())
    rest = [w for i, w in enumerate(windows) if i not in check_idx]
    pick = np.linspace(0, len(rest) - 1, min(n_calib, len(rest))).round().astype(int)
    return [rest[i] for i in sorted(set(pick))], [windows[i] for i in sorted(check_idx)]


def _convert(model, backend: str, calib: list[np.ndarray]):
    import openvino as ov
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks in the model's forward
        ov_model = ov.convert_model(_heads_module(model), example_input=torch.from_numpy(calib[0]))
    if backend == "openvino-int8":
        import nncf

        ov_model = nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=len(calib))
    return ov_model


def _compile(xml: Path, precision: str = "auto"):
    """Compile for this CPU. precision "fp32" forces f32; "auto" is OpenVINO's default, which runs bf16 on CPUs with
    AVX512-BF16/AMX (as torch's precision="auto" does) and f32 elsewhere; "bf16" asks for bf16."""
    import openvino as ov
    import torch

    config = {"INFERENCE_NUM_THREADS": int(torch.get_num_threads()), "PERFORMANCE_HINT": "LATENCY"}
    if precision in PRECISION_HINTS:
        config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
    return ov.Core().compile_model(str(xml), "CPU", config)


def agreement(model, compiled, windows: list[np.ndarray]) -> dict:
    """Foreground Dice of the argmax and max |p - p_torch| of a compiled network against eager PyTorch."""
    import torch

    inter = total = 0
    max_diff = 0.0
    with torch.inference_mode():
        for w in windows:
            p_ref = torch.softmax(model(torch.from_numpy(w)).logits.float(), 1).numpy()
            p = torch.softmax(torch.from_numpy(np.asarray(compiled(w)[0])), 1).numpy()
            a, b = p_ref.argmax(1) > 0, p.argmax(1) > 0
            inter, total = inter + int((a & b).sum()), total + int(a.sum() + b.sum())
            max_diff = max(max_diff, float(np.abs(p - p_ref).max()))
    dice = 1.0 if total == 0 else 2 * inter / total
    return {"dice_vs_torch": dice, "max_prob_diff": max_diff, "check_windows": len(windows),
            "foreground_voxels": total, "passed": bool(dice >= AGREEMENT_FLOOR)}  # fmt: skip


def export_backend(model, backend: str, images: Sequence[np.ndarray], roi: Sequence[int] | None = None,
                   *, calibration: str = "given images", digest: str | None = None, precision: str = "auto") -> Path:
    """Convert (and for int8 quantise) ``model`` and check it against PyTorch; returns the cache folder.

    ``images``: harmonised (C, Z, Y, X) arrays with the model's input channels, used for calibration and the check.
    Written atomically (a crash leaves no half-written export); an existing export is reused.
    """
    require(backend)
    roi = tuple(int(r) for r in (roi or model.config.crop_size))
    channels = int(images[0].shape[0])
    folder = cache_dir(model, backend, (channels, *roi), digest, precision)
    if (folder / "check.json").is_file():
        return folder
    import openvino as ov

    calib, check = split_windows(images, roi)
    ov_model = _convert(model, backend, calib)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent, folder.name)  # what an export killed with SIGKILL left
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), dir=folder.parent))
    try:
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        compiled = _compile(tmp / "model.xml", precision)
        result = agreement(model, compiled, check)
        runtime_precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        result.update(backend=backend, calibration=calibration, calibration_windows=len(calib), window=list(roi),
                      precision=precision, runtime_precision=runtime_precision)  # fmt: skip
        (tmp / "check.json").write_text(json.dumps(result, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same export first: keep its copy
            if not (folder / "check.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_result(folder: Path) -> dict | None:
    path = folder / "check.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resolve(model, backend: str) -> list[str]:
    """The backends to try, in order: one for an explicit choice; for auto, the installed fast ones, then torch."""
    require(backend)
    if backend != "auto":
        return [backend]
    if sum(p.numel() for p in model.parameters()) < AUTO_MIN_PARAMETERS:
        return ["torch"]
    return [b for b in FASTEST_FIRST if installed(b)] + ["torch"]


def window_forward(model, backend: str, image: np.ndarray, roi: Sequence[int], device="cpu", precision: str = "auto",
                   report: Callable[[str], None] | None = None) -> tuple[Callable, str]:
    """A callable (B, C, *roi) tensor -> tuple of head logits (see ``torch_heads``), and the backend's name.

    Exports on first use (calibrating on ``image``, the study being segmented, when no export is cached; a cache
    whose check.json is unreadable is exported again). An export that failed its accuracy check (the cache's
    check.json) is skipped by auto and refused when asked for by name: it would change the masks without a word.
    """
    import torch

    require(backend, torch.device(device).type)
    if torch.device(device).type != "cpu":
        return torch_heads(model), "torch"
    digest = None
    for name in resolve(model, backend):
        if name == "torch":
            return torch_heads(model), "torch"
        digest = digest or weights_checksum(model)
        folder = cache_dir(model, name, (image.shape[0], *roi), digest, precision)
        check = _readable_check(folder)
        if check is None:
            if report:
                report(f"exporting the network to {name} (once per model; calibrating on this study)")
            export_backend(model, name, [image], roi, calibration="the first study segmented", digest=digest,
                           precision=precision)
            check = check_result(folder)
        if not check["passed"] and backend == "auto":
            continue
        if not check["passed"]:
            raise BackendError(f"the {name} export of this model failed its accuracy check against PyTorch "
                               f"(foreground Dice {check['dice_vs_torch']:.3f} < {AGREEMENT_FLOOR}, "
                               f"{folder / 'check.json'}): use --backend torch, or auto")
        try:
            return _ov_heads(_compile(folder / "model.xml", precision)), name
        except RuntimeError as err:
            raise BackendError(f"the cached {name} export {folder} cannot be loaded ({str(err).splitlines()[0]}): "
                               "delete that folder and run again (it is exported anew)") from None
    raise AssertionError("resolve() always ends with torch")


def _readable_check(folder: Path) -> dict | None:
    """The export's check, or None when there is none; a cache whose check.json is unreadable (a crash, a full disk)
    is removed so that it is exported again."""
    try:
        check = check_result(folder)
        if check is None or not isinstance(check.get("passed"), bool):
            raise ValueError("no verdict")
        return check
    except (OSError, ValueError, AttributeError):
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _ov_heads(compiled) -> Callable:
    import torch

    n_heads = len(compiled.outputs)

    def heads(windows):
        outs = [compiled(w[None].numpy()) for w in windows]
        return tuple(torch.from_numpy(np.concatenate([np.asarray(o[i]) for o in outs], axis=0)) for i in range(n_heads))

    return heads
