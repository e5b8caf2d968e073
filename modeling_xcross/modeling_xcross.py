"""X-Cross: n domain LoRA adapters of one frozen base, integrated layer by layer by a small trainable integrator."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModel, Cache, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file
from transformers.utils.hub import extract_commit_hash

from configuration_xcross import XCrossConfig

from .adapters import LoraAdapter, load_lora_adapter
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, WeightGroup, atomic_write, read_safetensors, weight_group
from .families import bare_base_model, family_for
from .head import RecommendationHead, pooled_positions
from .hub import push_xcross
from .layer import XCrossLayer
from .lora_bank import LoraBankLinear, install_lora_bank, load_adapter_into_bank, matches_target
from .packaged_models import PACKAGED_MODELS, canonical_model_name, resolve_model_path
from .shared_prefix import shared_prefix_logits

logger = logging.getLogger(__name__)

HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")
# The subset that also applies to the base model and the adapters a checkpoint refers to (each has its own revision).
DOWNLOAD_KWARGS = ("cache_dir", "force_download", "local_files_only", "token")
# Arguments the Auto classes pass along that mean nothing for a model loaded from safetensors on the CPU.
_IGNORED_LOAD_KWARGS = ("trust_remote_code", "_from_auto", "adapter_kwargs", "code_revision", "_commit_hash")

AdapterSource = str | os.PathLike | tuple[str, str | None]


@dataclass
class XCrossRecommendationOutput(ModelOutput):
    """
    Output of [`XCrossForSequentialRecommendation`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): Softmax cross-entropy over the candidates, when
            `labels` is given.
        logits (`torch.FloatTensor` of shape `(batch, num_candidates)`, or `(batch,)` for 2-D inputs): Scores.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): The embeddings then one entry per block, each of shape
            `(n, batch * num_candidates, seq_len, hidden_size)`: the refined state of every stream.
        fusion_weights (`tuple(torch.FloatTensor)`, *optional*): The z of every integrated block, each of shape
            `(batch * num_candidates, seq_len, n, 2, n - 1)`: `[..., m, 0, j]` the scale of domain m for its j-th
            other domain, `[..., m, 1, j]` the matching interaction weight.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fusion_weights: tuple[torch.FloatTensor, ...] | None = None


@dataclass(frozen=True)
class IntegratorSize:
    """The integrator's parameter count against one LoRA adapter of the given rank and targets (heads excluded)."""

    fusion_weights: int
    fusion_biases: int
    domain_weights: int
    lora_parameters: int

    @property
    def ratio(self) -> float:
        """Fusion weight matrices / LoRA parameters: the paper's 25% at n=2, r=8 on query and value."""
        return self.fusion_weights / self.lora_parameters

    @property
    def ratio_with_biases(self) -> float:
        return (self.fusion_weights + self.fusion_biases + self.domain_weights) / self.lora_parameters


def load_base_model(name_or_path: str, revision: str | None = None, dtype: torch.dtype | None = None,
                    **hub_kwargs) -> PreTrainedModel:
    """The bare transformer of a base checkpoint; packaged backbones resolve to their local copy."""
    model = AutoModel.from_pretrained(resolve_model_path(name_or_path), revision=revision,
                                      dtype=dtype or torch.float32, **hub_kwargs)
    return bare_base_model(model)


def base_model_commit(name_or_path: str, revision: str | None = None, **hub_kwargs) -> str | None:
    """The commit `revision` of a Hub base resolves to (None for local and packaged bases), so it is recorded."""
    if name_or_path in PACKAGED_MODELS or Path(name_or_path).exists():
        return revision
    config_file = cached_file(name_or_path, CONFIG_NAME, revision=revision, **hub_kwargs)
    return extract_commit_hash(config_file, None) or revision


class XCrossPreTrainedModel(PreTrainedModel):
    config: XCrossConfig
    config_class = XCrossConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
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
        elif isinstance(module, XCrossForSequentialRecommendation):
            init.constant_(module.domain_weights, 1.0 / self.config.num_adapters)


