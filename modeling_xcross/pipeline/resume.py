"""Resuming a run exactly where a kill left it: the last complete checkpoint, the epoch of the training negatives,
and a run whose last checkpoint already ended training.

The Trainer writes a checkpoint's files one after another and `trainer_state.json` last, so a checkpoint whose
trainer state reads back (and names its own step) is complete; one killed while being written is not, and is
removed rather than resumed from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import TrainerState

from ..checkpoint import WEIGHTS_NAME

TRAINER_STATE_NAME = "trainer_state.json"
# The weights file of checkpoints written before the plain Trainer; such a checkpoint is complete but cannot resume
# (`train` says so).
LEGACY_WEIGHTS_NAME = "trainable.safetensors"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _is_complete(checkpoint: Path, step: int) -> bool:
    try:
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == step and any((checkpoint / name).is_file()
                                                     for name in (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME))


def last_complete_checkpoint(output_dir: Path, remove_incomplete: bool = True) -> str | None:
    """The checkpoint with the highest step whose files were all written; newer, incomplete ones are reported and
    (with `remove_incomplete`, on the process that writes) removed, as the resumed run writes them again."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = {int(match.group(1)): path for path in output_dir.iterdir()
             if path.is_dir() and (match := _CHECKPOINT.match(path.name))}
    for step in sorted(steps, reverse=True):
        if _is_complete(steps[step], step):
            return str(steps[step])
        print(f"[train] {steps[step]} is incomplete (the run was stopped while writing it): "
              f"{'removed, ' if remove_incomplete else ''}resuming from the checkpoint before it")
        if remove_incomplete:
            shutil.rmtree(steps[step])
    return None


def training_ended_at(checkpoint: str) -> TrainerState | None:
    """The trainer state of `checkpoint` when training had ended there (early stop or last step), else None: the
    Trainer would run one more step from such a checkpoint, so the run only reloads its best weights."""
    state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    control = state.stateful_callbacks.get("TrainerControl", {}).get("args", {})
    return state if control.get("should_training_stop") else None


def _best_checkpoint_here(state: TrainerState, output_dir: str) -> None:
    """Point the recorded best checkpoint into `output_dir`: the recorded path is the one the run was started with,
    which is gone once the dir is moved, and another path (relative, absolute) for the same dir."""
    if state.best_global_step:
        state.best_model_checkpoint = str(Path(output_dir) / f"checkpoint-{state.best_global_step}")


def finish_from(trainer: Trainer, state: TrainerState) -> None:
    """End a run whose training had ended: the recorded state and the best checkpoint's weights, as `train` would
    have left them."""
    _best_checkpoint_here(state, trainer.args.output_dir)
    trainer.state = state
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        trainer._load_from_checkpoint(state.best_model_checkpoint)


class ExactResume(TrainerCallback):
    """What a resumed run needs besides the Trainer's own state: the best checkpoint found in this output dir, and
    the training samples told which epoch begins, so every epoch draws its own negatives (the Trainer's `set_epoch`
    on the dataloader does not reach the dataset when a resumed epoch skips its first batches, accelerate's
    `skip_first_batches`, nor under a sharded sampler)."""

    def __init__(self, samples):
        self.samples = samples

    def on_train_begin(self, args, state, control, **kwargs):
        _best_checkpoint_here(state, args.output_dir)

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        # One optimizer step per batch (no gradient accumulation), as in `training_arguments`.
        self.samples.set_epoch(state.global_step // max(len(train_dataloader), 1))
