"""Shared fixtures. One pytest process for the whole suite: importing monai costs seconds per process."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def make_affine(columns, *, origin=None, centre_of=None, centre_at=(0.0, 0.0, 0.0)):
    """A 4x4 voxel -> RAS affine whose column a is the world step (mm) of array axis a; translated to `origin`, or so
    that the centre voxel of an array of shape `centre_of` sits at `centre_at`."""
    import numpy as np

    affine = np.eye(4)
    affine[:3, :3] = np.asarray(columns, float)
    if origin is not None:
        affine[:3, 3] = origin
    elif centre_of is not None:
        affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(centre_of) - 1) / 2) + np.asarray(centre_at, float)
    return affine


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
