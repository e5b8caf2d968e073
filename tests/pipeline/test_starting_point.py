"""The untrained model is the checkpoint a run has to beat: validated before the first step, kept in the output dir,
and returned when no trained checkpoint reached its validation MRR."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.starting_point import STARTING_POINT_DIR, StartingPoint, keep_better
from modeling_xcross.pipeline.runs import train
from run_helpers import small_run_settings


def test_the_start_comes_back_only_when_no_checkpoint_reached_it():
    model = torch.nn.Linear(2, 1)
    start = StartingPoint(0.30, {name: torch.zeros_like(p) for name, p in model.named_parameters()})
    trained = {name: p.detach().clone() for name, p in model.named_parameters()}
    for best in (0.30, 0.31):  # a tie goes to the trained model
        assert not keep_better(model, best, start)
        assert all(torch.equal(p, trained[name]) for name, p in model.named_parameters())
    for best in (0.29, None):  # None: no checkpoint was validated
        assert keep_better(model, best, start)
        assert all(torch.count_nonzero(p) == 0 for p in model.parameters())


def test_a_run_records_its_start_and_returns_the_better_model(data_dir, tiny_backbone, tmp_path):
    metrics = train(small_run_settings(data_dir, tiny_backbone, tmp_path))
    recorded = json.loads((tmp_path / STARTING_POINT_DIR / "validation.json").read_text())
    assert metrics["starting_validation_mrr"] == recorded["validation_mrr"]
    start = load_file(tmp_path / STARTING_POINT_DIR / "model.safetensors")
    saved = {name: p for name, p in LoraRecommender.from_pretrained(tmp_path).named_parameters() if name in start}
    assert saved.keys() == start.keys()
    returned_start = all(torch.equal(saved[name], start[name]) for name in start)
    assert returned_start == metrics["kept_starting_point"]
    if metrics["kept_starting_point"]:
        assert metrics["best_validation_mrr"] < recorded["validation_mrr"]
    else:
        assert metrics["best_validation_mrr"] >= recorded["validation_mrr"]