class XCrossForSequentialRecommendation(XCrossPreTrainedModel):
    """
    Scores (history, candidate) prompts with n source-domain LoRA adapters of one frozen base, fused per block.

    Build one with [`~XCrossForSequentialRecommendation.from_adapters`]; reload a saved one with `from_pretrained`
    (or `AutoModel.from_pretrained` once `modeling_xcross` is imported). Only the integrator trains: the fusion
    head of every integrated block (`fusion_heads`), the domain weights w and the scoring head.
    """

    def __init__(self, config: XCrossConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if not config.adapters:
            raise ValueError("XCrossConfig.adapters is empty: X-Cross needs at least one source adapter. Build the "
                             "model with XCrossForSequentialRecommendation.from_adapters(base, {name: adapter_dir}).")
        if backbone is None:
            backbone = AutoModel.from_config(config.base_config)
        backbone = bare_base_model(backbone)
        self.family = family_for(backbone.config.model_type)
        self.pooling = config.pooling or self.family.default_pooling
        self._check_base_matches_config(backbone)

        specs = config.adapter_specs
        self._lora_banks = install_lora_bank(backbone, self.family.layers_path, specs)
        layers = self.family.layers(backbone)
        fused = set(config.fused_layers)
        for index, block in enumerate(layers):
            # With a single adapter there is nothing to fuse: its stream is the source model.
            integrated = index in fused and len(specs) > 1
            layers[index] = XCrossLayer(block, len(specs), config.hidden_size, integrated=integrated,
                                        beta=config.beta, gamma=config.gamma)
        self.backbone = backbone
        self.domain_weights = nn.Parameter(torch.empty(len(specs)))
        self.head = RecommendationHead(config.hidden_size)
        self.post_init()

        self.backbone.requires_grad_(False)
        for fusion_head in self.fusion_heads:
            fusion_head.requires_grad_(True)

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
            if trained_on and canonical_model_name(trained_on) != base_name:
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

    def load_adapters(self, adapters: list[LoraAdapter] | None = None, **hub_kwargs) -> None:
        """Fill the bank with the adapters' weights (read from the sources in the config when not given)."""
        if adapters is None:
            adapters = [load_lora_adapter(spec.name, spec.source, spec.revision, **hub_kwargs)
                        for spec in self.config.adapter_specs]
        for index, adapter in enumerate(adapters):
            load_adapter_into_bank(self._lora_banks, index, adapter)

    # --------------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool = False,
        output_fusion_weights: bool = False,
        return_dict: bool = True,
    ) -> XCrossRecommendationOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, num_candidates, seq_len)`): One prompt per candidate
                (a 2-D `(batch, seq_len)` input scores single sequences).
            attention_mask, token_type_ids: Same shape as `input_ids` (token types are used by BERT-style bases).
            labels (`torch.LongTensor` of shape `(batch,)`): Index of the true candidate of each example.
            output_hidden_states: Return every stream's refined hidden states.
            output_fusion_weights: Return the fusion head output z of every integrated block.
        """
        if input_ids.dim() not in (2, 3):
            raise ValueError(f"input_ids must be (batch, num_candidates, seq_len) or (batch, seq_len), got shape "
                             f"{tuple(input_ids.shape)}.")
        candidates_shape = input_ids.shape[:-1]
        if labels is not None and input_ids.dim() != 3:
            raise ValueError("labels index the true candidate, so input_ids must be (batch, num_candidates, seq_len).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids = input_ids.reshape(-1, input_ids.shape[-1])
        attention_mask = attention_mask.reshape(input_ids.shape)
        if token_type_ids is not None:
            token_type_ids = token_type_ids.reshape(input_ids.shape)

        # Sequences are independent, so they may go through the blocks in several passes (see `cpu_pass_bytes`).
        chunk = self.sequences_per_pass(*input_ids.shape, device=input_ids.device)
        types = token_type_ids.split(chunk) if token_type_ids is not None else [None] * -(-len(input_ids) // chunk)
        parts = [self._run_streams(*chunk_inputs, output_hidden_states, output_fusion_weights)
                 for chunk_inputs in zip(input_ids.split(chunk), attention_mask.split(chunk), types)]
        streams = torch.cat([part[0] for part in parts], dim=1)
        all_hidden_states = (tuple(torch.cat(states, dim=1) for states in zip(*(part[1] for part in parts)))
                             if output_hidden_states else None)
        all_fusion_weights = (tuple(torch.cat(weights) for weights in zip(*(part[2] for part in parts)))
                              if output_fusion_weights else None)
        logits = self.score_streams(streams, attention_mask)
        logits = logits.view(candidates_shape)

        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        output = XCrossRecommendationOutput(loss=loss, logits=logits, hidden_states=all_hidden_states,
                                            fusion_weights=all_fusion_weights)
        return output if return_dict else output.to_tuple()

    @property
    def supports_shared_prefix(self) -> bool:
        """Whether `score_shared_prefix` applies: a decoder backbone, scoring (history, candidate) prompts."""
        # The dual scoring mode (issue 12) encodes history and candidates apart: there is no shared prompt prefix.
        return self.family.cached_block_kwargs is not None and getattr(self.config, "scoring", "cross") == "cross"

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
                             f"{getattr(self.config, 'scoring', 'cross')!r}. Call the model on the full prompts.")
        logits = shared_prefix_logits(self, prefix_input_ids, prefix_attention_mask, input_ids, attention_mask,
                                      prefix_index)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return XCrossRecommendationOutput(loss=loss, logits=logits)

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

    def _run_streams(self, input_ids, attention_mask, token_type_ids, output_hidden_states, output_fusion_weights,
                     cache: Cache | None = None, position_ids: torch.Tensor | None = None):
        """Embed once, run the n stacked streams through every block; `(n, sequences, seq_len, d)` and the
        requested per-block outputs. With a `cache` (decoders), the blocks append the streams' keys and values to it
        and the tokens continue the cached ones (`attention_mask` then covers both, see `shared_prefix.py`)."""
        n = self.num_streams
        sequences, seq_len = input_ids.shape
        embeddings = self.family.embed(self.backbone, input_ids, token_type_ids)
        hidden_states = embeddings.unsqueeze(0).expand(n, -1, -1, -1).reshape(n * sequences, seq_len, -1)
        if cache is None:
            block_kwargs = self.family.block_kwargs(self.backbone, hidden_states, attention_mask.repeat(n, 1))
        else:
            positions = position_ids.repeat(n, 1) if position_ids is not None else None
            block_kwargs = self.family.cached_block_kwargs(self.backbone, hidden_states, attention_mask.repeat(n, 1),
                                                           positions, cache)

        all_hidden_states = (hidden_states.view(n, sequences, seq_len, -1),) if output_hidden_states else ()
        all_fusion_weights = ()
        for layer in self.layers:
            hidden_states, fusion_weights = layer(hidden_states, **block_kwargs)
            if output_hidden_states:
                all_hidden_states += (hidden_states.view(n, sequences, seq_len, -1),)
            if output_fusion_weights and fusion_weights is not None:
                all_fusion_weights += (fusion_weights,)
        return hidden_states.view(n, sequences, seq_len, -1), all_hidden_states, all_fusion_weights

    def score_streams(self, streams: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Scores `(sequences,)` from the last block's streams `(n, sequences, seq_len, d)`: pool each stream, mix
        them with the domain weights w, apply the base's final norm, then the scoring head."""
        sequences = streams.shape[1]
        positions = pooled_positions(attention_mask, self.pooling)
        pooled_streams = streams[:, torch.arange(sequences, device=streams.device), positions]
        pooled = torch.einsum("n,nsd->sd", self.domain_weights.to(pooled_streams.dtype), pooled_streams)
        final_norm = self.family.final_norm(self.backbone)
        if final_norm is not None:
            pooled = final_norm(pooled)
        return self.head(pooled)

    # ---------------------------------------------------------------------------------------------- accounting

    def integrator_size(self, lora_rank: int = 8, lora_target_modules: list[str] | str | None = None) -> IntegratorSize:
        """Count the integrator against one LoRA adapter of rank `lora_rank` on `lora_target_modules` (the family's
        query/value projections by default) over this base's blocks."""
        targets = list(lora_target_modules or self.family.default_target_modules)
        lora_parameters = 0
        for name, module in self.layers.named_modules():
            if isinstance(module, nn.Linear) and ".fusion_head" not in f".{name}" and matches_target(targets, name):
                lora_parameters += lora_rank * (module.in_features + module.out_features)
        if lora_parameters == 0:
            raise ValueError(f"lora_target_modules {targets!r} match no linear layer in the blocks of this base.")
        return IntegratorSize(
            fusion_weights=sum(head.weight.numel() for head in self.fusion_heads),
            fusion_biases=sum(head.bias.numel() for head in self.fusion_heads),
            domain_weights=self.domain_weights.numel(),
            lora_parameters=lora_parameters,
        )

    # ------------------------------------------------------------------------------------------- save and load

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict | None = None, push_to_hub: bool = False, include_base: bool = False,
                        include_adapters: bool = True, **kwargs) -> None:
        """Save `config.json` and `model.safetensors` (see `modeling_xcross.checkpoint` for what it holds).

        Args:
            include_base: Also store the frozen base weights, for a checkpoint that needs nothing else.
            include_adapters: Store the adapter bank (default); without it, loading reads the adapter sources.
        """
        if kwargs.get("safe_serialization") is False:
            raise ValueError("X-Cross checkpoints are saved with safetensors only.")
        if push_to_hub:
            raise NotImplementedError("Use model.push_to_hub(repo_id) to publish an X-Cross model.")
        if not is_main_process:
            return
        groups = {WeightGroup.INTEGRATOR}
        groups |= {WeightGroup.ADAPTERS} if include_adapters else set()
        groups |= {WeightGroup.BASE} if include_base else set()
        state_dict = self.state_dict() if state_dict is None else state_dict
        tensors = {key: tensor.detach().contiguous() for key, tensor in state_dict.items()
                   if weight_group(key) in groups}
        directory = Path(save_directory)
        self.config.architectures = [type(self).__name__]
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
        atomic_write(directory / CONFIG_NAME, lambda path: self.config.to_json_file(path))

    def push_to_hub(self, repo_id: str, *, self_contained: bool = False, include_adapters: bool | None = None,
                    metrics: Mapping[str, float] | None = None, commit_message: str = "Upload X-Cross model",
                    revision: str | None = None, private: bool | None = None, token: str | None = None):
        """Publish to a Hub repo: config (with `auto_map`), safetensors weights, remote code files and a model card.

        By default the repo refers to the base and to adapters downloaded from the Hub by repo id and commit, and
        stores only what has no such reference; `self_contained=True` stores the base and the bank too.
        `include_adapters` forces the bank in or out. Returns the `CommitInfo` (its `oid` is the new commit).
        """
        return push_xcross(self, repo_id, self_contained=self_contained, include_adapters=include_adapters,
                           metrics=metrics, commit_message=commit_message, revision=revision, private=private,
                           token=token)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args,
                        config: XCrossConfig | None = None, dtype: torch.dtype | str | None = None,
                        **kwargs) -> "XCrossForSequentialRecommendation":
        """Load a saved X-Cross model: its config, then the base it refers to (unless the checkpoint holds it), then
        the adapter bank (from the checkpoint, else the adapter sources), then the integrator."""
        if model_args:
            raise TypeError(f"Unexpected positional arguments {model_args}.")
        dtype = kwargs.pop("torch_dtype", None) if dtype is None else dtype
        dtype = torch.float32 if dtype in (None, "auto") else getattr(torch, dtype) if isinstance(dtype, str) else dtype
        hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
        for key in _IGNORED_LOAD_KWARGS:
            kwargs.pop(key, None)
        if config is None:
            config, kwargs = XCrossConfig.from_pretrained(pretrained_model_name_or_path, return_unused_kwargs=True,
                                                          **hub_kwargs, **kwargs)
        if kwargs:
            raise TypeError(f"Unexpected arguments for XCrossForSequentialRecommendation.from_pretrained: "
                            f"{sorted(kwargs)}.")
        weights_file = cached_file(pretrained_model_name_or_path, WEIGHTS_NAME, **hub_kwargs)
        state_dict = read_safetensors(weights_file)
        groups = {weight_group(key) for key in state_dict}
        download_kwargs = {key: value for key, value in hub_kwargs.items() if key in DOWNLOAD_KWARGS}
        if WeightGroup.BASE in groups:
            backbone = AutoModel.from_config(config.base_config, dtype=dtype)
        else:
            backbone = load_base_model(config.base_model_name_or_path, revision=config.base_model_revision,
                                       dtype=dtype, **download_kwargs)
        model = cls(config, backbone=backbone)
        if WeightGroup.ADAPTERS not in groups:
            model.load_adapters(**download_kwargs)
        model._load_checkpoint_state(state_dict, weights_file)
        return model.to(dtype).eval()

    def _load_checkpoint_state(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        own = self.state_dict()
        unexpected = sorted(set(state_dict) - set(own))
        missing = sorted(key for key in own if weight_group(key) is WeightGroup.INTEGRATOR and key not in state_dict)
        if unexpected or missing:
            raise ValueError(f"{source} does not match this X-Cross architecture: unexpected keys {unexpected[:5]}, "
                             f"missing integrator keys {missing[:5]}. Was it saved from a model with other adapters or "
                             "integrated layers than its config.json says?")
        mismatched = [key for key, tensor in state_dict.items() if tensor.shape != own[key].shape]
        if mismatched:
            key = mismatched[0]
            raise ValueError(f"{source}: {key} has shape {tuple(state_dict[key].shape)}, the model expects "
                             f"{tuple(own[key].shape)}.")
        self.load_state_dict(state_dict, strict=False)
