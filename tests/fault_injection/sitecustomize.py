"""Fault injection for tests/e2e/test_fault_injection.py, kept out of the package.

Python imports `sitecustomize` at start-up from the first `sys.path` entry that has one, so a process started with
this folder on PYTHONPATH and `XCROSS_FAULT` set kills itself (SIGKILL: no handler, no cleanup) at one point of a
training run:

    step:N        at the end of optimizer step N, before that step's evaluation and checkpoint
    checkpoint:N  while `checkpoint-N/trainer_state.json`, the last file of a checkpoint, is half written
    final-save    while PEFT writes adapter_config.json of the final adapter (opened, nothing written yet)
"""

import os
import signal
from pathlib import Path

FAULT = os.environ.get("XCROSS_FAULT", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step(step: int) -> None:
    from transformers.trainer_callback import CallbackHandler

    on_step_end = CallbackHandler.on_step_end

    def on_step_end_then_die(self, args, state, control, **kwargs):
        if state.global_step == step:
            _die()
        return on_step_end(self, args, state, control, **kwargs)

    CallbackHandler.on_step_end = on_step_end_then_die


def _kill_writing_checkpoint(step: int) -> None:
    from transformers.trainer_callback import TrainerState

    save_to_json = TrainerState.save_to_json

    def save_half_then_die(self, json_path):
        if Path(json_path).parent.name != f"checkpoint-{step}":
            return save_to_json(self, json_path)
        save_to_json(self, json_path)
        text = Path(json_path).read_text()
        Path(json_path).write_text(text[:len(text) // 2])
        _die()

    TrainerState.save_to_json = save_half_then_die


def _kill_writing_adapter_config() -> None:
    from peft.config import PeftConfigMixin

    def open_then_die(self, save_directory, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        open(os.path.join(save_directory, "adapter_config.json"), "w").close()
        _die()

    PeftConfigMixin.save_pretrained = open_then_die


if FAULT:
    kind, _, value = FAULT.partition(":")
    if kind == "step":
        _kill_at_step(int(value))
    elif kind == "checkpoint":
        _kill_writing_checkpoint(int(value))
    elif kind == "final-save":
        _kill_writing_adapter_config()
    else:
        raise ValueError(f"XCROSS_FAULT={FAULT!r}: expected step:N, checkpoint:N or final-save.")
