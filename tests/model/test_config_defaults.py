"""One source of defaults: XCrossConfig's are the recommended ones the CLI uses, and a saved config.json that lacks a
scoring field (saved before the field existed) keeps the behaviour it was saved with."""

from __future__ import annotations

import json

import pytest
import torch

from configuration_xcross import PAPER_SCORING, XCrossConfig
from conftest import random_inputs, randomize_integrator
from modeling_xcross import LoraRecommender, RecommenderConfig, XCrossForSequentialRecommendation
from modeling_xcross.pipeline.cli import build_parser


def _strip(config_file, keys) -> None:
    content = json.loads(config_file.read_text())
    for key in keys:
        del content[key]
    config_file.write_text(json.dumps(content))


def test_the_cli_defaults_are_the_config_defaults():
    args = build_parser().parse_args(["train", "--target", "Tools", "--sources", "a", "--output-dir", "out"])
    for field in ("scoring", "temperature", "history_encoding", "history_decay", "popularity_weight"):
        assert getattr(args, field) == getattr(XCrossConfig(), field) == getattr(RecommenderConfig(), field), field
    assert XCrossConfig().scoring == "dual" and PAPER_SCORING["scoring"] == "cross"


def test_a_saved_xcross_config_without_the_scoring_fields_keeps_the_old_behaviour(tiny, tmp_path):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs, **PAPER_SCORING).eval()
    model.save_pretrained(tmp_path)
    _strip(tmp_path / "config.json", PAPER_SCORING)
    reloaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path)
    assert {key: getattr(reloaded.config, key) for key in PAPER_SCORING} == PAPER_SCORING
    input_ids, attention_mask = random_inputs(2, 3, 6)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids, attention_mask=attention_mask).logits,
                                   model(input_ids, attention_mask=attention_mask).logits)


@pytest.mark.parametrize("tiny", ["bert"], indirect=True)
def test_a_saved_recommender_config_without_the_scoring_fields_keeps_the_old_behaviour(tiny, tmp_path):
    LoraRecommender.create(str(tiny.base_dir), **PAPER_SCORING).save_pretrained(tmp_path)
    _strip(tmp_path / "config.json", PAPER_SCORING)
    assert {key: getattr(RecommenderConfig.from_pretrained(tmp_path), key) for key in PAPER_SCORING} == PAPER_SCORING
    assert LoraRecommender.from_pretrained(tmp_path).config.scoring == "cross"


def test_a_saved_config_with_the_fields_keeps_them(tmp_path):
    XCrossConfig(scoring="dual", temperature=0.3, popularity_weight=None).save_pretrained(tmp_path)
    config = XCrossConfig.from_pretrained(tmp_path)
    assert (config.scoring, config.temperature, config.history_encoding, config.popularity_weight) == (
        "dual", 0.3, "items", None)


def test_a_saved_xcross_config_without_the_issue_39_fields_keeps_the_integrator_it_was_trained_with(tiny, tmp_path):
    """Saved before the integrator was scaled and bounded: those configs read the raw, unbounded form (and a trained
    integrator scores as it did), not today's defaults."""
    old = dict(scale_fusion_input=False, fusion_bound=None, stream_dropout=True, projection_rank=None)
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs,
                                                            **{**PAPER_SCORING, **old}).eval()
    randomize_integrator(model)
    model.save_pretrained(tmp_path)
    _strip(tmp_path / "config.json", old)
    reloaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path)
    assert {key: getattr(reloaded.config, key) for key in old} == old
    assert (XCrossConfig().scale_fusion_input, XCrossConfig().fusion_bound, XCrossConfig().stream_dropout) == (
        True, 1.0, False), "the defaults differ, so the test can tell"
    input_ids, attention_mask = random_inputs(2, 3, 6)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids, attention_mask=attention_mask).logits,
                                   model(input_ids, attention_mask=attention_mask).logits)
