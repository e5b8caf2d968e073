"""Helpers of the training-run tests that more than one test file uses: a small train-adapter run, a callback that
kills it at a step, the weights of its last checkpoint, and the check that a killed run resumes to the same run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from modeling_xcross.pipeline.runs import METRICS_NAME, RunSettings, train


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def small_run_settings(data_dir, backbone, out) -> RunSettings:
    """Two epochs of train-adapter on Toys with a checkpoint every 3 steps."""
    return RunSettings(command="train-adapter", data_dir=str(data_dir), domain="Toys", output_dir=str(out),
                       backbone=str(backbone), max_train_users=16, max_eval_users=4, val_users=4, epochs=2,
                       batch_size=4, eval_batch_size=2, train_negatives=3, max_length=32, save_steps=3, seed=5,
                       patience=100)


def last_checkpoint_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return load_file(last / "model.safetensors")


def assert_killed_run_resumes_to_the_same_run(settings: Callable[[Path], RunSettings], kill_step: int,
                                              resumes_from: str, tmp_path: Path) -> None:
    """A run killed at `kill_step`, leaving the checkpoint `resumes_from`, and started again ends with the
    uninterrupted run's weights and metrics."""
    uninterrupted = train(settings(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train(settings(tmp_path / "b"), callbacks=[KillAt(kill_step)])
    assert (tmp_path / "b" / resumes_from).is_dir() and not (tmp_path / "b" / METRICS_NAME).exists()
    resumed = train(settings(tmp_path / "b"))
    assert resumed["weights_digest_by_rank"] == uninterrupted["weights_digest_by_rank"]
    assert resumed["mrr"] == uninterrupted["mrr"]
    # The model a run returns can be its untrained start (when no checkpoint beat it), so compare the trained
    # weights too: the last checkpoint of each run.
    trained = [last_checkpoint_weights(tmp_path / run) for run in ("a", "b")]
    assert trained[0].keys() == trained[1].keys() and trained[0]
    for name in trained[0]:
        torch.testing.assert_close(trained[1][name], trained[0][name], rtol=0, atol=0)
