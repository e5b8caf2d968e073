"""XCrossModel, the fused streams without a scoring head, and the `from_pretrained` arguments any model class can
sort with `LoadOptions`."""

from __future__ import annotations

import pytest
import torch

from conftest import random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation, XCrossModel
from modeling_xcross.load_options import DOWNLOAD_KWARGS, LoadOptions


@pytest.fixture
def recommender(tiny):
    model = XCrossForSequentialRecommendation.from_adapters(
        tiny.base_dir, {"toys": tiny.adapter_dirs["toys"], "tools": tiny.adapter_dirs["tools"]}).eval()
    randomize_integrator(model, seed=3)
    return model


def test_xcross_model_loads_a_recommender_checkpoint_and_pools_as_encode(recommender, tmp_path):
    recommender.save_pretrained(tmp_path)
    model = XCrossModel.from_pretrained(tmp_path)
    assert type(model) is XCrossModel and not hasattr(model, "head")
    input_ids, attention_mask = (tensor[0] for tensor in random_inputs(1, 4, 6, pad_from=4))
    with torch.no_grad():
        output = model(input_ids, attention_mask, output_hidden_states=True, output_fusion_weights=True)
        expected = recommender.encode(input_ids, attention_mask)
        pooled = model.pool_streams(output.last_hidden_state, attention_mask)
    layers = recommender.config.num_hidden_layers
    assert output.last_hidden_state.shape == (2, 4, 6, recommender.config.hidden_size)
    assert len(output.hidden_states) == layers + 1 and len(output.fusion_weights) == len(model.fusion_heads) > 0
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model.domain_weights, recommender.domain_weights)


def test_load_options_sort_what_each_argument_reaches():
    kwargs = {"revision": "v1", "token": "t", "cache_dir": "c", "torch_dtype": "bfloat16", "trust_remote_code": True,
              "_from_auto": True, "beta": 0.5}
    options = LoadOptions.take(kwargs, "X-Cross")
    assert options.hub_kwargs == {"revision": "v1", "token": "t", "cache_dir": "c"}
    assert options.download_kwargs == {"token": "t", "cache_dir": "c"} and set(options.download_kwargs) <= set(
        DOWNLOAD_KWARGS), "the checkpoint's revision does not reach the base and adapters"
    assert (options.dtype, options.device, kwargs) == (torch.bfloat16, None, {"beta": 0.5})
    assert LoadOptions.take({}, "X-Cross", dtype="auto", device_map={"": "cpu"}).dtype is torch.float32
    assert LoadOptions.take({}, "X-Cross", device_map={"": "cpu"}).device == torch.device("cpu")


def test_load_options_refuse_with_the_reason():
    with pytest.raises(ValueError, match="Recommender from_pretrained does not support `variant`"):
        LoadOptions.take({"variant": "fp16"}, "Recommender")
    with pytest.raises(ValueError, match="splits the model over"):
        LoadOptions.take({}, "X-Cross", device_map={"a": "cpu", "b": "meta"})
