"""Training-state checkpoints in formats that cannot run code: JSON for numbers and structure, safetensors for tensors.

Why not Accelerate's `save_state`/`load_state`: they pickle the optimizer, scheduler, RNG states and registered
objects, and `load_state` unpickles `custom_checkpoint_*.pkl` with ``weights_only=False``, so resuming a run folder
someone else made (``--resume``, `petct study` re-running a received grid) would run whatever it planted there. Here a
checkpoint holds only data: a tree of dicts, lists, tuples, numbers, strings, numpy arrays and tensors, encoded by
`_encode` into ``NAME.json`` with its tensors in ``NAME.safetensors``. A folder with pickles and none of ours is
refused, never read.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import PetCtInputError

COMPLETE_MARKER = "COMPLETE"
PREFIX = "checkpoint_"


def _encode(obj, tensors: dict, path: str):
    """A JSON-able tree for ``obj``; its tensors go into ``tensors`` under their path in the tree."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", memory_format=torch.contiguous_format).clone()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training checkpoint")


def _decode(tree, tensors: dict):
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__ndarray__" in tree:
        return np.asarray(tree["__ndarray__"], dtype=np.dtype(tree["dtype"]))
    if "__tuple__" in tree:
        return tuple(_decode(v, tensors) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {k: _decode(v, tensors) for k, v in tree["__items__"]}
    return {k: _decode(v, tensors) for k, v in tree["__dict__"].items()}


def write_state(directory: Path, name: str, obj) -> None:
    """``obj`` as ``directory/name.json`` plus ``directory/name.safetensors`` (when it holds tensors)."""
    from safetensors.torch import save_file

    tensors: dict = {}
    tree = _encode(obj, tensors, name)
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(tree))


def read_state(directory: Path, name: str):
    """What `write_state` wrote: JSON and safetensors only, nothing that can execute."""
    from safetensors.torch import load_file

    tree_file, tensor_file = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not tree_file.is_file():
        raise PetCtInputError(directory, f"checkpoint lacks {tree_file.name} (pickled training states, as older versions "
                                         "or Accelerate's save_state wrote, are never loaded: they can run code): "
                                         "delete the folder to start that run afresh")
    try:
        tensors = load_file(str(tensor_file)) if tensor_file.is_file() else {}
        return _decode(json.loads(tree_file.read_text()), tensors)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise PetCtInputError(tree_file, f"unreadable training checkpoint ({err}): delete its folder") from None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoints whose save finished (a killed save leaves no marker), oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if _number(d) is not None and (d / COMPLETE_MARKER).exists()]
    return sorted(found, key=_number)


def _number(folder: Path) -> int | None:
    tail = folder.name[len(PREFIX):]
    return int(tail) if folder.name.startswith(PREFIX) and tail.isdigit() else None


def next_checkpoint(output_dir: str | Path) -> Path:
    numbers = [_number(d) for d in (Path(output_dir) / "checkpoints").glob(f"{PREFIX}*")]
    return Path(output_dir) / "checkpoints" / f"{PREFIX}{max([n for n in numbers if n is not None], default=-1) + 1}"


def drop_incomplete(output_dir: str | Path) -> None:
    root = Path(output_dir) / "checkpoints"
    for d in root.iterdir() if root.is_dir() else []:
        if d.is_dir() and not (d / COMPLETE_MARKER).exists():
            shutil.rmtree(d)


def keep_newest(output_dir: str | Path, limit: int) -> None:
    for old in complete_checkpoints(output_dir)[:-limit] if limit > 0 else []:
        shutil.rmtree(old)
