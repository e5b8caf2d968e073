"""Recommending from a whole catalogue (`model.recommend`, `xcross recommend`) and full-ranking evaluation, on tiny
random models: every result is checked against scoring every item exhaustively."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from conftest import SMALL, count_item_encodings, dual_lora_recommender, make_adapter, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.inference import catalogue as catalogue_module
from modeling_xcross.inference.catalogue import Catalogue, CatalogueError, CatalogueRanker
from modeling_xcross.pipeline.domain_ranking import fixed_full_ranking, model_full_ranking
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import DataError, DomainData, load_domain, split_users
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.inference.scoring import candidate_scores

# "drill 7" twice: two items whose scores tie.
TITLES = ["red ball", "drill 7", "saw blade", "tent", "bike lamp", "drill 7", "rope kit", "hammer", "toy car",
          "puzzle 12"]
CATALOGUE = {100 + index: title for index, title in enumerate(TITLES)}


@pytest.fixture(scope="module")
def models(tiny_backbone, tmp_path_factory):
    """Dual and cross X-Cross (random integrator) and a dual LoRA recommender on the tiny BERT with a tokenizer."""
    root = tmp_path_factory.mktemp("recommend-models")
    adapters = {name: make_adapter(root / name, tiny_backbone, seed) for name, seed in (("a", 1), ("b", 2))}
    built = {}
    for scoring in ("dual", "cross"):
        model = XCrossForSequentialRecommendation.from_adapters(tiny_backbone, adapters, scoring=scoring, max_length=32,
                                                                temperature=0.05, history_encoding="text", history_decay=1.0,
                                                                popularity_weight=None, projection_rank=None)
        randomize_integrator(model)
        if scoring == "cross":  # a head that spreads the scores, as a trained one does (init: std 0.02)
            with torch.no_grad():
                for parameter in model.head.parameters():
                    parameter.normal_(0.0, 1.0)
        built[f"xcross-{scoring}"] = model.eval()
    built["lora-dual"] = dual_lora_recommender(tiny_backbone)
    return built


def exhaustive_scores(model, history: list[str], positions: list[int]) -> torch.Tensor:
    """The model's scores of the catalogue items at `positions`, as one candidate list."""
    example = {"history": history, "candidates": [TITLES[index] for index in positions], "label": 0}
    return candidate_scores(model, model_collator(model), [example], batch_size=4)[0]


def exhaustive_top(model, history: list[str], excluded: set[int], top_k: int) -> list[tuple[int, float]]:
    positions = [index for index in range(len(TITLES)) if index not in excluded]
    scores = exhaustive_scores(model, history, positions)
    order = scores.argsort(descending=True, stable=True)[:top_k]
    return [(100 + positions[index], float(scores[index])) for index in order]


@pytest.mark.parametrize("name", ["xcross-dual", "lora-dual", "xcross-cross"])
def test_recommend_excludes_the_history_and_equals_exhaustive_scoring(models, name):
    model = models[name]
    histories = [["saw blade", 103], [107, 108, "puzzle 12"]]  # titles and item ids mixed
    # Scores match to float32 precision (batches of other shapes round differently: about 1e-6 of the score).
    # Cross scoring re-ranks the whole catalogue (rerank_top >= its size): exactly the exhaustive ranking.
    recommended = model.recommend(histories, CATALOGUE, top_k=5, rerank_top=len(TITLES))
    for history, items, excluded in zip(histories, recommended, ({2, 3}, {7, 8, 9})):
        titles = [CATALOGUE[item] if isinstance(item, int) else item for item in history]
        assert [item.rank for item in items] == [1, 2, 3, 4, 5]
        assert not {item.item_id - 100 for item in items} & excluded
        expected = exhaustive_top(model, titles, excluded, 5)
        # The catalogue holds "drill 7" twice: their scores tie up to float rounding, which differs between batch
        # shapes and thread counts, so the two may trade places.
        same_order = [item.item_id for item in items] == [item_id for item_id, _ in expected]
        assert same_order or sorted(item.item_id for item in items) == sorted(item_id for item_id, _ in expected)
        assert same_order or all(abs(item.score - score) < 1e-5 for item, (_, score) in zip(items, expected))
        assert [item.score for item in items] == pytest.approx([score for _, score in expected], rel=1e-5, abs=1e-5)
        assert all(item.title == CATALOGUE[item.item_id] for item in items)
    included = model.recommend([["saw blade", 103]], CATALOGUE, top_k=len(TITLES), exclude_history=False,
                               rerank_top=len(TITLES))[0]
    assert {item.item_id for item in included} == set(CATALOGUE)


