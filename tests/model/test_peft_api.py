"""Reading, targeting and exporting adapters through PEFT's public API gives what the files and PEFT itself say."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import AutoModel

from configuration_xcross import PAPER_SCORING
from conftest import make_adapter, make_base
from modeling_xcross import XCrossForSequentialRecommendation, load_lora_adapter
from modeling_xcross.lora_bank import targeted_linears
from modeling_xcross.peft_export import export_adapter


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft-api")
    base = make_base(root / "base", "bert")
    return root, base, make_adapter(root / "toys", base, seed=1, r=4, lora_alpha=8, use_rslora=True)


def test_adapter_read_with_peft_matches_its_files(setup):
    _, _, directory = setup
    adapter = load_lora_adapter("toys", directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    assert (adapter.spec.r, adapter.spec.lora_alpha, adapter.spec.use_rslora) == (4, 8, True)
    assert adapter.spec.target_modules == sorted(config["target_modules"])
    assert adapter.base_model_name_or_path == config["base_model_name_or_path"]
    raw = load_file(directory / "adapter_model.safetensors")
    assert len(raw) == 2 * len(adapter.weights)
    for path, (lora_A, lora_B) in adapter.weights.items():
        assert torch.equal(lora_A, raw[f"base_model.model.{path}.lora_A.weight"])
        assert torch.equal(lora_B, raw[f"base_model.model.{path}.lora_B.weight"])


@pytest.mark.parametrize("target_modules", [["query", "value"], ["dense"], r".*\.(0|2)\.attention\.self\.key",
                                            ["attention.output.dense"]])
def test_targeting_is_what_peft_adapts(setup, target_modules):
    _, base_dir, _ = setup
    wrapped = get_peft_model(AutoModel.from_pretrained(base_dir), LoraConfig(target_modules=target_modules))
    adapted = {name.removeprefix("base_model.model.") for name, module in wrapped.named_modules()
               if isinstance(module, LoraLayer)}
    assert adapted and targeted_linears(AutoModel.from_pretrained(base_dir), target_modules) == adapted


def test_exported_adapter_config_is_peft_s_own(setup, tmp_path):
    _, base_dir, directory = setup
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, {"toys": directory}, **PAPER_SCORING)
    exported = export_adapter(model, "toys", tmp_path / "toys")
    written = json.loads((exported / "adapter_config.json").read_text())
    assert written["peft_version"] and written["peft_type"] == "LORA"
    config = LoraConfig.from_pretrained(exported)
    assert (config.r, config.lora_alpha, config.use_rslora, config.target_modules) == (4, 8, True, {"query", "value"})
    ids = torch.randint(3, 90, (2, 7))
    with torch.no_grad():
        original = PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), directory)(ids).last_hidden_state
        again = PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), exported)(ids).last_hidden_state
    torch.testing.assert_close(again, original)


def test_print_names_the_adapters_and_shows_the_domain_weights(setup):
    root, base_dir, directory = setup
    other = make_adapter(root / "tools", base_dir, seed=2)
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, {"toys": directory, "tools": other},
                                                            **PAPER_SCORING)
    with torch.no_grad():
        model.domain_weights.copy_(torch.tensor([0.25, 0.75]))
    text = repr(model)
    assert "adapters=['toys', 'tools']" in text and "domain_weights=(toys=0.25, tools=0.75)" in text
    assert "pooler" not in {name.split(".")[1] for name in model.state_dict() if name.startswith("backbone.")}
