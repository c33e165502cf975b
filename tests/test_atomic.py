"""Atomic writes: a writer killed with SIGKILL (no cleanup runs) leaves hidden temporary files, which the next write
of the same output removes once their process is gone; a live writer's are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modeling_petct.atomic import atomic_folder, atomic_path, file_sha256

KILLED_WRITER = r'''
import os, signal, sys
from modeling_petct.atomic import atomic_folder, atomic_path
out = sys.argv[1]
with atomic_path(os.path.join(out, "lesions.nii.gz")) as tmp, atomic_folder(os.path.join(out, "export")) as folder:
    tmp.write_bytes(b"half a mask")
    (folder / "model.xml").write_text("<half")
    os.kill(os.getpid(), signal.SIGKILL)
'''


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=Path(__file__).parents[1])
    assert killed.returncode == -9
    assert len(_hidden(tmp_path)) == 2, "the kill left no temporary files: nothing tested"
    with atomic_path(tmp_path / "lesions.nii.gz") as tmp:
        tmp.write_bytes(b"a mask")
        live = _hidden(tmp_path)
    with atomic_folder(tmp_path / "export") as folder:
        (folder / "model.xml").write_text("<net/>")
    assert _hidden(tmp_path) == [] and len(live) == 2  # the killed writer's file went; ours lived until the rename
    assert (tmp_path / "lesions.nii.gz").read_bytes() == b"a mask"
    assert (tmp_path / "export" / "model.xml").read_text() == "<net/>"


def test_a_files_checksum_is_the_hubs_lfs_oid(tmp_path):
    from huggingface_hub.utils.sha import sha_fileobj

    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * (5 * 4096 + 1))  # more than one 4 MiB chunk
    with open(path, "rb") as f:
        assert file_sha256(path) == sha_fileobj(f).hex()
