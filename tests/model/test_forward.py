"""The fused forward pass: identity with each source model at initialisation, and the method's equations after."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModel

from configuration_xcross import PAPER_SCORING
from conftest import make_adapter, make_base, random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation


def build(tiny, names=("toys", "sports"), **overrides):
    adapters = {name: tiny.adapter_dirs[name] for name in names}
    return XCrossForSequentialRecommendation.from_adapters(tiny.base_dir, adapters,
                                                           **{**PAPER_SCORING, **overrides}).eval()


def peft_model_with(tiny, names):
    """One PEFT model holding the named adapters, the first one active."""
    peft_model = PeftModel.from_pretrained(tiny.base(), tiny.adapter_dirs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(tiny.adapter_dirs[name], adapter_name=name)
    return peft_model.eval()


def comparable_layers(tiny, num_layers):
    """Hidden-state indices comparable with a plain model: Llama's last entry is taken after its final norm."""
    return range(num_layers + 1) if tiny.family == "bert" else range(num_layers)


@pytest.mark.parametrize("pad_from", [None, 5])
def test_streams_equal_their_source_model_at_initialisation(tiny, pad_from):
    names = ("toys", "sports", "tools")
    model = build(tiny, names)
    input_ids, attention_mask = random_inputs(2, 3, 9, pad_from=pad_from)
    with torch.no_grad():
        fused = model(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    peft_model = peft_model_with(tiny, names)
    flat_ids, flat_mask = input_ids.view(-1, 9), attention_mask.view(-1, 9)
    real = flat_mask.bool()
    for m, name in enumerate(names):
        peft_model.set_adapter(name)
        with torch.no_grad():
            reference = peft_model(input_ids=flat_ids, attention_mask=flat_mask, output_hidden_states=True).hidden_states
        for layer in comparable_layers(tiny, model.config.num_hidden_layers):
            torch.testing.assert_close(fused[layer][m][real], reference[layer][real], atol=2e-5, rtol=1e-4,
                                       msg=f"stream {name}, hidden state {layer}")


def test_single_adapter_model_scores_the_peft_model_last_hidden_state(tiny):
    model = build(tiny, ("sports",))
    input_ids, attention_mask = random_inputs(2, 2, 8, pad_from=6)
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask).logits
        peft_model = peft_model_with(tiny, ["sports"])
        last = peft_model(input_ids=input_ids.view(-1, 8), attention_mask=attention_mask.view(-1, 8)).last_hidden_state
    flat_mask = attention_mask.view(-1, 8)
    if model.pooling == "cls":
        pooled = last[:, 0]
    else:
        pooled = last[torch.arange(last.shape[0]), flat_mask.sum(-1) - 1]
    head = model.head
    expected = head.score(F.gelu(head.pooler(pooled))).squeeze(-1)
    torch.testing.assert_close(logits.view(-1), expected, atol=2e-5, rtol=1e-4)


def reference_forward(tiny, model, input_ids, names, beta, gamma):
    """X-Cross written out plainly: every stream through every block with PEFT's set_adapter, the fusion head on
    the streams (each normalized when the config says so), then the refine equation term by term, then w-weighted sum, final norm, pooling and head."""
    peft_model = peft_model_with(tiny, list(names))
    base = peft_model.base_model.model
    n, seq_len = len(names), input_ids.shape[-1]
    ids = input_ids.view(-1, seq_len)
    if tiny.family == "bert":
        x = base.embeddings(input_ids=ids)
        blocks, block_kwargs, norm = base.encoder.layer, {}, None
    else:
        x = base.embed_tokens(ids)
        positions = torch.arange(seq_len).unsqueeze(0)
        blocks, norm = base.layers, base.norm
        block_kwargs = {"position_embeddings": base.rotary_emb(x, positions), "position_ids": positions}
    streams = [x] * n
    hidden_per_layer = []
    for index, block in enumerate(blocks):
        outputs = []
        for m, name in enumerate(names):
            peft_model.set_adapter(name)
            outputs.append(block(streams[m], attention_mask=None, **block_kwargs))
        head_inputs = outputs
        if model.config.normalize_fusion_input:  # each stream at unit root mean square per token (the default)
            head_inputs = [h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + 1e-6) for h in outputs]
        if model.config.scale_fusion_input:  # then the whole input at unit L2 norm (the default)
            head_inputs = [h / (n * h.shape[-1]) ** 0.5 for h in head_inputs]
        z = model.fusion_heads[index](torch.cat(head_inputs, dim=-1)).view(*outputs[0].shape[:2], n, 2, n - 1)
        if model.config.fusion_bound is not None:  # z = c tanh(. / c) (the default c = 1)
            z = model.config.fusion_bound * torch.tanh(z / model.config.fusion_bound)
        refined = []
        for m in range(n):
            others = [other for other in range(n) if other != m]
            h = outputs[m].clone()
            for j, other in enumerate(others):
                h = h + beta * z[..., m, 0, j, None] * outputs[other]
                h = h + gamma * z[..., m, 1, j, None] * (outputs[m] - outputs[other])
            refined.append(h)
        streams = refined
        hidden_per_layer.append(torch.stack(refined))
    final = sum(model.domain_weights[m] * streams[m] for m in range(n))
    if norm is not None:
        final = norm(final)
    pooled = final[:, 0] if model.pooling == "cls" else final[:, -1]
    head = model.head
    logits = head.score(F.gelu(head.pooler(pooled))).view(input_ids.shape[:-1])
    return logits, hidden_per_layer


