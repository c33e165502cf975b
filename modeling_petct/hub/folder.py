"""Write a whole output folder atomically: build it beside the target, then swap it in."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import PetCtInputError


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False):
    """Yield an empty temporary folder; on success it replaces ``path`` (which must be absent or empty unless
    ``overwrite``). A failure leaves ``path`` untouched and no temporary folder behind."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise PetCtInputError(path, "output folder exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}-old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
