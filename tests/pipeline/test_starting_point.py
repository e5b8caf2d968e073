"""The untrained model is the checkpoint a run has to beat: validated before the first step, kept in the output dir,
and returned when no trained checkpoint reached its validation MRR."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.starting_point import STARTING_POINT_DIR, StartingPoint, keep_better
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline import runs
from modeling_xcross.pipeline.runs import evaluate_model, train
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


@pytest.mark.parametrize("trained_won", [False, True])
def test_a_run_scores_its_start_on_the_test_lists(data_dir, tiny_backbone, tmp_path, monkeypatch, trained_won):
    if trained_won:  # this tiny run keeps its start; say the trained model won, so the start is swapped in to score
        monkeypatch.setattr(runs, "keep_better", lambda model, best, start: False)
    # Full ranking runs after the start is scored: it sees the weights the run saved only if they went back.
    settings = replace(small_run_settings(data_dir, tiny_backbone, tmp_path / "run"), full_ranking=True)
    metrics = train(settings)
    assert metrics["kept_starting_point"] is not trained_won
    assert set(metrics["starting_test"]) == set(METRIC_KEYS)
    # The start scored by hand: its weights in a copy of the saved model, evaluated on the same test lists.
    copy = tmp_path / "start"
    shutil.copytree(tmp_path / "run", copy, ignore=shutil.ignore_patterns("checkpoint-*", "eval_*"))
    model = LoraRecommender.from_pretrained(copy)
    model.load_state_dict(load_file(copy / STARTING_POINT_DIR / "model.safetensors"), strict=False)
    model.save_pretrained(copy)
    test = ("test", settings.max_eval_users, settings.val_users, settings.seed, settings.eval_batch_size,
            settings.max_length)
    by_hand = evaluate_model(copy, settings.data_dir, settings.domain, *test)
    assert metrics["starting_test"] == {key: by_hand[key] for key in METRIC_KEYS}
    # The run's own metrics are those of the model it saved: its weights went back after the start was scored.
    saved = evaluate_model(tmp_path / "run", settings.data_dir, settings.domain, *test, full_ranking=True)
    assert {key: saved[key] for key in METRIC_KEYS} == {key: metrics[key] for key in METRIC_KEYS}
    assert saved["full_ranking"] == pytest.approx(metrics["full_ranking"])
    if trained_won:
        assert metrics["starting_test"] != {key: metrics[key] for key in METRIC_KEYS}, "two models, two scores"
