"""X-Cross for Hugging Face transformers. Importing this package registers `xcross` with AutoConfig/AutoModel."""

from transformers import AutoConfig, AutoModel

from configuration_xcross import AdapterSpec, XCrossConfig

from .adapters import LoraAdapter, load_lora_adapter
from .families import FAMILIES, BackboneFamily, family_for, supported_model_types
from .head import RecommendationHead, pooled_positions
from .layer import XCrossLayer, refine_streams
from .lora_bank import LoraBankLinear
from .modeling_xcross import XCrossForSequentialRecommendation, XCrossModel, XCrossPreTrainedModel
from .outputs import IntegratorSize, XCrossModelOutput, XCrossRecommendationOutput
from .packaged_models import DEFAULT_BACKBONE, resolve_model_path
from .serialization import load_base_model

AutoConfig.register(XCrossConfig.model_type, XCrossConfig, exist_ok=True)
AutoModel.register(XCrossConfig, XCrossForSequentialRecommendation, exist_ok=True)

__all__ = [
    "DEFAULT_BACKBONE",
    "FAMILIES",
    "AdapterSpec",
    "BackboneFamily",
    "IntegratorSize",
    "LoraAdapter",
    "LoraBankLinear",
    "RecommendationHead",
    "XCrossConfig",
    "XCrossForSequentialRecommendation",
    "XCrossLayer",
    "XCrossModel",
    "XCrossModelOutput",
    "XCrossPreTrainedModel",
    "XCrossRecommendationOutput",
    "family_for",
    "load_base_model",
    "load_lora_adapter",
    "pooled_positions",
    "refine_streams",
    "resolve_model_path",
    "supported_model_types",
]
