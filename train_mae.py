#!/usr/bin/env python
"""Masked-autoencoder pretraining of a petct-fm backbone. Run with `accelerate launch train_mae.py ...`
(or plain `python`); options: `python train_mae.py --help`, or a YAML/JSON file as the first argument."""

import sys

from modeling_petct.training.mae import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
