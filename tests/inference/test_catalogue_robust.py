"""Catalogue recommendation that holds up: a damaged item cache, histories as people type them, duplicate titles,
bad popularity counts, Ctrl-C, and full-ranking evaluation sharing `recommend`'s cache; tiny random BERT models."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import SMALL, count_item_encodings, dual_lora_recommender, make_domain
from modeling_xcross.inference import catalogue as catalogue_module
from modeling_xcross.pipeline import cli as cli_module
from modeling_xcross.inference import item_cache as item_cache_module
from modeling_xcross.inference.catalogue import Catalogue, CatalogueError
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR, load_domain
from modeling_xcross.inference.item_cache import tensor_digest
from modeling_xcross.lora_recommender import LoraRecommender

SHARED_DATA = DEFAULT_DATA_DIR
CATALOGUE = {100 + index: title for index, title in enumerate(
    ["red ball", "drill 7", "saw blade", "tent", "bike lamp", "rope kit", "hammer", "toy car", "puzzle 12", "kite"])}


@pytest.fixture(scope="module")
def model(tiny_backbone):
    return dual_lora_recommender(tiny_backbone)


def _ids(recommendations) -> list:
    return [item.item_id for item in recommendations[0]]


# ------------------------------------------------------------------------------------------ a cache that cannot lie


def _shift_rows(path: Path) -> None:
    """Roll the tensor's rows by one inside the file, header and size kept."""
    data = path.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    with safe_open(str(path), framework="pt") as cache:
        row = cache.get_tensor("items").shape[1] * 4
    body = data[header_end:]
    path.write_bytes(data[:header_end] + body[-row:] + body[:-row])


def _rewrite(path: Path, change) -> None:
    """The cache file with its tensor changed by `change`, under its own key and a digest of the new tensor: only
    the shape and dtype checks can tell."""
    with safe_open(str(path), framework="pt") as cache:
        metadata, items = cache.metadata(), cache.get_tensor("items")
    items = change(items).contiguous()
    save_file({"items": items}, str(path), metadata={**metadata, "sha256": tensor_digest(items)})


@pytest.mark.parametrize("damage, reason", [
    (_shift_rows, "does not match the digest"),
    (lambda path: _rewrite(path, lambda items: items[:5]), "shape (5,"),
    (lambda path: _rewrite(path, lambda items: torch.cat([items, items[:, :1]], dim=1)), "shape (10, 33)"),
    (lambda path: _rewrite(path, lambda items: items.half()), "dtype torch.float16"),
])
def test_a_damaged_cache_is_reported_and_encoded_again(model, tmp_path, monkeypatch, caplog, damage, reason):
    calls = count_item_encodings(monkeypatch)
    history = [["tent", "hammer"]]
    before = model.recommend(history, CATALOGUE, top_k=5, cache_dir=tmp_path)
    path = next((tmp_path / "item_cache").glob("items-*.safetensors"))
    size = path.stat().st_size
    damage(path)
    if damage is _shift_rows:
        assert path.stat().st_size == size
    with caplog.at_level(logging.WARNING):
        after = model.recommend(history, CATALOGUE, top_k=5, cache_dir=tmp_path)
    assert calls == [len(CATALOGUE)] * 2, "encoded again"
    assert _ids(after) == _ids(before)
    assert [warning for warning in caplog.messages if reason in warning and "encoding the catalogue again" in warning]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the rewritten cache is whole again
        assert _ids(model.recommend(history, CATALOGUE, top_k=5, cache_dir=tmp_path)) == _ids(before)
    assert calls == [len(CATALOGUE)] * 2 and not caplog.messages


# ------------------------------------------------------------------------------------------------ typed histories


