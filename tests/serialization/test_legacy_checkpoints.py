"""Models saved in an earlier format (tests/fixtures/legacy_v0, written by tests/fixtures/make_legacy_v0.py) load
with today's code, score as they did, and save again under the same weight names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel

from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.head_recommender import HeadRecommender
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.auto_loading import load_popularity, load_trained_model

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path("tests/fixtures/legacy_v0")
EXPECTED = json.loads((ROOT / FIXTURE / "expected.json").read_text())
XCROSS = ("xcross_bert", "xcross_llama")


@pytest.fixture(autouse=True)
def from_repository_root(monkeypatch):
    """The fixture's models name their base by a path relative to the repository root, as a run started there."""
    monkeypatch.chdir(ROOT)


def tensors(inputs: dict) -> dict:
    return {key: torch.tensor(value) for key, value in inputs.items()}


def assert_scores(model, name: str, method: str = "forward") -> None:
    case = EXPECTED[name][method]
    with torch.no_grad():
        logits = getattr(model, method)(**tensors(case["inputs"])).logits
    torch.testing.assert_close(logits, torch.tensor(case["logits"]), rtol=1e-4, atol=1e-5)


def weight_names(path: Path) -> set[str]:
    with safe_open(path, "pt") as handle:
        return set(handle.keys())


@pytest.mark.parametrize("name", XCROSS)
def test_xcross_checkpoints_load_and_score_as_saved(name):
    model = XCrossForSequentialRecommendation.from_pretrained(FIXTURE / name)
    assert_scores(model, name)
    assert_scores(AutoModel.from_pretrained(FIXTURE / name), name)
    assert_scores(load_trained_model(FIXTURE / name)[0], name)


def test_xcross_representations_and_shared_prefix_scores_as_saved():
    bert = XCrossForSequentialRecommendation.from_pretrained(FIXTURE / "xcross_bert")
    case = EXPECTED["xcross_bert"]["encode"]
    with torch.no_grad():
        representations = bert.encode(**tensors(case["inputs"]))
    torch.testing.assert_close(representations, torch.tensor(case["representations"]), rtol=1e-4, atol=1e-5)
    llama = XCrossForSequentialRecommendation.from_pretrained(FIXTURE / "xcross_llama")
    assert_scores(llama, "xcross_llama", "score_shared_prefix")


@pytest.mark.parametrize("name", XCROSS)
def test_xcross_saves_the_weight_names_it_saved_before(name, tmp_path):
    model = XCrossForSequentialRecommendation.from_pretrained(FIXTURE / name)
    model.save_pretrained(tmp_path, include_base=True)
    saved = FIXTURE / name / "model.safetensors"
    assert weight_names(tmp_path / "model.safetensors") == weight_names(saved)
    reloaded = XCrossForSequentialRecommendation.from_pretrained(tmp_path)
    assert_scores(reloaded, name)


@pytest.mark.parametrize("name, cls", [("lora_recommender", LoraRecommender), ("head_recommender", HeadRecommender)])
def test_recommender_run_directories_load_score_and_save_as_before(name, cls, tmp_path):
    model, backbone = load_trained_model(FIXTURE / name)
    assert type(model) is cls and backbone == str(FIXTURE / "base_bert")
    assert_scores(model, name)
    assert_scores(cls.from_pretrained(FIXTURE / name), name)
    model.save_pretrained(tmp_path)
    for weights in (FIXTURE / name).rglob("*.safetensors"):
        assert weight_names(tmp_path / weights.relative_to(FIXTURE / name)) == weight_names(weights)


def test_lora_recommender_run_keeps_its_popularity_counts():
    model = load_trained_model(FIXTURE / "lora_recommender")[0]
    assert model.config.popularity_weight is not None
    assert load_popularity(FIXTURE / "lora_recommender") == {"toy car": 3, "drill": 1}
