"""`petct study`: the label-efficiency grid {preset} x {pretrained, scratch} x {fraction} x {seed} (+ k-shot probe),
with train_seg.py's own options for every cell."""

from __future__ import annotations

from .forward import add_forwarding_command


def register(sub) -> None:
    add_forwarding_command(sub, "study", "run (or finish) the label-efficiency study; writes table.md, "
                           "label_efficiency.png, results.json", ".experiments.study:main")
