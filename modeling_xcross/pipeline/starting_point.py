"""The model a run starts from, as the checkpoint to beat.

A dual-scoring recommender starts from something that already ranks well (the backbone's similarity plus the
popularity prior), and a short training on few users can end below it. So a run validates its model before the
first step, keeps that model's trainable weights in the output dir (`starting_point/`), and returns them at the end
when no trained checkpoint beat them on validation MRR. The weights are written before the first checkpoint, so a
resumed run finds them; only the process that writes the run's files writes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..checkpoint import WEIGHTS_NAME, atomic_write, read_json, read_safetensors
from .trainer import trainable_state

STARTING_POINT_DIR = "starting_point"
METRICS_FILE = "validation.json"


@dataclass
class StartingPoint:
    validation_mrr: float
    weights: dict[str, torch.Tensor]


def record_starting_point(trainer, output_dir: Path, fresh: bool, write: bool) -> StartingPoint | None:
    """The untrained model's validation MRR and trainable weights: measured on a `fresh` run (no checkpoint yet; every
    process measures, so none waits on another's file) and, with `write`, stored atomically (weights first, metrics
    last); read back by a resumed run; None for a resumed run of a version that did not record them."""
    directory = Path(output_dir) / STARTING_POINT_DIR
    if not fresh:
        if not (directory / METRICS_FILE).is_file():
            return None
        return StartingPoint(read_json(directory / METRICS_FILE)["validation_mrr"],
                             read_safetensors(directory / WEIGHTS_NAME))
    print("[train] validating the untrained model: the checkpoint training has to beat")
    validation_mrr = trainer.evaluate()["eval_mrr"]
    weights = {name: tensor.clone() for name, tensor in trainable_state(trainer.model).items()}  # not views
    if write:
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(weights, str(path)))
        atomic_write(directory / METRICS_FILE,
                     lambda path: path.write_text(json.dumps({"validation_mrr": validation_mrr}, indent=2)))
    return StartingPoint(validation_mrr, weights)


def keep_better(model: torch.nn.Module, best_trained_mrr: float | None, start: StartingPoint) -> bool:
    """Put the starting weights back into `model` when no trained checkpoint reached their validation MRR (ties go
    to the trained model); True when it did."""
    if best_trained_mrr is not None and best_trained_mrr >= start.validation_mrr:
        return False
    print(f"[train] no trained checkpoint beat the untrained model on validation (MRR {best_trained_mrr} < "
          f"{start.validation_mrr:.4f}): keeping the untrained weights")
    _load(model, start.weights)
    return True


@contextmanager
def starting_weights(model: torch.nn.Module, start: StartingPoint) -> Iterator[None]:
    """The untrained weights in `model` for the block, the model's own weights back after it: so a run can score its
    start on the test lists beside what it trained."""
    own = {name: parameter.detach().clone() for name, parameter in model.named_parameters() if name in start.weights}
    _load(model, start.weights)
    try:
        yield
    finally:
        _load(model, own)


def _load(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    missing = set(weights) - set(parameters)
    if missing:
        raise RuntimeError(f"{STARTING_POINT_DIR}/{WEIGHTS_NAME} names weights this model lacks ({sorted(missing)[:3]}"
                           "...): the output dir holds another run's files; delete it and start over.")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor.to(parameters[name].device, parameters[name].dtype))
