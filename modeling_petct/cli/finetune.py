"""`petct finetune`: lesion-segmentation fine-tuning or linear probing, the same as `train_seg.py`."""

from __future__ import annotations

from .forward import add_forwarding_command


def register(sub) -> None:
    add_forwarding_command(sub, "finetune", "fine-tune or linearly probe a lesion segmenter (= train_seg.py)",
                           ".training.segmentation:main")
