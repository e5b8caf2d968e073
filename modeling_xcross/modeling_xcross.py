"""X-Cross: n domain LoRA adapters of one frozen base, integrated layer by layer by a small trainable integrator.

As in transformers' `LlamaModel` / `LlamaForCausalLM`: [`XCrossModel`] runs the fused adapter streams and pools them,
[`XCrossForSequentialRecommendation`] adds the scoring head and the loss. Saving and loading live in
`serialization.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Cache, PreTrainedModel
from transformers import initialization as init

from configuration_xcross import XCrossConfig

from .adapters import LoraAdapter, load_lora_adapter
from .checkpoint import WeightGroup, weight_group
from .families import bare_base_model, family_for
from .head import SimilarityHead, check_inputs, pool_hidden_states, score_candidates, scoring_head
from .layer import XCrossLayer
from .lora_bank import LoraBankLinear, install_lora_bank, load_adapter_into_bank, targeted_linears
from .outputs import IntegratorSize, XCrossModelOutput, XCrossRecommendationOutput
from .packaged_models import canonical_model_name, same_backbone
from .recommending import CatalogueRecommendationMixin
from .serialization import XCrossSerializationMixin, base_model_commit, load_base_model, logger
from .shared_prefix import shared_prefix_logits

AdapterSource = str | os.PathLike | tuple[str, str | None]


class XCrossPreTrainedModel(XCrossSerializationMixin, PreTrainedModel):
    config: XCrossConfig
    config_class = XCrossConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    # As after `register_for_auto_class("AutoModel")`: save_pretrained writes `auto_map` and the flat code files, so
    # a saved directory loads with trust_remote_code=True where this package is not installed. None turns it off.
    _auto_class = "AutoModel"
    # The backbone's pooler is never used (X-Cross pools and scores with its own head): dropped from the model, and
    # ignored in checkpoints saved before it was. A scoring head is ignored where the model has none: an XCrossModel
    # loads from a saved XCrossForSequentialRecommendation.
    _keys_to_ignore_on_load_unexpected = [r"^backbone\.pooler\.", r"^head\."]
    # On the CPU the stacked streams go through the blocks in passes whose widest activation (the MLP's
    # intermediate layer, n streams stacked) stays within this many bytes: larger ones fall out of the caches, and
    # glibc's allocator maps fresh pages for them on every pass. None runs every batch in one pass, as on GPUs.
    cpu_pass_bytes: int | None = 8 * 2**20
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, SimilarityHead):
            init.constant_(module.logit_scale, math.log(1.0 / self.config.temperature))
            if module.popularity_weight is not None:
                init.constant_(module.popularity_weight, float(self.config.popularity_weight))
        elif isinstance(module, XCrossModel):
            init.constant_(module.domain_weights, 1.0 / self.config.num_adapters)


class XCrossModel(XCrossPreTrainedModel):
    """
    The n source-domain LoRA adapters of one frozen base as n streams, fused after every integrated block.

    Holds the patched base (`backbone`: its embeddings, the adapter bank and the `XCrossLayer` blocks with their
    fusion heads) and the domain weights w that mix the streams when they are pooled. Only the fusion heads and w
    train. [`XCrossForSequentialRecommendation`] extends it with a scoring head.
    """

    def __init__(self, config: XCrossConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if not config.adapters:
            raise ValueError("XCrossConfig.adapters is empty: X-Cross needs at least one source adapter. Build the "
                             "model with XCrossForSequentialRecommendation.from_adapters(base, {name: adapter_dir}).")
        if config.base_config is None:
            raise ValueError("XCrossConfig.base_config is missing: an X-Cross config embeds its base model's "
                             "configuration (save_pretrained writes it into config.json). Restore config.json, or "
                             "rebuild the model with XCrossForSequentialRecommendation.from_adapters(base, adapters).")
        if backbone is None:
            backbone = AutoModel.from_config(config.base_config)
        backbone = bare_base_model(backbone)
        self.family = family_for(backbone.config.model_type)
        self.pooling = config.pooling_for(self.family.default_pooling)
        self._check_base_matches_config(backbone)

        specs = config.adapter_specs
        self._lora_banks = install_lora_bank(backbone, self.family.layers_path, specs)
        if getattr(backbone, "pooler", None) is not None:  # after the bank, which refuses adapters on it
            backbone.pooler = None
        layers = self.family.layers(backbone)
        fused = set(config.fused_layers)
        for index, block in enumerate(layers):
            # With a single adapter there is nothing to fuse: its stream is the source model.
            integrated = index in fused and len(specs) > 1
            layers[index] = XCrossLayer(block, len(specs), config.hidden_size, integrated=integrated,
                                        beta=config.beta, gamma=config.gamma,
                                        normalize_fusion_input=config.normalize_fusion_input,
                                        scale_fusion_input=config.scale_fusion_input, fusion_bound=config.fusion_bound)
        self.backbone = backbone
        self.domain_weights = nn.Parameter(torch.empty(len(specs)))
        # The tokenizer save_pretrained writes; read from the base reference when unset.
        self.tokenizer = None
        self.post_init()
        # The frozen base is referred to, not saved (unless include_base=True): the transformers way of saying so,
        # which also tells Trainer that a checkpoint missing exactly these keys is complete.
        self._keys_to_ignore_on_save = {key for key in self.state_dict() if weight_group(key) is WeightGroup.BASE}

        self.backbone.requires_grad_(False)
        for fusion_head in self.fusion_heads:
            fusion_head.requires_grad_(True)

    def train(self, mode: bool = True) -> "XCrossModel":
        """Train mode for what trains; the frozen base and adapters stay in eval mode (no dropout) unless
        `config.stream_dropout`: each stream would draw its own dropout mask, and the fusion heads, which read the
        differences between streams, would learn from noise that evaluation does not have."""
        super().train(mode)
        if mode and not self.config.stream_dropout:
            self.backbone.eval()
            for layer in self.layers:  # the block's own flag only: it is what turns activation checkpointing on
                layer.block.training = True
        return self

    def extra_repr(self) -> str:
        weights = ", ".join(f"{name}={weight:.4g}" for name, weight in zip(self.adapter_names, self.domain_weights))
        return (f"adapters={self.adapter_names}, domain_weights=({weights}), beta={self.config.beta}, "
                f"gamma={self.config.gamma}")

    def _check_base_matches_config(self, backbone: PreTrainedModel) -> None:
        expected = self.config.base_config
        for key in ("model_type", "hidden_size", "num_hidden_layers"):
            if getattr(backbone.config, key) != getattr(expected, key):
                raise ValueError(f"The base model has {key}={getattr(backbone.config, key)!r} but this X-Cross config "
                                 f"was built for {key}={getattr(expected, key)!r}; load the base it names "
                                 f"({self.config.base_model_name_or_path}).")

    @property
    def adapter_names(self) -> list[str]:
        return self.config.adapter_names

    @property
    def num_streams(self) -> int:
        return self.config.num_adapters

    @property
    def layers(self) -> nn.ModuleList:
        return self.family.layers(self.backbone)

    @property
    def fusion_heads(self) -> nn.ModuleList:
        """The fusion head of every integrated block, in block order. They live in the patched blocks; this list
        only refers to them."""
        return nn.ModuleList(layer.fusion_head for layer in self.layers if layer.fusion_head is not None)

    @property
    def lora_banks(self) -> dict[str, LoraBankLinear]:
        """The adapted linears by their module name in the (unpatched) base model."""
        return dict(self._lora_banks)

    def load_adapters(self, adapters: list[LoraAdapter] | None = None, **hub_kwargs) -> None:
        """Fill the bank with the adapters' weights (read from the sources in the config when not given)."""
        if adapters is None:
            adapters = [load_lora_adapter(spec.name, spec.source, spec.revision, **hub_kwargs)
                        for spec in self.config.adapter_specs]
        for index, adapter in enumerate(adapters):
            load_adapter_into_bank(self._lora_banks, index, adapter)

    # --------------------------------------------------------------------------------------------------- streams

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.LongTensor | None = None, past_key_values: Cache | None = None,
                position_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_fusion_weights: bool = False) -> XCrossModelOutput:
        """The streams of 2-D inputs `(sequences, seq_len)`; see `run_streams`."""
        return self.run_streams(input_ids, attention_mask, token_type_ids, past_key_values, position_ids,
                                output_hidden_states, output_fusion_weights)

    def run_streams(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                    token_type_ids: torch.LongTensor | None = None, past_key_values: Cache | None = None,
                    position_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                    output_fusion_weights: bool = False) -> XCrossModelOutput:
        """Embed once, run the n stacked streams through every block (in one pass: see `sequences_per_pass`).

        With `past_key_values` (decoders), the blocks append the streams' keys and values to that cache and the
        tokens continue the cached ones: `attention_mask` then covers both, and `position_ids` `(sequences,
        seq_len)` place the new tokens after the cached ones (see `shared_prefix.py`). A method of its own, so that
        [`XCrossForSequentialRecommendation`], whose `forward` scores, reaches it too.
        """
        n = self.num_streams
        sequences, seq_len = input_ids.shape
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        embeddings = self.family.embed(self.backbone, input_ids, token_type_ids)
        hidden_states = embeddings.unsqueeze(0).expand(n, -1, -1, -1).reshape(n * sequences, seq_len, -1)
        if past_key_values is None:
            block_kwargs = self.family.block_kwargs(self.backbone, hidden_states, attention_mask.repeat(n, 1))
        else:
            positions = position_ids.repeat(n, 1) if position_ids is not None else None
            block_kwargs = self.family.cached_block_kwargs(self.backbone, hidden_states, attention_mask.repeat(n, 1),
                                                           positions, past_key_values)

        all_hidden_states = (hidden_states.view(n, sequences, seq_len, -1),) if output_hidden_states else None
        all_fusion_weights = () if output_fusion_weights else None
        for layer in self.layers:
            hidden_states, fusion_weights = layer(hidden_states, **block_kwargs)
            if output_hidden_states:
                all_hidden_states += (hidden_states.view(n, sequences, seq_len, -1),)
            if output_fusion_weights and fusion_weights is not None:
                all_fusion_weights += (fusion_weights,)
        return XCrossModelOutput(last_hidden_state=hidden_states.view(n, sequences, seq_len, -1),
                                 hidden_states=all_hidden_states, fusion_weights=all_fusion_weights)

    def sequences_per_pass(self, sequences: int, seq_len: int, device: torch.device) -> int:
        """How many sequences (each as n stacked streams) go through the blocks at once: all of them, or on the CPU
        near-equal passes whose widest activation stays within `cpu_pass_bytes`."""
        if device.type != "cpu" or self.cpu_pass_bytes is None:
            return max(1, sequences)
        base = self.config.base_config
        widest = max(getattr(base, "intermediate_size", 0), base.hidden_size) * self.dtype.itemsize
        largest_pass = max(1, self.cpu_pass_bytes // (widest * self.num_streams * seq_len))
        passes = -(-sequences // largest_pass)
        return max(1, -(-sequences // passes))

    def pool_streams(self, streams: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(sequences, d)` from the last block's streams `(n, sequences, seq_len, d)`, as the paper orders it: mix the
        streams per token with the domain weights w, apply the base's final norm, then pool. One-token pooling
        commutes with both, so it picks its token first and mixes and norms only that."""
        final_norm = self.family.final_norm(self.backbone)
        weights = self.domain_weights.to(streams.dtype)
        if self.pooling == "mean":
            mixed = torch.einsum("n,nstd->std", weights, streams)
            return pool_hidden_states(mixed if final_norm is None else final_norm(mixed), attention_mask, "mean")
        mixed = torch.einsum("n,nsd->sd", weights, pool_hidden_states(streams, attention_mask, self.pooling))
        return mixed if final_norm is None else final_norm(mixed)


class XCrossForSequentialRecommendation(CatalogueRecommendationMixin, XCrossModel):
    """
    Scores (history, candidate) prompts with n source-domain LoRA adapters of one frozen base, fused per block.

    Build one with [`~XCrossForSequentialRecommendation.from_adapters`]; reload a saved one with `from_pretrained`
    (or `AutoModel.from_pretrained` once `modeling_xcross` is imported). Only the integrator trains: the fusion
    head of every integrated block (`fusion_heads`), the domain weights w and the scoring head.

    It extends [`XCrossModel`] rather than holding it under an attribute, so that its weights keep the names every
    checkpoint has: `backbone.*` (base, bank, fusion heads), `domain_weights` and `head.*`.
    """

    def __init__(self, config: XCrossConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config, backbone)
        self.head = scoring_head(config, config.hidden_size)
        self.post_init()  # initialises the head; XCrossModel's modules are initialised already

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def from_adapters(cls, base: str | os.PathLike | PreTrainedModel, adapters: Mapping[str, AdapterSource], *,
                      base_revision: str | None = None, dtype: torch.dtype | None = None,
                      **config_overrides) -> "XCrossForSequentialRecommendation":
        """Build X-Cross from a base model and an ordered mapping `{name: adapter}`.

        Args:
            base: A loaded model, or a Hub id / local path (packaged backbones such as all-MiniLM-L6-v2 resolve
                to their PyPI copy).
            adapters: `{name: source}` in bank order; a source is a PEFT LoRA adapter directory, a Hub repo id,
                or a `(repo_id, revision)` pair.
            base_revision: Revision of `base` when it is a Hub id; recorded as the commit it resolves to.
            dtype: dtype to load the base in (float32 by default).
            config_overrides: Any [`XCrossConfig`] field, e.g. `beta`, `gamma`, `integrated_layers`, `pooling`.
        """
        if not adapters:
            raise ValueError("`adapters` is empty: pass an ordered mapping {name: PEFT LoRA adapter dir or repo id}.")
        if isinstance(base, PreTrainedModel):
            backbone = bare_base_model(base)
            base_name = canonical_model_name(backbone.config._name_or_path or backbone.name_or_path)
        else:
            base_name = canonical_model_name(str(base))
            base_revision = base_model_commit(base_name, base_revision)
            backbone = load_base_model(base_name, revision=base_revision, dtype=dtype)
        loaded = [load_lora_adapter(name, *(source if isinstance(source, tuple) else (source, None)))
                  for name, source in adapters.items()]
        for adapter in loaded:
            trained_on = adapter.base_model_name_or_path
            if trained_on and not same_backbone(canonical_model_name(trained_on), base_name):
                logger.warning("Adapter %r says it was trained on %r, the base here is %r; its weight shapes are "
                               "checked against this base.", adapter.spec.name, trained_on, base_name)
        config = XCrossConfig(
            base_model_name_or_path=base_name,
            base_model_revision=base_revision,
            base_config=backbone.config.to_dict(),
            adapters=[adapter.spec.to_dict() for adapter in loaded],
            **config_overrides,
        )
        model = cls(config, backbone=backbone)
        model.load_adapters(loaded)
        return model

    # --------------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        candidate_input_ids: torch.LongTensor | None = None,
        candidate_attention_mask: torch.Tensor | None = None,
        candidate_token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        history_weights: torch.Tensor | None = None,
        candidate_popularity: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_fusion_weights: bool = False,
        return_dict: bool = True,
    ) -> XCrossRecommendationOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor`): Dual scoring: the history prompts `(batch, seq_len)`. Cross scoring: one
                (history, candidate) prompt per candidate `(batch, num_candidates, seq_len)` (a 2-D
                `(batch, seq_len)` input scores single sequences).
            attention_mask, token_type_ids: Same shape as `input_ids` (token types are used by BERT-style bases).
            candidate_input_ids (`torch.LongTensor`, dual scoring only): The candidate texts, one list per history
                `(batch, num_candidates, seq_len)` or one pool shared by the batch `(items, seq_len)`.
            candidate_attention_mask, candidate_token_type_ids: Same shape as `candidate_input_ids`.
            labels (`torch.LongTensor` of shape `(batch,)`): Index of the true candidate of each example.
            history_weights (`torch.Tensor` of shape `(batch, history_items)`, dual scoring with
                `history_encoding="items"`): `input_ids` are then the histories' item titles `(history_items,
                seq_len)` and row u the weights of history u's items (`head.recency_weights`).
            candidate_popularity (`torch.Tensor`, dual scoring with `popularity_weight` set): Each candidate's count
                in the training histories, shaped like `candidate_input_ids` without `seq_len`.
            output_hidden_states: Return every stream's refined hidden states (of `input_ids`).
            output_fusion_weights: Return the fusion head output z of every integrated block (of `input_ids`).
        """
        check_inputs(self.config.scoring, input_ids, attention_mask, token_type_ids, candidate_input_ids,
                     candidate_attention_mask, candidate_token_type_ids, labels, history_weights,
                     candidate_popularity)
        extras = {}

        def encode(ids, mask, types):
            # Hidden states and fusion weights are returned for `input_ids`, the first sequences encoded.
            first = not extras
            pooled, hidden_states, fusion_weights = self._encode(ids, mask, types, output_hidden_states and first,
                                                                 output_fusion_weights and first)
            if first:
                extras.update(hidden_states=hidden_states, fusion_weights=fusion_weights)
            return pooled

        logits = score_candidates(encode, self.config.scoring, self.head, input_ids, attention_mask, token_type_ids,
                                  candidate_input_ids, candidate_attention_mask, candidate_token_type_ids,
                                  history_weights, candidate_popularity)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        output = XCrossRecommendationOutput(loss=loss, logits=logits, hidden_states=extras["hidden_states"],
                                            fusion_weights=extras["fusion_weights"])
        return output if return_dict else output.to_tuple()

    def encode(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.LongTensor | None = None) -> torch.Tensor:
        """The representation `(sequences, d)` of 2-D inputs: every stream pooled, mixed by the domain weights w,
        then the base's final norm. Dual scoring compares these by cosine similarity."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self._encode(input_ids, attention_mask, token_type_ids, False, False)[0]

    def _encode(self, input_ids, attention_mask, token_type_ids, output_hidden_states, output_fusion_weights):
        # Sequences are independent, so they may go through the blocks in several passes (see `cpu_pass_bytes`).
        chunk = self.sequences_per_pass(*input_ids.shape, device=input_ids.device)
        types = token_type_ids.split(chunk) if token_type_ids is not None else [None] * -(-len(input_ids) // chunk)
        parts = [self.run_streams(*chunk_inputs, output_hidden_states=output_hidden_states,
                                  output_fusion_weights=output_fusion_weights)
                 for chunk_inputs in zip(input_ids.split(chunk), attention_mask.split(chunk), types)]
        streams = torch.cat([part.last_hidden_state for part in parts], dim=1)
        all_hidden_states = (tuple(torch.cat(states, dim=1) for states in zip(*(part.hidden_states for part in parts)))
                             if output_hidden_states else None)
        all_fusion_weights = (tuple(torch.cat(weights) for weights in zip(*(part.fusion_weights for part in parts)))
                              if output_fusion_weights else None)
        return self.pool_streams(streams, attention_mask), all_hidden_states, all_fusion_weights

    @property
    def supports_shared_prefix(self) -> bool:
        """Whether `score_shared_prefix` applies: a decoder backbone scoring (history, candidate) prompts from their last
        token (dual scoring encodes history and candidates apart: there is no shared prompt prefix)."""
        return (self.family.cached_block_kwargs is not None and self.config.scoring == "cross"
                and self.pooling == "last")

    def score_shared_prefix(
        self,
        prefix_input_ids: torch.LongTensor,
        prefix_attention_mask: torch.Tensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        prefix_index: torch.LongTensor,
        labels: torch.LongTensor | None = None,
    ) -> XCrossRecommendationOutput:
        r"""
        The scores `forward` gives the full prompts, computed with every distinct history prefix run once (decoder
        backbones; see `modeling_xcross/shared_prefix.py`). `RecommendationCollator.shared_prefix_batch` builds the
        arguments.

        Args:
            prefix_input_ids, prefix_attention_mask (`(num_prefixes, prefix_len)`): The distinct prompt prefixes
                (everything before the candidate), right-padded.
            input_ids, attention_mask (`(batch, num_candidates, cont_len)`): The rest of each prompt, right-padded.
            prefix_index (`torch.LongTensor` of shape `(batch, num_candidates)`): The prefix each prompt continues.
            labels (`torch.LongTensor` of shape `(batch,)`): Index of the true candidate of each example.
        """
        if not self.supports_shared_prefix:
            raise ValueError(f"score_shared_prefix needs a decoder backbone scoring (history, candidate) prompts; this "
                             f"model has a {self.family.name} backbone and scoring="
                             f"{self.config.scoring!r}. Call the model on the full prompts.")
        logits = shared_prefix_logits(self, prefix_input_ids, prefix_attention_mask, input_ids, attention_mask,
                                      prefix_index)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return XCrossRecommendationOutput(loss=loss, logits=logits)

    # ---------------------------------------------------------------------------------------------- accounting

    def integrator_size(self, lora_rank: int = 8, lora_target_modules: list[str] | str | None = None) -> IntegratorSize:
        """Count the integrator against one LoRA adapter of rank `lora_rank` on `lora_target_modules` (the family's
        query/value projections by default) over this base's blocks."""
        targets = lora_target_modules or list(self.family.default_target_modules)
        lora_parameters = 0
        for name in targeted_linears(self.layers, targets):
            if ".fusion_head" not in f".{name}":
                module = self.layers.get_submodule(name)
                lora_parameters += lora_rank * (module.in_features + module.out_features)
        if lora_parameters == 0:
            raise ValueError(f"lora_target_modules {targets!r} match no linear layer in the blocks of this base.")
        return IntegratorSize(
            fusion_weights=sum(head.weight.numel() for head in self.fusion_heads),
            fusion_biases=sum(head.bias.numel() for head in self.fusion_heads),
            domain_weights=self.domain_weights.numel(),
            lora_parameters=lora_parameters,
        )
