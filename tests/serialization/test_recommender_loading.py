"""The LoRA and head recommenders as first-class models: registered with the Auto classes, loaded with the standard
`from_pretrained` arguments from a directory or a Hub repo, and one loader for any saved kind."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoConfig, AutoModel

from configuration_xcross import PAPER_SCORING
from conftest import random_inputs
from modeling_xcross import HeadRecommender, LoraRecommender, RecommenderConfig, XCrossForSequentialRecommendation
from modeling_xcross.auto_loading import load_trained_model
from modeling_xcross.errors import CheckpointError

INPUTS = random_inputs(2, 3, 6, seed=4)


def logits_of(model) -> torch.Tensor:
    with torch.no_grad():
        return model(INPUTS[0], attention_mask=INPUTS[1]).logits.float()


@pytest.fixture(scope="module")
def saved(tiny_backbone, tmp_path_factory):
    """A LoRA and a head recommender saved, the LoRA one also inside a subfolder; with their logits."""
    root = tmp_path_factory.mktemp("recommenders")
    lora = LoraRecommender.create(str(tiny_backbone), seed=1, **PAPER_SCORING).eval()
    torch.nn.init.normal_(lora.head.score.weight, std=0.5)  # the LoRA B starts at zero; a head that scores
    head = HeadRecommender.create(str(tiny_backbone), seed=2, **PAPER_SCORING).eval()
    lora.save_pretrained(root / "lora")
    lora.save_pretrained(root / "repo" / "lora")
    head.save_pretrained(root / "head")
    return {"root": root, "lora": logits_of(lora), "head": logits_of(head)}


def test_auto_classes_load_each_kind_as_its_class(saved):
    root = saved["root"]
    assert isinstance(AutoConfig.from_pretrained(root / "head"), RecommenderConfig)
    for kind, model_class in (("lora", LoraRecommender), ("head", HeadRecommender)):
        for loader in (AutoModel, LoraRecommender):
            model = loader.from_pretrained(root / kind)
            assert type(model) is model_class and not model.training
            torch.testing.assert_close(logits_of(model), saved[kind])
        model, backbone = load_trained_model(root / kind)
        assert type(model) is model_class and backbone == model.backbone_name


def test_a_class_refuses_a_kind_it_does_not_load(saved):
    with pytest.raises(CheckpointError, match="kind 'lora-recommender'"):
        HeadRecommender.from_pretrained(saved["root"] / "lora")


def test_standard_arguments(saved):
    model = AutoModel.from_pretrained(saved["root"] / "repo", subfolder="lora", dtype=torch.float64,
                                      device_map="cpu", local_files_only=True, low_cpu_mem_usage=True)
    assert type(model) is LoraRecommender and {parameter.dtype for parameter in model.parameters()} == {torch.float64}
    assert model.device == torch.device("cpu") and model.name_or_path == str(saved["root"] / "repo" / "lora")
    torch.testing.assert_close(logits_of(model), saved["lora"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="does not support `quantization_config`"):
        LoraRecommender.from_pretrained(saved["root"] / "lora", quantization_config={})
    with pytest.raises(TypeError, match="colour"):
        LoraRecommender.from_pretrained(saved["root"] / "lora", colour="red")


def test_loads_from_a_hub_repo_at_a_revision(hub, saved):
    api = HfApi()
    api.create_repo("org/head-recommender")
    first = api.upload_folder(repo_id="org/head-recommender", folder_path=saved["root"] / "head").oid
    api.upload_folder(repo_id="org/head-recommender", folder_path=saved["root"] / "repo", path_in_repo="later")
    model = AutoModel.from_pretrained("org/head-recommender", revision=first, token="hf_test")
    assert type(model) is HeadRecommender and model.name_or_path == "org/head-recommender"
    torch.testing.assert_close(logits_of(model), saved["head"])
    lora = LoraRecommender.from_pretrained("org/head-recommender", subfolder="later/lora")
    torch.testing.assert_close(logits_of(lora), saved["lora"])


def test_xcross_is_still_its_own_auto_model():
    assert AutoModel._model_mapping[RecommenderConfig] is LoraRecommender
    assert XCrossForSequentialRecommendation.config_class.model_type != RecommenderConfig.model_type
