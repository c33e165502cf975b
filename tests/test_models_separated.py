"""Separated-modality linear probe: two frozen 1-channel MAE backbones, concatenated features, one trained 1x1x1 conv;
and its 'probe-separated' cell in the label-efficiency study, next to the joint probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.losses import DiceCELoss
from safetensors.torch import load_file
from transformers import AutoModelForSemanticSegmentation

from conftest import save_tiny
from modeling_petct import (
    PetCtForSeparatedModalityProbe,
    PetCtModel,
    PetCtSeparatedConfig,
)

SHAPE = (32, 32, 32)


@pytest.fixture(scope="module")
def maes(tmp_path_factory) -> dict[str, Path]:
    """Tiny-unet MAEs saved as training writes them: PET-only, CT-only (different weights) and a joint one."""
    root = tmp_path_factory.mktemp("maes")
    dirs = {}
    for seed, (name, modalities) in enumerate({"PET": ("PET",), "CT": ("CT",), "joint": ("PET", "CT")}.items()):
        dirs[name] = save_tiny(root / name, "mae", seed=seed, modalities=modalities)
    return dirs


@pytest.fixture()
def probe(maes) -> PetCtForSeparatedModalityProbe:
    torch.manual_seed(0)
    return PetCtForSeparatedModalityProbe.from_pretrained_pair(maes["PET"], maes["CT"], num_labels=2)


def test_only_the_head_trains_and_the_backbones_are_the_maes(probe, maes):
    probe.train()
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["segmentation_head.weight",
                                                                            "segmentation_head.bias"]
    assert not probe.petct.training  # frozen backbones stay in eval mode while the head trains
    assert probe.segmentation_head.in_channels == 2 * 8  # tiny-unet's 8 decoder channels from each backbone
    for name, sub in (("PET", probe.petct.pet), ("CT", probe.petct.ct)):
        saved = load_file(maes[name] / "model.safetensors")
        ours = sub.state_dict()
        assert ours and all(torch.equal(ours[k], saved[f"petct.{k}"]) for k in ours)
    x, labels = torch.randn(1, 2, *SHAPE), torch.randint(0, 2, (1, *SHAPE))
    out = probe(x, labels=labels)
    out.loss.backward()
    assert all(p.grad is None for n, p in probe.named_parameters() if not n.startswith("segmentation_head."))
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(out.logits.detach(), labels[:, None])
    torch.testing.assert_close(out.loss.detach(), expected)


def test_each_backbone_sees_only_its_own_channel(probe, maes):
    probe.eval()
    pet_alone, ct_alone = PetCtModel.from_pretrained(maes["PET"]).eval(), PetCtModel.from_pretrained(maes["CT"]).eval()
    x = torch.randn(1, 2, *SHAPE)
    y = x.clone()
    y[:, 1] = torch.randn(SHAPE)  # a different CT, same PET
    with torch.no_grad():
        pet_x, pet_y = probe.petct.pet(x[:, :1]).last_hidden_state, probe.petct.pet(y[:, :1]).last_hidden_state
        features_x, features_y = probe.petct(x).last_hidden_state, probe.petct(y).last_hidden_state
        logits = probe(x).logits
        expected = torch.cat([pet_alone(x[:, :1]).last_hidden_state, ct_alone(x[:, 1:]).last_hidden_state], 1)
    assert torch.equal(pet_x, pet_y)
    assert torch.equal(features_x[:, :8], features_y[:, :8]) and not torch.allclose(features_x[:, 8:], features_y[:, 8:])
    torch.testing.assert_close(features_x, expected)  # PET backbone on channel 0, CT backbone on channel 1
    torch.testing.assert_close(logits, probe.segmentation_head(expected))


def test_save_and_load_are_bit_exact_and_stay_frozen(probe, tmp_path):
    torch.nn.init.normal_(probe.segmentation_head.weight)  # as if trained
    probe.save_pretrained(tmp_path / "probe")
    for loaded in (PetCtForSeparatedModalityProbe.from_pretrained(tmp_path / "probe"),
                   AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "probe")):
        assert type(loaded) is PetCtForSeparatedModalityProbe and isinstance(loaded.config, PetCtSeparatedConfig)
        assert loaded.config.modalities == ("PET", "CT") and loaded.config.crop_size == SHAPE
        theirs, ours = loaded.state_dict(), probe.state_dict()
        assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
        assert [n for n, p in loaded.named_parameters() if p.requires_grad] == ["segmentation_head.weight",
                                                                                 "segmentation_head.bias"]
        x = torch.randn(1, 2, *SHAPE)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x).logits, probe.eval()(x).logits)


def test_refuses_a_joint_mae_as_a_single_modality_backbone(maes):
    with pytest.raises(ValueError, match="PET-only"):
        PetCtForSeparatedModalityProbe.from_pretrained_pair(maes["joint"], maes["CT"])
    with pytest.raises(ValueError, match="CT-only"):
        PetCtForSeparatedModalityProbe.from_pretrained_pair(maes["PET"], maes["PET"])


def test_grid_adds_a_separated_probe_per_seed_next_to_the_joint_probe():
    from modeling_petct.experiments.study import StudyArguments, grid

    args = StudyArguments(backbones=["a", "b"], pretrained=["mae_a", "none"], fractions=[1.0], seeds=[0, 1], probe_k=5,
                          separated_pretrained=["pet_a", "ct_a", "none", "none"])
    cells = grid(args)
    separated = [c for c in cells if c.arm == "probe-separated"]
    assert [c.name for c in separated] == ["a/probe-separated/5shot/seed0", "a/probe-separated/5shot/seed1"]
    assert all(c.separated == ("pet_a", "ct_a") and c.k_shot == 5 for c in separated)
    names = [c.name for c in cells]
    assert names.index("a/probe-separated/5shot/seed0") == names.index("a/probe/5shot/seed0") + 1
    with pytest.raises(ValueError, match="two entries per preset"):
        grid(StudyArguments(backbones=["a", "b"], separated_pretrained=["pet_a", "ct_a"]))


@pytest.mark.slow
def test_study_runs_the_separated_probe_and_reports_its_own_row(maes, tmp_path):
    from modeling_petct.experiments.cohort import phantom_cache
    from modeling_petct.experiments.study import StudyArguments, run_study

    phantom_cache(tmp_path / "data", 5, 0, spacing=(4.0, 4.0, 4.0))
    args = StudyArguments(
        cache_dir=str(tmp_path / "data" / "cache"), output_dir=str(tmp_path / "study"), backbones=["tiny-unet"],
        pretrained=[str(maes["joint"])], separated_pretrained=[str(maes["PET"]), str(maes["CT"])], fractions=[],
        probe_k=2, num_epochs=1, per_device_batch_size=2, crop_size=list(SHAPE), num_workers=0, sw_overlap=0.0,
        progress_bar=False)
    paths = run_study(args, log=lambda *_: None)
    table = Path(paths["table"]).read_text()
    assert "| tiny-unet | probe | 2-shot |" in table and "| tiny-unet | probe-separated | 2-shot |" in table
    assert "| tiny-unet | probe vs probe-separated | 2-shot |" in table  # the paired test of joint vs separated
    cells = {c["arm"]: c for c in json.loads(Path(paths["json"]).read_text())["cells"]}
    assert cells["probe-separated"]["pretrained"] == [str(maes["PET"]), str(maes["CT"])]
    assert cells["probe-separated"]["linear_probe"] and cells["probe-separated"]["steps"] >= 1
    selected = PetCtForSeparatedModalityProbe.from_pretrained(cells["probe-separated"]["selected_model"])
    saved = load_file(maes["PET"] / "model.safetensors")  # training moved the head only
    assert all(torch.equal(v, saved[f"petct.{k}"]) for k, v in selected.petct.pet.state_dict().items())
