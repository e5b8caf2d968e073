"""Building the model a command trains (LoRA recommender or X-Cross over source adapters) and the collator it reads
its data with, with the checks that make a wrong directory or length fail early and say why."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer
from transformers.utils import logging

from ..adapters import ADAPTER_CONFIG_NAME
from ..auto_loading import ModelDirError
from ..checkpoint import read_json
from ..families import family_for
from ..head_recommender import HeadRecommender
from ..inference.collator import RecommendationCollator
from ..modeling_xcross import XCrossForSequentialRecommendation
from ..packaged_models import canonical_model_name, resolve_model_path, same_backbone

logger = logging.get_logger(f"transformers.{__name__}")


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