def test_tied_items_keep_catalogue_order(models):
    items = models["lora-dual"].recommend([["tent"]], CATALOGUE, top_k=9)[0]
    drills = [index for index, item in enumerate(items) if item.title == "drill 7"]
    assert len(drills) == 2 and drills[1] == drills[0] + 1, "equal titles score alike, so they sit together"
    assert [items[index].item_id for index in drills] == [101, 105]
    assert items[drills[0]].score == items[drills[1]].score


def test_two_stage_with_the_whole_catalogue_equals_exhaustive_reranking(models):
    model = models["xcross-cross"]
    history = ["bike lamp", "rope kit"]
    exhaustive = exhaustive_top(model, history, {4, 6}, 8)
    whole = model.recommend([history], CATALOGUE, top_k=8, rerank_top=len(TITLES))[0]
    assert [item.item_id for item in whole] == [item_id for item_id, _ in exhaustive]
    # A shallower first stage re-ranks only what it retrieved: the model's order within the retrieved items.
    shallow = model.recommend([history], CATALOGUE, top_k=3, rerank_top=4)[0]
    ranker = CatalogueRanker(model, CATALOGUE, rerank_top=4)
    first_stage = ranker.first_stage_scores([history])[0]
    first_stage[[4, 6]] = -math.inf
    retrieved = first_stage.argsort(descending=True, stable=True)[:4].tolist()
    rescored = exhaustive_scores(model, history, retrieved)
    expected = [100 + retrieved[index] for index in rescored.argsort(descending=True, stable=True)[:3]]
    assert [item.item_id for item in shallow] == expected


def test_full_ranking_of_the_two_stage_ranker_with_the_whole_catalogue_is_exhaustive(models):
    model = models["xcross-cross"]
    domain = DomainData("Shop", dict(CATALOGUE), train={}, test={"u1": [104, 106, 102], "u2": [100, 109]})
    metrics = model_full_ranking(model, domain, "test", ["u1", "u2"], rerank_top=len(TITLES))
    ranks = []
    for history, target in ((["bike lamp", "rope kit"], 2), (["red ball"], 9)):
        excluded = {TITLES.index(title) for title in history}
        positions = [index for index in range(len(TITLES)) if index not in excluded]
        scores = exhaustive_scores(model, history, positions)
        ranks.append(int((scores >= scores[positions.index(target)]).sum()))
    assert metrics["mrr"] == pytest.approx(sum(1 / rank for rank in ranks) / 2)
    assert metrics["users"] == 2


def test_full_ranking_metrics_by_hand():
    """Scores 5, 5, 3, 3, 1 for items 0-4. u1: history [0, 1], target 2 -> among 2, 3, 4 the tie with item 3 counts
    against it: rank 2. u2: history [3], target 4 -> rank 4 of 0, 1, 2, 4. u3: [2, 1] then 2 again: the target is not
    excluded though the history holds it -> among 0, 2, 3, 4: rank 3."""
    domain = DomainData("Hand", {item: f"item {item}" for item in range(5)}, train={},
                        test={"u1": [0, 1, 2], "u2": [3, 4], "u3": [2, 1, 2]})
    metrics = fixed_full_ranking(domain, "test", ["u1", "u2", "u3"], torch.tensor([5.0, 5.0, 3.0, 3.0, 1.0]))
    assert metrics == pytest.approx({"recall@10": 1.0, "ndcg@10": (1 / math.log2(3) + 1 / math.log2(5) + 0.5) / 3,
                                     "mrr": (1 / 2 + 1 / 4 + 1 / 3) / 3, "users": 3})


def test_full_ranking_of_a_dual_model_ranks_against_every_item_outside_the_history(models):
    model = models["xcross-dual"]
    domain = DomainData("Shop", dict(CATALOGUE), train={}, test={"u1": [104, 106, 102], "u2": [100, 109]})
    metrics = model_full_ranking(model, domain, "test", ["u1", "u2"])
    ranks = []
    for history, target in ((["bike lamp", "rope kit"], 2), (["red ball"], 9)):
        scores = exhaustive_scores(model, history, list(range(len(TITLES))))
        scores[[TITLES.index(title) for title in history]] = -math.inf
        ranks.append(int((scores >= scores[target]).sum()))
    assert metrics["mrr"] == pytest.approx(sum(1 / rank for rank in ranks) / 2)


