"""What issue 39 changed in how X-Cross trains: streams without dropout, a scaled and bounded integrator, the dual
head's residual projection."""

from __future__ import annotations

import pytest
import torch

from conftest import make_adapter, make_base, random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.head import ResidualProjection, SimilarityHead
from modeling_xcross.lora_recommender import LoraRecommender


@pytest.fixture(scope="module")
def dropout_setup(tmp_path_factory):
    """A tiny BERT base with real dropout (the suite's other bases have none) and two adapters."""
    root = tmp_path_factory.mktemp("dropout")
    base = make_base(root / "base", "bert", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    return base, {name: make_adapter(root / name, base, seed=seed) for name, seed in (("toys", 1), ("sports", 2))}


def _streams(model, input_ids, attention_mask):
    return torch.stack(model(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states)


@pytest.mark.parametrize("stream_dropout", [False, True])
def test_streams_in_training_compute_what_they_compute_in_evaluation(dropout_setup, stream_dropout):
    base, adapters = dropout_setup
    model = XCrossForSequentialRecommendation.from_adapters(base, adapters, scoring="cross", temperature=0.05,
                                                            history_encoding="text", history_decay=1.0,
                                                            popularity_weight=None, projection_rank=None,
                                                            stream_dropout=stream_dropout)
    randomize_integrator(model)
    input_ids, attention_mask = random_inputs(2, 3, 8, pad_from=5)
    with torch.no_grad():
        evaluated = _streams(model.eval(), input_ids, attention_mask)
        torch.manual_seed(0)
        trained = _streams(model.train(), input_ids, attention_mask)
    assert model.training and model.head.training, "what trains is in train mode"
    if stream_dropout:  # the earlier form: each stream its own dropout mask, so the test can tell the two apart
        assert not torch.allclose(trained, evaluated, atol=1e-3)
    else:
        torch.testing.assert_close(trained, evaluated)


def test_activation_checkpointing_stays_on_without_stream_dropout(dropout_setup):
    base, adapters = dropout_setup
    model = XCrossForSequentialRecommendation.from_adapters(base, adapters)
    model.gradient_checkpointing_enable()
    model.train()
    assert all(layer.block.training and layer.block.gradient_checkpointing for layer in model.layers)
    assert not any(module.training for name, module in model.backbone.named_modules()
                   if name.endswith("dropout")), "no dropout module of the frozen streams is in train mode"


def test_scaled_bounded_integrator_is_the_identity_at_initialisation_and_bounds_z(tiny):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs, fusion_bound=0.5).eval()
    assert model.config.scale_fusion_input and model.config.fusion_bound == 0.5
    input_ids, attention_mask = random_inputs(2, 1, 8, pad_from=5)
    input_ids, attention_mask = input_ids[:, 0], attention_mask[:, 0]
    with torch.no_grad():
        output = model.encode(input_ids, attention_mask), model(input_ids, attention_mask=attention_mask,
                                                                candidate_input_ids=input_ids,
                                                                candidate_attention_mask=attention_mask,
                                                                candidate_popularity=torch.zeros(2),
                                                                output_fusion_weights=True)
        assert all(z.abs().max() == 0 for z in output[1].fusion_weights), "identity: z = 0 at initialisation"
        for head in model.fusion_heads:
            head.bias.fill_(10.0)
        z = model(input_ids, attention_mask=attention_mask, candidate_input_ids=input_ids,
                  candidate_attention_mask=attention_mask, candidate_popularity=torch.zeros(2),
                  output_fusion_weights=True).fusion_weights
    assert all(weights.abs().max() <= 0.5 + 1e-6 for weights in z)
    assert z[0].min() > 0.49, "a large b saturates at the bound"


def test_scaled_fusion_input_moves_z_as_much_through_w_as_through_b(tiny):
    """The conditioning the scale buys: the fusion input has unit L2 norm per token, so a unit change of every
    entry of W moves z about sqrt(n d) (not n d) times as far as a unit change of b."""
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs, fusion_bound=None).eval()
    layer = model.layers[0]
    streams = (torch.rand(len(tiny.adapter_dirs) * 2, 5, model.config.hidden_size) + 0.5) * 30  # all positive
    with torch.no_grad():
        layer.fusion_head.weight.fill_(1.0)
        _, z = layer.fuse(streams)
        layer.fusion_input_scale = None  # the unscaled input, for contrast
        _, unscaled = layer.fuse(streams)
    n, d = len(tiny.adapter_dirs), model.config.hidden_size
    assert z.abs().max() <= (n * d) ** 0.5 + 1e-4
    assert unscaled.abs().min() > 0.5 * n * d, "unscaled, z sums the n d entries of the input"


def test_projection_head_is_the_identity_at_initialisation_and_trains(tiny):
    settings = dict(scoring="dual", history_encoding="items", popularity_weight=1.0, temperature=0.2)
    plain = LoraRecommender.create(str(tiny.base_dir), seed=0, projection_rank=None, **settings).eval()
    projected = LoraRecommender.create(str(tiny.base_dir), seed=0, projection_rank=4, **settings).eval()
    assert isinstance(projected.head, SimilarityHead) and isinstance(projected.head.projection, ResidualProjection)
    input_ids, attention_mask = random_inputs(3, 1, 7, pad_from=5)
    inputs = dict(input_ids=input_ids[:, 0], attention_mask=attention_mask[:, 0],
                  candidate_input_ids=input_ids[:, 0], candidate_attention_mask=attention_mask[:, 0],
                  candidate_popularity=torch.tensor([1.0, 5.0, 0.0]), labels=torch.tensor([0, 1, 2]))
    projected_output = projected(**inputs)
    torch.testing.assert_close(projected_output.logits, plain(**inputs).logits)
    projected_output.loss.backward()
    assert projected.head.projection.up.weight.grad.abs().sum() > 0, "the projection trains"
    parameters = sum(p.numel() for p in projected.head.projection.parameters())
    assert parameters == 2 * 4 * projected.peft_model.config.hidden_size


def test_x_cross_projection_survives_the_base_initialiser(tiny):
    model = XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, tiny.adapter_dirs, projection_rank=4)
    assert model.head.projection.up.weight.abs().max() == 0
    assert model.head.projection.down.weight.abs().max() > 0
