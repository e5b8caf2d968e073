"""A catalogue's titles matched as people type them (issue 42): HTML entities, Unicode NFC, whitespace and, for an
uncased backbone, case; a near miss named in the warning; a ';' of `--history` that splits a title refused with the
fix; the `[data]` line of `recommend`; popularity counts too large for the prior; stale cache temporaries removed.
Tiny random BERT models (an uncased tokenizer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

import pytest
import torch
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from conftest import dual_lora_recommender, make_domain
from modeling_xcross.auto_loading import ModelDirError
from modeling_xcross.inference.catalogue import Catalogue
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.cli import main

CATALOGUE = {100: "Estwing Hammer's Grip", 101: 'Drill "Pro" 7', 102: "Café lamp", 103: "tent", 104: "saw blade",
             105: "rope kit", 106: "toy car", 107: "kite", 108: "bike lamp", 109: "Wallplate, 2-Port; White"}
LOGGER = "transformers.modeling_xcross.inference.catalogue"


@pytest.fixture(scope="module")
def model(tiny_backbone):
    return dual_lora_recommender(tiny_backbone)


def catalogue(fold_case: bool = True) -> Catalogue:
    return Catalogue(tuple(CATALOGUE), tuple(CATALOGUE.values()), fold_case)


@pytest.mark.parametrize("typed, item", [
    ("Estwing Hammer&#39;s Grip", 100),  # as meta_data.json writes it
    ("Drill &quot;Pro&quot; 7", 101),
    (unicodedata.normalize("NFD", "Café lamp"), 102),  # e + a combining accent
    ("  Estwing   Hammer's Grip ", 100),
    ("estwing hammer's GRIP", 100),  # an uncased backbone reads both cases as one
])
def test_history_titles_are_matched_after_the_catalogues_normalisation(typed, item):
    titles, positions = catalogue().resolve([typed])
    assert titles == [CATALOGUE[item]] and positions == [list(CATALOGUE).index(item)]


def test_case_is_kept_for_a_cased_backbone():
    assert catalogue(fold_case=False).resolve(["estwing hammer's grip"]) == (["estwing hammer's grip"], [])


def test_recommend_folds_case_for_an_uncased_tokenizer_and_leaves_the_typed_item_out(model):
    with CaptureLogger(logging.get_logger(LOGGER)) as captured:
        recommended = model.recommend([["ESTWING HAMMER&#39;S GRIP"]], CATALOGUE, top_k=len(CATALOGUE) - 1)[0]
    assert 100 not in [item.item_id for item in recommended]
    assert "not in the catalogue" not in captured.out


def test_an_unmatched_title_close_to_a_catalogue_title_is_named_in_the_warning():
    with CaptureLogger(logging.get_logger(LOGGER)) as captured:
        catalogue().resolve(["saw blades", "completely other thing"])
    assert "'saw blades' (did you mean 'saw blade'?), 'completely other thing'." in captured.out


def test_a_title_split_at_its_semicolon_is_found():
    assert catalogue().split_title(["tent", "wallplate, 2-port", "White"]) == "Wallplate, 2-Port; White"
    assert catalogue().split_title(["tent", "kite"]) is None


# ------------------------------------------------------------------------------------------ `xcross recommend`

@pytest.fixture(scope="module")
def shop(model, tmp_path_factory):
    """A saved model and a domain `Shop` with a title holding ';' and one empty title."""
    root = tmp_path_factory.mktemp("shop")
    model.save_pretrained(root / "model")
    make_domain(root / "data", "Shop", meta_overrides={"A0003": "Wallplate, 2-Port; White", "A0004": " "})
    return root


def recommend(shop, *history: str) -> int:
    return main(["recommend", "--model-dir", str(shop / "model"), "--data-dir", str(shop / "data"), "--domain",
                 "Shop", *history])


def test_history_that_splits_a_title_at_its_semicolon_says_to_use_history_json(shop, capsys):
    assert recommend(shop, "--history", "tent; wallplate, 2-port; white") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == ["xcross recommend: error: --history splits at ';' the catalogue title 'Wallplate, 2-Port; "
                      "White', which holds one; pass the history with --history-json, e.g. --history-json "
                      "'[\"Wallplate, 2-Port; White\"]'."]
    assert recommend(shop, "--history-json", '["Wallplate, 2-Port; White"]', "--top-k", "3") == 0


def test_recommend_prints_the_data_line_on_stderr_and_keeps_json_on_stdout(shop, capsys):
    assert recommend(shop, "--history-ids", "1", "2", "--top-k", "3", "--json") == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 3
    assert "[data] Shop: 59 items with a usable title" in captured.err
    assert "items_with_unusable_title: 1" in captured.err


# ------------------------------------------------------------------------------------- counts, cache temporaries

@pytest.mark.parametrize("count", [1e300, 10**40])
def test_popularity_counts_too_large_for_the_prior_are_refused_naming_the_entry(tiny_backbone, count):
    torch.manual_seed(0)
    prior = LoraRecommender.create(str(tiny_backbone), scoring="dual", max_length=32, history_encoding="text",
                                   popularity_weight=1.0).eval()
    with pytest.raises(ModelDirError, match="the count of 'kite' is 1e\\+[34]\\d*, larger than the prior can read"):
        prior.recommend([["tent"]], CATALOGUE, top_k=3, popularity={"tent": 2, "kite": count})


def test_a_killed_writes_temporary_is_removed_at_the_next_cache_write(model, tmp_path):
    cache = tmp_path / "item_cache"
    cache.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    stale = cache / f".items-0123456789abcdef.safetensors.{finished.stdout.strip()}.deadbeef.tmp"
    running = cache / f".items-0123456789abcdef.safetensors.{os.getpid()}.cafebabe.tmp"
    for temporary in (stale, running):
        temporary.write_bytes(b"half a file")
    model.recommend([["tent"]], CATALOGUE, top_k=3, cache_dir=tmp_path)
    assert not stale.exists(), "its process is gone: nothing will ever finish or remove it"
    assert running.exists(), "a write in progress keeps its temporary"
