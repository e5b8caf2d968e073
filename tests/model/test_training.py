"""What trains and what stays frozen; activation checkpointing and bf16."""

from __future__ import annotations

import warnings

import pytest
import torch

from configuration_xcross import PAPER_SCORING
from conftest import random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation


def build(tiny, names=("toys", "sports")):
    return XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, {n: tiny.adapter_dirs[n] for n in names},
                                                           **PAPER_SCORING)


def integrator_names(model):
    fusion = {f"{name}.{suffix}" for name, module in model.named_modules() if name.endswith("fusion_head")
              for suffix in ("weight", "bias")}
    return fusion | {"domain_weights"} | {name for name, _ in model.named_parameters() if name.startswith("head.")}


def test_only_the_integrator_requires_grad(tiny):
    model = build(tiny)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable == integrator_names(model)
    n, d, layers = 2, model.config.hidden_size, model.config.num_hidden_layers
    expected = layers * (2 * n * (n - 1) * (n * d + 1)) + n + (d * d + d) + (d + 1)
    assert model.num_parameters(only_trainable=True) == expected


def test_gradients_reach_only_the_integrator(tiny):
    model = build(tiny).train()
    randomize_integrator(model)
    input_ids, attention_mask = random_inputs(2, 3, 6, pad_from=4)
    model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 2])).loss.backward()
    with_grad = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert with_grad == integrator_names(model)
    for head in model.fusion_heads:
        assert head.weight.grad.abs().sum() > 0
    assert model.domain_weights.grad.abs().sum() > 0


@pytest.mark.parametrize("enable", ["activation_checkpointing_enable", "gradient_checkpointing_enable"])
def test_activation_checkpointing_gives_the_same_gradients(tiny, enable):
    """Both transformers entry points work; the current one warns of no deprecation."""
    input_ids, attention_mask = random_inputs(2, 3, 6, pad_from=4)
    labels = torch.tensor([1, 2])
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build(tiny).train()
        randomize_integrator(model)
        if checkpointing:
            with warnings.catch_warnings():
                warnings.simplefilter("error" if enable == "activation_checkpointing_enable" else "ignore")
                getattr(model, enable)()
            assert model.is_activation_checkpointing
        calls = []
        next(iter(model.lora_banks.values())).register_forward_hook(lambda *args: calls.append(1))
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        assert len(calls) == (2 if checkpointing else 1), "checkpointed blocks are recomputed in backward"
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], atol=1e-6, rtol=1e-5)


def test_bfloat16_forward_and_backward(tiny):
    model = build(tiny)
    randomize_integrator(model)
    input_ids, attention_mask = random_inputs(2, 3, 6)
    with torch.no_grad():
        reference = model(input_ids, attention_mask=attention_mask).logits
    model = model.to(torch.bfloat16)
    output = model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1]))
    assert output.logits.dtype == torch.bfloat16
    torch.testing.assert_close(output.logits.float(), reference, atol=0.1, rtol=0.05)
    output.loss.backward()
    assert all(torch.isfinite(head.weight.grad).all() for head in model.fusion_heads)


def test_bfloat16_autocast_on_cpu(tiny):
    model = build(tiny)
    input_ids, _ = random_inputs(1, 2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids, labels=torch.tensor([1])).loss
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("names", [("toys",), ("toys", "sports")])
def test_integrator_size_against_lora(tiny, names):
    model = build(tiny, names)
    size = model.integrator_size(lora_rank=8)
    n, d, layers = len(names), model.config.hidden_size, model.config.num_hidden_layers
    assert size.lora_parameters == layers * 2 * (8 * 2 * d) if tiny.family == "bert" else size.lora_parameters > 0
    if n == 2:
        assert size.fusion_weights == layers * 8 * d
        if tiny.family == "bert":
            assert size.ratio == 0.25
    else:
        assert size.fusion_weights == 0
    with pytest.raises(ValueError, match="match no linear"):
        model.integrator_size(lora_target_modules=["no_such_module"])


def test_fusion_heads_train_at_their_own_learning_rate(tiny, tmp_path):
    from transformers import TrainingArguments

    from modeling_xcross.pipeline.trainer import RecommenderTrainer

    model = build(tiny)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to="none", use_cpu=True)
    optimizer = RecommenderTrainer(model=model, args=args, fusion_learning_rate=1e-5).create_optimizer()
    by_rate = {}
    for group in optimizer.param_groups:
        by_rate.setdefault(group["lr"], set()).update(id(parameter) for parameter in group["params"])
    fusion = {id(parameter) for head in model.fusion_heads for parameter in head.parameters()}
    others = {id(parameter) for parameter in model.parameters() if parameter.requires_grad} - fusion
    assert by_rate == {1e-5: fusion, 1e-3: others}
    plain = RecommenderTrainer(model=model, args=args).create_optimizer()
    assert {group["lr"] for group in plain.param_groups} == {1e-3}
