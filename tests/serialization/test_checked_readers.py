"""Every file of a model folder read through the checked readers (issue 42): a bad config value, a truncated
tokenizer file, a missing weights file and popularity counts too large for the prior are each refused in one line
that names the file (and field or entry), instead of a library's traceback or a message that blames the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import dual_lora_recommender, make_adapter
from modeling_xcross.auto_loading import ModelDirError, load_popularity, load_trained_model
from modeling_xcross.errors import CheckpointError
from modeling_xcross.modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.pipeline.cli import main


@pytest.fixture(scope="module")
def model_dirs(tiny_backbone, tmp_path_factory) -> dict[str, Path]:
    """A saved LoRA recommender and a saved X-Cross model (with its base's tokenizer) on the tiny BERT."""
    root = tmp_path_factory.mktemp("model-dirs")
    dual_lora_recommender(tiny_backbone).save_pretrained(root / "lora")
    adapter = make_adapter(root / "toys", tiny_backbone, seed=1)
    xcross = XCrossForSequentialRecommendation.from_adapters(str(tiny_backbone), {"toys": adapter}, max_length=32)
    xcross.save_pretrained(root / "xcross")
    return {"lora": root / "lora", "xcross": root / "xcross"}


def damaged_copy(source: Path, tmp_path: Path, name: str, change) -> Path:
    """A copy of a model folder whose file `name` is replaced by `change(its text)`, or removed (`change` None)."""
    directory = shutil.copytree(source, tmp_path / source.name)
    if change is None:
        (directory / name).unlink()
    else:
        (directory / name).write_text(change((directory / name).read_text()))
    return directory


def with_config(**values):
    return lambda text: json.dumps({**json.loads(text), **values})


def recommend(model_dir: Path, data_dir: Path) -> int:
    return main(["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
                 "--history-ids", "1", "2", "--top-k", "3"])


def one_line_error(capsys, *parts: str) -> None:
    """The command's error is one line holding every part, with no traceback (progress bars aside)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("xcross recommend: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(part in errors[0] for part in parts), errors


@pytest.mark.parametrize("kind, field, value, shown", [
    ("xcross", "scoring", "foo", "`scoring` must be one of ('dual', 'cross'), got 'foo'."),
    ("lora", "scoring", "foo", "`scoring` must be one of ('dual', 'cross'), got 'foo'."),
    ("lora", "max_length", 0, "`max_length` must be a positive integer (tokens per prompt), got 0."),
    ("xcross", "max_length", 0, "`max_length` must be a positive integer (tokens per prompt), got 0."),
])
def test_a_bad_config_value_is_one_line_naming_the_file_and_field(model_dirs, data_dir, tmp_path, capsys, kind,
                                                                   field, value, shown):
    directory = damaged_copy(model_dirs[kind], tmp_path, "config.json", with_config(**{field: value}))
    with pytest.raises(ModelDirError) as error:
        load_trained_model(directory)
    assert str(error.value).startswith(f"{directory / 'config.json'}: {shown}")
    assert "\n" not in str(error.value)
    assert recommend(directory, data_dir) == 1
    one_line_error(capsys, "config.json", shown)


def test_max_length_below_the_prompts_fixed_tokens_is_refused_naming_the_file(model_dirs, data_dir, tmp_path,
                                                                                capsys):
    """A dual BERT prompt has 2 fixed tokens ([CLS], [SEP]): max_length 2 leaves no token of a title (it used to
    rank every item by the same empty encoding without a word)."""
    directory = damaged_copy(model_dirs["lora"], tmp_path, "config.json", with_config(max_length=2))
    assert recommend(directory, data_dir) == 1
    one_line_error(capsys, f"{directory / 'config.json'}: field max_length is 2", "2 fixed tokens",
                   "set it to 3 or more")


def test_a_truncated_tokenizer_file_is_one_line_naming_it(model_dirs, data_dir, tmp_path, capsys):
    directory = damaged_copy(model_dirs["xcross"], tmp_path, "tokenizer.json", lambda text: text[:len(text) // 2])
    with pytest.raises(CheckpointError, match="tokenizer.json is not valid JSON"):
        load_trained_model(directory)
    assert recommend(directory, data_dir) == 1
    one_line_error(capsys, f"{directory / 'tokenizer.json'} is not valid JSON", "truncated or damaged")


def test_a_lora_folder_without_its_weights_names_the_file_really_missing(model_dirs, tmp_path):
    directory = damaged_copy(model_dirs["lora"], tmp_path, "model.safetensors", None)
    with pytest.raises(ModelDirError, match="has config.json but no model.safetensors: its run did not finish") as error:
        load_trained_model(directory)
    assert "head.safetensors" not in str(error.value)


@pytest.mark.parametrize("count", [1e300, 10**40])
def test_popularity_counts_too_large_for_the_prior_are_refused_naming_the_file(tmp_path, count):
    (tmp_path / "item_popularity.json").write_text(json.dumps({"tent": 3, "saw blade": count}))
    with pytest.raises(ModelDirError, match=r"item_popularity.json: the count of 'saw blade' is 1e\+[34]\d*, larger "
                                            r"than the prior can read"):
        load_popularity(tmp_path)
