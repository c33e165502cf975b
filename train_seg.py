#!/usr/bin/env python
"""Lesion-segmentation fine-tuning or linear probing, from a pretrained model or from scratch, at any label fraction.
Run with `accelerate launch train_seg.py ...` (or plain `python`); options: `python train_seg.py --help`."""

import sys

from modeling_petct.cli.checks import run_guarded
from modeling_petct.training.segmentation import main

if __name__ == "__main__":
    sys.exit(run_guarded("train_seg.py", main, sys.argv[1:]))  # a user error is one line, not a traceback
