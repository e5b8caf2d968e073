"""Checkpoints: what they hold, round trips through from_pretrained and AutoModel, and load failures."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel

from configuration_xcross import PAPER_SCORING
from conftest import make_adapter, make_base, random_inputs, randomize_integrator
from modeling_xcross import XCrossConfig, XCrossForSequentialRecommendation


@pytest.fixture
def trained(tiny, tmp_path):
    """An X-Cross model whose integrator moved away from its initialisation, and its logits on fixed inputs."""
    model = XCrossForSequentialRecommendation.from_adapters(
        tiny.base_dir, {"toys": tiny.adapter_dirs["toys"], "tools": tiny.adapter_dirs["tools"]}, beta=0.5, gamma=0.25
, **PAPER_SCORING).eval()
    randomize_integrator(model, seed=7)
    inputs = random_inputs(2, 3, 6, pad_from=4)
    with torch.no_grad():
        logits = model(inputs[0], attention_mask=inputs[1]).logits
    return model, inputs, logits


@pytest.fixture
def checkpoint(trained, tmp_path):
    """The directory `trained` was saved to."""
    trained[0].save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def saved_keys(directory):
    with safe_open(directory / "model.safetensors", "pt") as handle:
        return set(handle.keys())


def logits_of(model, inputs):
    with torch.no_grad():
        return model(inputs[0], attention_mask=inputs[1]).logits


def test_checkpoint_holds_integrator_and_bank_but_refers_to_base(trained, checkpoint):
    model = trained[0]
    keys = saved_keys(checkpoint)
    integrator = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    bank = {name for name in model.state_dict() if name.endswith((".lora_A", ".lora_B"))}
    assert keys == integrator | bank
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "xcross"
    assert config["base_model_name_or_path"] == model.config.base_model_name_or_path
    assert [entry["name"] for entry in config["adapters"]] == ["toys", "tools"]
    assert config["base_config"]["hidden_size"] == model.config.hidden_size
    assert not list(checkpoint.glob("*.tmp")), "no temporary files are left behind"


def test_from_pretrained_round_trip(trained, tmp_path):
    model, inputs, logits = trained
    model.save_pretrained(tmp_path / "ckpt")
    loaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training
    assert loaded.adapter_names == ["toys", "tools"]
    assert (loaded.config.beta, loaded.config.gamma) == (0.5, 0.25)
    torch.testing.assert_close(logits_of(loaded, inputs), logits, atol=0, rtol=0)
    trainable = {name for name, parameter in loaded.named_parameters() if parameter.requires_grad}
    assert trainable == {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_auto_model_round_trip(trained, tmp_path):
    model, inputs, logits = trained
    model.save_pretrained(tmp_path / "ckpt")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "ckpt"), XCrossConfig)
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, XCrossForSequentialRecommendation)
    torch.testing.assert_close(logits_of(loaded, inputs), logits, atol=0, rtol=0)


def own_base_model(tiny, tmp_path):
    """A base and two adapters of this test's own (so it may delete them), the X-Cross model and inputs."""
    base_dir = make_base(tmp_path / "base", tiny.family, seed=5)
    adapters = {name: make_adapter(tmp_path / name, base_dir, seed=seed, family=tiny.family)
                for name, seed in (("a", 1), ("b", 2))}
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, adapters, **PAPER_SCORING).eval()
    randomize_integrator(model)
    inputs = random_inputs(1, 2, 5)
    return base_dir, adapters, model, inputs


def test_self_contained_checkpoint_needs_no_base(tiny, tmp_path):
    base_dir, adapters, model, inputs = own_base_model(tiny, tmp_path)
    expected = logits_of(model, inputs)
    model.save_pretrained(tmp_path / "full", include_base=True)
    assert saved_keys(tmp_path / "full") == set(model.state_dict())
    shutil.rmtree(base_dir)
    for adapter_dir in adapters.values():
        shutil.rmtree(adapter_dir)
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(tmp_path / "full"), inputs), expected)


def test_checkpoint_without_bank_reads_adapter_sources(tiny, tmp_path):
    base_dir, adapters, model, inputs = own_base_model(tiny, tmp_path)
    model.save_pretrained(tmp_path / "slim", include_adapters=False)
    assert not any(key.endswith(".lora_A") for key in saved_keys(tmp_path / "slim"))
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(tmp_path / "slim"), inputs), logits_of(model, inputs))
    shutil.rmtree(adapters["b"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AutoModel.from_pretrained(tmp_path / "slim")


def test_bfloat16_load(trained, tmp_path):
    model, inputs, logits = trained
    model.save_pretrained(tmp_path / "ckpt")
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert next(loaded.parameters()).dtype == torch.bfloat16
    torch.testing.assert_close(logits_of(loaded, inputs).float(), logits, atol=0.1, rtol=0.05)


def test_missing_weights_file_is_a_clear_error(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModel.from_pretrained(checkpoint)


def test_corrupted_weights_file_is_refused(checkpoint):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception, match="(?i)safetensor|header|deserializ|incomplete"):
        AutoModel.from_pretrained(checkpoint)


def test_checkpoint_of_other_architecture_is_refused(checkpoint):
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["integrated_layers"] = [0]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unexpected keys"):
        AutoModel.from_pretrained(checkpoint)


def test_unknown_load_argument_is_refused(checkpoint):
    with pytest.raises(TypeError, match="not_an_option"):
        XCrossForSequentialRecommendation.from_pretrained(checkpoint, not_an_option=1)


def test_pickle_format_is_refused(trained, tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        trained[0].save_pretrained(tmp_path / "ckpt", safe_serialization=False)


def test_checkpoint_saved_with_the_backbone_pooler_still_loads(tiny, tmp_path):
    """The unused pooler is dropped from the model; full checkpoints written before that still hold it."""
    from safetensors.torch import load_file, save_file

    base_dir, _, model, inputs = own_base_model(tiny, tmp_path)
    model.save_pretrained(tmp_path / "full", include_base=True)
    pooler = {key: value for key, value in load_file(base_dir / "model.safetensors").items() if "pooler" in key}
    if tiny.family == "bert":
        assert pooler, "the BERT base has a pooler"
    weights = tmp_path / "full" / "model.safetensors"
    save_file({**load_file(weights), **{f"backbone.{key}": value for key, value in pooler.items()}}, weights)
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(tmp_path / "full"), inputs),
                               logits_of(model, inputs))
