"""Load a model -> bind it to settings -> segment study after study (+ the transformers pipeline).

``loading`` finds the model (folder, train_seg.py run, Hub id), ``settings`` says how it runs (checked when made),
``segmenter`` is the one path from a study to a ``SegmentationResult`` (``Segmenter`` for networks, the
``SegmentationMethod`` base for any other method), ``segment`` holds the steps it chains (read and check, native PET
grid, lesion filter, organs), ``sliding_window`` runs MONAI's inferer on the harmonised grid. ``pipeline`` (imported
on demand) registers the "petct-segmentation" transformers task. Nothing heavy (torch, MONAI) is imported until a
function runs.
"""

from .loading import MODEL_HELP, load_segmentation_model
from .segment import LesionFilter, to_native_mask
from .segmenter import SegmentationMethod, SegmentationResult, Segmenter
from .settings import InferenceSettings
from .sliding_window import predict_probabilities, predict_with_organs, use_bf16, window_count

__all__ = [
    "MODEL_HELP", "load_segmentation_model",
    "LesionFilter", "to_native_mask", "SegmentationMethod", "SegmentationResult", "Segmenter", "InferenceSettings",
    "predict_probabilities", "predict_with_organs", "use_bf16", "window_count",
]
