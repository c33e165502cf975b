"""The Accelerate training loop: SIGKILL-then-resume equality, real 2-process DDP on CPU, arguments, splits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    from modeling_petct.experiments.cohort import phantom_cache

    cache, _ = phantom_cache(tmp_path_factory.mktemp("cohort"), 6, seed=0)
    return cache


def _mae_cmd(cache, out, *extra):
    return [sys.executable, str(REPO / "train_mae.py"), "--preset", "tiny-unet", "--cache_dir", str(cache.root),
            "--crop_size", "32", "32", "32", "--output_dir", str(out), "--max_steps", "10",
            "--per_device_batch_size", "2", "--checkpointing_steps", "3", "--eval_steps", "5", "--num_workers", "0",
            "--report_to", "none", "--progress_bar", "false", "--seed", "3", "--learning_rate", "1e-3", *extra]


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_weights(tiny_cache, tmp_path):
    reference = subprocess.Popen(_mae_cmd(tiny_cache, tmp_path / "ref"), env=ENV, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim_dir = tmp_path / "victim"
    victim = subprocess.Popen(_mae_cmd(tiny_cache, victim_dir), env=ENV, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 150
    while not list(victim_dir.glob("checkpoints/checkpoint_*/COMPLETE")):
        assert victim.poll() is None, "the run ended before writing a checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (victim_dir / "last").exists(), "the kill came too late to interrupt training"

    resumed = subprocess.run(_mae_cmd(tiny_cache, victim_dir, "--resume", "true"), env=ENV, cwd=REPO,
                             capture_output=True, text=True, timeout=200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    _, ref_err = reference.communicate(timeout=200)
    assert reference.returncode == 0, ref_err[-3000:]

    ref, res = _weights(tmp_path / "ref" / "last"), _weights(victim_dir / "last")
    assert ref.keys() == res.keys()
    for key in ref:
        assert torch.equal(ref[key], res[key]), key
    ref_summary = json.loads((tmp_path / "ref" / "last" / "training_summary.json").read_text())
    res_summary = json.loads((victim_dir / "last" / "training_summary.json").read_text())
    assert ref_summary["history"] == res_summary["history"]  # same validation losses, same best step
    assert (victim_dir / "best" / "config.json").exists()
    assert len(list((victim_dir / "checkpoints").iterdir())) <= 3  # only the last K kept


DDP_WORKER = r'''
import json, sys, torch
from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling
from modeling_petct.data.cache import StudyCache
from modeling_petct.data.transforms import MaeCropDataset
from modeling_petct.training.args import TrainArguments
from modeling_petct.training.loop import fit, make_accelerator

class Recording(torch.utils.data.Dataset):
    def __init__(self, data): self.data, self.epoch, self.seen = data, 0, []
    def __len__(self): return len(self.data)
    def set_epoch(self, epoch): self.epoch = epoch; self.data.set_epoch(epoch)
    def __getitem__(self, i): self.seen.append([self.epoch, i]); return self.data[i]

cache_dir, out = sys.argv[1:3]
args = TrainArguments(output_dir=out, cpu=True, max_steps=6, per_device_batch_size=1, checkpointing_steps=100,
                      report_to="none", progress_bar=False, seed=0)
accelerator = make_accelerator(args)
model = PetCtForMaskedImageModeling(PetCtConfig.from_preset("tiny-unet"))
initial = {k: v.clone() for k, v in model.state_dict().items()}
cache = StudyCache(cache_dir)
data = Recording(MaeCropDataset(cache, cache.ids(), crop_size=(32, 32, 32), seed=0))
fit(accelerator, args, model, data, learning_rate=1e-3)
rank = accelerator.process_index
torch.save({"initial": initial, "final": model.state_dict()}, f"{out}/rank{rank}.pt")
with open(f"{out}/rank{rank}.json", "w") as fh:
    json.dump({"seen": data.seen, "world": accelerator.num_processes, "type": str(accelerator.distributed_type)}, fh)
'''


@pytest.mark.slow
def test_two_process_ddp_on_cpu_shards_data_and_keeps_ranks_identical(tiny_cache, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    run = subprocess.run([*torchrun, str(worker), str(tiny_cache.root), str(tmp_path)], env=ENV, cwd=REPO,
                         capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(i["world"] == 2 and "MULTI_CPU" in i["type"] for i in info)
    for epoch in {e for e, _ in info[0]["seen"]}:
        seen = [{i for e, i in rank["seen"] if e == epoch} for rank in info]
        assert seen[0] and seen[1] and not seen[0] & seen[1], f"epoch {epoch}: ranks saw {seen}"
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for key, value in states[0]["final"].items():
        assert torch.equal(value, states[1]["final"][key]), key
    assert any(not torch.equal(v, states[0]["initial"][k]) for k, v in states[0]["final"].items())


def test_ddp_pretraining_prints_once_and_records_its_data(tiny_cache, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    command = _mae_cmd(tiny_cache, tmp_path / "mae", "--cpu", "true")
    command[command.index("--max_steps") + 1] = "2"
    command[command.index("--eval_steps") + 1] = "2"
    run = subprocess.run([*torchrun, *command[1:]], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("pretrained model:") == 1, run.stdout  # the main process only
    from modeling_petct.hub.card import CardInputs, render_model_card
    from modeling_petct.training.mae import default_test_ids

    record = json.loads((tmp_path / "mae" / "pretraining.json").read_text())
    seen = record["split"]["train"] + record["split"]["val"]
    assert record["steps"] == 2 and sum(record["data_sources"].values()) == len(seen)
    assert sorted(seen + default_test_ids(tiny_cache)) == sorted(tiny_cache.ids())  # test studies never seen
    best = tmp_path / "mae" / "best"
    card = render_model_card(CardInputs("you/mae", best), json.loads((best / "config.json").read_text()))
    assert "**The data are synthetic.**" in card.text and "`petct segment` refuses it" in card.text


@pytest.mark.parametrize("name, line", [
    ("wandb", "--report_to: wandb is not installed: pip install wandb (or --report_to none)"),
    ("comet_ml", "--report_to: comet_ml is not installed: pip install comet-ml (or --report_to none)"),
    ("tensorbord", "--report_to: 'tensorbord' is not an Accelerate tracker"),
])
def test_an_absent_tracker_is_refused_in_one_line_before_any_data(tmp_path, capsys, monkeypatch, name, line):
    import accelerate.tracking
    from accelerate.utils import LoggerType

    from modeling_petct.training import mae, segmentation

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [LoggerType.TENSORBOARD])
    for script in (mae, segmentation):
        argv = ["--cache_dir", str(tmp_path / "no-cache"), "--output_dir", str(tmp_path / "out"), "--report_to", name]
        assert script.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and line in err[0], err
        assert not (tmp_path / "out").exists()


def test_config_file_then_flags_override(tmp_path):
    from modeling_petct.training.args import DataArguments, ModelArguments, TrainArguments, parse

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("preset: nnunet-v2-3d\nlearning_rate: 0.001\ncrop_size: [64, 64, 64]\nbf: 1\n")
    with pytest.raises(ValueError, match="bf"):
        parse((ModelArguments, DataArguments, TrainArguments), [str(recipe)])
    recipe.write_text("preset: nnunet-v2-3d\nlearning_rate: 0.001\ncrop_size: [64, 64, 64]\n")
    model, data, train = parse((ModelArguments, DataArguments, TrainArguments),
                               [str(recipe), "--learning_rate", "0.01", "--output_dir", "x"])
    assert (model.preset, train.learning_rate, data.crop_size, train.output_dir) == ("nnunet-v2-3d", 0.01, [64, 64, 64], "x")


def test_label_fractions_are_subject_wise_nested_and_match_the_paper(autopet_splits_csv):
    from modeling_petct.training.splits import draw_subjects, paper_split

    import csv

    from modeling_petct.data.adapters import safe_id

    rows = list(csv.DictReader(open(autopet_splits_csv)))
    studies = [safe_id(r["subject"], r["study"]) for r in rows]  # the ids `petct harmonize --source autopet` gives
    split10, _ = paper_split(autopet_splits_csv, studies, fraction=0.1)
    split30, subject_of = paper_split(autopet_splits_csv, studies, fraction=0.3)
    assert (len(split10.train), len(split30.train), len(split10.pool), len(split10.val), len(split10.test)) == (70, 210, 700, 114, 200)
    assert set(split10.train) <= set(split30.train)
    a = draw_subjects(split10.pool, subject_of, seed=1, fraction=0.2)
    b = draw_subjects(split10.pool, subject_of, seed=1, fraction=0.5)
    assert set(a) < set(b) and draw_subjects(split10.pool, subject_of, seed=2, fraction=0.2) != a
    subjects_in = {subject_of[s] for s in b}
    assert all(subject_of[s] not in subjects_in for s in set(split10.pool) - set(b))  # whole subjects only
    five = draw_subjects(split10.pool, subject_of, seed=0, n_scans=5)
    assert 5 <= len(five) <= 6


def test_test_split_is_scored_on_the_native_pet_grid(tiny_cache):
    """Test metrics use the study's own label file and its voxel volume (autoPET), not the harmonised copy."""
    from accelerate import Accelerator

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.data.io import read_volume
    from modeling_petct.training.args import SegArguments
    from modeling_petct.training.segmentation import score_studies

    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet", num_labels=2)).eval()
    with torch.no_grad():  # predicts background everywhere: every lesion voxel is a false negative
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.copy_(torch.tensor([10.0, -10.0]))
    ids = [i for i in tiny_cache.ids() if tiny_cache.load(i).label.any()][:2]
    args = SegArguments(sw_overlap=0.0)
    native = score_studies(Accelerator(cpu=True), model, tiny_cache, ids, args, native=True)
    harmonised = score_studies(Accelerator(cpu=True), model, tiny_cache, ids, args)
    for study_id in ids:
        study = tiny_cache.load(study_id)
        label = read_volume(study.meta["label_path"], modality="SEG")
        assert label.shape == tuple(study.pet_shape) and label.voxel_volume_ml == pytest.approx(0.064)  # 4 mm PET
        assert native[study_id]["grid"] == "native" and native[study_id]["dice"] == 0.0
        assert native[study_id]["fnv_ml"] == pytest.approx(label.array.astype(bool).sum() * 0.064)
        assert harmonised[study_id]["grid"] == "harmonised"
        assert harmonised[study_id]["fnv_ml"] == pytest.approx(np.asarray(study.label).sum() * 0.012)  # 3x2x2 mm


