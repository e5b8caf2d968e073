"""Dual scoring: the untrained model is the backbone's sentence similarity, shared candidate pools score like
per-example lists, and the collator builds both input forms from text."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, AutoTokenizer

from configuration_xcross import PAPER_SCORING
from conftest import TARGETS, random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.head import pool_hidden_states
from modeling_xcross.inference.collator import RecommendationCollator


def _dual(tiny, adapter_dirs, **overrides):
    return XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, adapter_dirs,
                                                           **{**PAPER_SCORING, "scoring": "dual", **overrides}).eval()


def _fresh_adapter(directory, tiny):
    """A PEFT LoRA adapter as PEFT initialises it: B = 0, so the adapted model is the base."""
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS[tiny.family])
    get_peft_model(AutoModel.from_pretrained(tiny.base_dir), config).save_pretrained(directory)
    return directory


def _base_similarity(tiny, histories, history_mask, candidates, candidate_mask):
    """cos(mean-pooled base representations) / temperature, from the plain transformers model."""
    base = AutoModel.from_pretrained(tiny.base_dir).eval()
    with torch.no_grad():
        queries = pool_hidden_states(base(input_ids=histories, attention_mask=history_mask).last_hidden_state,
                                     history_mask, "mean")
        flat_ids, flat_mask = candidates.view(-1, candidates.shape[-1]), candidate_mask.view(-1, candidates.shape[-1])
        items = pool_hidden_states(base(input_ids=flat_ids, attention_mask=flat_mask).last_hidden_state, flat_mask,
                                   "mean").view(*candidates.shape[:2], -1)
    return torch.einsum("bd,bcd->bc", F.normalize(queries, dim=-1), F.normalize(items, dim=-1)) / 0.05


def test_untrained_dual_model_is_the_backbone_similarity(tiny, tmp_path):
    # Fresh PEFT adapters (B = 0) and the initial integrator: every stream is the base, so X-Cross scores exactly
    # what the similarity baseline scores (a decoder's final norm comes before pooling, as in the plain model).
    fresh = {name: _fresh_adapter(tmp_path / name, tiny) for name in ("a", "b")}
    model = _dual(tiny, fresh)
    histories, history_mask = random_inputs(3, 1, 12, pad_from=7)
    candidates, candidate_mask = random_inputs(3, 5, 6, seed=1, pad_from=4)
    histories, history_mask = histories[:, 0], history_mask[:, 0]
    with torch.no_grad():
        logits = model(histories, attention_mask=history_mask, candidate_input_ids=candidates,
                       candidate_attention_mask=candidate_mask).logits
    expected = _base_similarity(tiny, histories, history_mask, candidates, candidate_mask)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_shared_pool_scores_like_per_example_lists(tiny):
    model = _dual(tiny, {name: tiny.adapter_dirs[name] for name in ("toys", "sports")})
    randomize_integrator(model)
    histories, history_mask = random_inputs(2, 1, 10, pad_from=6)
    histories, history_mask = histories[:, 0], history_mask[:, 0]
    pool, pool_mask = random_inputs(1, 4, 7, seed=3, pad_from=None)
    pool, pool_mask = pool[0], pool_mask[0]
    labels = torch.tensor([3, 1])
    with torch.no_grad():
        shared = model(histories, attention_mask=history_mask, candidate_input_ids=pool,
                       candidate_attention_mask=pool_mask, labels=labels)
        lists = model(histories, attention_mask=history_mask, candidate_input_ids=pool.expand(2, -1, -1),
                      candidate_attention_mask=pool_mask.expand(2, -1, -1), labels=labels)
    assert shared.logits.shape == (2, 4)
    torch.testing.assert_close(shared.logits, lists.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.loss, F.cross_entropy(shared.logits, labels))
    assert model.head.logit_scale.requires_grad and math.isclose(float(model.head.logit_scale), math.log(20),
                                                                  rel_tol=1e-6)


@pytest.mark.parametrize("inputs, message", [
    ({"candidate_input_ids": None}, "scores in dual mode"),
    ({"candidate_input_ids": torch.ones(3, 4, 5, dtype=torch.long)}, "3 candidate lists for 2 histories"),
    ({"labels": torch.tensor([0, 4])}, "labels must be candidate indices from 0 to 3"),
])
def test_dual_inputs_of_the_wrong_form_are_refused(tiny, inputs, message):
    model = _dual(tiny, {"toys": tiny.adapter_dirs["toys"], "sports": tiny.adapter_dirs["sports"]})
    kwargs = {"candidate_input_ids": torch.ones(2, 4, 5, dtype=torch.long), **inputs}
    with pytest.raises(ValueError, match=message):
        model(torch.ones(2, 6, dtype=torch.long), **kwargs)


def test_cross_model_refuses_candidate_inputs(tiny):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, {"toys": tiny.adapter_dirs["toys"]},
                                                            **PAPER_SCORING)
    with pytest.raises(ValueError, match="candidate_input_ids, history_weights and candidate_popularity are for dual scoring"):
        model(torch.ones(2, 3, 6, dtype=torch.long), candidate_input_ids=torch.ones(2, 3, 4, dtype=torch.long))


def test_dual_collator_builds_lists_and_shared_pools(tiny_backbone):
    collator = RecommendationCollator(AutoTokenizer.from_pretrained(tiny_backbone), text_pair=True, max_length=12,
                                      scoring="dual")
    examples = [{"history": ["oldest words", "mid", "newest"], "candidates": ["ab", "cd", "ef"], "label": 1},
                {"history": ["xy"], "candidates": ["cd", "gh", "ab"], "label": 2}]
    lists = collator(examples)
    assert lists["input_ids"].shape[0] == 2 and lists["candidate_input_ids"].shape[:2] == (2, 3)
    assert lists["labels"].tolist() == [1, 2]
    pooled = collator([{**example, "in_batch": True} for example in examples])
    assert pooled["candidate_input_ids"].shape[0] == 4, "each title of the batch once: ab, cd, ef, gh"
    decoded = [collator.tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "")
               for ids in pooled["candidate_input_ids"]]
    assert [decoded[label] for label in pooled["labels"]] == ["cd", "ab"]
    history = collator.tokenizer.decode(lists["input_ids"][0], skip_special_tokens=True).replace(" ", "")
    assert history.endswith("newest") and not history.startswith("oldest"), "the oldest history is cut first"
    long_title = collator.encode_items(["abcdefghijklmnopqrstuvwxyz"])["input_ids"][0]
    assert collator.tokenizer.decode(long_title, skip_special_tokens=True).replace(" ", "").startswith("abc")
