"""Baselines that train only the scoring head on a frozen encoder: the bare base model, or the base with the source
adapters merged into one LoRA (PEFT `add_weighted_adapter`).

The merge uses combination_type "cat" with equal weights 1/n: PEFT stacks the weighted, scaled A matrices and the B
matrices, so the merged delta is exactly sum_i (1/n) * delta_i, the mean of the source deltas, for any ranks
("linear" would mix cross terms B_i A_j). Saved like a LoRA recommender (`config.json`, `model.safetensors` with the
head), with the merged adapter as a PEFT directory in `merged_sources/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from .checkpoint import atomic_save_dir
from .families import family_for
from .serialization import load_base_model
from .packaged_models import canonical_model_name
from .lora_recommender import LoraRecommender, RecommenderConfig, load_peft_adapter, recommender_config

HEAD_RECOMMENDER_KIND = "head-recommender"
MERGED_ADAPTER = "merged_sources"


def merge_sources(backbone: str, sources: list[Path]) -> PeftModel:
    """The base with the source adapters merged into one active adapter, the mean of their deltas."""
    names = [f"source{index}" for index in range(len(sources))]
    model = load_base_model(backbone)
    for name, source in zip(names, sources):
        model = load_peft_adapter(model, source, adapter_name=name)
    model.add_weighted_adapter(names, [1.0 / len(sources)] * len(sources), MERGED_ADAPTER, combination_type="cat")
    model.set_adapter(MERGED_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    return model


class HeadRecommender(LoraRecommender):
    """A trained head on a frozen encoder (bare base, or base + merged sources); nothing else is trained."""

    kind = HEAD_RECOMMENDER_KIND

    def __init__(self, config: RecommenderConfig, encoder):
        encoder.requires_grad_(False)
        super().__init__(config, encoder)

    def is_trained(self, key: str) -> bool:
        return key.startswith("head.")

    @property
    def merged_from(self) -> list[str]:
        return list(self.config.merged_from or [])

    @classmethod
    def create(cls, backbone: str, merged_from: list[Path] = (), seed: int = 0, **scoring) -> "HeadRecommender":
        torch.manual_seed(seed)
        backbone = canonical_model_name(backbone)
        encoder = merge_sources(backbone, list(merged_from)) if merged_from else load_base_model(backbone)
        base = encoder.get_base_model() if isinstance(encoder, PeftModel) else encoder
        config = recommender_config(backbone, base.config.model_type, kind=HEAD_RECOMMENDER_KIND,
                                    merged_from=[str(source) for source in merged_from], **scoring)
        return cls(config, encoder)

    @classmethod
    def load_encoder(cls, directory: Path, config: RecommenderConfig, **base_kwargs):
        encoder = load_base_model(config.backbone, **base_kwargs)
        if config.merged_from:
            encoder = load_peft_adapter(encoder, directory / MERGED_ADAPTER, adapter_name=MERGED_ADAPTER)
        return encoder

    def save_encoder(self, directory: Path) -> None:
        if self.merged_from:
            self.peft_model.peft_config[MERGED_ADAPTER].base_model_name_or_path = self.backbone_name
            # -> directory/<name>/; embeddings are frozen, so PEFT need not look the base up on the Hub.
            atomic_save_dir(directory, lambda temporary: self.peft_model.save_pretrained(
                temporary, selected_adapters=[MERGED_ADAPTER], save_embedding_layers=False))
