"""Shared fixtures. One pytest process for the whole suite: importing monai costs seconds per process."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from modeling_petct.data.volume import Volume

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_STS = SHARED_DATA / "real_sts"


@pytest.fixture(scope="session")
def real_sts() -> Path:
    """The two real GE FDG PET/CT patients (DICOM + NIfTI) that sit beside the checkout."""
    if not (REAL_STS / "STS_001").is_dir():
        pytest.fail(f"real test data missing: {REAL_STS} (the checkout must have ../shared beside it)")
    return REAL_STS


@pytest.fixture(scope="session")
def autopet_splits_csv() -> Path:
    return SHARED_DATA / "autopet_splits.csv"


@pytest.fixture(scope="session")
def phantom_study(tmp_path_factory) -> Path:
    """One small synthetic study written once per session (IO helper): ``<dir>/PET.nii.gz`` (SUV, 64x64x96 at 4 mm),
    ``CT.nii.gz`` (HU, finer 2x2x4 mm grid), ``SEG.nii.gz`` (uint8, 4 lesions, on the PET grid), ``phantom.json``."""
    from modeling_petct.data.synthetic.phantom import make_phantom, write_study

    study = make_phantom(0, n_lesions=4, study_id="phantom_fixture")
    return write_study(study, tmp_path_factory.mktemp("phantom") / study.study_id)


# Shared helpers (plain functions: `from conftest import ...`; pytest puts tests/ on sys.path).

def free_port() -> int:
    """A TCP port free on localhost right now (torchrun's rendezvous, a demo server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The browser tests drive Debian's chromium headless (Playwright's own browser download is blocked here).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


@contextmanager
def browser_page(url: str, *, height: int = 900, last_screenshot: Path | None = None):
    """A headless Chromium page (1440 wide) opened on `url`; the browser closes on exit, after a full-page screenshot
    of its first page's last state when `last_screenshot` is given."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": height})
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            if last_screenshot and browser.contexts and browser.contexts[0].pages:
                browser.contexts[0].pages[0].screenshot(path=str(last_screenshot), full_page=True)
            browser.close()


def fetch(page, src: str, path: Path) -> Path:
    """What a Playwright ``page`` links to (a picture, a download), saved at ``path``."""
    path.write_bytes(page.request.get(src).body())
    return path


def make_affine(columns, *, origin=None, centre_of=None, centre_at=(0.0, 0.0, 0.0)):
    """A 4x4 voxel -> RAS affine whose column a is the world step (mm) of array axis a; translated to `origin`, or so
    that the centre voxel of an array of shape `centre_of` sits at `centre_at`."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(columns, float)
    if origin is not None:
        affine[:3, 3] = origin
    elif centre_of is not None:
        affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(centre_of) - 1) / 2) + np.asarray(centre_at, float)
    return affine



def build_tiny(task: str = "segmentation", *, seed: int = 0, **overrides):
    """A tiny-unet PetCtForSegmentation (``task="segmentation"``) or PetCtForMaskedImageModeling (``"mae"``), in eval
    mode, with weights drawn from ``seed``; ``overrides`` go to ``PetCtConfig.from_preset``."""
    import torch

    from modeling_petct import PetCtConfig, PetCtForMaskedImageModeling, PetCtForSegmentation

    cls = {"segmentation": PetCtForSegmentation, "mae": PetCtForMaskedImageModeling}[task]
    torch.manual_seed(seed)
    return cls(PetCtConfig.from_preset("tiny-unet", **overrides)).eval()


def save_tiny(folder, task: str = "segmentation", *, seed: int = 0, **overrides) -> Path:
    """``build_tiny(...)`` saved as a model folder (config.json + model.safetensors)."""
    build_tiny(task, seed=seed, **overrides).save_pretrained(folder)
    return Path(folder)

def original_network(config, *, downsample: str = "mergingv2", initialize: bool = False):
    """The network of a PetCtConfig as the authors / nnU-Net build it, straight from MONAI and
    dynamic_network_architectures, with 2 input and 2 output channels (the MAE reconstructs PET and CT).
    `downsample="merging"` is MONAI's default Swin variant (same keys, other outputs); `initialize` applies nnU-Net's
    own weight init to the CNNs."""
    from torch import nn

    if config.is_swin:
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(in_channels=2, out_channels=2, feature_size=config.feature_size, depths=config.depths,
                         num_heads=config.num_heads, window_size=config.window_size, norm_name="instance",
                         downsample=downsample, use_v2=True, dropout_path_rate=config.drop_path_rate, normalize=True)
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

    cls, blocks = ((PlainConvUNet, "n_conv_per_stage") if config.backbone == "plain-conv-unet"
                   else (ResidualEncoderUNet, "n_blocks_per_stage"))
    net = cls(input_channels=2, n_stages=len(config.features_per_stage), features_per_stage=config.features_per_stage,
              conv_op=nn.Conv3d, kernel_sizes=config.kernel_size, strides=config.strides, num_classes=2,
              conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
              nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
              n_conv_per_stage_decoder=config.decoder_convs_per_stage, **{blocks: config.blocks_per_stage})
    if initialize:
        net.apply(net.initialize)
    return net


