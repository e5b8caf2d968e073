"""Every input X-Cross cannot run correctly is refused with an error that names the problem."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from peft import IA3Config, get_peft_model
from transformers import AutoModel, GPT2Config

from configuration_xcross import PAPER_SCORING
from conftest import make_adapter, make_base
from modeling_xcross import XCrossConfig, XCrossForSequentialRecommendation


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    base_dir = make_base(root / "base", "bert")
    return root, base_dir, make_adapter(root / "good", base_dir, seed=1)


def test_adapters_with_different_target_modules_are_refused(bert):
    root, base_dir, good = bert
    other = make_adapter(root / "qkv", base_dir, seed=2, target_modules=["query", "key", "value"])
    with pytest.raises(ValueError, match=r"Adapter 'qkv' targets different modules than adapter 'good'"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good, "qkv": other})


def test_adapter_of_a_base_with_other_sizes_is_refused(bert):
    root, base_dir, good = bert
    wide_base = make_base(root / "wide-base", "bert", hidden_size=48, num_attention_heads=4)
    wide = make_adapter(root / "wide", wide_base, seed=3)
    with pytest.raises(ValueError, match=r"Adapter 'wide' does not fit the base at .*query.*in_features=32"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good, "wide": wide})


def test_adapter_of_another_architecture_is_refused(bert):
    root, base_dir, good = bert
    llama_base = make_base(root / "llama-base", "llama")
    llama = make_adapter(root / "llama", llama_base, seed=4, family="llama")
    with pytest.raises(ValueError, match=r"Adapter 'llama'.*match no linear layer"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good, "llama": llama})


def test_adapter_targeting_modules_outside_the_blocks_is_refused(bert):
    root, base_dir, _ = bert
    dense = make_adapter(root / "dense", base_dir, seed=5, target_modules=["dense"])
    with pytest.raises(ValueError, match=r"pooler\.dense.*outside the transformer blocks"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"dense": dense})


def test_dora_adapter_is_refused(bert):
    root, base_dir, good = bert
    dora = make_adapter(root / "dora", base_dir, seed=6, use_dora=True)
    with pytest.raises(ValueError, match=r"Adapter 'dora' sets use_dora=True"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good, "dora": dora})


def test_non_lora_adapter_is_refused(bert):
    root, base_dir, good = bert
    ia3 = get_peft_model(AutoModel.from_pretrained(base_dir),
                         IA3Config(target_modules=["query", "value"], feedforward_modules=[]))
    ia3.save_pretrained(root / "ia3")
    with pytest.raises(ValueError, match=r"Adapter 'ia3' is a IA3 adapter"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good, "ia3": root / "ia3"})


def test_missing_adapter_directory_and_files(bert, tmp_path):
    _, base_dir, good = bert
    with pytest.raises(FileNotFoundError, match="does not exist"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"gone": tmp_path / "nowhere"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"empty": tmp_path / "empty"})
    with pytest.raises(ValueError, match="adapters` is empty"):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {})


def test_unsupported_backbone_lists_the_supported_ones(bert):
    _, _, good = bert
    gpt2 = AutoModel.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=96))
    with pytest.raises(ValueError, match=r"type 'gpt2'.*Supported model types: bert, llama, roberta"):
        XCrossForSequentialRecommendation.from_adapters(gpt2, {"good": good})


def test_base_that_does_not_match_the_config_is_refused(bert):
    root, base_dir, good = bert
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good})
    other = AutoModel.from_pretrained(make_base(root / "deep", "bert", num_hidden_layers=2))
    with pytest.raises(ValueError, match="num_hidden_layers=2.*num_hidden_layers=3"):
        XCrossForSequentialRecommendation(model.config, backbone=other)


@pytest.mark.parametrize("overrides, message", [
    ({"beta": float("nan")}, "`beta` must be a finite number"),
    ({"integrated_layers": [0, 7]}, r"`integrated_layers` \[7\] are out of range: the base has 3 blocks"),
    ({"pooling": "max"}, "`pooling` must be one of"),
    ({"scoring": "bi"}, "`scoring` must be one of"),
    ({"temperature": 0.0}, "`temperature` must be a positive finite number"),
])
def test_invalid_config_values_are_named(bert, overrides, message):
    _, base_dir, good = bert
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good}, **overrides)


def test_invalid_adapter_entries_are_named():
    entry = {"name": "toys", "r": 8, "lora_alpha": 16, "target_modules": ["query"]}
    with pytest.raises(StrictDataclassClassValidationError, match=r"\['toys'\] appear more than once"):
        XCrossConfig(adapters=[entry, entry])
    with pytest.raises(StrictDataclassClassValidationError, match=r"lacks \['lora_alpha'\]"):
        XCrossConfig(adapters=[{"name": "toys", "r": 8, "target_modules": ["query"]}])
    with pytest.raises(StrictDataclassClassValidationError, match="r must be a positive integer"):
        XCrossConfig(adapters=[{**entry, "r": 0}])
    with pytest.raises(ValueError, match="adapters is empty"):
        XCrossForSequentialRecommendation(XCrossConfig())


def test_bad_input_shapes_are_named(bert):
    _, base_dir, good = bert
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, {"good": good}, **PAPER_SCORING)
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, num_candidates, seq_len\)"):
        model(torch.zeros(5, dtype=torch.long))


def test_sources_on_the_same_local_backbone_by_another_path_are_accepted(tmp_path, monkeypatch):
    """A source adapter records its backbone as it was given (here absolute); a run that names the same directory
    relatively, or through a link, uses the same backbone; another directory is still refused, naming both."""
    from modeling_xcross.auto_loading import ModelDirError
    from modeling_xcross.pipeline.models import check_sources

    backbone, other = tmp_path / "backbone", tmp_path / "other"
    backbone.mkdir(), other.mkdir()
    (tmp_path / "link").symlink_to(backbone)
    source = tmp_path / "lora-toys"
    source.mkdir()
    (source / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(backbone)}))
    monkeypatch.chdir(tmp_path)
    for spelling in ("backbone", "./backbone", str(tmp_path / "link")):
        assert check_sources(spelling, [source]) == spelling
    with pytest.raises(ModelDirError, match=f"was trained on backbone '{backbone}', but this run uses 'other'"):
        check_sources("other", [source])
