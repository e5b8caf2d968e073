"""XCrossConfig's `normalize_fusion_input` defaults to the recommended True, which `xcross train` reads; a saved
config.json that lacks the field (saved before it existed) keeps the raw fusion input it was trained with."""

from __future__ import annotations

import json

import pytest
import torch

from configuration_xcross import PAPER_SCORING, XCrossConfig
from conftest import random_inputs
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.pipeline.cli import build_parser


def test_the_config_and_the_cli_recommend_normalized_fusion_input():
    args = build_parser().parse_args(["train", "--target", "Tools", "--sources", "a", "--output-dir", "out"])
    assert XCrossConfig().normalize_fusion_input is True
    assert args.normalize_fusion_input is XCrossConfig().normalize_fusion_input


# Llama: its residual stream is not at unit root mean square, so normalizing changes what the heads read.
@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_a_saved_config_without_the_field_keeps_raw_fusion_input(tiny, tmp_path):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs,
                                                            **PAPER_SCORING, normalize_fusion_input=False).eval()
    # Fusion heads that read the streams: with zero-initialised heads normalizing would change nothing.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".fusion_head." in name:
                parameter.normal_(std=0.5)
    for directory, value in ((tmp_path / "old", None), (tmp_path / "normalized", True)):
        model.save_pretrained(directory)
        content = json.loads((directory / "config.json").read_text())
        del content["normalize_fusion_input"]
        if value is not None:
            content["normalize_fusion_input"] = value
        (directory / "config.json").write_text(json.dumps(content))

    reloaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path / "old").eval()
    normalized = XCrossForSequentialRecommendation.from_pretrained(tmp_path / "normalized").eval()
    assert reloaded.config.normalize_fusion_input is False and normalized.config.normalize_fusion_input is True
    input_ids, attention_mask = random_inputs(2, 3, 6)
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(reloaded(input_ids, attention_mask=attention_mask).logits, expected)
        # The field matters to these weights, so reading the wrong default would change the scores.
        assert not torch.allclose(normalized(input_ids, attention_mask=attention_mask).logits, expected)
