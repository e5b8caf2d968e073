"""Domain loading, user split, candidate lists, prompts and the collator, on synthetic domain folders."""

from __future__ import annotations

import json
import math

import pytest
from transformers import AutoTokenizer

from conftest import make_domain
from modeling_xcross.pipeline.candidates import build_eval_lists, eval_lists_for
from modeling_xcross.inference.collator import RecommendationCollator
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR, DataError, load_domain, split_users
from modeling_xcross.pipeline.samples import EvalSamples, TrainSamples


def test_titles_are_unescaped_and_bad_entries_counted(tmp_path):
    root = make_domain(tmp_path, "Toys", meta_overrides={"A0001": math.nan, "A0002": "  "})
    train = json.loads((root / "Toys" / "train.json").read_text())
    train["0"] = [0, 9999, 3]  # an unknown item id
    train["1"] = [1, 2]  # both untitled: too short after cleaning
    (root / "Toys" / "train.json").write_text(json.dumps(train))
    domain = load_domain(root, "Toys")
    assert "&amp;" not in " ".join(domain.titles.values()) and "&" in domain.titles[0]
    assert 1 not in domain.titles and 2 not in domain.titles
    assert domain.report["items_with_unusable_title"] == 2
    assert domain.train["0"] == [0, 3]
    assert "1" not in domain.train and domain.report["train_dropped_short_histories"] >= 1
    assert domain.report["train_dropped_unknown_or_untitled_items"] >= 3
    assert "items_with_unusable_title: 2" in domain.summary()


@pytest.mark.parametrize("problem", ["missing", "malformed", "no-users"])
def test_bad_domain_folders_name_the_file(tmp_path, problem):
    root = make_domain(tmp_path, "Toys")
    path = root / "Toys" / "train.json"
    if problem == "missing":
        path.unlink()
    elif problem == "malformed":
        path.write_text("{not json")
    else:
        path.write_text(json.dumps({"0": [1]}))
    with pytest.raises(DataError, match="train.json"):
        load_domain(root, "Toys")
    with pytest.raises(DataError, match="--data-dir"):
        load_domain(root, "Nope")


def test_split_is_seeded_and_disjoint(tmp_path):
    domain = load_domain(make_domain(tmp_path, "Toys"), "Toys")
    first = split_users(domain, 5, seed=3, max_train_users=10, max_test_users=4)
    assert first == split_users(domain, 5, seed=3, max_train_users=10, max_test_users=4)
    assert first != split_users(domain, 5, seed=4, max_train_users=10, max_test_users=4)
    assert not set(first["validation"]) & set(first["train"])
    assert set(first["test"]) <= set(domain.test) and len(first["train"]) == 10 and len(first["test"]) == 4
    with pytest.raises(DataError, match="--val-users"):
        split_users(domain, 1000, seed=0)


def test_eval_lists_are_fixed_valid_and_stored(tmp_path):
    domain = load_domain(make_domain(tmp_path, "Toys"), "Toys")
    users = sorted(domain.test)[:6]
    lists = build_eval_lists(domain, "test", users, seed=7)
    assert lists == build_eval_lists(domain, "test", users, seed=7)
    for entry in lists["lists"]:
        history = domain.test[entry["user"]]
        assert len(entry["candidates"]) == 30 and len(set(entry["candidates"])) == 30
        assert entry["candidates"][entry["label"]] == history[-1]
        negatives = [item for index, item in enumerate(entry["candidates"]) if index != entry["label"]]
        assert not set(negatives) & set(history)
    path = tmp_path / "lists.json"
    assert eval_lists_for(domain, "test", users, 7, path) == lists and path.is_file()
    assert eval_lists_for(domain, "test", users, 99, path) == lists, "stored lists are reused, not resampled"
    with pytest.raises(DataError, match="delete it"):
        eval_lists_for(domain, "test", users[:3], 7, path)


def test_training_negatives_change_per_epoch_and_repeat_per_seed(tmp_path):
    domain = load_domain(make_domain(tmp_path, "Toys"), "Toys")
    samples = TrainSamples(domain, sorted(domain.train)[:5], num_negatives=4, seed=1)
    first = [samples[index] for index in range(5)]
    assert all(len(example["candidates"]) == 5 for example in first)
    assert all(example["candidates"][example["label"]] == domain.titles[domain.train[user][-1]]
               for example, (user, _) in zip(first, samples.examples))
    samples.set_epoch(1)
    assert [samples[index] for index in range(5)] != first
    samples.set_epoch(0)
    assert [samples[index] for index in range(5)] == first


def test_every_position_of_a_train_history_is_an_example(tmp_path):
    domain = load_domain(make_domain(tmp_path, "Toys"), "Toys")
    users = sorted(domain.train)[:3]
    samples = TrainSamples(domain, users, num_negatives=2, seed=1, positions="all", in_batch=True)
    assert len(samples) == sum(len(domain.train[user]) - 1 for user in users)
    for index, (user, end) in enumerate(samples.examples):
        example, history = samples[index], domain.train[user]
        assert example["in_batch"] and example["history"] == [domain.titles[item] for item in history[:end - 1]]
        assert example["candidates"][example["label"]] == domain.titles[history[end - 1]]
        negatives = [title for position, title in enumerate(example["candidates"]) if position != example["label"]]
        assert not set(negatives) & {domain.titles[item] for item in history}, "negatives avoid the whole history"
    with pytest.raises(ValueError, match="positions must be one of"):
        TrainSamples(domain, users, num_negatives=2, seed=1, positions="first")


def test_collator_shapes_and_oldest_first_truncation(tmp_path, tiny_backbone):
    domain = load_domain(make_domain(tmp_path, "Toys"), "Toys")
    lists = build_eval_lists(domain, "test", sorted(domain.test)[:3], seed=0)
    examples = [EvalSamples(domain, lists)[index] for index in range(3)]
    examples[0]["history"] = ["oldest item"] + ["filler"] * 30 + ["newest item"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    for text_pair in (True, False):
        batch = RecommendationCollator(tokenizer, text_pair=text_pair, max_length=80)(examples)
        assert batch["input_ids"].shape[:2] == (3, 30) and batch["input_ids"].shape[2] == 80
        assert batch["labels"].tolist() == [example["label"] for example in examples]
        assert ("token_type_ids" in batch) == text_pair
        text = tokenizer.decode(batch["input_ids"][0, 0][batch["attention_mask"][0, 0].bool()])
        squeezed = text.replace("##", "").replace(" ", "")
        assert "newestitem" in squeezed and "oldest" not in squeezed
        assert squeezed.endswith(examples[0]["candidates"][0].replace(" ", "") + "[SEP]")
        if not text_pair:
            assert squeezed.startswith("[CLS]purchasehistory:")


@pytest.mark.data
def test_real_sports_nan_titles_are_counted():
    domain = load_domain(DEFAULT_DATA_DIR, "Sports")
    assert domain.report["items_with_unusable_title"] == 3
    assert all("&amp;" not in title for title in domain.titles.values())