@pytest.mark.parametrize("item, message", [
    (["tent"], "['tent'] is a list, neither a title"),
    (True, "True is a bool, neither a title"),
    ({"title": "tent"}, "is a dict, neither a title"),
])
def test_items_that_are_neither_titles_nor_ids_are_refused(model, item, message):
    with pytest.raises(CatalogueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.recommend([["tent", item]], CATALOGUE)


def test_a_history_outside_the_catalogue_is_read_as_text(model, caplog):
    with caplog.at_level(logging.WARNING):
        items = model.recommend([["a camping stove", "  gas  canister "]], CATALOGUE, top_k=4)[0]
    assert len(items) == 4
    assert any("2 of its 2 titles are not in the catalogue" in message for message in caplog.messages)
    same = model.recommend([["a camping stove", "gas canister"]], CATALOGUE, top_k=4)[0]
    assert items == same, "titles are cleaned of extra whitespace"
    with pytest.raises(CatalogueError, match="History 0 is empty after cleaning"):
        model.recommend([["  ", ""]], CATALOGUE)


def test_a_string_id_that_is_another_items_title_is_read_as_the_id(model, caplog):
    catalogue = {"tent": "drill 7", "b": "tent", "c": "saw blade", "d": "kite"}
    with caplog.at_level(logging.WARNING):
        items = model.recommend([["tent"]], catalogue, top_k=3)[0]
    assert "tent" not in [item.item_id for item in items] and "b" in [item.item_id for item in items]
    assert any("'tent' is the id of one item and the title of item 'b'; it is read as the item id" in message
               for message in caplog.messages)


# ------------------------------------------------------------------------------------------------ duplicate titles


def test_no_item_with_a_title_of_the_history_is_recommended(model):
    catalogue = {1: "drill", 2: "drill", 3: "saw", 4: "  drill ", 5: "tent"}
    for history in ([1], ["drill"], [4]):
        assert sorted(_ids(model.recommend([history], catalogue, top_k=2))) == [3, 5]
    assert len(model.recommend([[1]], catalogue, top_k=5, exclude_history=False)[0]) == 5
    with pytest.raises(CatalogueError, match="only 2 of the catalogue's 5 items lie outside history 0"):
        model.recommend([[2]], catalogue, top_k=3)


@pytest.mark.data
def test_duplicated_tools_hammer_is_never_recommended(model):
    domain = load_domain(SHARED_DATA, "Tools")
    hammer = "Estwing Hammer - 20 oz Straight Rip Claw"
    assert domain.titles[132] == domain.titles[1619] == hammer
    titles, excluded = Catalogue.of(domain).resolve([132])
    assert titles == [hammer] and excluded == [list(domain.titles).index(132), list(domain.titles).index(1619)]
    # Ranked over a slice of the domain that holds both (encoding all 5,820 titles takes a minute on a shared CPU).
    shop = {item: domain.titles[item] for item in [*list(domain.titles)[:40], 132, 1619]}
    for history in ([132], [1619], [hammer]):
        top = model.recommend([history], shop, top_k=len(shop) - 2)[0]
        assert hammer not in {item.title for item in top} and len(top) == len(shop) - 2


# ---------------------------------------------------------------------------------------------------- the commands


@pytest.fixture
def model_dir(adapters, tmp_path):
    """A copy of the trained Toys LoRA recommender (dual scoring with a popularity prior), without an item cache."""
    copy = tmp_path / "toys"
    shutil.copytree(adapters / "toys", copy, ignore=shutil.ignore_patterns("item_cache"))
    return copy


def test_cli_takes_histories_as_json_and_as_ids(model_dir, tmp_path, capsys, caplog):
    data_dir = make_domain(tmp_path / "data", "Toys", seed=0, meta_overrides={"A0003": "Wallplate, 2-Port; White"})
    common = ["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys", "--json"]
    assert main([*common, "--history-json", '["Wallplate, 2-Port; White", 5]']) == 0
    by_json = [entry["item_id"] for entry in json.loads(capsys.readouterr().out)]
    assert main([*common, "--history-ids", "3", "5"]) == 0
    assert [entry["item_id"] for entry in json.loads(capsys.readouterr().out)] == by_json
    assert len(by_json) == 10 and not {3, 5} & set(by_json)

    with caplog.at_level(logging.WARNING):
        assert main([*common, "--history", "nothing like it; at all"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 10
    assert any("2 of its 2 titles are not in the catalogue" in message for message in caplog.messages)

    assert main([*common, "--history-json", '["drill", [1]]']) == 1
    assert "[1] is a list, neither a title" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--history-json", '{"a": 1}'])
    assert exit_info.value.code == 2 and "is a JSON dict, not a list" in capsys.readouterr().err


@pytest.mark.parametrize("count, shown", [(-3, "-3"), (float("nan"), "nan"), ("12", "'12'"), (2.5, "2.5")])
def test_bad_popularity_counts_stop_the_command(model_dir, data_dir, capsys, count, shown):
    path = model_dir / "item_popularity.json"
    counts = json.loads(path.read_text())
    title = next(iter(counts))
    path.write_text(json.dumps({**counts, title: count}))
    assert main(["evaluate", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys"]) == 1
    [error] = [line for line in capsys.readouterr().err.splitlines() if "xcross" in line]  # beside progress bars
    assert error.startswith("xcross evaluate: error: ") and str(path) in error
    assert f"the count of {title!r} is {shown}, not a finite, non-negative integer" in error


def test_bad_popularity_counts_passed_to_the_api_are_refused(tiny_backbone):
    model = LoraRecommender.create(str(tiny_backbone), scoring="dual", max_length=32, popularity_weight=1.0)
    with pytest.raises(ValueError, match="popularity: the count of 'tent' is -1, not a finite, non-negative number"):
        model.recommend([["kite"]], CATALOGUE, popularity={"kite": 2, "tent": -1})
    with pytest.raises(ValueError, match="the count of 'tent' is nan, not a finite"):
        model.recommend([["kite"]], CATALOGUE, popularity={"kite": 2, "tent": float("nan")})


def test_weighted_popularity_counts_are_taken_by_the_api(tiny_backbone):
    """The prior reads w * log(1 + count): a weighted count (recency-weighted, as the best reference counts) is
    a count too, and 2.5 ranks between 2 and 3."""
    model = LoraRecommender.create(str(tiny_backbone), scoring="dual", max_length=32, popularity_weight=1.0)
    catalogue = {1: "kite", 2: "tent", 3: "drill"}

    def score_of(counts, item):
        [items] = model.recommend([["saw blade"]], catalogue, top_k=3, popularity=counts)
        return next(entry.score for entry in items if entry.item_id == item)

    low, weighted, high = (score_of({"kite": 1, "tent": 1, "drill": count}, 3) for count in (2, 2.5, 3))
    assert low < weighted < high


def _interrupt_encoding(monkeypatch):
    def interrupted(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(catalogue_module, "encode_items", interrupted)


def _interrupt_writing(monkeypatch):
    def interrupted(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(item_cache_module, "save_file", interrupted)


@pytest.mark.parametrize("interrupt", [_interrupt_encoding, _interrupt_writing])
def test_ctrl_c_is_one_line_and_status_130_with_no_partial_cache(model_dir, data_dir, capsys, monkeypatch,
                                                                  interrupt):
    interrupt(monkeypatch)
    assert main(["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
                 "--history-ids", "3"]) == 130
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if "xcross" in line] == ["xcross recommend: interrupted."]
    assert "Traceback" not in captured.err and not captured.out
    assert not [path for path in model_dir.rglob("*") if "item_cache" in str(path) and path.is_file()]


@pytest.mark.parametrize("command, arguments, entry_point", [
    ("train-adapter", ["--domain", "Toys", "--output-dir", "out"], "train"),
    ("evaluate", ["--model-dir", "model", "--domain", "Toys"], "evaluate_model"),
    ("baseline", ["--method", "popularity", "--domain", "Toys", "--output-dir", "out"], "evaluate_baseline"),
    ("compare", ["--runs", "a=runs/a", "--output-dir", "out"], "compare"),
])
def test_every_command_stops_on_ctrl_c_with_one_line_and_status_130(monkeypatch, capsys, command, arguments,
                                                                     entry_point):
    def interrupted(*arguments, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, entry_point, interrupted)
    assert main([command, *arguments]) == 130
    resume = "; rerun the same command to resume from its last checkpoint" if command == "train-adapter" else ""
    assert capsys.readouterr().err == f"xcross {command}: interrupted{resume}.\n"


def test_full_ranking_evaluation_fills_the_cache_recommend_reads(model_dir, data_dir, monkeypatch):
    calls = count_item_encodings(monkeypatch)
    options = dict(zip(SMALL[::2], SMALL[1::2]))
    data = ["--data-dir", str(data_dir), "--domain", "Toys"]
    assert main(["evaluate", "--model-dir", str(model_dir), *data, "--max-eval-users", "6", "--val-users",
                 options["--val-users"], "--seed", options["--seed"], "--full-ranking"]) == 0
    assert calls == [60] and list((model_dir / "item_cache").glob("items-*.safetensors"))
    assert main(["recommend", "--model-dir", str(model_dir), *data, "--history-ids", "3", "4"]) == 0
    assert calls == [60], "recommend reads the cache evaluate wrote"
