"""Building the model a command trains (LoRA recommender or X-Cross over source adapters) and loading a trained
one for evaluation, with the checks that make a wrong directory fail early and say why."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer
from transformers.utils import logging

from configuration_xcross import XCrossConfig

from ..adapters import ADAPTER_CONFIG_NAME
from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write, read_json
from ..families import family_for
from ..modeling_xcross import TOKENIZER_CONFIG_NAME, XCrossForSequentialRecommendation
from ..packaged_models import canonical_model_name, resolve_model_path, same_backbone
from .collator import RecommendationCollator
from .head_recommender import HEAD_RECOMMENDER_KIND, HeadRecommender
from .lora_recommender import LEGACY_CONFIG_NAME, LoraRecommender, RecommenderConfig
from .prompts import PROMPT, PromptFormat

logger = logging.get_logger(f"transformers.{__name__}")


# Title -> count in the train histories, saved beside a model whose dual score has a popularity prior.
POPULARITY_NAME = "item_popularity.json"


class ModelDirError(ValueError):
    """A model or adapter directory that cannot be used for what was asked; the message says how to fix it."""


def source_backbone(directory: Path, option: str = "--sources") -> str:
    """The backbone a source adapter directory was trained on (from its adapter_config.json)."""
    config_file = Path(directory) / ADAPTER_CONFIG_NAME
    if not config_file.is_file():
        raise ModelDirError(f"{option} {directory}: {config_file.name} is missing, so it is not a LoRA adapter "
                            "directory. Pass output directories of `xcross train-adapter`.")
    return canonical_model_name(read_json(config_file).get("base_model_name_or_path") or "")


def check_sources(backbone: str, sources: list[Path], option: str = "--sources") -> str:
    """The canonical backbone name, after refusing source adapters trained on another backbone."""
    backbone = canonical_model_name(backbone)
    for directory in sources:
        trained_on = source_backbone(directory, option)
        if not same_backbone(trained_on, backbone):
            raise ModelDirError(f"{option} {directory} was trained on backbone {trained_on!r}, but this run uses "
                                f"{backbone!r}; pass --backbone {trained_on} or adapters trained on {backbone}.")
    return backbone


def build_xcross(backbone: str, sources: list[Path], **config_overrides) -> XCrossForSequentialRecommendation:
    """X-Cross on `backbone` over the source adapters, named after their directories, refusing mismatched ones."""
    backbone = check_sources(backbone, sources)
    names = [Path(directory).name.replace(".", "_") for directory in sources]
    if len(set(names)) != len(names):
        raise ModelDirError(f"--sources directories must have distinct names (they name the adapters): {names}.")
    return XCrossForSequentialRecommendation.from_adapters(backbone, dict(zip(names, map(str, sources))),
                                                           **config_overrides)


def build_head_recommender(backbone: str, merge_sources: list[Path], seed: int, **scoring) -> HeadRecommender:
    """A head on the frozen base, or on the base with `merge_sources` merged into one adapter."""
    return HeadRecommender.create(check_sources(backbone, merge_sources, "--merge-sources"), merge_sources, seed,
                                  **scoring)


def collator_settings(model) -> dict:
    """How a loaded model's inputs are batched (`collator_for` keywords): its scoring form and history encoding."""
    config = model.config
    return {"scoring": config.scoring, "history_encoding": config.history_encoding,
            "history_decay": config.history_decay}


def save_popularity(directory: Path, counts: Counter) -> None:
    """The title counts a model with a popularity prior was trained with, next to it (the prior needs them)."""
    atomic_write(Path(directory) / POPULARITY_NAME,
                 lambda path: path.write_text(json.dumps(dict(counts.most_common()), ensure_ascii=False)))


def load_popularity(directory: Path) -> Counter:
    path = Path(directory) / POPULARITY_NAME
    if not path.is_file():
        raise ModelDirError(f"{directory} holds a model with a popularity prior but no {POPULARITY_NAME} (the title "
                            "counts it was trained with); copy it from the run's output directory.")
    return Counter(read_json(path))


def model_backbone(model) -> str:
    """The base model name of X-Cross or a recommender."""
    return (model.config.base_model_name_or_path if isinstance(model, XCrossForSequentialRecommendation)
            else model.backbone_name)


