"""Training on user batches (`pipeline/user_batches.py`): the distinct-title batch computes today's loss on the same
examples and candidate lists, the negative modes' pools, masks, logQ and counts, determinism per (seed, epoch,
batch), and a short CLI run."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from conftest import SMALL, make_adapter, randomize_integrator
from run_helpers import assert_killed_run_resumes_to_the_same_run
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import load_domain
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.pipeline.runs import METRICS_NAME, RunSettings
from modeling_xcross.pipeline.samples import TrainSamples, title_counts
from modeling_xcross.pipeline.user_batches import (TITLES_PER_CHUNK, UserBatchCollator, UserBatches,
                                                   distinct_title_batch, distinct_title_logits, distinct_title_loss,
                                                   group_users)

DUAL = {"scoring": "dual", "history_encoding": "items", "history_decay": 0.5, "popularity_weight": 1.0,
        "max_length": 32}


@pytest.fixture(scope="module")
def tools(data_dir):
    return load_domain(str(data_dir), "Tools")


def _lora(backbone, tmp_path):
    torch.manual_seed(0)
    return LoraRecommender.create(str(backbone), **DUAL)


def _xcross(backbone, tmp_path):
    adapters = {name: make_adapter(tmp_path / name, backbone, seed=seed) for name, seed in (("a", 1), ("b", 2))}
    model = XCrossForSequentialRecommendation.from_adapters(str(backbone), adapters, **DUAL)
    randomize_integrator(model)
    return model


@pytest.mark.parametrize("build", [_lora, _xcross], ids=["lora", "xcross"])
def test_distinct_title_batch_computes_todays_loss(build, tiny_backbone, tools, tmp_path):
    model = build(tiny_backbone, tmp_path).eval()
    collator = model_collator(model)
    users = sorted(tools.train)[:6]
    samples = TrainSamples(tools, users, num_negatives=7, seed=0, positions="all",
                           popularity=title_counts(tools, users))
    examples = [samples[index] for index in range(len(samples))]
    assert len(examples) > TITLES_PER_CHUNK // 2  # several users, several positions each, more than one title chunk
    today = model(**collator(examples)).loss
    batch = distinct_title_batch(collator, [example["history"] for example in examples],
                                 [example["candidates"] for example in examples],
                                 [example["label"] for example in examples],
                                 candidate_popularity=[example["candidate_popularity"] for example in examples])
    assert len(batch["title_chunks"]) > 1
    distinct = sum(len(chunk["input_ids"]) for chunk in batch["title_chunks"])
    every = sum(len(example["history"]) + len(example["candidates"]) for example in examples)
    assert distinct < every / 2, "each distinct title once"
    torch.testing.assert_close(distinct_title_loss(model, batch), today, rtol=1e-5, atol=1e-6)


def test_users_are_grouped_by_length_into_batches_of_about_batch_size(tools):
    users = sorted(tools.train)
    batches = group_users(tools, users, batch_size=12, positions="all", seed=0)
    assert sorted(user for batch in batches for user in batch) == users
    lengths = [len(tools.train[user]) for batch in batches for user in batch]
    assert lengths == sorted(lengths)
    sizes = []
    for batch in batches[:-1]:  # the last batch takes what is left
        counts = [len(tools.train[user]) - 1 for user in batch]
        sizes.append(sum(counts))
        assert abs(sum(counts) - 12) <= abs(sum(counts) - counts[-1] - 12), "ends where its size is closest to 12"
    assert abs(sum(sizes) / len(sizes) - 12) < 2
    assert group_users(tools, users, 12, "all", seed=0) == batches
    assert group_users(tools, users, 12, "all", seed=1) != batches


def _batch_examples(dataset, index):
    users = dataset.batches[index]
    return [(user, end) for user in users for end in range(2, len(dataset.domain.train[user]) + 1)]


@pytest.mark.parametrize("negatives", ["uniform", "in-batch-logq", "full"])
def test_negative_modes_pool_mask_and_counts(negatives, tools):
    users = sorted(tools.train)
    popularity = title_counts(tools, users)
    dataset = UserBatches(tools, users, batch_size=12, negatives=negatives, num_negatives=5, seed=0,
                          popularity=popularity)
    item = dataset[1]
    examples = _batch_examples(dataset, 1)
    pool_titles = item["candidates"]
    title_items = {}
    for item_id, title in tools.titles.items():
        title_items.setdefault(title, item_id)
    pool = [title_items[title] for title in pool_titles]
    assert len(item["histories"]) == len(item["labels"]) == len(examples)
    if negatives == "full":
        assert len(pool) == len(tools.item_ids)
    else:
        assert len(pool) <= len(examples) + 5, "the batch's positives and 5 uniform items: no growth with the catalogue"
    for (user, end), label, masked, counts in zip(examples, item["labels"], item["masked"],
                                                  item["candidate_popularity"]):
        history = tools.train[user]
        assert pool_titles[label] == tools.titles[history[end - 1]]
        assert label not in masked
        own = {column for column, item_id in enumerate(pool) if item_id in history and column != label}
        assert own <= set(masked), "the user's other history items are never negatives"
        if negatives == "uniform":
            # Only uniform draws compete with the positive: the other users' positives are masked.
            others = {column for column in range(len(pool)) if column != label} - set(masked)
            assert len(others) <= 5
        else:
            assert set(masked) == own
        user_counts = title_counts(tools, [user])
        assert counts == [popularity[title] - user_counts[title] for title in pool_titles]
    if negatives == "in-batch-logq":
        targets = Counter(tools.train[user][end - 1] for user in users for end in range(2, len(tools.train[user]) + 1))
        total = sum(targets.values())
        expected = [math.log(len(examples) * targets[item_id] / total + 5 / len(tools.item_ids)) for item_id in pool]
        assert item["candidate_logq"] == pytest.approx(expected)
    else:
        assert "candidate_logq" not in item


def test_negatives_are_a_pure_function_of_seed_epoch_and_batch(tools):
    users = sorted(tools.train)

    def dataset(seed=0):
        return UserBatches(tools, users, batch_size=12, negatives="uniform", num_negatives=5, seed=seed)

    first, again = dataset(), dataset()
    assert [first[index] for index in range(len(first))] == [again[index] for index in range(len(again))]
    epoch0 = first[2]["candidates"]
    first.set_epoch(1)
    assert first[2]["candidates"] != epoch0
    again.set_epoch(1)
    assert again[2] == first[2]
    assert dataset(seed=1)[2]["candidates"] != epoch0


def test_masked_candidates_get_no_probability(tiny_backbone, tools, tmp_path):
    model = _lora(tiny_backbone, tmp_path).eval()
    users = sorted(tools.train)
    dataset = UserBatches(tools, users, batch_size=12, negatives="uniform", num_negatives=5, seed=0,
                          popularity=title_counts(tools, users))
    batch = UserBatchCollator(model_collator(model))([dataset[0]])
    logits = distinct_title_logits(model, batch)
    assert logits.shape == batch["candidate_mask"].shape
    assert torch.isinf(logits[batch["candidate_mask"]]).all()
    assert torch.isfinite(logits[~batch["candidate_mask"]]).all()
    assert torch.isfinite(F.cross_entropy(logits, batch["labels"]))
    with pytest.raises(ValueError, match="serve them one per step"):
        UserBatchCollator(model_collator(model))([dataset[0], dataset[1]])


def test_cli_trains_on_user_batches(data_dir, tiny_backbone, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Tools", "--output-dir", str(out),
                 "--backbone", str(tiny_backbone), *SMALL, "--negatives", "in-batch-logq", "--max-steps", "3"]) == 0
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["settings"]["negatives"] == "in-batch-logq"
    assert 0 < metrics["mrr"] <= 1
    code = main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Tools", "--output-dir",
                 str(tmp_path / "cross"), "--backbone", str(tiny_backbone), *SMALL, "--scoring", "cross",
                 "--negatives", "uniform"])
    assert code == 1
    assert "--negatives uniform trains on batches of whole users" in capsys.readouterr().err


def _settings(data_dir, backbone, out):
    return RunSettings(command="train-adapter", data_dir=str(data_dir), domain="Toys", output_dir=str(out),
                       backbone=str(backbone), max_train_users=16, max_eval_users=4, val_users=4, epochs=2,
                       batch_size=12, eval_batch_size=2, train_negatives=3, max_length=32, save_steps=3, seed=5,
                       patience=100, scoring="dual", history_encoding="items", history_decay=0.5,
                       popularity_weight=1.0, train_positions="all", negatives="uniform")


def test_killed_user_batch_run_resumes_to_the_same_weights(data_dir, tiny_backbone, tmp_path):
    # Killed at step 10, it resumes from checkpoint-9: in the second epoch (6 batches each).
    assert_killed_run_resumes_to_the_same_run(lambda out: _settings(data_dir, tiny_backbone, out), 10, "checkpoint-9",
                                              tmp_path)


def test_training_benchmark_skips_without_data(tmp_path, capsys):
    from benchmarks.training import main as benchmark

    assert benchmark(["--quick", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == {}
    assert "Skipped: no Tools data under --data-dir" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
