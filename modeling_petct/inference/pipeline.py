"""``pipeline("petct-segmentation", model=...)``: the transformers pipeline interface over ``inference.segment_study``.

Importing this module registers the task. Model files never import it (they ship alone as Hub remote code).

    >>> import modeling_petct.inference.pipeline  # registers "petct-segmentation"
    >>> from transformers import pipeline
    >>> seg = pipeline("petct-segmentation", model="path/to/model", device="cpu")
    >>> out = seg({"pet": "PET.nii.gz", "ct": "CT.nii.gz"})  # or seg("PET.nii.gz", ct="CT.nii.gz", backend="openvino")
    >>> out["mask"]  # Volume on the PET grid; out["lesions"], out["totals"] as from quantify.lesion_table
"""

from __future__ import annotations

from transformers import AutoModelForSemanticSegmentation, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .. import PetCtForSegmentation  # noqa: F401  (registers the petct Auto classes)
from ..errors import PetCtInputError

TASK = "petct-segmentation"


class PetCtSegmentationPipeline(Pipeline):
    """Input ``{"pet": ..., "ct": ...}`` (paths or Volumes), or the PET with ``ct=``; output a dict with ``mask``
    (Volume on the native PET grid), ``lesions`` and ``totals`` (lesion statistics) and ``timings``."""

    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_processor = False
    _load_video_processor = False

    def _sanitize_parameters(self, ct=None, fast=None, tta=None, stats=None, backend=None, **kwargs):
        pre = {"ct": ct} if ct is not None else {}
        forward = {k: v for k, v in (("fast", fast), ("tta", tta), ("backend", backend)) if v is not None}
        post = {"stats": stats} if stats is not None else {}
        return pre, forward, post

    def preprocess(self, inputs, ct=None):
        if isinstance(inputs, dict):
            pet, ct = inputs.get("pet"), inputs.get("ct", ct)
        else:
            pet = inputs
        if pet is None or ct is None:
            raise PetCtInputError("pipeline input", 'needs a PET and a CT: {"pet": ..., "ct": ...} or (pet, ct=...)')
        return {"pet": pet, "ct": ct}

    def _forward(self, model_inputs, fast=False, tta=False, backend="auto"):
        from .segment import segment_study

        return segment_study(model_inputs["pet"], model_inputs["ct"], self.model, device=self.device, fast=fast, tta=tta,
                             backend=backend)  # fmt: skip

    def postprocess(self, result, stats=True):
        out = {"mask": result.mask, "timings": result.timings}
        if stats:
            from ..outputs.lesions import lesion_table

            out["lesions"], out["totals"] = lesion_table(result.mask, result.pet)
        return out

    def forward(self, model_inputs, **forward_params):
        # segment_study moves windows to the device itself; the base class would try to move file paths to it.
        return self._forward(model_inputs, **forward_params)


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=PetCtSegmentationPipeline, pt_model=AutoModelForSemanticSegmentation)
