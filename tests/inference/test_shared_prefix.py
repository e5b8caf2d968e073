"""Shared-prefix scoring on decoders: the same tokens as the plain prompts, and the same scores as the plain forward."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoTokenizer

from configuration_xcross import PAPER_SCORING
from benchmarks.shared_prefix import main as benchmark_main
from conftest import make_adapter, make_base, make_tokenizer, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.inference.collator import RecommendationCollator
from modeling_xcross.pipeline.runs import score

MAX_LENGTH = 60  # the tiny Llama has 64 positions; its tokenizer spells words letter by letter
EXAMPLES = [
    # Short history: nothing truncated; candidates of different lengths pad the continuations.
    {"history": ["toy car", "ball"], "candidates": ["drill", "tent kit", "lamp rope saw"], "label": 0},
    # Long history: the longer candidates' prompts lose their oldest history tokens, each a different number.
    {"history": ["hammer kit", "bike lamp", "saw"], "candidates": ["saw", "rope", "puzzle toy ball"], "label": 2},
    # Every prompt truncated; the first two by as many tokens, so they still share a prefix.
    {"history": ["hammer drill kit", "bike lamp", "puzzle toy", "rope"], "candidates": ["saw", "kit", "car kit"],
     "label": 1},
]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    """A tiny random Llama with a tokenizer and three adapters."""
    root = tmp_path_factory.mktemp("shared-prefix")
    base_dir = make_tokenizer(make_base(root / "base", "llama"))
    adapters = {name: make_adapter(root / name, base_dir, seed=seed, r=r, family="llama")
                for name, seed, r in (("toys", 1, 4), ("sports", 2, 2), ("tools", 3, 6))}
    collator = RecommendationCollator(AutoTokenizer.from_pretrained(base_dir), text_pair=False, max_length=MAX_LENGTH)
    return base_dir, adapters, collator


def build(decoder, num_adapters: int) -> XCrossForSequentialRecommendation:
    base_dir, adapters, _ = decoder
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, dict(list(adapters.items())[:num_adapters]),
                                                            **PAPER_SCORING)
    randomize_integrator(model, seed=num_adapters)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a head of trained size, so that float errors inside show in the scores
        for parameter in model.head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval()


def without_labels(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key != "labels"}


def test_split_prompts_are_the_plain_prompts_token_for_token(decoder):
    collator = decoder[2]
    plain, shared = collator(EXAMPLES), collator.shared_prefix_batch(EXAMPLES)
    lengths = plain["attention_mask"].sum(-1)
    assert (lengths == MAX_LENGTH).any() and (lengths < MAX_LENGTH).any(), "the examples must truncate some prompts"
    for user, candidate in itertools.product(range(3), range(3)):
        prefix = shared["prefix_index"][user, candidate]
        rejoined = torch.cat([shared["prefix_input_ids"][prefix][shared["prefix_attention_mask"][prefix] == 1],
                              shared["input_ids"][user, candidate][shared["attention_mask"][user, candidate] == 1]])
        assert rejoined.tolist() == plain["input_ids"][user, candidate][:lengths[user, candidate]].tolist()
    # Prompts share a prefix when truncation cut their histories alike (not at all, or by as many tokens).
    assert shared["prefix_index"][0].unique().numel() == 1
    assert shared["prefix_index"][1].unique().numel() == 2
    assert shared["prefix_index"][2].tolist() == [shared["prefix_index"][2, 0]] * 2 + [shared["prefix_index"].max()]
    assert shared["prefix_attention_mask"].sum(-1).unique().numel() > 1, "prefixes must be padded too"
    assert torch.equal(shared["labels"], plain["labels"])


@pytest.mark.parametrize("pass_bytes", [None, 1], ids=["one-pass", "one-sequence-passes"])
@pytest.mark.parametrize("num_adapters", [1, 2, 3])
def test_shared_prefix_scores_equal_the_plain_forward(decoder, num_adapters, pass_bytes):
    model = build(decoder, num_adapters)
    model.cpu_pass_bytes = pass_bytes
    collator = decoder[2]
    plain_batch, shared_batch = collator(EXAMPLES), collator.shared_prefix_batch(EXAMPLES)
    with torch.no_grad():
        plain = model(**plain_batch)
        shared = model.score_shared_prefix(**shared_batch)
    assert plain.logits.std() > 0.1
    torch.testing.assert_close(shared.logits, plain.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.loss, plain.loss, atol=1e-5, rtol=1e-5)


def test_evaluation_scores_decoders_on_shared_prefixes(decoder, monkeypatch):
    model, collator = build(decoder, 2), decoder[2]
    calls = []
    monkeypatch.setattr(model, "score_shared_prefix", lambda **batch: calls.append(batch) or
                        XCrossForSequentialRecommendation.score_shared_prefix(model, **batch))
    shared = score(model, collator, EXAMPLES, batch_size=2)
    assert len(calls) == 2
    monkeypatch.setattr(XCrossForSequentialRecommendation, "supports_shared_prefix", False)
    plain = score(model, collator, EXAMPLES, batch_size=2)
    assert len(calls) == 2
    assert shared == pytest.approx(plain)


def test_encoders_and_wrong_batches_are_refused(tiny, decoder):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, {"toys": tiny.adapter_dirs["toys"]},
                                                            **PAPER_SCORING)
    batch = without_labels(decoder[2].shared_prefix_batch(EXAMPLES))
    if tiny.family == "bert":
        assert not model.supports_shared_prefix
        with pytest.raises(ValueError, match="needs a decoder backbone"):
            model.score_shared_prefix(**batch)
        with pytest.raises(ValueError, match="decoder prompts"):
            RecommendationCollator(decoder[2].tokenizer, text_pair=True).shared_prefix_batch(EXAMPLES)
        return
    left_padded = {**batch, "attention_mask": batch["attention_mask"].flip(-1)}
    with pytest.raises(ValueError, match="right-padded"):
        model.score_shared_prefix(**left_padded)
    empty_row = batch["attention_mask"].clone()
    empty_row[0, 0] = 0
    with pytest.raises(ValueError, match="at least one token"):
        model.score_shared_prefix(**{**batch, "attention_mask": empty_row})
    with pytest.raises(ValueError, match="outside"):
        model.score_shared_prefix(**{**batch, "prefix_index": batch["prefix_index"] + 100})


def test_benchmark_prints_the_speedup(capsys):
    result = benchmark_main(["--backbone", "tiny-llama", "--quick", "--prefix-tokens", "24",
                             "--candidate-tokens", "3", "8"])
    assert result["max_abs_difference"] < 1e-4 and result["speedup"] > 0
    assert f"shared-prefix speedup: {result['speedup']:.2f} x" in capsys.readouterr().out


def test_benchmark_times_the_evaluation_of_a_checkpoint(decoder, data_dir, tmp_path, capsys):
    build(decoder, 2).save_pretrained(tmp_path / "xcross")
    result = benchmark_main(["--model-dir", str(tmp_path / "xcross"), "--data-dir", str(data_dir), "--domain",
                             "Tools", "--users", "3", "--max-length", str(MAX_LENGTH), "--repeats", "1",
                             "--warmup", "0"])
    assert result["shared_prefix_metrics"] == pytest.approx(result["plain_metrics"])
    assert "shared-prefix speedup:" in capsys.readouterr().out
