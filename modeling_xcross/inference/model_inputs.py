"""How a loaded model reads text: the collator built from the model itself (its tokenizer, prompt format, length,
scoring form and history encoding), so a caller of `recommend` never tokenizes."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer
from transformers.utils import cached_file

from ..auto_loading import ModelDirError, model_backbone
from ..families import family_for
from ..modeling_xcross import XCrossForSequentialRecommendation
from ..serialization import TOKENIZER_CONFIG_NAME
from ..packaged_models import resolve_model_path
from .collator import RecommendationCollator
from .prompts import PROMPT, PromptFormat


def collator_settings(model) -> dict:
    """How a loaded model's inputs are batched (`collator_for` keywords): its scoring form and history encoding."""
    config = model.config
    return {"scoring": config.scoring, "history_encoding": config.history_encoding,
            "history_decay": config.history_decay}


def saved_tokenizer(model):
    """The tokenizer saved with a model, or None: in the directory it was loaded from, else in the Hub repo it was
    loaded from (at the commit `from_pretrained` recorded as `loaded_commit`). The model's config is passed, so that
    this needs no registered config class (a model loaded from remote code has none)."""
    source, revision = model.name_or_path, None
    if not source:
        return None
    if Path(source).is_dir():
        found = (Path(source) / TOKENIZER_CONFIG_NAME).is_file()
    else:
        revision = getattr(model, "loaded_commit", None)
        try:
            found = cached_file(source, TOKENIZER_CONFIG_NAME, revision=revision,
                                _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False) is not None
        except OSError:  # neither a directory nor a Hub repo id (a directory since removed)
            found = False
    return AutoTokenizer.from_pretrained(source, revision=revision, config=model.config) if found else None


def model_collator(model, max_length: int | None = None) -> RecommendationCollator:
    """The collator a model reads its inputs with: its saved tokenizer (else its base's), prompt format, `max_length`
    (unless given), scoring form and history encoding, all from the model, so a caller of `recommend` never tokenizes."""
    tokenizer = saved_tokenizer(model)
    if tokenizer is None and isinstance(model, XCrossForSequentialRecommendation):
        tokenizer = model.base_tokenizer()
    elif tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model.backbone_name))
    if tokenizer is None:
        raise ModelDirError(f"The model has no tokenizer: neither {model.name_or_path or 'its source'} nor its base "
                            f"{model_backbone(model)!r} holds {TOKENIZER_CONFIG_NAME}. Set model.tokenizer.")
    if isinstance(model, XCrossForSequentialRecommendation):
        model_type, prompt = model.config.base_config.model_type, PromptFormat(**model.config.prompt)
    else:
        model_type, prompt = model.peft_model.config.model_type, PROMPT
    text_pair = family_for(model_type).default_pooling == "cls"
    return RecommendationCollator(tokenizer, text_pair=text_pair, max_length=max_length or model.config.max_length,
                                  prompt=prompt, **collator_settings(model))
