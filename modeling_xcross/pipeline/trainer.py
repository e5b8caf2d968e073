"""The HF Trainer set up for recommenders: early stopping on validation MRR, and a check that every distributed rank
ends with the same weights. The plain Trainer checkpoints, resumes and reloads the best model: each model's
save_pretrained writes only what trains, and its `_keys_to_ignore_on_save` tells the Trainer that a checkpoint
lacking exactly the frozen weights is complete."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import EarlyStoppingCallback, EvalPrediction, Trainer, TrainingArguments

from ..errors import XCrossError
from ..inference.encoding import dual_scores
from .metrics import compute_metrics
from .user_batches import TITLE_CHUNKS, distinct_title_loss


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
    """The plain Trainer, with dual-scoring evaluation that encodes every distinct title once, and an optional own
    learning rate for X-Cross's fusion heads.

    Why the fusion heads may need a smaller rate: z = W [h_1; ...; h_n] sums n * d products, so one Adam step of size
    lr on every entry of W moves z by up to lr * sum |h|, hundreds of times the step of a LoRA weight; the refine step
    then multiplies the streams by 1 + gamma * z in every block, and a large lr sends them (and the loss) off.
    """

    def __init__(self, *args, fusion_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fusion_learning_rate = fusion_learning_rate

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the fusion heads in param groups of their own at `fusion_learning_rate`."""
        optimizer = super().create_optimizer(model)
        if self.fusion_learning_rate is None:
            return optimizer
        model = self.model if model is None else model
        fusion = {id(parameter) for name, parameter in model.named_parameters() if ".fusion_head." in name}
        groups = []
        for group in optimizer.param_groups:
            for in_fusion in (False, True):
                params = [parameter for parameter in group["params"] if (id(parameter) in fusion) == in_fusion]
                if params:
                    groups.append({**group, "params": params,
                                   **({"lr": self.fusion_learning_rate} if in_fusion else {})})
        optimizer.param_groups[:] = groups
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """A distinct-title batch (`user_batches`) is scored by `distinct_title_loss`; any other by the model."""
        if TITLE_CHUNKS not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.args.world_size > 1:
            raise XCrossError("User batches (--negatives other than per-example) train on one process: they call the "
                             "model's encode outside its distributed wrapper. Use --negatives per-example with "
                             "several processes.")
        if return_outputs:
            raise ValueError("A distinct-title batch has no model outputs to return; evaluation scores lists.")
        return distinct_title_loss(self.accelerator.unwrap_model(model), inputs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Dual scoring evaluates with every distinct title encoded once (`dual_scores`); cross scoring as usual."""
        collator = getattr(self.data_collator, "item_collator", self.data_collator)  # user batches: its tokenizer
        if getattr(collator, "scoring", None) != "dual":
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        examples = [dataset[index] for index in range(len(dataset))]
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        scores = dual_scores(model.eval(), collator, examples)
        model.train(was_training)
        labels = torch.tensor([example["label"] for example in examples])
        metrics = {"loss": torch.nn.functional.cross_entropy(scores, labels).item(),
                   **compute_metrics(EvalPrediction(predictions=scores.numpy(), label_ids=labels.numpy()))}
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def training_arguments(output_dir: Path, *, epochs: float, batch_size: int, eval_batch_size: int,
                       learning_rate: float, seed: int, save_steps: int | None = None,
                       max_steps: int = -1, lr_scheduler: str = "linear", warmup_steps: int = 0) -> TrainingArguments:
    """Evaluate and save every epoch (or every `save_steps`), keep the best by validation MRR. `lr_scheduler`
    `"constant_with_warmup"` holds the rate after `warmup_steps` and leaves the stop to early stopping; `"linear"`
    decays it to zero over `epochs` (with 20 epochs as an upper bound, it decays whatever the stop)."""
    strategy = "steps" if save_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler,
        warmup_steps=warmup_steps,
        weight_decay=0.0,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=save_steps,
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience counter resumes with the run
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
                 callbacks=(), fusion_learning_rate: float | None = None) -> RecommenderTrainer:
    return RecommenderTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                              data_collator=collator, compute_metrics=compute_metrics,
                              callbacks=[EarlyStoppingCallback(early_stopping_patience=patience), *callbacks],
                              fusion_learning_rate=fusion_learning_rate)


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


def leave_process_group() -> None:
    """Wait for every rank, then leave the process group: a rank that exits while rank 0 still tests and saves can
    abort in the collective backend's teardown ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world_rank() -> int:
    return int(os.environ.get("RANK", "0"))
