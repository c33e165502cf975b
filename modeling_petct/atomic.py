"""Write outputs so that a crash or a refused input never leaves a half-written file or folder behind; name what was
written by its checksum (`file_sha256`) in the records beside it.

Temporary names carry the host and process id (``.<name>.petct-tmp-<host>-<pid>-...``): what a writer killed with
SIGKILL leaves (no cleanup runs) is removed by the next write of the same output once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from .errors import PetCtInputError


def public(path: str | os.PathLike) -> Path:
    """Give a file or folder made by mkstemp/mkdtemp (0600/0700) the mode the user's umask gives any new one, so a
    PACS export, a shared server or a colleague can read the outputs."""
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the full suffix (e.g. ``.nii.gz``) so writers that pick a format from the
    extension still work.
    """
    path = Path(path)
    made = _make_parents(path.parent)
    remove_stale(path.parent, path.name)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        public(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _remove_if_empty(made)
        raise


def temp_prefix(name: str) -> str:
    """The hidden name prefix of a temporary file or folder for output ``name``, owned by this process."""
    return f".{name}.petct-tmp-{socket.gethostname()}-{os.getpid()}-"


def remove_stale(folder: Path, name: str) -> list[Path]:
    """Remove the temporary files and folders of output ``name`` in ``folder`` whose writer (on this host) is gone."""
    owner = re.compile(rf"^\.{re.escape(name)}\.petct-tmp-{re.escape(socket.gethostname())}-(\d+)-")
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        found = owner.match(entry.name)
        if found and not alive(int(found.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those it created, deepest first."""
    made = []
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    if made:
        made[0].mkdir(parents=True, exist_ok=True)
    return made


def _remove_if_empty(folders: list[Path]) -> None:
    """A failed write leaves no empty folder behind (other writers' files keep theirs)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False):
    """Yield an empty temporary folder; on success it replaces ``path`` (which must be absent or empty unless
    ``overwrite``). A failure leaves ``path`` untouched and no temporary folder behind."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise PetCtInputError(path, "output folder exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    tmp = public(tempfile.mkdtemp(prefix=temp_prefix(path.name), dir=path.parent))
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


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (the Hub's LFS oid for the same bytes), read in 4 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