def test_item_cache_is_reused_and_rebuilt_when_titles_or_model_change(models, tmp_path, monkeypatch):
    model = models["lora-dual"]
    calls = count_item_encodings(monkeypatch)
    history = [["tent", "hammer"]]
    first = model.recommend(history, CATALOGUE, top_k=4, cache_dir=tmp_path)
    assert calls == [len(TITLES)] and len(list((tmp_path / "item_cache").glob("*.safetensors"))) == 1
    assert model.recommend(history, CATALOGUE, top_k=4, cache_dir=tmp_path) == first
    assert calls == [len(TITLES)], "the second call reads the cache"

    renamed = {**CATALOGUE, 109: "puzzle 13"}
    model.recommend(history, renamed, top_k=4, cache_dir=tmp_path)
    assert len(calls) == 2, "other titles: another cache file"

    other = models["xcross-dual"]  # another model over the same titles and cache dir: stale, so rebuilt
    assert other.recommend(history, CATALOGUE, top_k=4, cache_dir=tmp_path) == other.recommend(history, CATALOGUE,
                                                                                                top_k=4)
    assert len(calls) == 4
    with torch.no_grad():  # an in-place change of one weight invalidates the cache too
        next(parameter for name, parameter in model.named_parameters() if "lora_B" in name).mul_(2.0)
    changed = model.recommend(history, CATALOGUE, top_k=4, cache_dir=tmp_path)
    assert len(calls) == 5 and changed == model.recommend(history, CATALOGUE, top_k=4)

    cache_file = next((tmp_path / "item_cache").glob(f"items-{Catalogue.of(CATALOGUE).fingerprint[:16]}*"))
    cache_file.write_bytes(cache_file.read_bytes()[:40])  # truncated: rebuilt, not an error
    assert model.recommend(history, CATALOGUE, top_k=4, cache_dir=tmp_path) == changed


def test_saved_model_caches_item_vectors_next_to_itself(models, tmp_path):
    models["xcross-dual"].save_pretrained(tmp_path / "model")
    loaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path / "model")
    items = loaded.recommend([["tent"]], CATALOGUE, top_k=3)[0]
    assert list((tmp_path / "model" / "item_cache").glob("items-*.safetensors"))
    expected = models["xcross-dual"].recommend([["tent"]], CATALOGUE, top_k=3)[0]
    assert [item.item_id for item in items] == [item.item_id for item in expected]
    assert [item.score for item in items] == pytest.approx([item.score for item in expected], abs=1e-5)


@pytest.mark.parametrize("histories, options, message", [
    ([[]], {}, "History 0 is empty"),
    ([[100, 999]], {}, "item id 999 is not in the catalogue"),
    (["tent", "hammer"], {}, "History 0 is str, not a list"),
    ([["tent"]], {"top_k": 11}, "top_k=11 is larger than the catalogue"),
    ([["tent", "hammer"]], {"top_k": 9}, "only 8 of the catalogue's 10 items lie outside history 0"),
    ([["tent"]], {"top_k": 0}, "top_k must be a positive integer"),
    ([["tent"]], {"first_stage": "similarity"}, "first_stage is for cross-scoring models"),
])
def test_bad_requests_are_refused(models, histories, options, message):
    with pytest.raises(CatalogueError, match=message):
        models["lora-dual"].recommend(histories, CATALOGUE, **options)


def test_unknown_titles_next_to_known_ones_are_read_as_text(models):
    items = models["lora-dual"].recommend([["tent", "a tent pole"]], CATALOGUE, top_k=3)[0]
    expected = exhaustive_top(models["lora-dual"], ["tent", "a tent pole"], {3}, 3)
    assert [item.item_id for item in items] == [item_id for item_id, _ in expected]


# ----------------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def model_dir(adapters, tmp_path_factory):
    """A copy of the trained Toys LoRA recommender (dual scoring), so its item cache stays out of the shared one."""
    copy = tmp_path_factory.mktemp("recommend-cli") / "toys"
    shutil.copytree(adapters / "toys", copy)
    return copy


