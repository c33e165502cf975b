"""Load a model -> check memory -> sliding window -> mask on the native PET grid (+ the transformers pipeline).

``loading`` finds the model (folder, train_seg.py run, Hub id), ``memory`` refuses a study that cannot fit before any
voxel is read, ``sliding_window`` runs MONAI's inferer on the harmonised grid, ``segment`` chains read, harmonise,
infer and map back. ``pipeline`` (imported on demand) registers the "petct-segmentation" transformers task.
Nothing heavy (torch, MONAI) is imported until a function runs.
"""

from .loading import MODEL_HELP, load_segmentation_model
from .memory import available_memory_bytes, check_memory, estimate_memory_bytes
from .segment import LesionFilter, SegmentationResult, segment_study, to_native_mask
from .sliding_window import InferenceSettings, predict_probabilities, predict_with_organs, use_bf16, window_count

__all__ = [
    "MODEL_HELP", "load_segmentation_model", "available_memory_bytes", "check_memory", "estimate_memory_bytes",
    "SegmentationResult", "LesionFilter", "segment_study", "to_native_mask", "InferenceSettings", "predict_probabilities",
    "predict_with_organs", "use_bf16",
    "window_count",
]
