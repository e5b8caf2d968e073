"""Dual scoring's history encoding by items (recency-weighted mean of title representations) and its popularity prior:
the weights, the counts a training example may see, the score, the checks, recommend() with a prior, and that the
CLI's default settings learn."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoTokenizer

from conftest import SMALL, make_base, make_domain, make_tokenizer
from configuration_xcross import XCrossConfig
from modeling_xcross.head import SimilarityHead, recency_weights
from modeling_xcross.pipeline.candidates import build_eval_lists
from modeling_xcross.pipeline.cli import main
from modeling_xcross.inference.collator import RecommendationCollator
from modeling_xcross.pipeline.data import load_domain, split_users
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.pipeline.models import build_xcross
from modeling_xcross.pipeline.runs import METRICS_NAME, score
from modeling_xcross.pipeline.samples import EvalSamples, TrainSamples, title_counts
from modeling_xcross.inference.scoring import candidate_scores


def test_recency_weights_halve_per_step_back_and_sum_to_one():
    weights = recency_weights([3, 1], decay=0.5)
    torch.testing.assert_close(weights, torch.tensor([[1 / 7, 2 / 7, 4 / 7, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(recency_weights([4], decay=1.0), torch.full((1, 4), 0.25))
    with pytest.raises(ValueError, match="A history is empty"):
        recency_weights([2, 0], decay=0.5)


def test_collator_weights_distinct_titles_and_passes_counts(tiny_backbone):
    collator = RecommendationCollator(AutoTokenizer.from_pretrained(tiny_backbone), text_pair=True, max_length=12,
                                      scoring="dual", history_encoding="items", history_decay=0.5)
    examples = [{"history": ["ab", "cd", "ab"], "candidates": ["ef", "gh"], "label": 0,
                 "candidate_popularity": [3, 0]},
                {"history": ["gh"], "candidates": ["ab", "ef"], "label": 1, "candidate_popularity": [1, 2]}]
    batch = collator(examples)
    assert batch["input_ids"].shape[0] == 3, "the batch's distinct history titles: ab, cd, gh"
    # "ab" is the oldest (1/7) and the newest (4/7) item of the first history.
    torch.testing.assert_close(batch["history_weights"], torch.tensor([[5 / 7, 2 / 7, 0.0], [0.0, 0.0, 1.0]]))
    assert batch["candidate_popularity"].tolist() == [[3.0, 0.0], [1.0, 2.0]]
    with pytest.raises(ValueError, match="In-batch negatives share one candidate pool"):
        collator([{**example, "in_batch": True} for example in examples])


def test_popularity_prior_adds_weighted_log_counts_and_is_required():
    head = SimilarityHead(temperature=0.2, popularity_weight=1.5)
    queries, items = torch.randn(2, 8), torch.randn(2, 3, 8)
    counts = torch.tensor([[0.0, 4.0, 9.0], [1.0, 0.0, 2.0]])
    cosine = torch.einsum("bd,bcd->bc", F.normalize(queries, dim=-1), F.normalize(items, dim=-1))
    torch.testing.assert_close(head(queries, items, counts), cosine / 0.2 + 1.5 * torch.log1p(counts))
    pool = torch.randn(5, 8)  # one pool shared by both queries: one count per item
    pool_cosine = F.normalize(queries, dim=-1) @ F.normalize(pool, dim=-1).T
    torch.testing.assert_close(head(queries, pool, torch.arange(5.0)),
                               pool_cosine / 0.2 + 1.5 * torch.log1p(torch.arange(5.0)).unsqueeze(0))
    with pytest.raises(ValueError, match="pass candidate_popularity"):
        head(queries, items)
    assert head.popularity_weight.requires_grad, "the weight is learned"


@pytest.mark.parametrize("fields, message", [
    ({"scoring": "cross", "popularity_weight": 1.0}, "dual-scoring options"),
    ({"scoring": "dual", "history_decay": 0.0}, "history_decay"),
    ({"scoring": "dual", "history_encoding": "tokens"}, "history_encoding"),
    ({"scoring": "dual", "popularity_weight": math.inf}, "popularity_weight"),
])
def test_bad_dual_settings_are_refused(fields, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        XCrossConfig(**fields)


def test_training_counts_leave_out_the_example_users_own_history(data_dir):
    domain = load_domain(data_dir, "Tools")
    users = sorted(domain.train)[:10]
    counts = title_counts(domain, users)
    samples = TrainSamples(domain, users, num_negatives=3, seed=0, positions="all", popularity=counts)
    for index in range(len(samples)):
        user, _ = samples.examples[index]
        own = Counter(domain.titles[item] for item in domain.train[user])
        example = samples[index]
        assert example["candidate_popularity"] == [counts[title] - own[title] for title in example["candidates"]]
    assert any(counts[example["candidates"][example["label"]]] > example["candidate_popularity"][example["label"]]
               for example in samples), "a target's own purchase is not part of its count"


def test_recommend_with_a_prior_scores_like_candidate_lists(tiny_backbone, tmp_path):
    titles = ["red ball", "drill 7", "saw blade", "tent", "bike lamp", "rope kit", "hammer", "toy car"]
    counts = {"drill 7": 9, "tent": 2, "hammer": 30}
    torch.manual_seed(0)
    model = LoraRecommender.create(str(tiny_backbone), scoring="dual", history_encoding="items", history_decay=0.5,
                                   popularity_weight=2.0, max_length=32, temperature=0.05).eval()
    history = ["saw blade", "toy car"]
    top = model.recommend([history], titles, top_k=6, popularity=counts)[0]
    others = [title for title in titles if title not in history]
    example = {"history": history, "candidates": others, "label": 0,
               "candidate_popularity": [counts.get(title, 0) for title in others]}
    expected = candidate_scores(model, model_collator(model), [example], batch_size=4)[0]
    assert [item.score for item in top] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
    assert top[0].title == others[int(expected.argmax())]
    with pytest.raises(ValueError, match="popularity prior: pass popularity="):
        model.recommend([history], titles, top_k=3)


@pytest.fixture(scope="module")
def larger_tools(tmp_path_factory):
    """A synthetic Tools domain with enough train and validation users for a validation MRR to move."""
    return make_domain(tmp_path_factory.mktemp("larger"), "Tools", num_items=60, train_users=240, test_users=30, seed=2)


SCALE = ["--max-train-users", "200", "--val-users", "40", "--max-eval-users", "30", "--max-length", "48", "--seed",
         "0", "--epochs", "3"]


def _untrained_validation_mrr(model, data_dir) -> float:
    """The model's MRR on the validation lists of a run with SCALE's data settings, before any training."""
    domain = load_domain(data_dir, "Tools")
    users = split_users(domain, 40, 0, 200)
    counts = title_counts(domain, users["train"]) if model.config.popularity_weight is not None else None
    samples = EvalSamples(domain, build_eval_lists(domain, "validation", users["validation"], 0), counts)
    collator = model_collator(model, 48)
    return score(model, collator, samples, 8)["mrr"]


@pytest.fixture(scope="module", params=["bert", "llama"])
def family_sources(request, data_dir, tmp_path_factory):
    """A tiny random backbone of each family (an encoder, a decoder) and its Toys and Sports adapters, trained
    through the CLI."""
    root = tmp_path_factory.mktemp(f"defaults-{request.param}")
    backbone = make_tokenizer(make_base(root / "base", request.param))
    for domain in ("Toys", "Sports"):
        assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", domain, "--output-dir",
                     str(root / domain.lower()), "--backbone", str(backbone), *SMALL]) == 0
    return backbone, [root / "toys", root / "sports"]


@pytest.mark.slow
def test_default_settings_learn_and_do_not_collapse(larger_tools, family_sources, tmp_path):
    """With default scoring and learning settings (only the scale is set), `xcross train-adapter` ends above the
    validation MRR it starts from, and `xcross train` does not fall below its start (the β = γ = 1 collapse to
    chance), on an encoder and on a decoder. The start is the head's settings chosen on the validation users
    (head_start.py), never below the untrained model at the settings fixed before that choice existed (decay 0.5,
    temperature 0.2, prior weight 1, no projection), measured here apart on the same lists."""
    backbone, sources = family_sources
    common = ["--data-dir", str(larger_tools), "--backbone", str(backbone), *SCALE]
    runs = {"train-adapter": ["train-adapter", "--domain", "Tools"],
            "train": ["train", "--target", "Tools", "--sources", *map(str, sources)]}
    fixed = dict(scoring="dual", history_encoding="items", history_decay=0.5, temperature=0.2, popularity_weight=1.0,
                 projection_rank=None)
    untrained = {"train-adapter": LoraRecommender.create(str(backbone), **fixed),
                 "train": build_xcross(str(backbone), sources, normalize_fusion_input=True, **fixed)}
    for command, arguments in runs.items():
        before = _untrained_validation_mrr(untrained[command].eval(), larger_tools)
        assert main([*arguments, *common, "--output-dir", str(tmp_path / command)]) == 0
        metrics = json.loads((tmp_path / command / METRICS_NAME).read_text())
        settings = metrics["settings"]
        assert (settings["scoring"], settings["history_encoding"], settings["choose_start"]) == (
            "dual", "items", True), "the defaults"
        start = metrics["starting_validation_mrr"]
        assert start == pytest.approx(metrics["head_start"]["validation_mrr"], abs=1e-6)
        assert start >= before - 1e-6, (command, before, start)
        gain = metrics["best_validation_mrr"] - start
        # X-Cross: no collapse towards chance (0.13 here), and a run whose training fell keeps its start. On the tiny
        # random decoder its best trained checkpoint is 0.008 below the start with the projection head on (0.000
        # without), within the noise of 40 validation users but not a gain: see research/results/ablation/.
        assert gain > (0.005 if command == "train-adapter" else -0.01), (command, start, gain)
        assert metrics["kept_starting_point"] == (gain < 0), "the better of the start and the trained model is kept"
