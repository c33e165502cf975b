"""Study cache (atomic, memory-mapped) and the crop datasets read from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_petct.data.cache import StudyCache
from modeling_petct.data.harmonize import harmonize
from modeling_petct.data.transforms import MaeCropDataset, SegCropDataset, ValCropDataset, grid_starts
from modeling_petct.data.volume import Volume


def small_study(seed=0, shape=(30, 24, 20), lesion=True):
    rng = np.random.default_rng(seed)
    aff = np.diag([-2.0, -2.0, 3.0, 1.0])
    pet = rng.gamma(2.0, 1.0, shape).astype(np.float32)
    ct = np.full(shape, 40.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    if lesion:
        lab[3:6, 4:7, 10:14] = 1
    return harmonize(Volume(pet, aff), Volume(ct, aff), Volume(lab, aff))


@pytest.fixture()
def cache(tmp_path):
    c = StudyCache(tmp_path / "cache")
    c.write("a", small_study(0))
    c.write("b", small_study(1, lesion=False))
    return c


def test_cache_round_trip_is_memory_mapped_and_exact(cache):
    h = small_study(0)
    assert cache.ids() == ["a", "b"] and "a" in cache and "zz" not in cache
    loaded = cache.load("a")
    assert isinstance(loaded.image, np.memmap) and not loaded.image.flags.writeable
    np.testing.assert_array_equal(loaded.image, h.image)
    np.testing.assert_array_equal(loaded.to_native(loaded.label), h.to_native(h.label))
    assert loaded.normalization == "zscore" and loaded.crop_box == h.crop_box
    assert len(cache.foreground("a")) == h.label.sum() == 36 and len(cache.foreground("b")) == 0


def test_half_written_study_is_invisible_and_cleaned(cache, tmp_path):
    import os
    import socket

    dead = 2**22 + 12345  # a pid that is not running
    partial = cache.root / f".tmp-c-{socket.gethostname()}-{dead}-abc"
    partial.mkdir()
    (partial / "image.npy").write_bytes(b"truncated")
    assert cache.ids() == ["a", "b"] and "c" not in cache
    mine = cache.root / f".tmp-d-{socket.gethostname()}-{os.getpid()}-xyz"
    mine.mkdir()  # a writer that is still running is left alone
    assert cache.remove_partial() == [partial.name]
    assert not partial.exists() and mine.exists()
    with pytest.raises(ValueError):
        cache.path("../escape")


def test_rewrite_replaces_atomically(cache):
    cache.write("a", small_study(5), dtype=np.float16)
    assert cache.info("a")["dtype"] == "float16"
    np.testing.assert_allclose(cache.load("a").image, small_study(5).image, atol=2e-2)
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]
    assert MaeCropDataset(cache, ["a"], crop_size=(8, 8, 8))[0]["pixel_values"].dtype == torch.float32


def test_mae_crops_shape_determinism_and_epochs(cache):
    ds = MaeCropDataset(cache, ["a", "b"], crop_size=(16, 16, 16), seed=3)
    x = ds[0]
    assert set(x) == {"pixel_values"} and x["pixel_values"].dtype == torch.float32
    assert x["pixel_values"].shape == (2, 16, 16, 16)
    again = MaeCropDataset(cache, ["a", "b"], crop_size=(16, 16, 16), seed=3)
    draws = [ds[0]["pixel_values"] for _ in range(2)] + [again[0]["pixel_values"]]
    assert all(torch.equal(draws[0], d) for d in draws)  # same (seed, epoch, index) -> same crop
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        seen.add(ds[0]["pixel_values"].sum().item())
    assert len(seen) > 3  # new epochs give new crops


def test_crops_larger_than_the_volume_are_padded(cache):
    ds = MaeCropDataset(cache, ["a"], crop_size=(48, 48, 48), augment=False)
    x = ds[0]["pixel_values"]
    assert x.shape == (2, 48, 48, 48)
    assert (x == 0).any() and (x != 0).any()


def test_zoom_augmentation_changes_content_not_size(cache):
    ds = MaeCropDataset(cache, ["a"], crop_size=(12, 12, 12), zoom_prob=1.0, zoom_range=(0.7, 0.7))
    plain = MaeCropDataset(cache, ["a"], crop_size=(17, 17, 17), augment=False)
    assert ds[0]["pixel_values"].shape == (2, 12, 12, 12)
    # zoom 0.7 reads a 17^3 window and shrinks it to 12^3
    assert not torch.equal(ds[0]["pixel_values"], plain[0]["pixel_values"][:, :12, :12, :12])


def test_segmentation_crops_find_the_lesion(cache):
    ds = SegCropDataset(cache, ["a"] * 20, crop_size=(8, 8, 8), fg_prob=1.0, augment=False)
    hits = [ds[i]["labels"].sum().item() > 0 for i in range(20)]
    assert all(hits)
    x = ds[0]
    assert x["labels"].dtype == torch.int64 and x["labels"].shape == (8, 8, 8)
    assert x["pixel_values"].shape == (2, 8, 8, 8)
    rand = SegCropDataset(cache, ["a"] * 40, crop_size=(8, 8, 8), fg_prob=0.0, augment=False)
    assert sum(rand[i]["labels"].sum().item() > 0 for i in range(40)) < 20  # lesion is ~1% of the volume
    zoomed = SegCropDataset(cache, ["a"], crop_size=(8, 8, 8), fg_prob=1.0, zoom_prob=1.0)
    assert set(torch.unique(zoomed[0]["labels"]).tolist()) <= {0, 1}


def test_validation_grid_covers_every_voxel(cache):
    shape = tuple(cache.info("a")["shape"])
    ds = ValCropDataset(cache, ["a"], crop_size=(8, 8, 8))
    assert len(ds) == len(grid_starts(shape, (8, 8, 8)))
    covered = np.zeros(shape, bool)
    for sid, (z, y, x) in ds.items:
        covered[z : z + 8, y : y + 8, x : x + 8] = True
    assert covered.all()
    a, b = ds[3], ds[3]
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    assert grid_starts((5, 40, 8), (8, 16, 8), overlap=0.5) == [(-1, s, 0) for s in (0, 8, 16, 24)]


def test_dataloader_workers_draw_the_same_crops_as_the_main_process(cache):
    ds = SegCropDataset(cache, ["a", "b", "a", "b"], crop_size=(8, 8, 8), seed=1)
    ds.set_epoch(2)
    direct = [ds[i]["pixel_values"] for i in range(4)]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batched = torch.cat([b["pixel_values"] for b in loader])
    assert torch.equal(batched, torch.stack(direct))