@pytest.mark.parametrize("names", [("toys", "sports"), ("toys", "sports", "tools")])
def test_fused_path_matches_plain_reference(tiny, names):
    beta, gamma = 0.7, 0.3
    model = build(tiny, names, beta=beta, gamma=gamma)
    randomize_integrator(model, seed=3)
    input_ids, _ = random_inputs(2, 3, 7, seed=1)
    with torch.no_grad():
        output = model(input_ids, output_hidden_states=True, output_fusion_weights=True)
        reference_logits, reference_hidden = reference_forward(tiny, model, input_ids, names, beta, gamma)
    assert output.logits.shape == (2, 3)
    assert len(output.fusion_weights) == model.config.num_hidden_layers
    assert output.fusion_weights[0].shape == (6, 7, len(names), 2, len(names) - 1)
    assert output.fusion_weights[0].abs().max() > 1e-3, "fusion must be active in this test"
    for layer, expected in enumerate(reference_hidden):
        torch.testing.assert_close(output.hidden_states[layer + 1], expected, atol=3e-5, rtol=1e-4)
    torch.testing.assert_close(output.logits, reference_logits, atol=3e-5, rtol=1e-4)
    with torch.no_grad():
        unfused = build(tiny, names, beta=beta, gamma=gamma)(input_ids).logits
    assert not torch.allclose(unfused, output.logits, atol=1e-3), "the integrator must change the scores"


def test_only_integrated_layers_have_fusion_heads(tiny):
    model = build(tiny, integrated_layers=[2, 0])
    assert len(model.fusion_heads) == 2
    assert [layer.fusion_head is not None for layer in model.layers] == [True, False, True]
    input_ids, _ = random_inputs(1, 2, 5)
    output = model(input_ids, output_fusion_weights=True, output_hidden_states=True)
    assert len(output.fusion_weights) == 2
    assert len(output.hidden_states) == model.config.num_hidden_layers + 1


def test_contract_fusion_head_shapes_and_names(tiny):
    model = build(tiny, ("toys", "sports", "tools"))
    n, d = 3, model.config.hidden_size
    assert model.adapter_names == ["toys", "sports", "tools"]
    assert isinstance(model.fusion_heads, torch.nn.ModuleList)
    for head in model.fusion_heads:
        assert isinstance(head, torch.nn.Linear)
        assert (head.in_features, head.out_features) == (n * d, 2 * n * (n - 1))
    assert model.domain_weights.shape == (n,)
    torch.testing.assert_close(model.domain_weights.detach(), torch.full((n,), 1 / n))


