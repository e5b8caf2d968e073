"""The per-domain LoRA recommender: a PEFT LoRA adapter on the frozen base plus X-Cross's scoring head.

Saved as a PEFT adapter directory (adapter_config.json + adapter_model.safetensors, keys relative to the bare base
model, exactly what `XCrossForSequentialRecommendation.from_adapters` reads) plus `head.safetensors` and
`recommender.json`; such a directory is both a scoring model and a source adapter for X-Cross.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import atomic_write
from ..families import family_for
from ..head import RecommendationHead, SimilarityHead, check_scoring_inputs, pool_hidden_states, score_candidates
from ..modeling_xcross import XCrossRecommendationOutput, load_base_model
from ..packaged_models import canonical_model_name

HEAD_WEIGHTS_NAME = "head.safetensors"
RECOMMENDER_CONFIG_NAME = "recommender.json"


def scoring_settings(settings: dict) -> dict:
    """The scoring keyword arguments recorded in `recommender.json` (runs made before dual scoring are cross); the
    learned temperature is a head weight."""
    return {"scoring": settings.get("scoring", "cross"), "pooling": settings.get("pooling")}


class LoraRecommender(nn.Module):
    """`peft_model` is the encoder the head scores from: a PeftModel here, possibly a bare base in subclasses (the
    attribute keeps its name so that checkpoints of earlier runs still load)."""

    def __init__(self, peft_model: PeftModel, backbone: str, scoring: str = "cross", pooling: str | None = None,
                 temperature: float = 0.05):
        super().__init__()
        self.peft_model = peft_model
        self.backbone_name = backbone
        encoder = peft_model.get_base_model() if isinstance(peft_model, PeftModel) else peft_model
        config = encoder.config
        self.scoring = scoring
        # The same rule as XCrossConfig.pooling_for, so a recommender and X-Cross over it pool alike.
        self.pooling = pooling or ("mean" if scoring == "dual" else family_for(config.model_type).default_pooling)
        self.head = SimilarityHead(temperature) if scoring == "dual" else RecommendationHead(config.hidden_size)

    @classmethod
    def create(cls, backbone: str, r: int = 8, lora_alpha: int = 16, target_modules: list[str] | None = None,
               seed: int = 0, **scoring) -> "LoraRecommender":
        """A fresh recommender: new LoRA (query/value of the family by default) and head, seeded; `scoring` holds
        `scoring`, `pooling` and `temperature` (see `XCrossConfig`)."""
        torch.manual_seed(seed)
        backbone = canonical_model_name(backbone)
        base = load_base_model(backbone)
        targets = list(target_modules or family_for(base.config.model_type).default_target_modules)
        lora = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=targets, lora_dropout=0.0)
        return cls(get_peft_model(base, lora), backbone, **scoring)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "LoraRecommender":
        directory = Path(directory)
        settings = json.loads((directory / RECOMMENDER_CONFIG_NAME).read_text())
        base = load_base_model(settings["backbone"])
        model = cls(PeftModel.from_pretrained(base, directory), settings["backbone"], **scoring_settings(settings))
        model.head.load_state_dict(load_file(directory / HEAD_WEIGHTS_NAME))
        return model.eval()

    def encode(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Pooled representations `(sequences, d)` of 2-D inputs."""
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.peft_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool_hidden_states(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, candidate_input_ids=None,
                candidate_attention_mask=None, candidate_token_type_ids=None, labels=None):
        check_scoring_inputs(self.scoring, input_ids, attention_mask, candidate_input_ids, labels)
        logits = score_candidates(self.encode, self.scoring, self.head, input_ids, attention_mask, token_type_ids,
                                  candidate_input_ids, candidate_attention_mask, candidate_token_type_ids)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return XCrossRecommendationOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: str | Path) -> None:
        """The PEFT adapter, the head and the settings; every file written atomically."""
        directory = Path(directory)
        # PEFT records the local path the base was read from; keep the portable name instead.
        self.peft_model.peft_config["default"].base_model_name_or_path = self.backbone_name
        # Embeddings are frozen, so PEFT need not look the base up on the Hub to decide whether to save them.
        self.peft_model.save_pretrained(directory, save_embedding_layers=False)
        self.save_head(directory, {"kind": "lora-recommender"})

    def save_head(self, directory: Path, settings: dict) -> None:
        """The head weights and `recommender.json` (`settings` plus backbone and pooling)."""
        head = {key: value.contiguous() for key, value in self.head.state_dict().items()}
        atomic_write(directory / HEAD_WEIGHTS_NAME, lambda path: save_file(head, path))
        settings = {**settings, "backbone": self.backbone_name, "scoring": self.scoring, "pooling": self.pooling}
        atomic_write(directory / RECOMMENDER_CONFIG_NAME, lambda path: path.write_text(json.dumps(settings, indent=2)))
