"""Loading a saved model of any kind (X-Cross, LoRA recommender, head recommender) from its directory, with the
files saved beside it, and the checks that make a wrong directory fail early and say why."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from transformers import AutoModel

from configuration_xcross import XCrossConfig

from .adapters import ADAPTER_CONFIG_NAME
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write, read_json
from .errors import XCrossError
from .lora_recommender import LEGACY_CONFIG_NAME, LoraRecommender, RecommenderConfig
from .modeling_xcross import XCrossForSequentialRecommendation

# Title -> count in the train histories, saved beside a model whose dual score has a popularity prior.
POPULARITY_NAME = "item_popularity.json"


class ModelDirError(XCrossError):
    """A model or adapter directory that cannot be used for what was asked; the message says how to fix it."""


def save_popularity(directory: Path, counts: Counter) -> None:
    """The title counts a model with a popularity prior was trained with, next to it (the prior needs them)."""
    atomic_write(Path(directory) / POPULARITY_NAME,
                 lambda path: path.write_text(json.dumps(dict(counts.most_common()), ensure_ascii=False)))


def load_popularity(directory: Path) -> Counter:
    """The title counts saved beside a model (see `checked_popularity`)."""
    path = Path(directory) / POPULARITY_NAME
    if not path.is_file():
        raise ModelDirError(f"{directory} holds a model with a popularity prior but no {POPULARITY_NAME} (the title "
                            "counts it was trained with); copy it from the run's output directory.")
    return checked_popularity(read_json(path), str(path), "copy the file from the run's output directory")


def checked_popularity(counts: Mapping, source: str = "popularity", fix: str = "pass {title: count}",
                       whole: bool = True) -> Counter:
    """`counts` as a Counter, refused at the first count that is not a finite, non-negative number (a negative or NaN
    count would skew the prior silently), nor, with `whole` (a saved counts file), a whole number; without it a count
    may be weighted (the best reference's recency-weighted counts). `source` and `fix` make the message."""
    kind = "integer" if whole else "number"
    for title, count in counts.items():
        if (isinstance(count, bool) or not isinstance(count, int | float) or not math.isfinite(count) or count < 0
                or (whole and count != int(count))):
            raise ModelDirError(f"{source}: the count of {title!r} is {count!r}, not a finite, non-negative {kind} (a "
                                f"title's count in the train histories); {fix}.")
    return Counter({title: int(count) if whole else float(count) for title, count in counts.items()})


def model_backbone(model) -> str:
    """The base model name of X-Cross or a recommender."""
    return (model.config.base_model_name_or_path if isinstance(model, XCrossForSequentialRecommendation)
            else model.backbone_name)


def load_trained_model(directory: Path):
    """The model a run directory holds, whatever its kind (X-Cross, LoRA or head recommender; current or legacy
    format), loaded by the Auto classes, and its backbone name; a directory of no such kind is refused, saying why."""
    directory = Path(directory)
    config_file = directory / CONFIG_NAME
    model_type = read_json(config_file).get("model_type") if config_file.is_file() else None
    if model_type is None and not (directory / LEGACY_CONFIG_NAME).is_file():
        raise ModelDirError(f"--model-dir {directory} holds neither a recommender nor an X-Cross checkpoint "
                            f"({CONFIG_NAME} of model_type {RecommenderConfig.model_type!r} or "
                            f"{XCrossConfig.model_type!r}, or a legacy {LEGACY_CONFIG_NAME}); pass the output directory "
                            "of a finished `xcross train-adapter`, `train-head` or `train` run.")
    if model_type not in (None, XCrossConfig.model_type, RecommenderConfig.model_type):
        raise ModelDirError(f"--model-dir {directory}: {CONFIG_NAME} has model_type {model_type!r}, not "
                            f"{XCrossConfig.model_type!r} (an `xcross train` run) or {RecommenderConfig.model_type!r} (a "
                            "`train-adapter` or `train-head` run); pass the output directory of such a run.")
    if model_type == XCrossConfig.model_type and not (directory / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"--model-dir {directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}: its run did not "
                            "finish saving. Rerun that run's command to finish it.")
    if (directory / ADAPTER_CONFIG_NAME).is_file():
        read_json(directory / ADAPTER_CONFIG_NAME)  # AutoModel parses it first, with an error that names no file
    # A legacy recommender directory has no config.json for AutoModel to read; LoraRecommender reads either format.
    model = (AutoModel if model_type is not None else LoraRecommender).from_pretrained(directory).eval()
    return model, model_backbone(model)
