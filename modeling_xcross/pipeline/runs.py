"""One run of a command: its settings, its output directory (refused when it holds another run, resumed when it
holds this one), training, the final test, and metrics.json."""

from __future__ import annotations

import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..checkpoint import WEIGHTS_NAME, atomic_write, read_json
from ..errors import XCrossError
from ..auto_loading import load_popularity, load_trained_model, save_popularity
from ..inference.catalogue import DEFAULT_RERANK_TOP
from ..inference.encoding import fit_center
from ..inference.model_inputs import model_collator
from ..inference.scoring import candidate_scores
from ..lora_recommender import LoraRecommender
from ..packaged_models import canonical_model_name
from .candidates import eval_lists_for
from .data import DataError, load_domain, split_users
from .domain_ranking import model_full_ranking
from .metrics import METRIC_KEYS, load_ranking_metric
from .models import build_head_recommender, build_xcross, collator_for
from .resume import ExactResume, finish_from, last_complete_checkpoint, training_ended_at
from .run_lock import lock_output_dir
from .samples import EvalSamples, TrainSamples, title_counts
from .head_start import choose_head_start
from .starting_point import keep_better, record_starting_point, starting_weights
from .trainer import check_ranks_agree, leave_process_group, make_trainer, training_arguments, world_rank
from .user_batches import SHARED_NEGATIVE_MODES, UserBatchCollator, UserBatches

SETTINGS_NAME = "run_settings.json"
METRICS_NAME = "metrics.json"
# Settings that may change between an interrupted run and its resumption (the output dir: moved, or named another
# way).
RESUMABLE_SETTINGS = ("max_eval_users", "output_dir", "full_ranking", "rerank_top")


class OutputDirError(XCrossError):
    """An output directory that holds something else than this run."""


@dataclass
class RunSettings:
    command: str
    data_dir: str
    domain: str
    output_dir: str
    backbone: str
    sources: list[str] = field(default_factory=list)
    max_train_users: int | None = None
    max_eval_users: int | None = 200
    val_users: int = 100
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    eval_batch_size: int = 4
    train_negatives: int = 7
    learning_rate: float = 5e-4
    max_length: int = 128
    lora_r: int = 8
    lora_alpha: int = 16
    patience: int = 2
    save_steps: int | None = None
    seed: int = 42
    beta: float = 1.0  # X-Cross refine step (`train` only)
    gamma: float = 1.0
    scoring: str = "cross"  # the value runs recorded before dual scoring existed had
    pooling: str | None = None
    train_positions: str = "last"
    in_batch_negatives: bool = False
    negatives: str = "per-example"  # dual scoring: per-example lists, or user batches sharing negatives (user_batches)
    fusion_learning_rate: float | None = None  # X-Cross fusion heads (`train` only); None: --learning-rate
    normalize_fusion_input: bool = False
    temperature: float = 0.05
    history_encoding: str = "text"
    history_decay: float = 1.0
    popularity_weight: float | None = None  # dual scoring's popularity prior; None: none
    center_representations: bool = False  # dual scoring: subtract the train titles' mean representation
    full_ranking: bool = False  # also rank each test user's true item among every item of the domain
    rerank_top: int = DEFAULT_RERANK_TOP  # cross scoring, full ranking: items the first stage hands on
    # Added with issue 39; the defaults here are what runs recorded before them had.
    lr_scheduler: str = "linear"  # or "constant_with_warmup": hold the rate, early stopping ends the run
    warmup_steps: int = 0
    projection_rank: int | None = None  # dual scoring: the head's residual projection
    scale_fusion_input: bool = False  # X-Cross (`train` only): fusion input / sqrt(n * d)
    fusion_bound: float | None = None  # X-Cross (`train` only): z = c * tanh(. / c)
    stream_dropout: bool = True  # X-Cross (`train` only): the frozen streams with the base's dropout in training
    choose_start: bool = False  # dual scoring: the head's start chosen on the validation users (head_start.py)
    choose_temperature: bool = False  # with choose_start, the temperature too (by validation cross-entropy)


