"""`petct pretrain`: masked-autoencoder pretraining, the same as `train_mae.py` (its options, its defaults)."""

from __future__ import annotations

from .forward import add_forwarding_command


def register(sub) -> None:
    add_forwarding_command(sub, "pretrain", "masked-autoencoder pretraining on a harmonised cache (= train_mae.py)",
                           ".training.mae:main")
