"""Backbone families: the few facts X-Cross needs to drive a base model's blocks itself.

X-Cross does not call the base model's `forward`: it embeds once, then runs the n adapter streams through every
block stacked on the batch dimension, fusing them after each block. A family says where the blocks are, how to
embed, what keyword arguments a block takes, and whether a final norm follows the last block. Supporting another
architecture is one more `BackboneFamily` entry in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Cache, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

from .errors import XCrossError

CachedBlockKwargs = Callable[[PreTrainedModel, torch.Tensor, torch.Tensor, torch.Tensor | None, Cache], dict]


@dataclass(frozen=True)
class BackboneFamily:
    """How to run one family of transformer backbones block by block.

    Attributes:
        name: Human-readable family name.
        model_types: The `config.model_type` values that belong to the family.
        layers_path: Dotted path from the base model to its `nn.ModuleList` of blocks.
        final_norm_path: Dotted path to the norm applied after the last block, or None.
        default_pooling: `"cls"` for encoders (first token) or `"last"` for decoders (last non-padding token).
        default_target_modules: The LoRA targets equivalent to "query and value" in this family.
        embed: `(base, input_ids, token_type_ids) -> (batch, seq_len, d)` token embeddings.
        block_kwargs: `(base, hidden_states, attention_mask) -> dict` of the keyword arguments every block takes
            (masks, positions), computed once per forward for the stacked batch.
        cached_block_kwargs: Decoders only: `(base, hidden_states, attention_mask, position_ids, cache) -> dict`, the
            block arguments for tokens that continue the sequences whose keys and values a transformers `Cache`
            holds (the 2-D `attention_mask` covers the cached tokens, then the new ones; the blocks append the new
            keys and values to `cache`). None for encoders: there every token attends to later ones, so no prefix
            can be computed before its continuation is known.
    """

    name: str
    model_types: tuple[str, ...]
    layers_path: str
    final_norm_path: str | None
    default_pooling: str
    default_target_modules: tuple[str, ...]
    embed: Callable[[PreTrainedModel, torch.Tensor, torch.Tensor | None], torch.Tensor]
    block_kwargs: Callable[[PreTrainedModel, torch.Tensor, torch.Tensor], dict]
    cached_block_kwargs: CachedBlockKwargs | None = None

    def layers(self, base: nn.Module) -> nn.ModuleList:
        return base.get_submodule(self.layers_path)

    def final_norm(self, base: nn.Module) -> nn.Module | None:
        return None if self.final_norm_path is None else base.get_submodule(self.final_norm_path)


def _bert_embed(base, input_ids, token_type_ids):
    return base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)


def _bert_block_kwargs(base, hidden_states, attention_mask):
    mask = create_bidirectional_mask(config=base.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
    return {"attention_mask": mask}


def _llama_embed(base, input_ids, token_type_ids):
    return base.embed_tokens(input_ids)


def _llama_block_kwargs(base, hidden_states, attention_mask):
    return _llama_cached_block_kwargs(base, hidden_states, attention_mask, position_ids=None, cache=None)


def _llama_cached_block_kwargs(base, hidden_states, attention_mask, position_ids, cache):
    """Positions default to 0..seq_len-1; with a cache, the causal mask puts the new tokens after the cached ones."""
    if position_ids is None:
        position_ids = torch.arange(hidden_states.shape[1], device=hidden_states.device).unsqueeze(0)
    mask = create_causal_mask(
        config=base.config,
        inputs_embeds=hidden_states,
        attention_mask=attention_mask,
        cache=cache,
        position_ids=position_ids,
    )
    kwargs = {
        "attention_mask": mask,
        "position_ids": position_ids,
        "position_embeddings": base.rotary_emb(hidden_states, position_ids=position_ids),
    }
    return kwargs if cache is None else {**kwargs, "cache": cache}


BERT_FAMILY = BackboneFamily(
    name="BERT-style encoder",
    model_types=("bert", "roberta"),
    layers_path="encoder.layer",
    final_norm_path=None,
    default_pooling="cls",
    default_target_modules=("query", "value"),
    embed=_bert_embed,
    block_kwargs=_bert_block_kwargs,
)

LLAMA_FAMILY = BackboneFamily(
    name="Llama-style decoder",
    model_types=("llama",),
    layers_path="layers",
    final_norm_path="norm",
    default_pooling="last",
    default_target_modules=("q_proj", "v_proj"),
    embed=_llama_embed,
    block_kwargs=_llama_block_kwargs,
    cached_block_kwargs=_llama_cached_block_kwargs,
)

FAMILIES: tuple[BackboneFamily, ...] = (BERT_FAMILY, LLAMA_FAMILY)


def supported_model_types() -> list[str]:
    return sorted(model_type for family in FAMILIES for model_type in family.model_types)


def family_for(model_type: str) -> BackboneFamily:
    """The family of a base model type, or a ValueError listing the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise XCrossError(
        f"X-Cross does not support base models of type {model_type!r}. Supported model types: "
        f"{', '.join(supported_model_types())}. To add one, describe it with a `BackboneFamily` in "
        "modeling_xcross/families.py."
    )


def bare_base_model(model: PreTrainedModel) -> PreTrainedModel:
    """The bare transformer of a model that may carry a task head (e.g. `LlamaForCausalLM` -> `LlamaModel`)."""
    bare = model.base_model
    family_for(bare.config.model_type)
    return bare