def prepare_output_dir(settings: RunSettings) -> str | None:
    """Record the settings in a new output dir, or check an existing one holds this run; the last complete
    checkpoint to resume from. Called once the inputs are validated, so a mistyped option does not claim the dir."""
    output_dir = Path(settings.output_dir)
    settings_file = output_dir / SETTINGS_NAME
    current = asdict(settings)
    if world_rank() != 0:  # rank 0 checks and records; the others would race with its writes
        return last_complete_checkpoint(output_dir, remove_incomplete=False)
    if settings_file.is_file():
        previous = read_json(settings_file)
        # A setting added after that run was recorded had its default there.
        defaults = {item.name: item.default for item in fields(RunSettings) if item.default is not MISSING}
        differing = sorted(key for key in current if key not in RESUMABLE_SETTINGS
                           and previous.get(key, defaults.get(key)) != current[key])
        if differing:
            raise OutputDirError(f"--output-dir {output_dir} holds another run ({SETTINGS_NAME} differs in "
                                 f"{differing}); choose a new --output-dir, or delete that directory to start over.")
        return last_complete_checkpoint(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()):
        raise OutputDirError(f"--output-dir {output_dir} is not empty and holds no {SETTINGS_NAME}, so it is not an "
                             "xcross run; choose a new or empty --output-dir.")
    atomic_write(settings_file, lambda path: path.write_text(json.dumps(current, indent=2)))
    return None


def score(model, collator, samples, batch_size: int) -> dict[str, float]:
    """Ranking metrics of `model` on fixed candidate lists."""
    examples = [samples[index] for index in range(len(samples))]
    return load_ranking_metric().compute(predictions=candidate_scores(model, collator, examples, batch_size).numpy(),
                                         references=[example["label"] for example in examples])


def write_metrics(output_dir: Path, metrics: dict) -> None:
    atomic_write(output_dir / METRICS_NAME, lambda path: path.write_text(json.dumps(metrics, indent=2)))
    print(f"[metrics] {output_dir / METRICS_NAME}: " + ", ".join(
        f"{key} {metrics[key]:.4f}" for key in ("hit@1", "hit@3", "hit@10", "ndcg@3", "ndcg@10", "mrr")))
    if "full_ranking" in metrics:
        ranking = metrics["full_ranking"]
        print("[metrics] full ranking: " + ", ".join(f"{key} {value:.4f}" for key, value in ranking.items()
                                                     if key != "users") + f" ({ranking['users']} users)")


def _test_samples(domain, settings: RunSettings, users: list[str], output_dir: Path, popularity) -> EvalSamples:
    path = output_dir / f"candidates_test_{len(users)}users_seed{settings.seed}.json"
    return EvalSamples(domain, eval_lists_for(domain, "test", users, settings.seed, path), popularity)


def scoring_settings(settings: RunSettings) -> dict:
    """The model config fields of how a run's model scores and reads its prompts (recorded for `recommend`)."""
    return {"scoring": settings.scoring, "pooling": settings.pooling, "temperature": settings.temperature,
            "history_encoding": settings.history_encoding, "history_decay": settings.history_decay,
            "popularity_weight": settings.popularity_weight, "center_representations": settings.center_representations,
            "projection_rank": settings.projection_rank, "max_length": settings.max_length}


def build_model(settings: RunSettings):
    """The model a command trains: X-Cross (`train`), a head on a frozen encoder (`train-head`), else a LoRA."""
    sources = [Path(source) for source in settings.sources]
    scoring = scoring_settings(settings)
    if settings.command == "train":
        return build_xcross(settings.backbone, sources, beta=settings.beta, gamma=settings.gamma,
                            normalize_fusion_input=settings.normalize_fusion_input,
                            scale_fusion_input=settings.scale_fusion_input, fusion_bound=settings.fusion_bound,
                            stream_dropout=settings.stream_dropout, **scoring)
    if settings.command == "train-head":
        return build_head_recommender(settings.backbone, sources, settings.seed, **scoring)
    return LoraRecommender.create(settings.backbone, r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                  seed=settings.seed, **scoring)


