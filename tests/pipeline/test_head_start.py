"""The dual head's start chosen on validation users (pipeline/head_start.py)."""

from __future__ import annotations

import math

import pytest

from conftest import make_domain
from modeling_xcross.errors import XCrossError
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.candidates import build_eval_lists
from modeling_xcross.pipeline.data import load_domain, split_users
from modeling_xcross.pipeline.head_start import HISTORY_DECAYS, TEMPERATURES, choose_head_start
from modeling_xcross.pipeline.runs import score
from modeling_xcross.pipeline.samples import EvalSamples, title_counts

FIXED = dict(scoring="dual", history_encoding="items", history_decay=0.5, temperature=0.2, popularity_weight=1.0)


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    root = make_domain(tmp_path_factory.mktemp("start"), "Tools", num_items=60, train_users=120, test_users=10, seed=4)
    domain = load_domain(root, "Tools")
    users = split_users(domain, 40, 0, 80)
    return EvalSamples(domain, build_eval_lists(domain, "validation", users["validation"], 0),
                       title_counts(domain, users["train"]))


def test_the_chosen_start_is_applied_and_never_below_the_fixed_one(tiny_backbone, validation):
    model = LoraRecommender.create(str(tiny_backbone), seed=0, **FIXED).eval()
    collator = model_collator(model, 48)
    fixed_mrr = score(model, collator, validation, 8)["mrr"]
    start = choose_head_start(model, collator, [validation[index] for index in range(len(validation))])
    assert start.validation_mrr >= fixed_mrr - 1e-9, "the fixed settings are in the grid"
    assert len(start.tried) == len(HISTORY_DECAYS) * 8
    # Applied everywhere the model and its collator read it, and what the model then scores is what was chosen.
    assert collator.history_decay == model.config.history_decay == start.history_decay
    assert model.config.temperature == start.temperature
    assert math.isclose(model.head.scale().item(), 1 / start.temperature, rel_tol=1e-5)
    assert math.isclose(model.head.popularity_weight.item(), start.popularity_weight, rel_tol=1e-5)
    assert score(model, model_collator(model, 48), validation, 8)["mrr"] == pytest.approx(start.validation_mrr,
                                                                                           abs=1e-6)


def test_without_a_prior_only_the_decay_and_temperature_are_chosen(tiny_backbone, validation):
    model = LoraRecommender.create(str(tiny_backbone), seed=0, **{**FIXED, "popularity_weight": None}).eval()
    examples = [{key: value for key, value in validation[index].items() if key != "candidate_popularity"}
                for index in range(len(validation))]
    start = choose_head_start(model, model_collator(model, 48), examples)
    assert start.popularity_weight is None and model.head.popularity_weight is None
    assert {row["prior_ratio"] for row in start.tried} == {0.0}


def test_a_cross_model_is_refused(tiny_backbone, validation):
    model = LoraRecommender.create(str(tiny_backbone), scoring="cross", temperature=0.05, history_encoding="text",
                                   history_decay=1.0, popularity_weight=None, projection_rank=None)
    with pytest.raises(XCrossError, match="--no-choose-start"):
        choose_head_start(model, model_collator(model, 48), [validation[0]])


@pytest.mark.parametrize("choose_temperature", [False, True])
def test_the_temperature_is_kept_unless_chosen_too(tiny_backbone, validation, choose_temperature):
    model = LoraRecommender.create(str(tiny_backbone), seed=0, **{**FIXED, "temperature": 0.123}).eval()
    examples = [validation[index] for index in range(len(validation))]
    start = choose_head_start(model, model_collator(model, 48), examples, choose_temperature=choose_temperature)
    assert (start.temperature in TEMPERATURES) if choose_temperature else start.temperature == 0.123
    assert model.config.temperature == start.temperature
    assert start.popularity_weight == pytest.approx(
        next(row["prior_ratio"] for row in start.tried if row["validation_mrr"] == start.validation_mrr)
        / start.temperature)
