"""PET-only and CT-only MAEs, pretrained by train_mae.py, fine-tune and probe with train_seg.py end to end (the
segmentation crops used to keep both channels and crashed at step 1); the run folder then loads as a model for
`petct segment`."""

from __future__ import annotations

import json

import pytest
import torch

from modeling_petct.training import mae, segmentation
from modeling_petct.training.results import RunResult

pytestmark = pytest.mark.slow  # end to end: every test here takes more than a few seconds

TINY = ["--preset", "tiny-unet", "--crop-size", "32", "32", "32", "--num-workers", "0", "--report-to", "none",
        "--progress-bar", "false", "--per-device-train-batch-size", "2", "--learning-rate", "1e-3"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from modeling_petct.experiments.cohort import phantom_cache

    cache, _ = phantom_cache(tmp_path_factory.mktemp("cohort"), 5, seed=0, spacing=(4.0, 4.0, 4.0))
    return cache


@pytest.fixture(scope="module", params=["PET", "CT"])
def single_mae(request, cache, tmp_path_factory):
    """A two-step MAE of one modality, trained by train_mae.py's entry point."""
    out = tmp_path_factory.mktemp(f"mae_{request.param}")
    overrides = json.dumps({"modalities": [request.param]})
    code = mae.main(["--cache-dir", str(cache.root), "--output-dir", str(out), *TINY, "--max-steps", "2",
                     "--eval-steps", "1", "--config-overrides", overrides])
    assert code == 0
    return request.param, out


@pytest.mark.parametrize("probe", [False, True], ids=["finetune", "probe"])
def test_single_modality_mae_fine_tunes_and_probes(single_mae, probe, cache, tmp_path, capsys):
    modality, mae_dir = single_mae
    out = tmp_path / "run"
    code = segmentation.main(["--cache-dir", str(cache.root), "--output-dir", str(out), *TINY, "--pretrained",
                              str(mae_dir), "--max-steps", "2", "--eval-steps", "2", "--sw-overlap", "0",
                              "--linear-probe", str(probe).lower()])
    assert code == 0, capsys.readouterr().err
    result = RunResult.load(out)
    assert result.arm == ("probe" if probe else "pretrained") and result.steps == 2 and result.linear_probe is probe
    assert (result.network, result.preset, result.pretrained) == ("plain-conv-unet", "tiny-unet", str(mae_dir))
    assert result.test_cases and all(c["grid"] == "native" for c in result.test_cases.values())
    assert result.cache_dir == str(cache.root) and sum(result.data_sources.values()) == len(cache.ids())

    from modeling_petct.inference.loading import load_segmentation_model, resolve_model_dir

    assert resolve_model_dir(out) == str(out / "best")  # the run folder means its selected model
    model = load_segmentation_model(out)
    assert model.config.modalities == (modality,) and model.config.input_channels == [("PET", "CT").index(modality)]
    from modeling_petct import PetCtForSegmentation

    selected = PetCtForSegmentation.from_pretrained(out / "best")
    ours, theirs = model.state_dict(), selected.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
