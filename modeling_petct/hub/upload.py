"""Upload a prepared folder to a Hub repo with the official client (any Hub-compatible endpoint)."""

from __future__ import annotations

from pathlib import Path


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
    ignore_patterns: list[str] | None = None,
):
    """Create the repo if needed and commit the folder's files; returns huggingface_hub's CommitInfo.

    ``endpoint`` is passed to ``HfApi`` explicitly (HF_ENDPOINT is only read when huggingface_hub is imported);
    None means HF_ENDPOINT or the public Hub."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                             commit_message=commit_message, ignore_patterns=ignore_patterns)
