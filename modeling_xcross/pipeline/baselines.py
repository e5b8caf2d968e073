"""The references every recommender must beat, scored on the very candidate lists the trained models are scored on.

- popularity: how often a candidate occurs in the histories of the train users a model of the same run would see
  (`--max-train-users`, after the validation users are held out); ties count against the true item, as everywhere.
- similarity: the untrained backbone's mean-pooled title embeddings; a history is the plain mean of its items'
  embeddings; candidates ranked by cosine similarity.
- similarity-popularity: the untrained dual model with the run's scoring settings (history decay, temperature,
  popularity prior over the train users' title counts): what a dual X-Cross or LoRA recommender computes at
  initialisation (zero LoRA B, zero fusion heads), the point training starts from.
- random: a seeded random order (MRR about 0.133 for 30 candidates).
- best-reference: popularity over all the train users, recency-weighted popularity, similarity, and similarity + a
  popularity prior, with their settings chosen on the latest train users, and the best of them on those validation
  users (references.py); its test metrics are the best one's.

Each can also rank every test user's true item among all items of the domain (full ranking).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..inference.catalogue import similarity_model
from ..inference.encoding import dual_scores
from ..inference.model_inputs import collator_settings
from ..packaged_models import canonical_model_name
from .candidates import eval_lists_for
from .data import DataError, DomainData, load_domain, split_users
from .domain_ranking import fixed_full_ranking, model_full_ranking
from .metrics import load_ranking_metric
from .models import collator_for
from .references import BEST_REFERENCE, evaluate_references, recency_weights, weighted_counts, weighted_item_counts
from .runs import write_metrics
from .samples import EvalSamples, title_counts

BASELINES = ("popularity", "similarity", "similarity-popularity", "random", BEST_REFERENCE)


def popularity(domain: DomainData, train_users: list[str]) -> Counter:
    """Each item's number of occurrences in the train users' histories."""
    return Counter(item for user in train_users for item in domain.train[user])


def popularity_scores(domain: DomainData, train_users: list[str], lists: list[dict]) -> np.ndarray:
    """`(lists, candidates)`: each candidate's popularity."""
    counts = popularity(domain, train_users)
    return np.array([[counts[item] for item in entry["candidates"]] for entry in lists], dtype=np.float32)


def untrained_model(backbone: str, domain: DomainData, max_length: int, **scoring):
    """`(model, collator)`: the untrained backbone in dual scoring (`similarity_model` with `scoring`: history_decay,
    temperature, popularity_weight) and a collator for `domain`'s titles; the similarity baselines score with
    these, and a fresh dual recommender with the same settings scores the same (tests hold it to that)."""
    model = similarity_model(canonical_model_name(backbone), **scoring)
    return model, collator_for(model.backbone_name, max_length, domain.titles.values(), **collator_settings(model))


def random_scores(seed: int, lists: list[dict]) -> np.ndarray:
    return np.random.default_rng(seed).random((len(lists), len(lists[0]["candidates"]))).astype(np.float32)


def evaluate_baseline(method: str, data_dir: str, domain_name: str, output_dir: Path, backbone: str,
                      max_train_users: int | None, max_eval_users: int | None, val_users: int, seed: int,
                      max_length: int, full_ranking: bool = False, history_decay: float = 1.0,
                      temperature: float = 0.05, popularity_weight: float = 1.0) -> dict:
    """Score a baseline on the test lists a trained model with the same data settings and seed is scored on (and
    with `full_ranking` over the whole catalogue); writes `output_dir/metrics.json` (the same keys as a trained
    run's) and returns it. `history_decay`, `temperature` and `popularity_weight` are the dual-scoring settings of
    `similarity-popularity`."""
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
    prior = method == "similarity-popularity"
    scoring = {"history_decay": history_decay, "temperature": temperature}  # the dual references' settings
    prior_settings = ({**scoring, "popularity_weight": popularity_weight} if prior
                      else scoring if method == BEST_REFERENCE else {})
    ranking, choice = None, {}
    if method == BEST_REFERENCE:
        model, collator = untrained_model(backbone, domain, max_length, popularity_weight=None, **prior_settings)
        choice = evaluate_references(domain, lists, val_users, seed, model, collator, output_dir)
        best = choice["best_reference"]
        print(f"best reference on the latest {val_users} train users: {best['description']} "
              f"(validation MRR {best['validation_mrr']:.4f}, test MRR {best['test']['mrr']:.4f})")
        if full_ranking:
            ranking = best_reference_full_ranking(best, domain, users["test"], backbone, max_length,
                                                  **prior_settings)
    elif method == "popularity":
        scores = popularity_scores(domain, users["train"], lists["lists"])
        if full_ranking:
            counts = popularity(domain, users["train"])
            ranking = fixed_full_ranking(domain, "test", users["test"],
                                         torch.tensor([counts[item] for item in domain.titles]))
    elif method in ("similarity", "similarity-popularity"):
        counts = title_counts(domain, users["train"]) if prior else None
        model, collator = untrained_model(backbone, domain, max_length, **prior_settings)
        examples = [EvalSamples(domain, lists, counts)[index] for index in range(len(lists["lists"]))]
        scores = dual_scores(model, collator, examples).numpy()
        if full_ranking:
            ranking = model_full_ranking(model, domain, "test", users["test"], collator=collator, popularity=counts)
    else:
        scores = random_scores(seed, lists["lists"])
        if full_ranking:
            order = np.random.default_rng(seed).random((len(users["test"]), len(domain.titles)))
            ranking = fixed_full_ranking(domain, "test", users["test"], torch.from_numpy(order))
    labels = [entry["label"] for entry in lists["lists"]]
    metrics = (dict(choice["best_reference"]["test"]) if choice
               else load_ranking_metric().compute(predictions=scores, references=labels))
    if ranking is not None:
        metrics["full_ranking"] = ranking
    settings = {"command": "baseline", "method": method, "data_dir": data_dir, "domain": domain_name,
                "output_dir": str(output_dir), "backbone": canonical_model_name(backbone),
                "max_train_users": max_train_users, "max_eval_users": max_eval_users, "val_users": val_users,
                "max_length": max_length, "seed": seed, "full_ranking": full_ranking, **prior_settings}
    metrics.update(split="test", num_users=len(users["test"]),
                   num_train_users=choice.get("test_counted_users", len(users["train"])),
                   trainable_parameters=0, wall_time_s=round(time.time() - started, 1), settings=settings, **choice)
    write_metrics(output_dir, metrics)
    return metrics


def best_reference_full_ranking(best: dict, domain: DomainData, users: list[str], backbone: str, max_length: int,
                                **scoring) -> dict:
    """Full-ranking metrics of the chosen reference `best` (`evaluate_references`' `best_reference`), its counts
    over all the domain's train users."""
    weights = recency_weights(domain, list(domain.train), best["settings"].get("recency_half_life"))
    if best["name"] in ("popularity", "recency popularity"):
        counts = weighted_item_counts(domain, weights)
        return fixed_full_ranking(domain, "test", users, torch.tensor([counts[item] for item in domain.titles]))
    weight = best["settings"].get("prior_weight")
    model, collator = untrained_model(backbone, domain, max_length, popularity_weight=weight, **scoring)
    return model_full_ranking(model, domain, "test", users, collator=collator,
                              popularity=weighted_counts(domain, weights) if weight is not None else None)
