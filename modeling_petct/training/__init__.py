"""Pretraining, fine-tuning, the label-efficiency study and the quickstart, on Accelerate. Imports nothing heavy."""