def test_gradient_checkpointing_is_switched_on_without_the_deprecated_call(tmp_path):
    import warnings

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.training.args import TrainArguments
    from modeling_petct.training.loop import prepare_model

    model = PetCtForSegmentation(PetCtConfig.from_preset("tiny-unet"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers' deprecation of gradient_checkpointing_enable
        prepare_model(model, TrainArguments(output_dir=str(tmp_path), gradient_checkpointing=True))
    assert model.petct.gradient_checkpointing and model.is_activation_checkpointing


def test_the_data_order_is_accelerates_seedable_permutation_per_epoch(tiny_cache, tmp_path):
    from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling
    from modeling_petct.data.transforms import MaeCropDataset
    from modeling_petct.training.args import TrainArguments
    from modeling_petct.seeds import data_order_seed
    from modeling_petct.training.loop import fit, make_accelerator

    class Recording(torch.utils.data.Dataset):
        def __init__(self, data):
            self.data, self.epoch, self.seen = data, 0, []

        def __len__(self):
            return len(self.data)

        def set_epoch(self, epoch):
            self.epoch = epoch
            self.data.set_epoch(epoch)

        def __getitem__(self, i):
            self.seen.append((self.epoch, i))
            return self.data[i]

    data = Recording(MaeCropDataset(tiny_cache, tiny_cache.ids(), crop_size=(32, 32, 32), seed=0))
    args = TrainArguments(output_dir=str(tmp_path), cpu=True, max_steps=2 * len(data), per_device_batch_size=1,
                          checkpointing_steps=100, report_to="none", progress_bar=False, seed=3)
    accelerator = make_accelerator(args)
    fit(accelerator, args, PetCtForMaskedImageModeling(PetCtConfig.from_preset("tiny-unet")), data, learning_rate=1e-3)
    for epoch in (0, 1):
        expected = torch.randperm(len(data), generator=torch.Generator().manual_seed(data_order_seed(3) + epoch))
        assert [i for e, i in data.seen if e == epoch] == expected.tolist(), epoch
