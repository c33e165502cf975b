"""The models, flat and self-contained: exactly the files a Hub repo ships as remote code.

``configuration_petct`` (PetCtConfig, its presets and the separated probe's config), ``modeling_petct`` (PetCtModel,
PetCtForMaskedImageModeling, PetCtForSegmentation), ``modeling_separated`` (the separated-modality probe),
``backbones`` (MONAI SwinUNETR-v2, nnU-Net PlainConv/ResEnc from dynamic_network_architectures) and ``masking``
(the MAE's cell masks, imputation and loss). They import each other relatively and never the rest of petct-fm, so
``trust_remote_code=True`` works where the package is not installed. ``registry`` is the table of these classes.

Facts that bite: transformers 5 ``post_init()`` re-initialises submodules, so ``_init_weights`` leaves the MONAI and
nnU-Net backbones' own init alone; six-stage nets need inputs of at least 64 voxels on an axis (a 1x1x1 bottleneck
breaks InstanceNorm); nnU-Net's state dict has shared tensors, so weights are saved with safetensors' ``save_model``.
"""
