"""Export folders and their upload to a Hub repo with the official client (any Hub-compatible endpoint).

An export folder (``hub_export/<name>`` by default) carries a marker file, so the next export of the same name (the
real push after its ``--dry-run``) replaces it, while any other existing folder needs ``--overwrite``. The marker is
never uploaded.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_folder

EXPORT_MARKER = ".petct-export"


@contextmanager
def export_folder(out_dir: str | Path, *, overwrite: bool = False):
    """atomic_folder for an export: yields the temporary folder; an earlier export at ``out_dir`` is replaced."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir, overwrite=overwrite or (out_dir / EXPORT_MARKER).is_file()) as tmp:
        yield tmp
        (tmp / EXPORT_MARKER).write_text("written by hub_scripts/; the next export to this folder replaces it\n")


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    space_sdk: str | None = None,
    commit_message: str = "Upload with petct-fm",
):
    """Create the repo if needed and commit the folder's files (not the export marker); returns CommitInfo.

    ``endpoint`` is passed to ``HfApi`` explicitly (HF_ENDPOINT is only read when huggingface_hub is imported);
    None means HF_ENDPOINT or the public Hub."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                             commit_message=commit_message, ignore_patterns=[EXPORT_MARKER])
