"""The data conventions every part of the package shares, each stated once. No imports: the CLI reads them to build
its `--help` without loading anything heavy.

The model config (models/configuration_petct.py) repeats the spacing and normalisation names because Hub remote code
may import nothing of this package; tests/test_models_config.py asserts the two agree.
"""

HARMONISED_SPACING_MM = (3.0, 2.0, 2.0)  # (z, y, x): the paper's grid, PetCtConfig.target_spacing's default
NORMALIZATIONS = ("zscore", "clinical", "none")  # PET/CT intensity schemes of harmonisation (data/harmonize.py)
DEFAULT_NORMALIZATION = "zscore"
SAFE_STUDY_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a study id is a folder name in caches and output folders
F18_HALF_LIFE_S = 6586.2  # fluorine-18, seconds (decay correction of the injected dose to scan start)
# Click guidance maps (data/clicks.py): a Gaussian (sigma in model-grid voxels, the autoPET IV baseline) or a ball
# valued by its internal distance transform, 1 at the click and 0 at the radius (LesionLocator's, measured better).
GUIDANCE_ENCODINGS = ("gaussian", "ball")
