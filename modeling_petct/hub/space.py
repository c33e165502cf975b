"""The Gradio Space folder: the demo app, the petct-fm package beside it, requirements, README front matter.

petct-fm is not on PyPI, so the Space carries the package source next to ``app.py`` (the app's folder is on
``sys.path``) and its requirements.txt lists petct-fm's own dependencies in place of a ``petct-fm`` line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

from ..errors import PetCtInputError
from .upload import export_folder

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PYPROJECT = PACKAGE_DIR.parent / "pyproject.toml"
# installed with --no-deps locally (see the Makefile); on a Space its own requirements resolve normally
EXTRA_REQUIREMENTS = ("dynamic-network-architectures>=0.4,<0.5",)
MODELS_VARIABLE = "PETCT_DEMO_MODELS"  # read by demo/app.py
_PETCT_LINE = re.compile(r"^\s*petct[-_]fm\s*(\[(?P<extras>[^\]]*)\])?\s*(?P<rest>.*)$", re.I)
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def package_requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """petct-fm's dependencies (plus the named extras) as requirement lines, from pyproject.toml."""
    import tomllib  # Python >= 3.11: a maintainer tool, run from a source checkout

    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise PetCtInputError(pyproject, f"no optional dependency group {unknown}")
    return list(project["dependencies"]) + [r for e in extras for r in optional[e]] + list(EXTRA_REQUIREMENTS)


def space_requirements(demo_requirements: Path) -> str:
    """demo/requirements.txt with a ``petct-fm[...]`` line replaced by what that line would install."""
    lines = []
    for line in demo_requirements.read_text().splitlines():
        match = _PETCT_LINE.match(line)
        if match:
            extras = [e.strip() for e in (match.group("extras") or "").split(",") if e.strip()]
            lines.append("# petct-fm itself ships in this Space (modeling_petct/); its dependencies:")
            lines.extend(package_requirements(extras))
        else:
            lines.append(line)
    seen, unique = set(), []
    for line in lines:  # one line per requirement name, first wins
        name = re.split(r"[\s<>=!~\[;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        if line.strip() and not line.lstrip().startswith("#") and name in seen:
            continue
        seen.add(name)
        unique.append(line)
    return "\n".join(unique) + "\n"


def space_card(title: str, models: list[str], sdk_version: str) -> SpaceCard:
    data = SpaceCardData(
        title=title, sdk="gradio", sdk_version=sdk_version, app_file="app.py", license="apache-2.0",
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


def build_space_folder(demo_dir: str | Path, out_dir: str | Path, *, title: str = "petct-fm lesion segmentation",
                       models: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically): demo files, modeling_petct/, requirements.txt and README.md."""
    from importlib.metadata import version

    demo_dir = Path(demo_dir)
    for required in ("app.py", "requirements.txt"):
        if not (demo_dir / required).is_file():
            raise PetCtInputError(demo_dir / required, "missing: the Space needs the demo's app and requirements")
    with export_folder(out_dir, overwrite=overwrite) as tmp:
        shutil.copytree(demo_dir, tmp, ignore=_SKIP, dirs_exist_ok=True)
        shutil.copytree(PACKAGE_DIR, tmp / "modeling_petct", ignore=_SKIP)
        (tmp / "requirements.txt").write_text(space_requirements(demo_dir / "requirements.txt"))
        card = space_card(title, list(models or []), version("gradio"))
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
