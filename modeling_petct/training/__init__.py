"""The Accelerate engine (``loop``) and its two recipes: masked-autoencoder pretraining (``mae``, train_mae.py) and
segmentation fine-tuning or linear probing (``segmentation``, train_seg.py); ``args`` holds their dataclass options,
``splits`` the subject-wise splits. Resume is bit-exact after a kill; DDP runs under `accelerate launch`/torchrun."""
