"""Runs made of runs: the label-efficiency study (`petct study`), the quickstart (`petct quickstart`), the synthetic
cohort they train on, and their reports. Each cell is an ordinary train_seg.py run with its own seed."""
