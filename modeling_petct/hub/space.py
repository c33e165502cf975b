"""The Gradio Space folder, built from the installed petct-fm: its app (``web/space_app.py``), the package source
beside it, requirements pinned to the versions installed here, and the README front matter.

petct-fm is not on PyPI, so the Space carries the package source next to ``app.py`` (the app's folder is on
``sys.path``) and its requirements.txt lists petct-fm's own dependencies (and the demo extra's) from the installed
distribution's metadata, each pinned to the version this environment has: the versions the build was tested with.
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..errors import PetCtInputError
from .upload import export_folder

DISTRIBUTION = "petct-fm"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
APP_FILE = PACKAGE_DIR / "web" / "space_app.py"
SPACE_EXTRAS = ("demo",)
MODELS_VARIABLE = "PETCT_DEMO_MODELS"  # read by web/space_app.py
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def package_requirements(extras=SPACE_EXTRAS, distribution: str = DISTRIBUTION) -> list[Requirement]:
    """The installed distribution's dependencies plus those of ``extras`` (importlib.metadata, as pip reads them)."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise PetCtInputError(distribution, "is not installed: pip install it (the Space is built from the "
                                            "installed package)") from None
    unknown = [e for e in extras if e not in (dist.metadata.get_all("Provides-Extra") or [])]
    if unknown:
        raise PetCtInputError(distribution, f"no optional dependency group {unknown}")
    wanted = [Requirement(r) for r in dist.requires or []]
    chosen = [r for r in wanted if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras)]
    from ..models.backbones import DNA_REQUIREMENT  # installed with --no-deps here (Makefile); a Space resolves it

    return chosen + [Requirement(DNA_REQUIREMENT)]


def pinned(requirement: Requirement) -> str:
    """``name[extras]==version`` of the installed distribution (public version: no local tag like +cpu)."""
    try:
        version = Version(metadata.version(requirement.name)).public
    except metadata.PackageNotFoundError:
        raise PetCtInputError(requirement.name, f"is not installed, but the Space needs it ({requirement}): the "
                                                f"requirements pin the versions installed here") from None
    if not requirement.specifier.contains(version, prereleases=True):
        raise PetCtInputError(requirement.name, f"{version} is installed, outside {requirement}")
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}=={version}"


def space_requirements(extras=SPACE_EXTRAS) -> str:
    """requirements.txt of the Space: one pinned line per distribution, first mention wins."""
    lines, seen = ["# petct-fm ships in this Space (modeling_petct/); its dependencies, pinned to the versions the "
                   "Space was built and tested with:"], set()
    for requirement in package_requirements(extras):
        if canonicalize_name(requirement.name) not in seen:
            seen.add(canonicalize_name(requirement.name))
            lines.append(pinned(requirement))
    return "\n".join(lines) + "\n"


def space_card(title: str, models: list[str], sdk_version: str) -> SpaceCard:
    data = SpaceCardData(
        title=title, sdk="gradio", sdk_version=sdk_version, app_file="app.py", license="apache-2.0",
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        models=models or None, tags=["medical-imaging", "pet-ct", "segmentation", "3d"],
        emoji="🩻", colorFrom="indigo", colorTo="gray", pinned=False,
        short_description="Whole-body FDG PET/CT lesion segmentation (research demo)",
    )
    model_list = "\n".join(f"- [{m}](https://huggingface.co/{m})" for m in models) or "- set by the Space owner"
    body = f"""
# {title}

Drop in a whole-body FDG PET/CT study (NIfTI/MHA, or a zip of a DICOM series) or pick a bundled synthetic example,
and see the lesions a petct-fm model finds: a coronal PET MIP with outlines, fused PET/CT slices, and a lesion table
(volume, SUVmax, SUVmean, TLG) to download with the mask.

**Research demo, not a medical device.** Do not upload identifiable patient data you are not allowed to share;
files are processed in a temporary folder for your session and deleted afterwards.

Models (the Space variable `{MODELS_VARIABLE}`, comma-separated Hub ids):
{model_list}

Code: petct-fm (this Space carries the package source in `modeling_petct/`). Paper: arXiv:2605.21835.
"""
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def build_space_folder(out_dir: str | Path, *, title: str = "petct-fm lesion segmentation",
                       models: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically): app.py, modeling_petct/, requirements.txt and README.md."""
    requirements = space_requirements()  # before anything is written: a missing distribution is refused
    with export_folder(out_dir, overwrite=overwrite) as tmp:
        shutil.copyfile(APP_FILE, tmp / "app.py")
        shutil.copytree(PACKAGE_DIR, tmp / "modeling_petct", ignore=_SKIP)
        (tmp / "requirements.txt").write_text(requirements)
        card = space_card(title, list(models or []), metadata.version("gradio"))
        SpaceCard(str(card), ignore_metadata_errors=False)  # parses back as Space metadata
        (tmp / "README.md").write_text(str(card))
    return Path(out_dir)


def push_space(folder: str | Path, repo_id: str, *, models: list[str] | None = None, endpoint: str | None = None,
               token: str | None = None, private: bool | None = None):
    """Upload a built Space folder (a Gradio Space) and point its models variable at ``models``."""
    from huggingface_hub import HfApi

    from .upload import push_folder

    info = push_folder(folder, repo_id, repo_type="space", space_sdk="gradio", endpoint=endpoint, token=token,
                       private=private, commit_message="Upload the petct-fm demo Space")
    if models:
        HfApi(endpoint=endpoint, token=token).add_space_variable(repo_id, MODELS_VARIABLE, ",".join(models))
    return info
