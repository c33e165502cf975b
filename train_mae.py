#!/usr/bin/env python
"""Masked-autoencoder pretraining of a petct-fm backbone. Run with `accelerate launch train_mae.py ...`
(or plain `python`); options: `python train_mae.py --help`, or a YAML/JSON file as the first argument."""

import sys

from modeling_petct.cli.checks import run_guarded
from modeling_petct.training.mae import main

if __name__ == "__main__":
    sys.exit(run_guarded("train_mae.py", main, sys.argv[1:]))  # a user error is one line, not a traceback
