"""The demo's wiring without a browser: per-session files cleaned, one study at a time, the CLI and the Space entry."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from modeling_petct.web.service import DemoSession, DemoSessions, ModelShelf

DEMO_APP = Path(__file__).resolve().parents[1] / "demo" / "app.py"


def test_sessions_have_private_folders_removed_on_close_and_when_too_many(tmp_path):
    sessions = DemoSessions(tmp_path, max_sessions=2)
    a, b = sessions.get("a"), sessions.get("b")
    assert a.workdir != b.workdir and a.workdir.parent == tmp_path and sessions.get("a") is a
    sessions.close("a")
    assert not a.workdir.exists() and sessions.find("a") is None
    sessions.get("c"), sessions.get("d")  # three open: the least recently used ("b") is closed
    assert not b.workdir.exists() and sessions.find("b") is None and len(list(tmp_path.iterdir())) == 2


def test_a_new_request_deletes_the_previous_outputs_of_its_session(tmp_path):
    session = DemoSession.open(tmp_path)
    first = session.fresh_dir("result")
    (first / "lesion_mask.nii.gz").write_bytes(b"x")
    second = session.fresh_dir("result")
    assert not first.exists() and second.is_dir() and not any(second.iterdir())


def test_one_study_at_a_time_with_a_bounded_queue(tmp_path):
    from modeling_petct.web.app import build_demo

    demo = build_demo(ModelShelf({}), workroot=tmp_path)
    assert demo._queue.default_concurrency_limit == 1 and demo._queue.max_size == 16
    assert all(fn.concurrency_limit in ("default", 1) for fn in demo.fns.values())


def test_no_model_configured_is_said_plainly():
    shelf = ModelShelf({})
    assert "No model configured" in shelf.describe(None)
    with pytest.raises(Exception, match="no model is configured"):
        shelf.get("anything")


def test_cli_refuses_a_missing_model_before_serving(capsys):
    from modeling_petct.cli import main

    assert main(["demo", "--model", "/nonexistent/model-dir", "--port", "1"]) == 2
    assert "/nonexistent/model-dir" in capsys.readouterr().err


def test_space_entry_point_builds_the_app_from_the_models_variable(monkeypatch, tmp_path):
    import gradio as gr

    monkeypatch.setenv("PETCT_DEMO_MODELS", f"{tmp_path}, org/petct-model")
    namespace = runpy.run_path(str(DEMO_APP), run_name="space_import")  # not __main__: builds, does not launch
    assert isinstance(namespace["demo"], gr.Blocks)
    assert namespace["shelf"].models == {tmp_path.name: str(tmp_path), "org/petct-model": "org/petct-model"}


def test_cli_offers_the_segmentation_models_quickstart_trained(tmp_path):
    from modeling_petct.cli.demo import quickstart_models

    saved = {"study/pretrained/model": "PetCtForSegmentation", "mae": "PetCtForMaskedImageModeling"}
    for name, architecture in saved.items():
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.json").write_text(f'{{"architectures": ["{architecture}"]}}')
    found = quickstart_models(tmp_path)
    assert found == {"quickstart: study/pretrained/model": str(tmp_path / "study/pretrained/model")}
    assert quickstart_models(tmp_path / "absent") == {}


def test_cli_offers_the_quickstart_runs_best_validation_first(tmp_path):
    import json

    from modeling_petct.cli.demo import quickstart_models

    cells = []
    for arm, fraction, dice in [("pretrained", 0.1, 0.2), ("scratch", 0.3, 0.43), ("scratch", 1.0, None)]:
        model = tmp_path / "study" / arm / str(fraction) / "best"
        model.mkdir(parents=True)
        cells.append({"arm": arm, "label_fraction": fraction, "best_val_dice": dice, "selected_model": str(model)})
    (tmp_path / "study" / "results.json").write_text(json.dumps({"cells": cells}))
    found = quickstart_models(tmp_path)
    assert list(found) == ["quickstart: scratch, 30% of labels, validation Dice 0.430",
                           "quickstart: pretrained, 10% of labels, validation Dice 0.200",
                           "quickstart: scratch, 100% of labels, validation Dice n/a"]
    assert found["quickstart: scratch, 30% of labels, validation Dice 0.430"] == cells[1]["selected_model"]
