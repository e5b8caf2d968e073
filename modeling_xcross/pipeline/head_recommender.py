"""Baselines that train only the scoring head on a frozen encoder: the bare base model, or the base with the source
adapters merged into one LoRA (PEFT `add_weighted_adapter`).

The merge uses combination_type "cat" with equal weights 1/n: PEFT stacks the weighted, scaled A matrices and the B
matrices, so the merged delta is exactly sum_i (1/n) * delta_i, the mean of the source deltas, for any ranks
("linear" would mix cross terms B_i A_j). Saved like a LoRA recommender (`head.safetensors`, `recommender.json`),
with the merged adapter as a PEFT directory in `merged_sources/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file

from ..modeling_xcross import load_base_model
from ..packaged_models import canonical_model_name
from .lora_recommender import HEAD_WEIGHTS_NAME, RECOMMENDER_CONFIG_NAME, LoraRecommender, scoring_settings

HEAD_RECOMMENDER_KIND = "head-recommender"
MERGED_ADAPTER = "merged_sources"


def merge_sources(backbone: str, sources: list[Path]) -> PeftModel:
    """The base with the source adapters merged into one active adapter, the mean of their deltas."""
    names = [f"source{index}" for index in range(len(sources))]
    model = PeftModel.from_pretrained(load_base_model(backbone), str(sources[0]), adapter_name=names[0])
    for name, source in zip(names[1:], sources[1:]):
        model.load_adapter(str(source), adapter_name=name)
    model.add_weighted_adapter(names, [1.0 / len(sources)] * len(sources), MERGED_ADAPTER, combination_type="cat")
    model.set_adapter(MERGED_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    return model


class HeadRecommender(LoraRecommender):
    """A trained head on a frozen encoder (bare base, or base + merged sources); nothing else is trained."""

    def __init__(self, encoder, backbone: str, merged_from: list[str], **scoring):
        super().__init__(encoder, backbone, **scoring)
        self.merged_from = list(merged_from)
        for parameter in self.peft_model.parameters():
            parameter.requires_grad_(False)

    @classmethod
    def create(cls, backbone: str, merged_from: list[Path] = (), seed: int = 0, **scoring) -> "HeadRecommender":
        torch.manual_seed(seed)
        backbone = canonical_model_name(backbone)
        encoder = merge_sources(backbone, list(merged_from)) if merged_from else load_base_model(backbone)
        return cls(encoder, backbone, [str(source) for source in merged_from], **scoring)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "HeadRecommender":
        directory = Path(directory)
        settings = json.loads((directory / RECOMMENDER_CONFIG_NAME).read_text())
        encoder = load_base_model(settings["backbone"])
        if settings["merged_from"]:
            encoder = PeftModel.from_pretrained(encoder, str(directory / MERGED_ADAPTER), adapter_name=MERGED_ADAPTER)
        model = cls(encoder, settings["backbone"], settings["merged_from"], **scoring_settings(settings))
        model.head.load_state_dict(load_file(directory / HEAD_WEIGHTS_NAME))
        return model.eval()

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        if self.merged_from:
            self.peft_model.peft_config[MERGED_ADAPTER].base_model_name_or_path = self.backbone_name
            # -> directory/<name>/; embeddings are frozen, so PEFT need not look the base up on the Hub.
            self.peft_model.save_pretrained(directory, selected_adapters=[MERGED_ADAPTER], save_embedding_layers=False)
        self.save_head(directory, {"kind": HEAD_RECOMMENDER_KIND, "merged_from": self.merged_from})
