"""Where the demo keeps files, so that "deleted when you close the page" is true after crashes and restarts too.

One folder per server process (``petct-demo-*`` in the system temp folder, holding its owner's pid) serves as Gradio's
cache (``GRADIO_TEMP_DIR``: uploads, downloads, pictures) and holds every session folder. It goes when the page's
session closes (the session's files), when the process exits (atexit; SIGTERM is turned into a normal stop by
``app.launch``), and, should the process have been killed outright, at the next start (folders whose owner is gone).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "petct-demo-"
OWNER_FILE = "owner.pid"
_UNOWNED_GRACE_S = 3600.0  # a folder without a pid file may be one being created right now


def create_workroot(base: str | Path | None = None) -> Path:
    """A fresh folder for this process (stale ones of dead processes removed first), deleted at exit."""
    remove_stale_workroots(base)
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    (root / OWNER_FILE).write_text(f"{os.getpid()}\n")
    atexit.register(shutil.rmtree, root, True)
    return root


def remove_stale_workroots(base: str | Path | None = None) -> list[Path]:
    """Delete the ``petct-demo-*`` folders under ``base`` (default: the temp folder) whose owning process is gone."""
    removed = []
    for folder in Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if folder.is_dir() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner_alive(folder: Path) -> bool:
    try:
        pid = int((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return time.time() - folder.stat().st_mtime < _UNOWNED_GRACE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def use_as_gradio_cache(root: Path) -> None:
    """Gradio copies uploads and outputs into ``GRADIO_TEMP_DIR``; pointing it here puts them under our cleanup.

    Read by Gradio when a Blocks is built and when it launches: one demo per process (as `petct demo` and a Space run).
    """
    os.environ["GRADIO_TEMP_DIR"] = str(root)
