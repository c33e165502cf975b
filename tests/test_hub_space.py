"""The Space: built from the installed petct-fm (app, package source, pinned requirements, front matter), pushed to a
local Hub; and the same from a wheel installed into a clean virtual environment."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from huggingface_hub import HfApi, SpaceCard
from hub_user_env import clean_site
from local_hub import LocalHub, load_hub_script
from packaging.requirements import Requirement
from packaging.version import Version

from modeling_petct.errors import PetCtInputError
from modeling_petct.hub.space import APP_FILE, MODELS_VARIABLE, package_requirements, pinned

ROOT = Path(__file__).resolve().parents[1]
REPO = "user/petct-demo"
MODEL = "user/petct-swin-small-autopet"


def _requirement_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_space_folder_is_pushed_as_a_gradio_space(tmp_path):
    push_space = load_hub_script("push_space")
    with LocalHub() as hub:
        assert push_space.main(["--repo-id", REPO, "--endpoint", hub.url, "--out-dir", str(tmp_path / "space"),
                                "--model", MODEL]) == 0
        files = hub.files("space", REPO)
        info = HfApi(endpoint=hub.url).space_info(REPO)
        variables = hub.repos[("space", REPO)].variables
    assert info.sdk == "gradio"
    assert variables[MODELS_VARIABLE]["value"] == MODEL
    assert {"app.py", "requirements.txt", "README.md", "modeling_petct/__init__.py",
            "modeling_petct/models/modeling_petct.py", "modeling_petct/hub/space.py"} <= set(files)
    assert not any("__pycache__" in path for path in files)
    assert files["app.py"] == APP_FILE.read_bytes()

    card = SpaceCard(files["README.md"].decode(), ignore_metadata_errors=False)
    assert (card.data.sdk, card.data.app_file, card.data.models) == ("gradio", "app.py", [MODEL])
    assert card.data.sdk_version == metadata.version("gradio") and "not a medical device" in card.text
    assert card.data.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"

    lines = _requirement_lines(files["requirements.txt"].decode())
    assert not any(line.lower().startswith("petct-fm") for line in lines)  # not on PyPI: shipped as source
    for line in lines:  # every line pinned to the version installed here, the one the tests ran with
        requirement = Requirement(line)
        assert str(requirement.specifier) == f"=={Version(metadata.version(requirement.name)).public}", line
    names = [Requirement(line).name.lower() for line in lines]
    for needed in ("torch", "monai", "transformers", "gradio", "gradio_client", "dynamic-network-architectures"):
        assert names.count(needed) == 1, needed


def test_dry_run_replaces_its_own_folder_and_keeps_any_other(tmp_path, capsys):
    push_space = load_hub_script("push_space")
    out = tmp_path / "space"
    assert push_space.main(["--repo-id", REPO, "--out-dir", str(out), "--dry-run"]) == 0
    assert (out / "app.py").is_file() and (out / "modeling_petct" / "errors.py").is_file()
    (out / "app.py").write_text("stale")
    assert push_space.main(["--repo-id", REPO, "--out-dir", str(out), "--dry-run"]) == 0  # its own export: replaced
    assert (out / "app.py").read_text() != "stale"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert push_space.main(["--repo-id", REPO, "--out-dir", str(foreign), "--dry-run"]) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err and [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_requirements_come_from_the_installed_metadata():
    names = {r.name.lower() for r in package_requirements(["demo"])}
    assert {"gradio", "gradio_client", "torch", "monai"} <= names and "playwright" not in names  # test extra: no
    assert "gradio" not in {r.name.lower() for r in package_requirements([])}
    with pytest.raises(PetCtInputError, match="nonexistent"):
        package_requirements(["nonexistent"])
    with pytest.raises(PetCtInputError, match="no-such-distribution-here.*not installed"):
        pinned(Requirement("no-such-distribution-here>=1"))
    assert pinned(Requirement("torch>=2.4")) == f"torch=={Version(metadata.version('torch')).public}"


def _install_lines() -> list[str]:
    """pip lines giving petct-fm[demo]'s dependencies, as installed here (dynamic-network-architectures --no-deps)."""
    required = [str(r).split(";")[0].strip() for r in package_requirements(["demo"])]
    no_deps = [r for r in required if r.startswith("dynamic-network-architectures")]
    return [shlex.join(["pip", "install", *(r for r in required if r not in no_deps)]),
            shlex.join(["pip", "install", "--no-deps", *no_deps])]


@pytest.mark.slow
def test_a_wheel_installed_in_a_clean_venv_builds_and_pushes_the_space(tmp_path):
    """pip wheel, then pip install petct-fm[demo] from it into a fresh venv whose only other packages are the
    dependencies (symlinked from this environment, so nothing is downloaded), then the Space from there."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # built from a copy: the checkout stays untouched
    shutil.copytree(ROOT / "modeling_petct", source / "modeling_petct", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "PYTHON"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1",
               HF_TOKEN="local-hub-token")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(source)], env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(wheels.glob("petct_fm-*.whl"))

    venv.EnvBuilder(with_pip=False).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(subprocess.check_output([python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    deps = clean_site(_install_lines(), tmp_path / "deps")
    assert not (deps / "modeling_petct").exists()
    (site / "deps.pth").write_text(f"{deps}\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q",
                              f"{wheel}[demo]"], env=env, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "modeling_petct" / "web" / "space_app.py").is_file()

    command = [str(python), "-I", "-m", "modeling_petct.hub.push_space", "--repo-id", REPO, "--model", MODEL,
               "--out-dir", str(tmp_path / "space")]
    with LocalHub() as hub:
        for extra in (["--dry-run"], ["--endpoint", hub.url]):
            proc = subprocess.run(command + extra, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
        files = hub.files("space", REPO)
    assert files["modeling_petct/hub/space.py"] == (site / "modeling_petct" / "hub" / "space.py").read_bytes()
    assert files["app.py"] == APP_FILE.read_bytes()
    lines = _requirement_lines(files["requirements.txt"].decode())
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[0-9][^ ]*", line) for line in lines), lines
    names = {Requirement(line).name for line in lines}
    assert {"gradio", "psutil", "packaging"} <= names  # the wheel's own metadata, not this checkout's install
