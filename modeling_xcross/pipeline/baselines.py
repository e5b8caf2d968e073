"""The references every recommender must beat, scored on the very candidate lists the trained models are scored on.

- popularity: how often a candidate occurs in the histories of the train users a model of the same run would see
  (`--max-train-users`, after the validation users are held out); ties count against the true item, as everywhere.
- similarity: the untrained backbone's mean-pooled title embeddings; a history is the plain mean of its items'
  embeddings; candidates ranked by cosine similarity.
- similarity-popularity: the untrained dual model with the run's scoring settings (history decay, temperature,
  popularity prior over the train users' title counts): what a dual X-Cross or LoRA recommender computes at
  initialisation (zero LoRA B, zero fusion heads), the point training starts from.
- random: a seeded random order (MRR about 0.133 for 30 candidates).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..packaged_models import canonical_model_name
from .candidates import eval_lists_for
from .data import DataError, DomainData, load_domain, split_users
from .dual_encoding import dual_scores
from .head_recommender import HeadRecommender
from .metrics import load_ranking_metric
from .models import collator_for
from .runs import write_metrics
from .samples import EvalSamples, title_counts

BASELINES = ("popularity", "similarity", "similarity-popularity", "random")


def popularity_scores(domain: DomainData, train_users: list[str], lists: list[dict]) -> np.ndarray:
    """`(lists, candidates)`: each candidate's number of occurrences in the train users' histories."""
    counts = Counter(item for user in train_users for item in domain.train[user])
    return np.array([[counts[item] for item in entry["candidates"]] for entry in lists], dtype=np.float32)


def untrained_scores(backbone: str, samples: EvalSamples, max_length: int, **scoring) -> np.ndarray:
    """`(lists, candidates)`: the scores of the untrained backbone in dual scoring with `scoring` (the
    `RecommenderConfig` fields history_encoding, history_decay, temperature, popularity_weight); samples carry
    candidate counts when popularity_weight is set."""
    model = HeadRecommender.create(backbone, scoring="dual", **scoring).eval()
    examples = [samples[index] for index in range(len(samples))]
    collator = collator_for(backbone, max_length, samples.domain.titles.values(), "dual",
                            model.config.history_encoding, model.config.history_decay)
    return dual_scores(model, collator, examples).numpy()


def random_scores(seed: int, lists: list[dict]) -> np.ndarray:
    return np.random.default_rng(seed).random((len(lists), len(lists[0]["candidates"]))).astype(np.float32)


def evaluate_baseline(method: str, data_dir: str, domain_name: str, output_dir: Path, backbone: str,
                      max_train_users: int | None, max_eval_users: int | None, val_users: int, seed: int,
                      max_length: int, history_decay: float = 1.0, temperature: float = 0.05,
                      popularity_weight: float = 1.0) -> dict:
    """Score a baseline on the test lists a trained model with the same data settings and seed is scored on;
    writes `output_dir/metrics.json` (the same keys as a trained run's) and returns it. `history_decay`,
    `temperature` and `popularity_weight` are the dual-scoring settings of `similarity-popularity`."""
    if method not in BASELINES:
        raise ValueError(f"Unknown baseline {method!r}; choose one of {BASELINES}.")
    started = time.time()
    domain = load_domain(data_dir, domain_name)
    print(domain.summary())
    users = split_users(domain, val_users, seed, max_train_users, max_eval_users)
    if not users["test"]:
        raise DataError(f"Domain {domain_name} has no usable test user to evaluate on.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"candidates_test_{len(users['test'])}users_seed{seed}.json"
    lists = eval_lists_for(domain, "test", users["test"], seed, path)
    if method == "popularity":
        scores = popularity_scores(domain, users["train"], lists["lists"])
    elif method == "similarity":
        scores = untrained_scores(canonical_model_name(backbone), EvalSamples(domain, lists), max_length,
                                  history_encoding="items", history_decay=1.0)
    elif method == "similarity-popularity":
        samples = EvalSamples(domain, lists, title_counts(domain, users["train"]))
        scores = untrained_scores(canonical_model_name(backbone), samples, max_length, history_encoding="items",
                                  history_decay=history_decay, temperature=temperature,
                                  popularity_weight=popularity_weight)
    else:
        scores = random_scores(seed, lists["lists"])
    metrics = load_ranking_metric().compute(predictions=scores,
                                            references=[entry["label"] for entry in lists["lists"]])
    settings = {"command": "baseline", "method": method, "data_dir": data_dir, "domain": domain_name,
                "output_dir": str(output_dir), "backbone": canonical_model_name(backbone),
                "max_train_users": max_train_users, "max_eval_users": max_eval_users, "val_users": val_users,
                "max_length": max_length, "seed": seed,
                **({"history_decay": history_decay, "temperature": temperature, "popularity_weight": popularity_weight}
                   if method == "similarity-popularity" else {})}
    metrics.update(split="test", num_users=len(users["test"]), num_train_users=len(users["train"]),
                   trainable_parameters=0, wall_time_s=round(time.time() - started, 1), settings=settings)
    write_metrics(output_dir, metrics)
    return metrics
