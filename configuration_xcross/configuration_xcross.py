"""Configuration of an X-Cross model: which frozen base, which source adapters, how they are fused."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("cls", "last", "mean")
SCORING_MODES = ("dual", "cross")
HISTORY_ENCODINGS = ("text", "items")
# How a history and a candidate become text (modeling_xcross/inference/prompts.py reads the same keys): encoders get
# the pair (history joined by `separator`, candidate); decoders `f"{decoder_prefix} {history}{decoder_suffix}{candidate}"`.
DEFAULT_PROMPT = {"separator": "; ", "decoder_prefix": "Purchase history:", "decoder_suffix": " Next item: "}
# The paper's scoring: one (history, candidate) prompt per candidate, read by a score head. It was every config's
# default before the recommended (dual) defaults, and every save writes these fields, so a saved config.json that
# lacks one was written before the field existed and reads it as here: old checkpoints keep their behaviour. Pass it
# (`**PAPER_SCORING`) to build the paper's form.
PAPER_SCORING = {"scoring": "cross", "temperature": 0.05, "history_encoding": "text", "history_decay": 1.0,
                 "popularity_weight": None, "projection_rank": None}
# X-Cross's fields whose recommended default came after checkpoints were saved without them: a saved config.json that
# lacks one reads the value it had then (the paper's scoring, fusion heads reading the raw streams, unbounded z, the
# frozen streams with the base's dropout in training).
XCROSS_SAVED_DEFAULTS = {**PAPER_SCORING, "normalize_fusion_input": False, "scale_fusion_input": False,
                         "fusion_bound": None, "stream_dropout": True}


def default_pooling(scoring: str, family_default: str) -> str:
    """Mean pooling for dual scoring (a sentence representation), else the backbone family's token (cls / last).
    One rule for X-Cross and the single-domain recommenders, so a recommender and X-Cross over it pool alike."""
    return "mean" if scoring == "dual" else family_default


def check_scoring_fields(config) -> None:
    """The scoring fields X-Cross and the single-domain recommenders share (`scoring`, `pooling`, `temperature`,
    `history_encoding`, `history_decay`, `popularity_weight`, `center_representations`) and their `max_length`,
    checked once for both."""
    if config.scoring not in SCORING_MODES:
        raise ValueError(f"`scoring` must be one of {SCORING_MODES}, got {config.scoring!r}.")
    if isinstance(config.temperature, bool) or not (math.isfinite(config.temperature) and config.temperature > 0):
        raise ValueError(f"`temperature` must be a positive finite number, got {config.temperature!r}.")
    if config.pooling is not None and config.pooling not in POOLING_MODES:
        raise ValueError(f"`pooling` must be one of {POOLING_MODES} or None (the backbone's default), "
                         f"got {config.pooling!r}.")
    if config.history_encoding not in HISTORY_ENCODINGS:
        raise ValueError(f"`history_encoding` must be one of {HISTORY_ENCODINGS}, got {config.history_encoding!r}.")
    if isinstance(config.history_decay, bool) or not 0 < config.history_decay <= 1:
        raise ValueError(f"`history_decay` must be in (0, 1] (1 is the plain mean), got {config.history_decay!r}.")
    if config.popularity_weight is not None and (isinstance(config.popularity_weight, bool)
                                                 or not math.isfinite(config.popularity_weight)):
        raise ValueError(f"`popularity_weight` must be a finite number or None, got {config.popularity_weight!r}.")
    if not isinstance(config.center_representations, bool):
        raise ValueError(f"`center_representations` must be True or False, got {config.center_representations!r}.")
    if isinstance(config.max_length, bool) or not isinstance(config.max_length, int) or config.max_length < 1:
        raise ValueError(f"`max_length` must be a positive integer (tokens per prompt), got {config.max_length!r}.")
    if config.scoring == "cross" and (config.history_encoding != "text" or config.popularity_weight is not None
                                      or config.center_representations):
        raise ValueError("history_encoding='items', popularity_weight and center_representations are dual-scoring "
                         "options; with scoring='cross' leave them at 'text', None and False.")
    check_projection_rank(config)


def check_projection_rank(config) -> None:
    """`projection_rank`: the rank of the dual head's residual projection, or None for none (cross scoring has its
    pooler instead)."""
    rank = config.projection_rank
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"`projection_rank` must be a positive integer or None (no projection), got {rank!r}.")
    if rank is not None and config.scoring == "cross":
        raise ValueError("projection_rank is a dual-scoring option (cross scoring reads the pooled state with its "
                         "pooler and score head); with scoring='cross' leave it at None.")


class SavedScoringDefaults:
    """For the configs with scoring fields (X-Cross, the recommenders): a saved config that lacks one of them reads
    it from `saved_defaults` (`PAPER_SCORING` unless a config adds fields), the value it had when saved, not the
    recommended default."""

    saved_defaults = PAPER_SCORING

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        return super().from_dict({**cls.saved_defaults, **config_dict}, **kwargs)

    @classmethod
    def from_json_file(cls, json_file):
        return cls.from_dict(cls._dict_from_json_file(json_file))


@dataclass(frozen=True)
class AdapterSpec:
    """One source adapter of the bank: its LoRA settings and where its weights come from.

    `target_modules` follows PEFT's rule: a list of module-name suffixes, or a single regex string matched
    against the full module name.
    """

    name: str
    r: int
    lora_alpha: float
    target_modules: list[str] | str
    source: str | None = None
    revision: str | None = None
    use_rslora: bool = False

    @property
    def scaling(self) -> float:
        """The factor PEFT applies to B @ A: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "target_modules": self.target_modules,
            "source": self.source,
            "revision": self.revision,
            "use_rslora": self.use_rslora,
        }

    @classmethod
    def from_dict(cls, entry: dict, position: int = 0) -> "AdapterSpec":
        if not isinstance(entry, dict):
            raise ValueError(f"adapters[{position}] must be a dict with at least 'name', 'r', 'lora_alpha', "
                             f"'target_modules'; got {type(entry).__name__}.")
        required = ("name", "r", "lora_alpha", "target_modules")
        missing = [key for key in required if key not in entry]
        if missing:
            raise ValueError(f"adapters[{position}] ({entry.get('name', '?')!r}) lacks {missing}; every adapter "
                             f"entry needs {list(required)}.")
        unknown = set(entry) - {f.name for f in cls.__dataclass_fields__.values()}
        if unknown:
            raise ValueError(f"adapters[{position}] ({entry['name']!r}) has unknown keys {sorted(unknown)}.")
        spec = cls(**entry)
        if not isinstance(spec.name, str) or not spec.name or "." in spec.name:
            raise ValueError(f"adapters[{position}] has an invalid name {spec.name!r}: use a non-empty string "
                             "without dots (it names parameters and Hub files).")
        if not isinstance(spec.r, int) or spec.r < 1:
            raise ValueError(f"adapter {spec.name!r}: r must be a positive integer, got {spec.r!r}.")
        if not isinstance(spec.lora_alpha, (int, float)) or not math.isfinite(spec.lora_alpha):
            raise ValueError(f"adapter {spec.name!r}: lora_alpha must be a finite number, got {spec.lora_alpha!r}.")
        if not spec.target_modules or not isinstance(spec.target_modules, (list, str)):
            raise ValueError(f"adapter {spec.name!r}: target_modules must be a non-empty list of module names or "
                             f"a regex string, got {spec.target_modules!r}.")
        return spec