def train(settings: RunSettings, callbacks=()) -> dict:
    """Train a LoRA recommender (`train-adapter`), a head (`train-head`) or X-Cross (`train`), then test it; returns
    metrics.json."""
    started = time.time()
    settings.backbone = canonical_model_name(settings.backbone)
    output_dir = Path(settings.output_dir)
    domain = load_domain(settings.data_dir, settings.domain)
    print(domain.summary())
    users = split_users(domain, settings.val_users, settings.seed, settings.max_train_users, settings.max_eval_users)
    if not users["test"]:
        raise DataError(f"Domain {settings.domain} has no usable test user to evaluate on.")
    print(f"[data] users: {len(users['train'])} train, {len(users['validation'])} validation, "
          f"{len(users['test'])} test")
    collator = collator_for(settings.backbone, settings.max_length, domain.titles.values(), settings.scoring,
                            settings.history_encoding, settings.history_decay)
    model = build_model(settings)
    if settings.center_representations:
        center = fit_center(model, collator, [domain.titles[item] for user in users["train"]
                                              for item in domain.train[user]], settings.seed)
        print(f"[model] representation centre set from the train titles (norm {center.norm():.3g})")
    popularity = title_counts(domain, users["train"]) if settings.popularity_weight is not None else None
    # Only now that the inputs are known to be usable does the output dir record this run.
    _lock = lock_output_dir(output_dir)  # held until train returns: one training per output dir
    resume_from = prepare_output_dir(settings)
    validation_path = output_dir / f"candidates_validation_{len(users['validation'])}users_seed{settings.seed}.json"
    # Only rank 0 writes into the output dir: another rank's file there would make rank 0's check of the dir fail.
    validation = EvalSamples(domain, eval_lists_for(domain, "validation", users["validation"], settings.seed,
                                                    validation_path, store=world_rank() == 0), popularity)
    head_start = (choose_head_start(model, collator, [validation[index] for index in range(len(validation))],
                                    settings.choose_temperature) if settings.choose_start else None)
    user_batches = settings.negatives in SHARED_NEGATIVE_MODES
    args = training_arguments(output_dir, epochs=settings.epochs, batch_size=1 if user_batches else settings.batch_size,
                              eval_batch_size=settings.eval_batch_size, learning_rate=settings.learning_rate,
                              seed=settings.seed, save_steps=settings.save_steps, max_steps=settings.max_steps,
                              lr_scheduler=settings.lr_scheduler, warmup_steps=settings.warmup_steps)
    if user_batches:  # each item is a whole batch of about --batch-size examples
        samples = UserBatches(domain, users["train"], settings.batch_size, settings.negatives,
                              settings.train_negatives, settings.seed, settings.train_positions, popularity)
    else:
        samples = TrainSamples(domain, users["train"], settings.train_negatives, settings.seed,
                               positions=settings.train_positions,
                               in_batch=settings.scoring == "dual" and settings.in_batch_negatives,
                               popularity=popularity)
    trainer = make_trainer(model, args, samples, validation, UserBatchCollator(collator) if user_batches else collator,
                           settings.patience, [ExactResume(samples), *callbacks],
                           fusion_learning_rate=settings.fusion_learning_rate)
    if resume_from and not (Path(resume_from) / WEIGHTS_NAME).is_file():  # trainable.safetensors: before the plain Trainer
        raise OutputDirError(f"{resume_from} is a checkpoint of an earlier xcross version, which cannot resume; "
                             f"delete the checkpoint-* directories in {output_dir} to restart the run.")
    start = record_starting_point(trainer, output_dir, fresh=resume_from is None, write=world_rank() == 0)
    ended = training_ended_at(resume_from) if resume_from else None
    if ended:
        print(f"[train] training had ended at {resume_from}; loading its best checkpoint")
        finish_from(trainer, ended)
    else:
        if resume_from:
            print(f"[train] resuming from {resume_from}")
        trainer.train(resume_from_checkpoint=resume_from)
    best = trainer.state.best_metric
    kept_start = keep_better(model, best, start) if start else False
    digests = check_ranks_agree(model)
    if not trainer.args.should_save:
        leave_process_group()
        return {}
    model.save_pretrained(output_dir)
    if popularity is not None:
        save_popularity(output_dir, popularity)
    test_samples = _test_samples(domain, settings, users["test"], output_dir, popularity)
    metrics = score(model, collator, test_samples, settings.eval_batch_size)
    if start is not None:  # the untrained start on the same test lists, beside what training made of it
        starting = metrics
        if not kept_start:
            with starting_weights(model, start):
                starting = score(model, collator, test_samples, settings.eval_batch_size)
        metrics["starting_test"] = {key: starting[key] for key in METRIC_KEYS}
    if settings.full_ranking:
        metrics["full_ranking"] = model_full_ranking(model, domain, "test", users["test"], collator=collator,
                                                     rerank_top=settings.rerank_top, cache_dir=output_dir,
                                                     popularity=popularity)
    metrics.update(split="test", num_users=len(users["test"]), best_validation_mrr=best,
                   starting_validation_mrr=start.validation_mrr if start else None, kept_starting_point=kept_start,
                   trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                   epochs_run=round(trainer.state.epoch or 0.0, 3),
                   head_start=None if head_start is None else head_start.to_dict(),
                   weights_digest_by_rank=digests, wall_time_s=round(time.time() - started, 1),
                   settings=asdict(settings))
    write_metrics(output_dir, metrics)
    leave_process_group()
    return metrics