def test_two_dimensional_input_scores_single_sequences(tiny):
    model = build(tiny)
    input_ids, _ = random_inputs(2, 3, 6)
    with torch.no_grad():
        batched = model(input_ids).logits
        single = model(input_ids[:, 1]).logits
    assert single.shape == (2,)
    torch.testing.assert_close(single, batched[:, 1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="num_candidates"):
        model(input_ids[:, 1], labels=torch.tensor([0, 0]))


def test_loss_is_softmax_cross_entropy_over_candidates(tiny):
    model = build(tiny)
    randomize_integrator(model)
    input_ids, _ = random_inputs(3, 4, 6)
    labels = torch.tensor([0, 3, 1])
    output = model(input_ids, labels=labels)
    expected = -torch.log_softmax(output.logits, dim=-1)[torch.arange(3), labels].mean()
    torch.testing.assert_close(output.loss, expected)
    as_tuple = model(input_ids, labels=labels, return_dict=False)
    torch.testing.assert_close(as_tuple[0], output.loss)


def test_roberta_family_streams_match_peft(tmp_path):
    base_dir = make_base(tmp_path / "base", "roberta")
    adapters = {name: make_adapter(tmp_path / name, base_dir, seed=seed, family="roberta")
                for name, seed in (("a", 1), ("b", 2))}
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, adapters, **PAPER_SCORING).eval()
    input_ids, attention_mask = random_inputs(1, 2, 6, family="roberta")
    with torch.no_grad():
        fused = model(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        reference = PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), adapters["b"]).eval()(
            input_ids=input_ids.view(-1, 6), output_hidden_states=True).hidden_states
    torch.testing.assert_close(fused[-1][1], reference[-1], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("largest_pass", "sequences", "expected"), [(4, 10, 4), (5, 10, 5), (3, 10, 3), (4, 5, 3),
                                                                     (1, 7, 1), (50, 7, 7)])
def test_passes_are_near_equal_and_within_the_budget(tiny, largest_pass, sequences, expected):
    model = build(tiny, ("toys", "sports"))
    widest = max(model.config.base_config.intermediate_size, model.config.hidden_size) * 4
    model.cpu_pass_bytes = largest_pass * 2 * 16 * widest
    assert model.sequences_per_pass(sequences, 16, torch.device("cpu")) == expected


def test_chunked_streams_give_the_same_outputs(tiny):
    model = build(tiny, ("toys", "sports", "tools"))
    randomize_integrator(model)
    input_ids, attention_mask = random_inputs(3, 2, 7, pad_from=5)
    kwargs = dict(attention_mask=attention_mask, output_hidden_states=True, output_fusion_weights=True)
    model.cpu_pass_bytes = None
    assert model.sequences_per_pass(6, 7, torch.device("cpu")) == 6
    with torch.no_grad():
        whole = model(input_ids, **kwargs)
        widest = max(model.config.base_config.intermediate_size, model.config.hidden_size) * 4
        model.cpu_pass_bytes = 2 * 3 * 7 * widest  # two of the six sequences fit a pass: passes of 2, 2, 2
        assert model.sequences_per_pass(6, 7, torch.device("cpu")) == 2
        assert model.sequences_per_pass(6, 7, torch.device("meta")) == 6, "only the CPU splits the batch"
        chunked = model(input_ids, **kwargs)
    torch.testing.assert_close(chunked.logits, whole.logits)
    for name in ("hidden_states", "fusion_weights"):
        for part, reference in zip(getattr(chunked, name), getattr(whole, name), strict=True):
            torch.testing.assert_close(part, reference)


def test_normalized_fusion_input_makes_z_independent_of_the_activation_scale(tiny):
    model = build(tiny, normalize_fusion_input=True)
    randomize_integrator(model)
    layer = next(layer for layer in model.layers if layer.fusion_head is not None)
    streams = torch.randn(2 * 3, 5, model.config.hidden_size)
    with torch.no_grad():
        _, z = layer.fuse(streams)
        _, z_scaled = layer.fuse(1000.0 * streams)
        refined_scaled, _ = layer.fuse(1000.0 * streams)
        refined, _ = layer.fuse(streams)
    torch.testing.assert_close(z_scaled, z, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(refined_scaled, 1000.0 * refined, atol=1e-2, rtol=1e-4)  # refine mixes the raw h_m
    plain = build(tiny, normalize_fusion_input=False)  # the paper's form: z reads the raw streams
    plain.load_state_dict(model.state_dict())
    plain_layer = next(layer for layer in plain.layers if layer.fusion_head is not None)
    with torch.no_grad():
        assert not torch.allclose(plain_layer.fuse(1000.0 * streams)[1], z, atol=1e-3)
