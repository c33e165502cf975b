"""push_space.py: the Space folder (demo app + petct-fm source + requirements + front matter), pushed to a local Hub."""

from __future__ import annotations

import re

import pytest
from huggingface_hub import HfApi, SpaceCard
from local_hub import LocalHub, load_hub_script

from modeling_petct.hub.space import MODELS_VARIABLE, space_requirements

REPO = "user/petct-demo"
MODEL = "user/petct-swin-small-autopet"


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

    card = SpaceCard(files["README.md"].decode(), ignore_metadata_errors=False)
    assert (card.data.sdk, card.data.app_file, card.data.models) == ("gradio", "app.py", [MODEL])
    assert card.data.sdk_version and "not a medical device" in card.text

    requirements = files["requirements.txt"].decode().splitlines()
    assert not any(line.lower().startswith("petct-fm") for line in requirements)  # not on PyPI: shipped as source
    names = [re.split(r"[\s<>=!~\[;]", line)[0].lower() for line in requirements if line and line[0] != "#"]
    for needed in ("torch", "monai", "transformers", "gradio", "dynamic-network-architectures"):
        assert names.count(needed) == 1, needed


def test_dry_run_and_missing_demo_are_clear(tmp_path, capsys):
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
    empty = tmp_path / "demo"
    empty.mkdir()
    assert push_space.main(["--repo-id", REPO, "--out-dir", str(tmp_path / "x"), "--demo-dir", str(empty),
                            "--dry-run"]) == 2
    assert "app.py" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_requirements_expand_the_petct_line(tmp_path):
    demo_requirements = tmp_path / "requirements.txt"
    demo_requirements.write_text("petct-fm[demo]\ngradio>=5,<7\nextra-package==1.0\n")
    lines = space_requirements(demo_requirements).splitlines()
    assert "extra-package==1.0" in lines and any(line.startswith("gradio_client") for line in lines)
    demo_requirements.write_text("petct-fm[nonexistent]\n")
    with pytest.raises(ValueError, match="nonexistent"):
        space_requirements(demo_requirements)
