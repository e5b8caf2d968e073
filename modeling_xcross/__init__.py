"""X-Cross for Hugging Face transformers. Importing this package registers `xcross` with AutoConfig/AutoModel and
gives `model.recommend` its implementation from the inference layer (the package face may import every layer)."""

from transformers import AutoConfig, AutoModel

from configuration_xcross import AdapterSpec, XCrossConfig

from .adapters import LoraAdapter, load_lora_adapter
from .families import FAMILIES, BackboneFamily, family_for, supported_model_types
from .head import RecommendationHead, pooled_positions
from .head_recommender import HeadRecommender
from .layer import XCrossLayer, refine_streams
from .lora_bank import LoraBankLinear
from .lora_recommender import LoraRecommender, RecommenderConfig
from .modeling_xcross import XCrossForSequentialRecommendation, XCrossModel, XCrossPreTrainedModel
from .outputs import IntegratorSize, XCrossModelOutput, XCrossRecommendationOutput
from .packaged_models import DEFAULT_BACKBONE, resolve_model_path
from .serialization import load_base_model
from . import inference  # noqa: F401  (registers the ranking behind `recommend`)

AutoConfig.register(XCrossConfig.model_type, XCrossConfig, exist_ok=True)
AutoModel.register(XCrossConfig, XCrossForSequentialRecommendation, exist_ok=True)
# One model type for both recommenders: LoraRecommender.from_pretrained builds the class the config's `kind` names.
AutoConfig.register(RecommenderConfig.model_type, RecommenderConfig, exist_ok=True)
AutoModel.register(RecommenderConfig, LoraRecommender, exist_ok=True)

__all__ = [
    "DEFAULT_BACKBONE",
    "FAMILIES",
    "HeadRecommender",
    "LoraRecommender",
    "RecommenderConfig",
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
