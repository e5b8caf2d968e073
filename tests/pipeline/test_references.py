"""The references a user would try first (references.py): counts that favour later users, settings chosen on the
latest train users and never on test users, and the best of them reported by `xcross baseline` and `xcross compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import SMALL
from modeling_xcross.pipeline.baselines import popularity
from modeling_xcross.pipeline.candidates import build_eval_lists
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.comparison import compare
from modeling_xcross.pipeline.data import load_domain
from modeling_xcross.pipeline.references import (REFERENCES, ReferenceScorer, best_reference, choose_references,
                                                 latest_validation_users, recency_weights, reference_grid,
                                                 weighted_counts, weighted_item_counts)
from modeling_xcross.pipeline.samples import title_counts

from conftest import make_domain


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    return load_domain(make_domain(tmp_path_factory.mktemp("data"), "Tools", train_users=40), "Tools")


def test_plain_weights_give_the_pipelines_counts(domain):
    users = list(domain.train)[5:30]
    weights = recency_weights(domain, users, None)
    assert set(weights.values()) == {1.0}
    assert weighted_counts(domain, weights) == title_counts(domain, users)
    assert weighted_item_counts(domain, weights) == popularity(domain, users)


def test_recency_weights_halve_every_half_life_and_keep_the_mass(domain):
    ordered = list(domain.train)  # 40 users in file order
    users = ordered[::2]
    weights = recency_weights(domain, users, 0.25)  # halves every 10 users of the file
    assert sum(weights.values()) == pytest.approx(len(users))
    assert weights[ordered[30]] == pytest.approx(2 * weights[ordered[20]])
    assert weights[ordered[38]] > weights[ordered[0]] * 8
    total = weighted_counts(domain, weights)
    assert sum(total.values()) == pytest.approx(sum(len(domain.train[user]) * weights[user] for user in users))
    with pytest.raises(ValueError, match="positive fraction"):
        recency_weights(domain, users, 0.0)


def _drifting_domain(root: Path) -> Path:
    """Early train users buy items 0-9, later ones (and the 10 latest, the validation users) items 10-19; test users
    buy items 0-9 again: validation prefers the recent counts, test the plain ones."""
    folder = root / "Drift"
    folder.mkdir(parents=True)
    (folder / "meta_data.json").write_text(json.dumps({f"A{index}": f"title {index}" for index in range(60)}))
    (folder / "smap.json").write_text(json.dumps({f"A{index}": index for index in range(60)}))

    def history(user: int, base: int) -> list[int]:
        return [base + (user + step) % 10 for step in range(5)]

    train = {str(user): history(user, 0 if user < 24 else 10) for user in range(40)}
    test = {str(40 + user): history(user, 0) for user in range(20)}
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    return root


def test_settings_are_chosen_on_the_latest_train_users_not_on_test(tmp_path):
    domain = load_domain(_drifting_domain(tmp_path), "Drift")
    users = latest_validation_users(domain, 10)
    assert users["validation"] == [str(user) for user in range(30, 40)] and len(users["counted"]) == 30
    validation_lists = build_eval_lists(domain, "validation", users["validation"], seed=0)["lists"]
    test_lists = build_eval_lists(domain, "test", sorted(domain.test), seed=0)["lists"]
    validation = ReferenceScorer(domain, validation_lists, users["counted"], torch.zeros(10, 30))
    test = ReferenceScorer(domain, test_lists, list(domain.train), torch.zeros(20, 30))
    grid = reference_grid(half_lives=(None, 0.1, 1.0), weights=(1.0,))
    record = choose_references(validation, test, grid)
    chosen = record["references"]["recency popularity"]
    # On validation the recent counts win; on test (which the choice never saw) the plain counts would have.
    assert chosen["settings"] == {"recency_half_life": 0.1}
    assert chosen["validation_mrr"] > record["references"]["popularity"]["validation_mrr"]
    assert chosen["test"]["mrr"] < record["references"]["popularity"]["test"]["mrr"]
    assert chosen["test"] == test.metrics("recency popularity", {"recency_half_life": 0.1})
    best = record["best_reference"]
    assert best["name"] == "recency popularity" and best["description"] == "recency popularity (half-life 0.1)"
    assert set(record["references"]) == set(REFERENCES)
    assert len(record["validation_grid"]) == 1 + 2 + 1 + 3  # every setting tried, with its validation MRR
    # Choosing on the test users instead picks the plain counts: the choice above did not look at them.
    assert choose_references(test, test, grid)["references"]["recency popularity"]["settings"] == {
        "recency_half_life": 1.0}


def test_prior_adds_weighted_log_counts_to_the_similarity(domain):
    lists = build_eval_lists(domain, "test", sorted(domain.test)[:4], seed=0)["lists"]
    similarity = torch.randn(4, 30)
    scorer = ReferenceScorer(domain, lists, list(domain.train), similarity)
    counts = title_counts(domain, list(domain.train))
    prior = torch.log1p(torch.tensor([[float(counts[domain.titles[item]]) for item in entry["candidates"]]
                                      for entry in lists]))
    torch.testing.assert_close(scorer.scores("similarity + prior", {"prior_weight": 2.0, "recency_half_life": None}),
                               similarity + 2.0 * prior)
    assert torch.equal(scorer.scores("similarity", {}), similarity)


def test_best_reference_run_is_scored_on_the_models_lists_and_named_by_compare(data_dir, tiny_backbone, tmp_path):
    options = dict(zip(SMALL[::2], SMALL[1::2]))
    common = ["--data-dir", str(data_dir), "--domain", "Tools", "--backbone", str(tiny_backbone),
              *[item for key in ("--max-train-users", "--val-users", "--max-eval-users", "--max-length", "--seed")
                for item in (key, options[key])]]
    for method in ("popularity", "best-reference"):
        assert main(["baseline", "--method", method, "--output-dir", str(tmp_path / method), *common]) == 0
    lists = next((tmp_path / "popularity").glob("candidates_test_*.json")).read_text()
    assert next((tmp_path / "best-reference").glob("candidates_test_*.json")).read_text() == lists
    validation = json.loads(next((tmp_path / "best-reference").glob("candidates_validation_latest_*.json")).read_text())
    domain = load_domain(data_dir, "Tools")
    assert [entry["user"] for entry in validation["lists"]] == list(domain.train)[-int(options["--val-users"]):]
    metrics = json.loads((tmp_path / "best-reference" / "metrics.json").read_text())
    best = best_reference(tmp_path / "best-reference")
    assert best["name"] in REFERENCES and set(metrics["references"]) == set(REFERENCES)
    assert best["validation_mrr"] == max(row["validation_mrr"] for row in metrics["references"].values())
    assert metrics["mrr"] == best["test"]["mrr"] == metrics["references"][best["name"]]["test"]["mrr"]
    with pytest.raises(ValueError, match="not a best-reference run"):
        best_reference(tmp_path / "popularity")
    text = compare({"popularity": tmp_path / "popularity", "best reference": tmp_path / "best-reference"},
                   tmp_path / "out", model="popularity")
    assert f"| best reference: {best['description']} |" in text
    assert f"Best reference, chosen on validation users: {best['description']}, test MRR {metrics['mrr']:.4f}" in text
    assert json.loads((tmp_path / "out" / "comparison.json").read_text())["best_reference"] in text


@pytest.mark.parametrize("best", [
    {"name": "recency popularity", "settings": {"recency_half_life": 0.5}},
    {"name": "similarity + prior", "settings": {"prior_weight": 1.0, "recency_half_life": None}},
    {"name": "similarity + prior", "settings": {"prior_weight": 1.0, "recency_half_life": 0.5}},  # weighted counts
])
def test_best_reference_ranks_the_whole_catalogue(data_dir, tiny_backbone, best):
    from modeling_xcross.pipeline.baselines import best_reference_full_ranking

    domain = load_domain(data_dir, "Tools")
    users = sorted(domain.test)[:5]
    ranking = best_reference_full_ranking(best, domain, users, str(tiny_backbone), 48)
    assert ranking["users"] == 5 and 0 < ranking["mrr"] <= 1