# --- synthetic studies on chosen grids (harmonisation geometry) ------------------------------------------------------

def world(affine, shape):
    """RAS coordinates (3, *shape) of every voxel centre."""
    idx = np.indices(shape).reshape(3, -1).astype(float)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *shape)


def linear_field(p):
    """A linear function of world position: linear resampling reproduces it exactly inside the grid."""
    return 0.5 * p[0] - 0.25 * p[1] + 0.125 * p[2] + 100.0


def make_study(affine, shape, *, ct_affine=None, ct_shape=None, seed=0):
    """PET = linear field, CT = body ellipsoid (+ a detached 'table'), label = blobs inside the body; all in world mm."""
    ct_affine = affine if ct_affine is None else ct_affine
    ct_shape = shape if ct_shape is None else ct_shape
    p = world(affine, shape)
    c = world(ct_affine, ct_shape)
    centre = world(affine, shape).reshape(3, -1).mean(axis=1)[:, None, None, None]
    body = (((c - centre) / np.array([14, 10, 20])[:, None, None, None]) ** 2).sum(0) < 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    ct[(np.abs(c[1] - centre[1]) < 2) & (c[0] - centre[0] > 21)] = 300.0  # a detached slab, outside the body
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    for _ in range(4):
        ctr = centre[:, 0, 0, 0] + rng.uniform(-6, 6, 3)
        label[(((p - ctr[:, None, None, None]) / 5.0) ** 2).sum(0) < 1] = 1
    pet = Volume(linear_field(p).astype(np.float32), affine, "pet.nii.gz", meta={"patient_id": "P1"})
    return pet, Volume(ct, ct_affine, "ct.nii.gz", meta={"patient_id": "P1"}), Volume(label, affine, "seg.nii.gz")


def centred_affine(columns, shape):
    """Affine with the given (3x3) columns, centred near the world origin."""
    return make_affine(columns, centre_of=shape, centre_at=(3.0, -5.0, 7.0))


SHAPE = (26, 22, 24)
EXACT_GRIDS = {  # already 3x2x2 mm and axis-aligned: the round trip must be bit-exact
    "LPS": centred_affine(np.diag([-2, -2, 3]), SHAPE),
    "RAS": centred_affine(np.diag([2, 2, 3]), SHAPE),
    "flipped": centred_affine(np.diag([2, -2, -3]), SHAPE),
    "permuted": centred_affine([[0, 0, 2], [2, 0, 0], [0, -3, 0]], SHAPE),
}


# --- studies whose lesions are a threshold of the PET, and the model that finds them (inference geometry) ----------

THRESHOLD = 2.5
BLOBS = [((-20.0, 10.0, 15.0), 9.0, 6.0), ((18.0, -8.0, -12.0), 6.0, 4.0), ((25.0, 20.0, 20.0), 4.0, 3.5)]


def oracle_model(**overrides):
    """A real tiny PetCtForSegmentation (normalization "none": channel 0 is SUV) whose logits are replaced, through a
    forward hook, by a threshold of the PET: lesion where SUV > THRESHOLD. Everything around the network runs as in
    production, so its mask must equal a threshold of the PET in native space."""
    import torch

    from modeling_petct import PetCtConfig, PetCtForSegmentation

    config = PetCtConfig.from_preset("tiny-unet", normalization="none", features_per_stage=(4, 8, 8, 8), **overrides)
    model = PetCtForSegmentation(config).eval()
    seen = {}
    model.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0]))
    model.segmentation_head.register_forward_hook(
        lambda module, args, out: torch.stack([-(seen["x"][:, 0] - THRESHOLD), seen["x"][:, 0] - THRESHOLD], 1) * 20
    )
    return model


def suv_at(ras: np.ndarray) -> np.ndarray:
    """Asymmetric hot spheres (world RAS mm) on a background of 1: any flip or shift of the mask shows."""
    out = np.ones(ras.shape[:-1], np.float32)
    for centre, radius, suv in BLOBS:
        out[np.linalg.norm(ras - np.asarray(centre), axis=-1) <= radius] = suv
    return out


def hu_at(ras: np.ndarray) -> np.ndarray:
    body = (ras[..., 0] / 70) ** 2 + (ras[..., 1] / 55) ** 2 <= 1
    return np.where(body, 40.0, -1000.0).astype(np.float32)


def sample(fn, affine, shape, **meta) -> Volume:
    """A Volume on (affine, shape) whose voxels are fn(world RAS mm of each voxel centre)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return Volume(fn(ijk @ affine[:3, :3].T + affine[:3, 3]), affine, meta=meta)


def grid(spacing, shape, flips=(1, 1, 1), perm=(0, 1, 2)) -> np.ndarray:
    """Affine whose array axis a runs along world axis perm[a] with sign flips[a], centred on the origin."""
    columns = np.zeros((3, 3))
    for a, (w, s) in enumerate(zip(perm, flips)):
        columns[w, a] = s * spacing[w]
    return make_affine(columns, centre_of=shape)


# a CT body (HU) on its own 1.5 x 1.5 x 2.5 mm grid, for PETs made by `sample`
CT = sample(hu_at, grid((1.5, 1.5, 2.5), (110, 90, 40)), (110, 90, 40), patient_id="P1")