@strict
class XCrossConfig(SavedScoringDefaults, PreTrainedConfig):
    r"""
    Configuration of [`XCrossForSequentialRecommendation`].

    The base model is referred to, not copied: `base_model_name_or_path` (and `base_model_revision`) say where its
    weights come from, while `base_config` embeds its configuration so the architecture can be built offline.

    Args:
        base_model_name_or_path (`str`): Hub id or local path of the frozen base model.
        base_model_revision (`str`, *optional*): Revision (branch, tag or commit) of the base model.
        base_config (`dict` or `PreTrainedConfig`): The base model's configuration.
        adapters (`list[dict]`): The source adapters in bank order, one dict per adapter with the keys of
            [`AdapterSpec`]: `name`, `r`, `lora_alpha`, `target_modules`, `source`, `revision`, `use_rslora`.
        beta (`float`, defaults to 1.0): Weight of the cross-domain scaling term of the refine step.
        gamma (`float`, defaults to 1.0): Weight of the interaction (difference) term of the refine step.
        integrated_layers (`list[int]`, *optional*): Indices of the blocks followed by a fusion head; all when unset.
        normalize_fusion_input (`bool`, defaults to `True`): Feed the fusion head every stream's hidden states
            scaled to unit root mean square per token, so z does not scale with the backbone's activations (the
            refine step is unchanged; SmolLM2 diverged without it). `False` is the paper's form; a saved config
            that lacks the field reads `False`, as it was saved.
        scale_fusion_input (`bool`, defaults to `True`): Divide the fusion head's input by sqrt(n * d), so that
            one optimizer step moves z about as far through W as through b (the input then has unit L2 norm per
            token; unscaled, its L1 norm is about 500 for MiniLM and two sources). A saved config that lacks the
            field reads `False`.
        fusion_bound (`float`, *optional*, defaults to 1.0): z = c * tanh((W h + b) / c) with c this bound: the
            same z near zero, and no mixing weight beyond c. None leaves z unbounded (a saved config that lacks the
            field reads None).
        stream_dropout (`bool`, defaults to `False`): Run the frozen base and adapters with the base's dropout in
            training. Off, the streams compute in training exactly what they compute at evaluation, so the fusion
            heads, which read the differences between streams, do not learn from dropout noise that evaluation does
            not have. A saved config that lacks the field reads `True`, as those models were trained.
        scoring (`str`, defaults to `"dual"`): `"dual"` encodes the history and every candidate title separately
            and scores their cosine similarity divided by a learned temperature: the backbone's sentence similarity
            is the score at initialisation, and item representations can be computed once per catalogue. `"cross"`
            is the paper's form, one (history, candidate) prompt per candidate read by the pooler and score head
            (`**PAPER_SCORING` sets it with its other fields). The defaults of the scoring fields are the ones chosen
            on validation users, which the `xcross` commands use; a saved config that lacks a field reads it from
            `PAPER_SCORING`.
        pooling (`str`, *optional*): `"cls"` (first token), `"last"` (last non-padding token) or `"mean"` (mean over
            non-padding tokens); when unset, `"mean"` for dual scoring, else the backbone family's default (`cls`
            for encoders, `last` for decoders).
        temperature (`float`, defaults to 0.2): Initial temperature of dual scoring (logits are cosine /
            temperature; the temperature is learned).
        history_encoding (`str`, defaults to `"items"`): Dual scoring: `"text"` encodes a history as one prompt of its
            titles; `"items"` encodes each history title as candidates are encoded and takes their recency-weighted
            mean (an untrained model then scores the "mean of the history's title embeddings" similarity).
        history_decay (`float`, defaults to 0.5): With `history_encoding="items"`, the weight of an item k steps
            before the last one is history_decay ** k (normalised); 1.0 is the plain mean.
        popularity_weight (`float`, *optional*, defaults to 1.0): Dual scoring: when set, the initial value of a
            learned weight w and the score gains w * log(1 + count), count being how often the candidate occurs in the
            training histories (the inputs then need `candidate_popularity`); None for no prior.
        projection_rank (`int`, *optional*, defaults to 16): Dual scoring: a residual projection of rank r of every
            pooled representation, h + B A h with B = 0 at initialisation (the identity), applied to histories and
            candidates alike before the cosine: the head's own trainable capacity, as the paper's pooler is in cross
            scoring. None for no projection.
        center_representations (`bool`, defaults to `False`): Dual scoring: subtract a fixed vector, `head.center`,
            from every pooled representation before the cosine. The `xcross` commands set it to the mean
            representation of the training titles under the untrained model, so that the cosine compares what sets
            titles apart: a decoder's mean-pooled states share one dominant direction (SmolLM2-135M: titles at cosine
            0.93 of each other), which leaves the raw cosine almost the same for every candidate.
        initializer_range (`float`, defaults to 0.02): Standard deviation of the pooler and score head init.
        prompt (`dict`, *optional*): The prompt format the model was trained with: `separator` (between history
            titles), `decoder_prefix` and `decoder_suffix` (decoder prompts); `DEFAULT_PROMPT` when unset.
        max_length (`int`, defaults to 128): Tokens per prompt the model was trained with; the oldest history tokens
            are cut first.
    """

    model_type = "xcross"
    saved_defaults = XCROSS_SAVED_DEFAULTS
    # Optional: a config.json that lost its base_config stays without one (and is refused when a model is built)
    # instead of getting a default BERT's.
    sub_configs_defaults = {"base_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)}

    base_model_name_or_path: str | None = None
    base_model_revision: str | None = None
    base_config: dict | PreTrainedConfig | None = None
    adapters: list[dict] = field(default_factory=list)
    beta: float | int = 1.0
    gamma: float | int = 1.0
    integrated_layers: list[int] | None = None
    normalize_fusion_input: bool = True
    scale_fusion_input: bool = True
    fusion_bound: float | int | None = 1.0
    stream_dropout: bool = False
    scoring: str = "dual"
    pooling: str | None = None
    temperature: float | int = 0.2
    history_encoding: str = "items"
    history_decay: float | int = 0.5
    popularity_weight: float | int | None = 1.0
    projection_rank: int | None = 16
    center_representations: bool = False
    initializer_range: float = 0.02
    prompt: dict = field(default_factory=lambda: dict(DEFAULT_PROMPT))
    max_length: int = 128

    @property
    def adapter_specs(self) -> list[AdapterSpec]:
        return [AdapterSpec.from_dict(entry, position) for position, entry in enumerate(self.adapters)]

    @property
    def adapter_names(self) -> list[str]:
        return [entry["name"] for entry in self.adapters]

    @property
    def num_adapters(self) -> int:
        return len(self.adapters)

    @property
    def hidden_size(self) -> int:
        return self.base_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.base_config.num_hidden_layers

    def pooling_for(self, family_default: str) -> str:
        """The pooling in use: the configured one, else `default_pooling`."""
        return self.pooling or default_pooling(self.scoring, family_default)

    @property
    def fused_layers(self) -> list[int]:
        """The block indices that carry a fusion head, in increasing order."""
        if self.integrated_layers is None:
            return list(range(self.num_hidden_layers))
        return sorted(self.integrated_layers)

    def validate_adapters(self):
        specs = self.adapter_specs
        names = [spec.name for spec in specs]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"Adapter names must be unique; {duplicated} appear more than once in `adapters`.")

    def validate_fusion(self):
        for name in ("beta", "gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
        if self.fusion_bound is not None and (isinstance(self.fusion_bound, bool)
                                              or not (math.isfinite(self.fusion_bound) and self.fusion_bound > 0)):
            raise ValueError(f"`fusion_bound` must be a positive finite number or None (unbounded), got "
                             f"{self.fusion_bound!r}.")
        check_scoring_fields(self)
        if self.integrated_layers is not None and self.base_config is not None:
            num_layers = self.num_hidden_layers
            bad = [index for index in self.integrated_layers if not 0 <= index < num_layers]
            if bad:
                raise ValueError(f"`integrated_layers` {bad} are out of range: the base has {num_layers} blocks, "
                                 f"indices 0..{num_layers - 1}.")
            if len(set(self.integrated_layers)) != len(self.integrated_layers):
                raise ValueError(f"`integrated_layers` lists a block twice: {self.integrated_layers}.")

    def validate_prompt(self):
        if set(self.prompt) != set(DEFAULT_PROMPT) or not all(isinstance(v, str) for v in self.prompt.values()):
            raise ValueError(f"`prompt` must map exactly {sorted(DEFAULT_PROMPT)} to strings, got {self.prompt!r}.")


__all__ = ["DEFAULT_PROMPT", "PAPER_SCORING", "AdapterSpec", "XCrossConfig"]
