"""Dual scoring's representation centre: the head subtracts it before the cosine, `xcross train-adapter` and `train`
set it to the mean of the train titles' untrained representations, and the saved model (hence `recommend`) carries
it."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError

from conftest import SMALL, make_base, make_tokenizer
from configuration_xcross import XCrossConfig
from modeling_xcross.head import SimilarityHead
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import load_domain, split_users
from modeling_xcross.inference.encoding import encode_items, fit_center
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.auto_loading import load_trained_model
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.pipeline.runs import METRICS_NAME


def test_head_subtracts_the_centre_before_the_cosine():
    head = SimilarityHead(temperature=0.5, hidden_size=8)
    queries, items = torch.randn(2, 8), torch.randn(2, 3, 8)
    plain = torch.einsum("bd,bcd->bc", F.normalize(queries, dim=-1), F.normalize(items, dim=-1)) / 0.5
    torch.testing.assert_close(head(queries, items), plain, msg="a zero centre changes nothing")
    center = torch.randn(8)
    head.set_center(center)
    centred = torch.einsum("bd,bcd->bc", F.normalize(queries - center, dim=-1), F.normalize(items - center, dim=-1))
    torch.testing.assert_close(head(queries, items), centred / 0.5)
    assert not head.center.requires_grad and "center" in head.state_dict(), "a fixed buffer, saved with the head"
    with pytest.raises(ValueError, match=r"must have shape \(8,\)"):
        head.set_center(torch.zeros(4))
    with pytest.raises(ValueError, match="built without a centre"):
        SimilarityHead(temperature=0.5).set_center(center)
    assert "center" not in SimilarityHead(temperature=0.5).state_dict()


@pytest.mark.parametrize("fields, message", [
    ({"scoring": "cross", "center_representations": True}, "dual-scoring options"),
    ({"scoring": "dual", "center_representations": 1}, "center_representations"),
])
def test_bad_centre_settings_are_refused(fields, message):
    with pytest.raises((StrictDataclassClassValidationError, ValueError), match=message):
        XCrossConfig(**fields)


@pytest.fixture(scope="module")
def decoder_backbone(tmp_path_factory):
    return make_tokenizer(make_base(tmp_path_factory.mktemp("center") / "llama", "llama"))


DUAL = ["--scoring", "dual", "--history-encoding", "items", "--popularity-weight", "1.0"]


def test_training_sets_the_centre_and_the_saved_model_carries_it(data_dir, decoder_backbone, tmp_path):
    output = tmp_path / "lora"
    assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Tools", "--output-dir", str(output),
                 "--backbone", str(decoder_backbone), *SMALL, *DUAL, "--center-representations"]) == 0
    assert json.loads((output / METRICS_NAME).read_text())["settings"]["center_representations"] is True

    # The centre is the mean representation of the train users' titles under the untrained model (same seed).
    untrained = LoraRecommender.create(str(decoder_backbone), seed=0, scoring="dual", history_encoding="items",
                                       popularity_weight=1.0, center_representations=True, max_length=48,
                                       temperature=0.05, history_decay=1.0).eval()
    domain = load_domain(data_dir, "Tools")
    users = split_users(domain, 4, 0, 16, 6)
    titles = sorted({domain.titles[item] for user in users["train"] for item in domain.train[user]})
    expected = encode_items(untrained, model_collator(untrained, 48), titles).mean(dim=0)

    model, _ = load_trained_model(output)
    assert model.config.center_representations is True
    torch.testing.assert_close(model.head.center, expected, rtol=1e-4, atol=1e-5)
    assert model.head.center.norm() > 0

    # recommend() scores through the same head: moving the centre moves its scores.
    history, catalogue = titles[:2], titles[:10]
    counts = dict.fromkeys(catalogue, 1)
    before = [item.score for item in model.recommend([history], catalogue, top_k=8, popularity=counts)[0]]
    model.head.set_center(torch.zeros_like(model.head.center))
    after = [item.score for item in model.recommend([history], catalogue, top_k=8, popularity=counts)[0]]
    assert before != pytest.approx(after, abs=1e-4)


def test_xcross_train_sets_the_centre_too(data_dir, decoder_backbone, tmp_path):
    sources = []
    for domain in ("Toys", "Sports"):
        sources.append(tmp_path / domain.lower())
        assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", domain, "--output-dir",
                     str(sources[-1]), "--backbone", str(decoder_backbone), *SMALL, "--max-steps", "1"]) == 0
    output = tmp_path / "xcross"
    assert main(["train", "--data-dir", str(data_dir), "--target", "Tools", "--sources", *map(str, sources),
                 "--output-dir", str(output), "--backbone", str(decoder_backbone), *SMALL, *DUAL,
                 "--center-representations", "--max-steps", "2"]) == 0
    model, _ = load_trained_model(output)
    assert model.config.center_representations is True and model.head.center.norm() > 0


def test_cross_scoring_refuses_a_centre(data_dir, decoder_backbone, tmp_path, capsys):
    assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Tools", "--output-dir",
                 str(tmp_path / "cross"), "--backbone", str(decoder_backbone), *SMALL, "--scoring", "cross",
                 "--center-representations"]) == 1
    assert "center_representations" in capsys.readouterr().err


def test_centre_is_fitted_without_dropout_and_keeps_the_training_mode(tmp_path):
    """A backbone with dropout (MiniLM has 0.1) gives the centre of the representations the model scores with."""
    backbone = make_tokenizer(make_base(tmp_path / "bert", "bert", hidden_dropout_prob=0.5))
    model = LoraRecommender.create(str(backbone), scoring="dual", history_encoding="items", popularity_weight=1.0,
                                   center_representations=True, max_length=32, temperature=0.05, history_decay=1.0)
    collator = model_collator(model, 32)
    titles = ["red ball", "drill kit", "saw blade", "tent", "bike lamp", "rope"]
    model.train()
    center = fit_center(model, collator, titles)
    assert model.training, "the caller's mode is restored"
    model.eval()
    torch.testing.assert_close(center, encode_items(model, collator, sorted(titles)).mean(dim=0))
    torch.testing.assert_close(model.head.center, center)