def evaluate_model(model_dir: Path, data_dir: str, domain_name: str, split: str, max_eval_users: int | None,
                   val_users: int, seed: int, batch_size: int, max_length: int | None = None,
                   full_ranking: bool = False, rerank_top: int = DEFAULT_RERANK_TOP) -> dict:
    """Score a trained model on a domain's fixed candidate lists (and with `full_ranking` over the whole
    catalogue); metrics.json goes into `model_dir/eval_<domain>_<split>`. The model is read as it was trained: its
    own tokenizer, prompt form and max length (`max_length`, when given, overrides the last, and says so)."""
    started = time.time()
    model, _ = load_trained_model(model_dir)
    domain = load_domain(data_dir, domain_name)
    print(domain.summary())
    if max_length is not None and max_length != model.config.max_length:
        print(f"[evaluate] --max-length {max_length} overrides the model's own {model.config.max_length}")
    collator = model_collator(model, max_length)
    popularity = load_popularity(model_dir) if model.config.popularity_weight is not None else None
    users = split_users(domain, val_users, seed, max_test_users=max_eval_users)
    chosen = users[split][:max_eval_users]
    if not chosen:
        raise DataError(f"Domain {domain_name} has no usable {split} user to evaluate on.")
    output_dir = Path(model_dir) / f"eval_{domain_name}_{split}"
    output_dir.mkdir(exist_ok=True)
    path = output_dir / f"candidates_{split}_{len(chosen)}users_seed{seed}.json"
    samples = EvalSamples(domain, eval_lists_for(domain, split, chosen, seed, path), popularity)
    metrics = score(model, collator, samples, batch_size)
    if full_ranking:
        metrics["full_ranking"] = model_full_ranking(model, domain, split, chosen, collator=collator,
                                                     rerank_top=rerank_top, cache_dir=model_dir, popularity=popularity)
    metrics.update(split=split, domain=domain_name, num_users=len(chosen), model_dir=str(model_dir),
                   wall_time_s=round(time.time() - started, 1), seed=seed)
    write_metrics(output_dir, metrics)
    return metrics