def model_collator(model, max_length: int | None = None) -> RecommendationCollator:
    """The collator a model reads its inputs with: its saved tokenizer (else its base's), prompt format, `max_length`
    (unless given), scoring form and history encoding, all from the model, so a caller of `recommend` never tokenizes."""
    saved = Path(model.name_or_path or "")
    if (saved / TOKENIZER_CONFIG_NAME).is_file():
        tokenizer = AutoTokenizer.from_pretrained(saved)
    elif isinstance(model, XCrossForSequentialRecommendation):
        tokenizer = model.base_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model.backbone_name))
    if tokenizer is None:
        raise ModelDirError(f"The model has no tokenizer: neither {saved} nor its base "
                            f"{model_backbone(model)!r} holds {TOKENIZER_CONFIG_NAME}. Set model.tokenizer.")
    if isinstance(model, XCrossForSequentialRecommendation):
        model_type, prompt = model.config.base_config.model_type, PromptFormat(**model.config.prompt)
    else:
        model_type, prompt = model.peft_model.config.model_type, PROMPT
    text_pair = family_for(model_type).default_pooling == "cls"
    return RecommendationCollator(tokenizer, text_pair=text_pair, max_length=max_length or model.config.max_length,
                                  prompt=prompt, **collator_settings(model))


def load_trained_model(directory: Path):
    """An X-Cross checkpoint or a recommender with a head (current or legacy format), and its backbone name."""
    directory = Path(directory)
    config_file = directory / CONFIG_NAME
    model_type = read_json(config_file).get("model_type") if config_file.is_file() else None
    if model_type == XCrossConfig.model_type:
        if not (directory / WEIGHTS_NAME).is_file():
            raise ModelDirError(f"--model-dir {directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}: its run did not "
                                "finish saving. Rerun that run's command to finish it.")
        model = XCrossForSequentialRecommendation.from_pretrained(directory).eval()
        return model, model.config.base_model_name_or_path
    if model_type is not None and model_type != RecommenderConfig.model_type:
        raise ModelDirError(f"--model-dir {directory}: {CONFIG_NAME} has model_type {model_type!r}, not "
                            f"{XCrossConfig.model_type!r} (an `xcross train` run) or {RecommenderConfig.model_type!r} (a "
                            "`train-adapter` or `train-head` run); pass the output directory of such a run.")
    if model_type == RecommenderConfig.model_type or (directory / LEGACY_CONFIG_NAME).is_file():
        kind = LoraRecommender.saved_config(directory).kind
        model = (HeadRecommender if kind == HEAD_RECOMMENDER_KIND else LoraRecommender).from_pretrained(directory)
        return model, model.backbone_name
    raise ModelDirError(f"--model-dir {directory} holds neither a recommender nor an X-Cross checkpoint "
                        f"({CONFIG_NAME} of model_type {RecommenderConfig.model_type!r} or {XCrossConfig.model_type!r}, "
                        f"or a legacy {LEGACY_CONFIG_NAME}); pass the output directory of a finished "
                        "`xcross train-adapter`, `train-head` or `train` run.")


def collator_for(backbone: str, max_length: int, titles: Iterable[str], scoring: str = "cross",
                 history_encoding: str = "text", history_decay: float = 1.0) -> RecommendationCollator:
    """The collator matching the backbone and scoring form (cross prompts: text pairs for encoders, one text for
    decoders) and history encoding. A title longer than `max_length` leaves it is cut to its beginning, with one
    warning for all of `titles`; only a `max_length` that leaves no candidate token is refused."""
    path = resolve_model_path(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    text_pair = family_for(AutoConfig.from_pretrained(path).model_type).default_pooling == "cls"
    collator = RecommendationCollator(tokenizer, text_pair=text_pair, max_length=max_length, scoring=scoring,
                                      history_encoding=history_encoding, history_decay=history_decay)
    budget = collator.candidate_budget
    lengths = collator.title_lengths(titles)
    cut = [length for length in lengths if length > budget]
    if cut:
        logger.warning(f"{len(cut)} of {len(lengths)} titles take more than the {budget} tokens --max-length "
                       f"{max_length} leaves a candidate (the longest {max(cut)}); they are cut to their first "
                       f"{budget} tokens.")
    return collator
