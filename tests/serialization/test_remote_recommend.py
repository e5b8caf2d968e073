"""`model.recommend` from remote code alone: a pushed X-Cross repo loaded with trust_remote_code in a process without
this package recommends the same items with the same scores as the installed package, and the flat modeling file
that makes it possible needs no library beyond transformers and peft."""

from __future__ import annotations

import ast
import sys

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModel, AutoTokenizer
from transformers.dynamic_module_utils import get_imports

from conftest import make_adapter, make_base, make_tokenizer, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.remote_code import _split, flat_modeling_source
from test_portable import run_without_the_package

REPO = "org/xcross-recommends"
TITLES = ["red ball", "drill 7", "saw blade", "tent", "bike lamp", "rope kit", "hammer", "toy car", "puzzle 12",
          "kite", "camp stove", "paint set", "yo yo", "tool belt", "sled"]
# Text only: two catalogue titles (left out of the recommendation) and one the catalogue lacks.
HISTORY = ["saw blade", "hammer", "garden hose"]
# What a user of the remote code has (the model card asks for transformers and peft, which bring the rest): the flat
# file may import nothing else outside a `try` (an optional library such as faiss stays optional).
REQUIRED_LIBRARIES = {"torch", "transformers", "safetensors", "peft", "tqdm", "huggingface_hub"}

RECOMMEND = """
import json, sys
from transformers import AutoModel
repo, history, titles = json.loads(sys.argv[1])
model = AutoModel.from_pretrained(repo, trust_remote_code=True)
recommended = model.recommend([history], titles, top_k=10)[0]
print(json.dumps({"module": type(model).__module__, "items": [item.to_dict() for item in recommended]}))
"""


@pytest.fixture(params=["dual", "cross"])
def pushed(request, hub, tmp_path):
    """X-Cross (random integrator) on a tiny BERT in dual or cross scoring, pushed with its tokenizer to REPO. In dual
    scoring the base repo has no tokenizer, so a recommendation can only read text with the one the X-Cross repo
    carries; cross scoring's first stage is the base itself, which then needs its own."""
    scoring = request.param
    base = make_base(tmp_path / "base", "bert")
    tokenizer = AutoTokenizer.from_pretrained(make_tokenizer(tmp_path / "tokenizer"))
    if scoring == "cross":
        tokenizer.save_pretrained(base)
    api = HfApi()
    for repo, folder in (("org/tiny-bert", base), ("org/toys-lora", make_adapter(tmp_path / "toys", base, seed=1)),
                         ("org/tools-lora", make_adapter(tmp_path / "tools", base, seed=3))):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)
    model = XCrossForSequentialRecommendation.from_adapters(
        "org/tiny-bert", {"toys": "org/toys-lora", "tools": "org/tools-lora"}, scoring=scoring, max_length=32,
        temperature=0.05, history_encoding="text", history_decay=1.0, popularity_weight=None,
        projection_rank=None if scoring == "cross" else 4)
    randomize_integrator(model, seed=3)
    if scoring == "dual":  # a trained projection: the remote code must apply it as the package does
        with torch.no_grad():
            model.head.projection.up.weight.normal_(0.0, 0.3)
    if scoring == "cross":  # a head that spreads the scores, as a trained one does (init: std 0.02)
        with torch.no_grad():
            for parameter in model.head.parameters():
                parameter.normal_(0.0, 1.0)
    model.tokenizer = tokenizer
    model.push_to_hub(REPO)
    assert "tokenizer_config.json" in {entry.path for entry in api.list_repo_tree(REPO)}
    base_files = {entry.path for entry in api.list_repo_tree("org/tiny-bert")}
    assert ("tokenizer_config.json" in base_files) == (scoring == "cross")
    return model


def test_remote_code_recommends_as_the_installed_package(pushed, tmp_path):
    expected = AutoModel.from_pretrained(REPO).recommend([HISTORY], TITLES, top_k=10)[0]
    remote = run_without_the_package(RECOMMEND, [REPO, HISTORY, TITLES], tmp_path)
    assert remote["module"].startswith("transformers_modules.")
    items = remote["items"]
    assert [(item["item_id"], item["title"], item["rank"]) for item in items] == [
        (item.item_id, item.title, item.rank) for item in expected]
    assert [item["score"] for item in items] == pytest.approx([item.score for item in expected], abs=1e-5)
    assert not {"saw blade", "hammer"} & {item["title"] for item in items}
    # Scores that differ: the ranking is the model's, not a tie broken by catalogue order.
    assert len({round(item["score"], 6) for item in items}) == len(items)


def test_flat_modeling_file_needs_only_transformers_and_peft(tmp_path):
    path = tmp_path / "modeling_xcross.py"
    source = flat_modeling_source()
    path.write_text(source)
    assert set(get_imports(path)) - set(sys.stdlib_module_names) <= REQUIRED_LIBRARIES
    # The inference layer comes last and registers the ranking behind `recommend`.
    last = ast.parse(source).body[-1]
    assert ast.unparse(last) == "register_ranker(recommend)"


def test_relative_imports_of_a_subpackage_resolve_from_its_package(tmp_path):
    module = tmp_path / "ranking.py"
    module.write_text("from ..errors import XCrossError\nfrom .encoding import encode_items\n"
                      "from modeling_xcross.head import history_query\n\nRANKED = 1\n")
    dependencies, config_names, lines = _split(module, "inference.ranking")
    assert dependencies == ["errors", "inference.encoding", "head"] and config_names == []
    assert [line for line in lines if line] == ["RANKED = 1"]


@pytest.mark.parametrize("source", ["def rank():\n    from .encoding import encode_items\n",
                                    "try:\n    from ..errors import XCrossError\nexcept ImportError:\n    pass\n"])
def test_project_imports_below_the_top_level_are_refused(tmp_path, source):
    module = tmp_path / "ranking.py"
    module.write_text(source)
    with pytest.raises(ValueError, match="ranking.py:2: project imports must be at the top level"):
        _split(module, "inference.ranking")