def test_cli_recommend_prints_a_table_and_json(model_dir, data_dir, capsys):
    domain = load_domain(data_dir, "Toys")
    user = sorted(domain.test)[0]
    *history, held_out = domain.test[user]
    common = ["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys"]
    assert main([*common, "--user", user, "--top-k", "5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["rank"] for entry in listed] == [1, 2, 3, 4, 5]
    assert set(listed[0]) == {"item_id", "title", "score", "rank"}
    assert [entry["score"] for entry in listed] == sorted((entry["score"] for entry in listed), reverse=True)
    assert not {entry["item_id"] for entry in listed} & {domain.shop_id(item) for item in history}
    assert all(entry["item_id"].startswith("A") for entry in listed), "named by the domain's own ids (asins)"
    assert all(entry["title"] == domain.titles[domain.item_of(entry["item_id"])] for entry in listed)
    assert list((model_dir / "item_cache").glob("items-*.safetensors"))

    titles = "; ".join(domain.titles[item] for item in history)
    assert main([*common, "--history", titles, "--top-k", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "item", "title"] and len(table) == 6
    assert [line.split()[2] for line in table[1:]] == [str(entry["item_id"]) for entry in listed], \
        "the same history given as titles"
    assert domain.titles[domain.item_of(listed[0]["item_id"])] in table[1]
    assert not any("held-out next item" in line for line in table), "a history given as titles has none"
    assert main([*common, "--user", user, "--top-k", "5"]) == 0
    marked = [line for line in capsys.readouterr().out.splitlines() if "held-out next item" in line]
    assert len(marked) == (domain.shop_id(held_out) in [entry["item_id"] for entry in listed])


@pytest.mark.parametrize("arguments, message", [
    (["--user", "no-such-user"], "User 'no-such-user' is not a user of Toys"),
    (["--history-ids", "3", "9999"], "--history-ids: '9999' is not the id of a titled item of Toys"),
    (["--user", "{user}", "--top-k", "1000"], "top_k=1000 is larger than the catalogue"),
])
def test_cli_recommend_refuses_bad_input(model_dir, data_dir, capsys, arguments, message):
    user = sorted(load_domain(data_dir, "Toys").test)[0]
    common = ["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys"]
    assert main([*common, *[argument.format(user=user) for argument in arguments]]) == 1
    assert message in capsys.readouterr().err


def test_cli_recommend_refuses_an_empty_history(model_dir, data_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
              "--history", " ; "])
    assert exit_info.value.code == 2


def test_evaluate_and_baselines_write_full_ranking(model_dir, data_dir, tiny_backbone, tmp_path):
    options = dict(zip(SMALL[::2], SMALL[1::2]))
    data = ["--data-dir", str(data_dir), "--domain", "Toys", "--max-eval-users", "6", "--val-users",
            options["--val-users"], "--max-length", options["--max-length"], "--seed", options["--seed"]]
    assert main(["evaluate", "--model-dir", str(model_dir), *data, "--full-ranking"]) == 0
    evaluated = json.loads((model_dir / "eval_Toys_test" / "metrics.json").read_text())
    assert set(evaluated["full_ranking"]) == {"recall@10", "ndcg@10", "mrr", "users"}
    assert evaluated["full_ranking"]["users"] == 6 and 0 < evaluated["full_ranking"]["mrr"] <= 1

    for method in ("popularity", "similarity", "random"):
        assert main(["baseline", "--method", method, "--output-dir", str(tmp_path / method), *data,
                     "--backbone", str(tiny_backbone), "--max-train-users", "16", "--full-ranking"]) == 0
    # Popularity by hand: occurrences in the 16 train users' histories, ties against the true item.
    domain = load_domain(data_dir, "Toys")
    users = split_users(domain, int(options["--val-users"]), int(options["--seed"]), 16, 6)
    counts = {item: sum(domain.train[user].count(item) for user in users["train"]) for item in domain.titles}
    ranks = []
    for user in users["test"]:
        *history, target = domain.test[user]
        others = [item for item in domain.titles if item not in history or item == target]
        ranks.append(sum(counts[item] >= counts[target] for item in others))
    popularity = json.loads((tmp_path / "popularity" / "metrics.json").read_text())["full_ranking"]
    assert popularity["mrr"] == pytest.approx(sum(1 / rank for rank in ranks) / len(ranks))
    assert popularity["recall@10"] == pytest.approx(sum(rank <= 10 for rank in ranks) / len(ranks))
    for method in ("similarity", "random"):
        assert json.loads((tmp_path / method / "metrics.json").read_text())["full_ranking"]["users"] == 6


def test_full_ranking_needs_users():
    domain = DomainData("Hand", {0: "a", 1: "b"}, train={}, test={"u": [0, 1]})
    with pytest.raises(DataError, match="no test user"):
        fixed_full_ranking(domain, "test", [], torch.zeros(2))
