"""Loading a saved model of any kind (X-Cross, LoRA recommender, head recommender) from its directory, with the
files saved beside it, and the checks that make a wrong directory fail early and say why."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub.errors import StrictDataclassError
from transformers import AutoModel

from configuration_xcross import XCrossConfig

from .adapters import ADAPTER_CONFIG_NAME
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write, read_json
from .errors import XCrossError
from .lora_recommender import LEGACY_CONFIG_NAME, LEGACY_HEAD_WEIGHTS_NAME, LoraRecommender, RecommenderConfig
from .modeling_xcross import XCrossForSequentialRecommendation

# Title -> count in the train histories, saved beside a model whose dual score has a popularity prior.
POPULARITY_NAME = "item_popularity.json"
# The JSON files a model directory may hold beside config.json, read through `read_json` before the libraries parse
# them (with errors that name no file): the PEFT adapter's config and the tokenizer's files.
MODEL_JSON_FILES = (ADAPTER_CONFIG_NAME, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# The largest count the prior reads: counts become float32, where a larger one is infinite.
MAX_COUNT = 3.4e38


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
        if count > MAX_COUNT:
            raise ModelDirError(f"{source}: the count of {title!r} is {count:.3g}, larger than the prior can read "
                                f"(at most {MAX_COUNT:.3g}: log(1 + count) would overflow); {fix}.")
    return Counter({title: int(count) if whole else float(count) for title, count in counts.items()})


def model_backbone(model) -> str:
    """The base model name of X-Cross or a recommender."""
    return (model.config.base_model_name_or_path if isinstance(model, XCrossForSequentialRecommendation)
            else model.backbone_name)


def checked_config(config_file: Path, model_type: str):
    """The config a model directory's config.json holds, validated: a bad value is refused naming the file and the
    field (the config classes' validators raise a multi-line error that names neither)."""
    config_class = XCrossConfig if model_type == XCrossConfig.model_type else RecommenderConfig
    try:
        return config_class.from_json_file(config_file)
    except StrictDataclassError as error:
        reason = error.__cause__ or " ".join(str(error).split())
        raise ModelDirError(f"{config_file}: {reason} Set that field to the value its run was trained with, or rerun "
                            "the run's command.") from error


def _missing_weights(directory: Path, model_type: str | None) -> str | None:
    """The weights file a model directory should hold and lacks (its run did not finish saving), or None."""
    if model_type is None:  # a legacy recommender: recommender.json and head.safetensors
        return None if (directory / LEGACY_HEAD_WEIGHTS_NAME).is_file() else LEGACY_HEAD_WEIGHTS_NAME
    held = (directory / WEIGHTS_NAME).is_file() or (model_type == RecommenderConfig.model_type
                                                    and (directory / LEGACY_HEAD_WEIGHTS_NAME).is_file())
    return None if held else WEIGHTS_NAME


def load_trained_model(directory: Path):
    """The model a run directory holds, whatever its kind (X-Cross, LoRA or head recommender; current or legacy
    format), loaded by the Auto classes, and its backbone name; a directory of no such kind is refused, saying why,
    and every file read is checked first, so a damaged one is named."""
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
    if model_type is not None:
        checked_config(config_file, model_type)
    missing = _missing_weights(directory, model_type)
    if missing:
        raise ModelDirError(f"--model-dir {directory} has {CONFIG_NAME if model_type else LEGACY_CONFIG_NAME} but no "
                            f"{missing}: its run did not finish saving. Rerun that run's command to finish it.")
    for name in MODEL_JSON_FILES:  # the libraries parse these with errors that name no file
        if (directory / name).is_file():
            read_json(directory / name)
    # A legacy recommender directory has no config.json for AutoModel to read; LoraRecommender reads either format.
    model = (AutoModel if model_type is not None else LoraRecommender).from_pretrained(directory).eval()
    return model, model_backbone(model)
