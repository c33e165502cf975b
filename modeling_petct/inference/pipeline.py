"""``pipeline("petct-segmentation", model=...)``: the transformers pipeline interface over ``inference.Segmenter``.

Importing this module registers the task. Model files never import it (they ship alone as Hub remote code).

    >>> import modeling_petct.inference.pipeline  # registers "petct-segmentation"
    >>> from transformers import pipeline
    >>> seg = pipeline("petct-segmentation", model="path/to/model", device="cpu")
    >>> out = seg({"pet": "PET.nii.gz", "ct": "CT.nii.gz"})  # or seg("PET.nii.gz", ct="CT.nii.gz", backend="openvino")
    >>> out["mask"]  # Volume on the PET grid; out["lesions"], out["totals"] as outputs.files.lesion_report gives
    >>> seg({"pet": ..., "ct": ...}, output_dir="out/")  # also writes the files `petct segment -i` writes per study
"""

from __future__ import annotations

from transformers import AutoModelForSemanticSegmentation, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .. import PetCtForSegmentation  # noqa: F401  (registers the petct Auto classes)
from ..errors import PetCtInputError

TASK = "petct-segmentation"


class PetCtSegmentationPipeline(Pipeline):
    """Input ``{"pet": ..., "ct": ...}`` (paths or Volumes, ``"organs"`` optional), or the PET with ``ct=``; output a
    dict with ``mask`` (Volume on the native PET grid), ``lesions`` and ``totals`` (lesion statistics), ``timings``
    and ``result`` (the SegmentationResult). ``output_dir``: write the study's files there (``outputs.write_study``)."""

    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_processor = False
    _load_video_processor = False
    _segmenters: dict = {}

    def _sanitize_parameters(self, ct=None, fast=None, tta=None, stats=None, backend=None, output_dir=None, **kwargs):
        pre = {"ct": ct} if ct is not None else {}
        forward = {k: v for k, v in (("fast", fast), ("tta", tta), ("backend", backend)) if v is not None}
        post = {k: v for k, v in (("stats", stats), ("output_dir", output_dir)) if v is not None}
        return pre, forward, post

    def preprocess(self, inputs, ct=None):
        if isinstance(inputs, dict):
            pet, ct, organs = inputs.get("pet"), inputs.get("ct", ct), inputs.get("organs")
        else:
            pet, organs = inputs, None
        if pet is None or ct is None:
            raise PetCtInputError("pipeline input", 'needs a PET and a CT: {"pet": ..., "ct": ...} or (pet, ct=...)')
        return {"pet": pet, "ct": ct, "organs": organs}

    def _forward(self, model_inputs, fast=False, tta=False, backend="auto"):
        from .segmenter import Segmenter
        from .settings import InferenceSettings

        settings = InferenceSettings.recipe("fast" if fast else "default", tta=tta, backend=backend)
        segmenter = self._segmenters.get(settings) or Segmenter(self.model, settings, self.device)
        self._segmenters = {settings: segmenter}  # the last one: its weights checksum is computed once
        return segmenter(model_inputs["pet"], model_inputs["ct"], organs=model_inputs["organs"])

    def postprocess(self, result, stats=True, output_dir=None):
        from ..outputs.files import lesion_report, write_study

        out = {"mask": result.mask, "timings": result.timings, "result": result}
        if output_dir is not None:
            out["lesions"], out["totals"] = write_study(result, output_dir)
        elif stats:
            out["lesions"], out["totals"] = lesion_report(result)
        return out

    def forward(self, model_inputs, **forward_params):
        # the Segmenter moves windows to the device itself; the base class would try to move file paths to it.
        return self._forward(model_inputs, **forward_params)


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=PetCtSegmentationPipeline, pt_model=AutoModelForSemanticSegmentation)
