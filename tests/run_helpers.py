"""Helpers of the training-run tests that more than one test file uses: a small train-adapter run, a callback that
kills it at a step, and the weights of its last checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from modeling_xcross.pipeline.runs import RunSettings


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
