"""petct-fm: Hugging Face-native PET/CT foundation models (masked autoencoder + lesion segmentation).

Importing the package registers model_type "petct" with AutoConfig, AutoModel, AutoModelForMaskedImageModeling and
AutoModelForSemanticSegmentation. Only the model code is imported here (data, training and CLI load on demand).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedImageModeling,
    AutoModelForSemanticSegmentation,
)

from .configuration_petct import PRESETS, PetCtConfig
from .modeling_petct import (
    PetCtForMaskedImageModeling,
    PetCtForSegmentation,
    PetCtMaskedImageModelingOutput,
    PetCtModel,
    PetCtModelOutput,
    PetCtPreTrainedModel,
    PetCtSegmentationOutput,
)
from .modeling_separated import PetCtForSeparatedModalityProbe, PetCtSeparatedConfig

AutoConfig.register(PetCtConfig.model_type, PetCtConfig, exist_ok=True)
AutoModel.register(PetCtConfig, PetCtModel, exist_ok=True)
AutoModelForMaskedImageModeling.register(PetCtConfig, PetCtForMaskedImageModeling, exist_ok=True)
AutoModelForSemanticSegmentation.register(PetCtConfig, PetCtForSegmentation, exist_ok=True)
AutoConfig.register(PetCtSeparatedConfig.model_type, PetCtSeparatedConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(PetCtSeparatedConfig, PetCtForSeparatedModalityProbe, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "PetCtConfig", "PetCtPreTrainedModel", "PetCtModel", "PetCtForMaskedImageModeling",
    "PetCtForSegmentation", "PetCtModelOutput", "PetCtMaskedImageModelingOutput", "PetCtSegmentationOutput",
    "PetCtSeparatedConfig", "PetCtForSeparatedModalityProbe",
]
