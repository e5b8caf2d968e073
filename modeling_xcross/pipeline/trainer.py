"""The HF Trainer set up for recommenders: checkpoints hold only the trainable weights (safetensors), early
stopping on validation MRR, and a check that every distributed rank ends with the same weights."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from transformers import EarlyStoppingCallback, EvalPrediction, Trainer, TrainingArguments

from ..checkpoint import atomic_write
from .dual_encoding import dual_scores
from .metrics import compute_metrics

TRAINABLE_WEIGHTS_NAME = "trainable.safetensors"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().cpu().contiguous() for name, parameter in model.named_parameters()
            if parameter.requires_grad}


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(trainable_state(model).items()):
        digest.update(name.encode())
        digest.update(tensor.float().numpy().tobytes())
    return digest.hexdigest()


class RecommenderTrainer(Trainer):
    """A Trainer whose checkpoints are the trainable weights only: the frozen base and adapters never change, so
    copying them into every checkpoint would only cost disk."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Dual scoring evaluates with every distinct title encoded once (`dual_scores`); cross scoring as usual."""
        if getattr(self.data_collator, "scoring", None) != "dual":
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        examples = [dataset[index] for index in range(len(dataset))]
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        scores = dual_scores(model.eval(), self.data_collator, examples)
        model.train(was_training)
        labels = torch.tensor([example["label"] for example in examples])
        metrics = {"loss": torch.nn.functional.cross_entropy(scores, labels).item(),
                   **compute_metrics(EvalPrediction(predictions=scores.numpy(), label_ids=labels.numpy()))}
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        output_dir = Path(output_dir or self.args.output_dir)
        state = trainable_state(self.accelerator.unwrap_model(self.model))
        atomic_write(output_dir / TRAINABLE_WEIGHTS_NAME, lambda path: save_file(state, path))

    def _load_trainable(self, checkpoint: str) -> None:
        path = Path(checkpoint) / TRAINABLE_WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {checkpoint} is not a checkpoint of an xcross run. Delete "
                                    "that checkpoint directory (the run then resumes from the one before).")
        model = self.accelerator.unwrap_model(self.model)
        expected = set(trainable_state(model))
        weights = load_file(path)
        if set(weights) != expected:
            raise ValueError(f"{path} holds other weights than this model trains ({sorted(set(weights) ^ expected)[:4]}"
                             "...): the output directory belongs to another model; use a new --output-dir.")
        model.load_state_dict(weights, strict=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_trainable(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_trainable(self.state.best_model_checkpoint)


def training_arguments(output_dir: Path, *, epochs: float, batch_size: int, eval_batch_size: int,
                       learning_rate: float, seed: int, save_steps: int | None = None,
                       max_steps: int = -1) -> TrainingArguments:
    """Evaluate and save every epoch (or every `save_steps`), keep the best by validation MRR."""
    strategy = "steps" if save_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size,
        learning_rate=learning_rate,
        warmup_steps=0,
        weight_decay=0.0,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=save_steps,
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="mrr",
        greater_is_better=True,
        logging_steps=max(1, save_steps or 10),
        seed=seed,
        data_seed=seed,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )


def make_trainer(model, args: TrainingArguments, train_dataset, eval_dataset, collator, patience: int,
                 callbacks=()) -> RecommenderTrainer:
    return RecommenderTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                              data_collator=collator, compute_metrics=compute_metrics,
                              callbacks=[EarlyStoppingCallback(early_stopping_patience=patience), *callbacks])


def check_ranks_agree(model: torch.nn.Module) -> list[str]:
    """The weights digest of every rank (one entry when not distributed); raises if ranks diverged."""
    digest = weights_digest(model)
    if not (dist.is_available() and dist.is_initialized()):
        return [digest]
    digests: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"Distributed ranks ended with different weights ({digests}); the run is not usable.")
    return digests


def world_rank() -> int:
    return int(os.environ.get("RANK", "0"))
