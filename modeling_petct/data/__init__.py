"""Everything between a PET/CT study on disk and a training crop. Never imports model code."""
