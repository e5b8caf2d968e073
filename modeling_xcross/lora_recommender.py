"""The per-domain LoRA recommender: a PEFT LoRA adapter on the frozen base plus X-Cross's scoring head.

A `PreTrainedModel`, so the plain `Trainer` checkpoints, resumes and reloads the best one. Its directory holds:
- `adapter_config.json` + `adapter_model.safetensors`: the LoRA as a standard PEFT adapter (keys relative to the bare
  base model), so the directory is a source for `XCrossForSequentialRecommendation.from_adapters` and
  `PeftModel.from_pretrained(base, dir)` loads the adapter alone;
- `config.json` + `model.safetensors`: the recommender (backbone, pooling) and its trained weights (LoRA and head;
  the frozen base is referred to, as `_keys_to_ignore_on_save` declares), so `LoraRecommender.from_pretrained(dir)`
  reloads it in one call. Directories of earlier runs (`head.safetensors` + `recommender.json`) still load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from configuration_xcross.configuration_xcross import (PAPER_SCORING, SavedScoringDefaults, XCrossConfig,
                                                       check_scoring_fields, default_pooling)

from .adapters import PEFT_PREFIX, load_lora_adapter
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_save_dir, atomic_write, read_json, read_safetensors
from .errors import CheckpointError
from .families import family_for
from .head import check_inputs, pool_hidden_states, score_candidates, scoring_head
from .load_options import LoadOptions, saved_directory
from .outputs import XCrossRecommendationOutput
from .serialization import load_base_model
from .packaged_models import canonical_model_name
from .recommending import CatalogueRecommendationMixin

# The format of runs saved before the recommender was a PreTrainedModel.
LEGACY_HEAD_WEIGHTS_NAME = "head.safetensors"
LEGACY_CONFIG_NAME = "recommender.json"
LORA_RECOMMENDER_KIND = "lora-recommender"


def load_peft_adapter(model: nn.Module, directory: str | Path, adapter_name: str = "default") -> PeftModel:
    """PEFT's `from_pretrained` (or `load_adapter` onto a PeftModel) after the checks of `load_lora_adapter`
    (readable files, weights of the declared rank), refusing weights that miss modules the config targets: PEFT
    would give those fresh LoRA weights and run a model nobody trained."""
    directory = Path(directory)
    saved = set(load_lora_adapter(directory.name, directory).weights)
    if isinstance(model, PeftModel):
        model.load_adapter(str(directory), adapter_name=adapter_name)
    else:
        model = PeftModel.from_pretrained(model, str(directory), adapter_name=adapter_name)
    targeted = {name.removeprefix(PEFT_PREFIX) for name, module in model.named_modules()
                if isinstance(module, LoraLayer) and adapter_name in module.lora_A}
    if targeted != saved:
        raise CheckpointError(f"{directory}: adapter_config.json targets {sorted(targeted - saved)[:4]}, which "
                              "adapter_model.safetensors has no weights for (target_modules edited?); restore the "
                              "config the adapter was saved with.")
    return model


@strict
class RecommenderConfig(SavedScoringDefaults, PreTrainedConfig):
    """A recommender on a frozen base: its backbone (Hub id or path), scoring form, pooling and prompt length (as in
    `XCrossConfig`, with its defaults), kind, and the adapters merged into its encoder (head-only baselines)."""

    model_type = "xcross-recommender"

    backbone: str | None = None
    scoring: str = XCrossConfig.scoring
    pooling: str = "cls"
    temperature: float | int = XCrossConfig.temperature
    history_encoding: str = XCrossConfig.history_encoding
    history_decay: float | int = XCrossConfig.history_decay
    popularity_weight: float | int | None = XCrossConfig.popularity_weight
    projection_rank: int | None = XCrossConfig.projection_rank
    center_representations: bool = False
    max_length: int = XCrossConfig.max_length
    kind: str = LORA_RECOMMENDER_KIND
    merged_from: list[str] | None = None

    def validate_scoring(self):
        check_scoring_fields(self)


def recommender_config(backbone: str, model_type: str, scoring: str = XCrossConfig.scoring,
                       pooling: str | None = None, **settings) -> RecommenderConfig:
    """The config of a new recommender, with pooling resolved by `default_pooling`, as X-Cross resolves it;
    `settings`: the other `RecommenderConfig` fields."""
    pooling = pooling or default_pooling(scoring, family_for(model_type).default_pooling)
    return RecommenderConfig(backbone=backbone, scoring=scoring, pooling=pooling, **settings)


class LoraRecommender(CatalogueRecommendationMixin, PreTrainedModel):
    """`peft_model` is the encoder the head scores from: a PeftModel here, possibly a bare base in subclasses (the
    attribute keeps its name so that checkpoints of earlier runs still load)."""

    config_class = RecommenderConfig
    main_input_name = "input_ids"
    kind = LORA_RECOMMENDER_KIND  # the `RecommenderConfig.kind` this class loads

    def __init__(self, config: RecommenderConfig, peft_model: PeftModel):
        super().__init__(config)
        self.peft_model = peft_model
        encoder = peft_model.get_base_model() if isinstance(peft_model, PeftModel) else peft_model
        self.head = scoring_head(config, encoder.config.hidden_size)
        self.post_init()
        # What save_pretrained leaves out and a Trainer checkpoint therefore lacks: everything but what trains.
        self._keys_to_ignore_on_save = {key for key in self.state_dict() if not self.is_trained(key)}

    def is_trained(self, key: str) -> bool:
        """Whether a state-dict key is a trained weight: the head and the LoRA."""
        return key.startswith("head.") or ".lora_" in key

    def initialize_weights(self) -> None:
        """Nothing to do: the base is pretrained, PEFT initialised the LoRA, the head its constructor (the base
        model's own `_init_weights` would redraw the LoRA)."""

    @property
    def backbone_name(self) -> str:
        return self.config.backbone

    @property
    def pooling(self) -> str:
        return self.config.pooling

    @property
    def scoring(self) -> str:
        return self.config.scoring

    @classmethod
    def create(cls, backbone: str, r: int = 8, lora_alpha: int = 16, target_modules: list[str] | None = None,
               seed: int = 0, **scoring) -> "LoraRecommender":
        """A fresh recommender: new LoRA (query/value of the family by default) and head, seeded; `scoring` holds
        `scoring`, `pooling` and `temperature` (see `XCrossConfig`)."""
        torch.manual_seed(seed)
        backbone = canonical_model_name(backbone)
        base = load_base_model(backbone)
        family = family_for(base.config.model_type)
        targets = list(target_modules or family.default_target_modules)
        lora = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=targets, lora_dropout=0.0)
        return cls(recommender_config(backbone, base.config.model_type, **scoring), get_peft_model(base, lora))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args,
                        config: RecommenderConfig | None = None, dtype: torch.dtype | str | None = None,
                        device_map: str | int | torch.device | dict | None = None, **kwargs) -> "LoraRecommender":
        """The recommender a directory or Hub repo holds (a directory may be in the legacy format), as the class its
        config's `kind` names, so `LoraRecommender.from_pretrained` and `AutoModel.from_pretrained` load head
        recommenders too. The standard arguments apply as for X-Cross: `revision`, `token`, `cache_dir`,
        `local_files_only`, `force_download`, `subfolder`, `dtype` (the base and the trained weights) and
        `device_map` (one device)."""
        if model_args:
            raise TypeError(f"Unexpected positional arguments {model_args}.")
        options = LoadOptions.take(kwargs, "The recommender", dtype, device_map)
        if kwargs:
            raise TypeError(f"Unexpected arguments for {cls.__name__}.from_pretrained: {sorted(kwargs)}.")
        directory = saved_directory(pretrained_model_name_or_path, options.hub_kwargs)
        config = config or cls.saved_config(directory)
        model_class = cls.class_for_kind(config.kind, directory)
        encoder = model_class.load_encoder(directory, config, dtype=options.dtype, **options.download_kwargs)
        model = model_class(config, encoder)
        legacy_head = directory / LEGACY_HEAD_WEIGHTS_NAME
        if (directory / WEIGHTS_NAME).is_file():
            model.load_trained_weights(read_safetensors(directory / WEIGHTS_NAME), directory / WEIGHTS_NAME)
        else:
            model.head.load_state_dict(read_safetensors(legacy_head))
        model = model.to(dtype=options.dtype, device=options.device)
        # As transformers records it; for a directory, where `recommend` caches item vectors and finds the tokenizer.
        model.name_or_path = str(directory if Path(pretrained_model_name_or_path).is_dir() else
                                 pretrained_model_name_or_path)
        return model.eval()

    @classmethod
    def class_for_kind(cls, kind: str, source: Path) -> type["LoraRecommender"]:
        """This class or the subclass whose `kind` a saved config names."""
        classes = [cls, *cls.__subclasses__()]
        for model_class in classes:
            if model_class.kind == kind:
                return model_class
        raise CheckpointError(f"{source} holds a recommender of kind {kind!r}, which {cls.__name__} does not load "
                              f"(it loads {[model_class.kind for model_class in classes]}); load it with "
                              "AutoModel.from_pretrained or LoraRecommender.from_pretrained.")

    @staticmethod
    def saved_config(directory: Path) -> RecommenderConfig:
        if (directory / CONFIG_NAME).is_file():
            return RecommenderConfig.from_json_file(directory / CONFIG_NAME)
        if (directory / LEGACY_CONFIG_NAME).is_file():
            settings = read_json(directory / LEGACY_CONFIG_NAME)
            return RecommenderConfig(**PAPER_SCORING, backbone=settings["backbone"], pooling=settings["pooling"],
                                     kind=settings.get("kind", LORA_RECOMMENDER_KIND),
                                     merged_from=settings.get("merged_from"))
        raise FileNotFoundError(f"{directory} holds neither {CONFIG_NAME} nor {LEGACY_CONFIG_NAME}: it is not a saved "
                                "recommender. Pass the output directory of `xcross train-adapter` or `train-head`.")

    @classmethod
    def load_encoder(cls, directory: Path, config: RecommenderConfig, **base_kwargs):
        """The encoder of a saved recommender; `base_kwargs` (dtype, Hub arguments) reach `load_base_model`."""
        return load_peft_adapter(load_base_model(config.backbone, **base_kwargs), directory)

    def load_trained_weights(self, weights: dict[str, torch.Tensor], source: Path) -> None:
        """Load the trained weights of `model.safetensors`, refusing a file that lacks any or holds others."""
        result = self.load_state_dict(weights, strict=False)
        if result.unexpected_keys or set(result.missing_keys) != self._keys_to_ignore_on_save:
            missing = sorted(set(result.missing_keys) - self._keys_to_ignore_on_save)
            raise CheckpointError(f"{source} does not match this recommender: unexpected keys "
                                  f"{result.unexpected_keys[:4]}, missing trained keys {missing[:4]}; it was saved from "
                                  "another model.")

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Pooled representations `(sequences, d)` of 2-D inputs."""
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.peft_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool_hidden_states(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, candidate_input_ids=None,
                candidate_attention_mask=None, candidate_token_type_ids=None, labels=None, history_weights=None,
                candidate_popularity=None):
        """The inputs of `XCrossForSequentialRecommendation.forward`."""
        check_inputs(self.scoring, input_ids, attention_mask, token_type_ids, candidate_input_ids,
                     candidate_attention_mask, candidate_token_type_ids, labels, history_weights, candidate_popularity)
        logits = score_candidates(self.encode, self.scoring, self.head, input_ids, attention_mask, token_type_ids,
                                  candidate_input_ids, candidate_attention_mask, candidate_token_type_ids,
                                  history_weights, candidate_popularity)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return XCrossRecommendationOutput(loss=loss, logits=logits)

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: dict | None = None, **kwargs) -> None:
        """The PEFT adapter, `config.json` and the trained weights; called by Trainer for every checkpoint too."""
        if not is_main_process:
            return
        directory = Path(save_directory)
        self.save_encoder(directory)
        state_dict = self.state_dict() if state_dict is None else state_dict
        trained = {key: tensor.detach().contiguous() for key, tensor in state_dict.items()
                   if key not in self._keys_to_ignore_on_save}
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(trained, path, metadata={"format": "pt"}))
        atomic_write(directory / CONFIG_NAME, lambda path: self.config.to_json_file(path))

    def save_encoder(self, directory: Path) -> None:
        # PEFT records the local path the base was read from; keep the portable name instead.
        self.peft_model.peft_config["default"].base_model_name_or_path = self.backbone_name
        # Embeddings are frozen, so PEFT need not look the base up on the Hub to decide whether to save them. PEFT
        # writes in place; a kill then would leave a truncated adapter_config.json over a good one.
        atomic_save_dir(directory, lambda temporary: self.peft_model.save_pretrained(temporary,
                                                                                     save_embedding_layers=False))
