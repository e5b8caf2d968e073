"""The references every recommender must beat, scored on the very candidate lists the trained models are scored on.

- popularity: how often a candidate occurs in the histories of the train users a model of the same run would see
  (`--max-train-users`, after the validation users are held out); ties count against the true item, as everywhere.
- similarity: the untrained backbone in dual scoring: the history prompt and each candidate title encoded
  separately, mean-pooled, ranked by cosine similarity. A dual X-Cross or LoRA recommender computes exactly this at
  initialisation (zero LoRA B, zero fusion heads), so it is the point training starts from.
- random: a seeded random order (MRR about 0.133 for 30 candidates).

Each can also rank every test user's true item among all items of the domain (full ranking).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..packaged_models import canonical_model_name
from .candidates import eval_lists_for
from .data import DataError, DomainData, load_domain, split_users
from .dual_encoding import dual_scores
from .catalogue import fixed_full_ranking, model_full_ranking, similarity_model
from .metrics import load_ranking_metric
from .models import collator_for
from .runs import write_metrics
from .samples import EvalSamples

BASELINES = ("popularity", "similarity", "random")


def popularity(domain: DomainData, train_users: list[str]) -> Counter:
    """Each item's number of occurrences in the train users' histories."""
    return Counter(item for user in train_users for item in domain.train[user])


def popularity_scores(domain: DomainData, train_users: list[str], lists: list[dict]) -> np.ndarray:
    """`(lists, candidates)`: each candidate's popularity."""
    counts = popularity(domain, train_users)
    return np.array([[counts[item] for item in entry["candidates"]] for entry in lists], dtype=np.float32)


def similarity_scores(backbone: str, samples: EvalSamples, max_length: int) -> np.ndarray:
    """`(lists, candidates)`: cosine similarity of the untrained backbone's history and title representations."""
    examples = [samples[index] for index in range(len(samples))]
    return dual_scores(similarity_model(backbone), similarity_collator(backbone, samples.domain, max_length),
                       examples).numpy()


def similarity_collator(backbone: str, domain: DomainData, max_length: int):
    return collator_for(backbone, max_length, domain.titles.values(), "dual")


def random_scores(seed: int, lists: list[dict]) -> np.ndarray:
    return np.random.default_rng(seed).random((len(lists), len(lists[0]["candidates"]))).astype(np.float32)


def evaluate_baseline(method: str, data_dir: str, domain_name: str, output_dir: Path, backbone: str,
                      max_train_users: int | None, max_eval_users: int | None, val_users: int, seed: int,
                      max_length: int, full_ranking: bool = False) -> dict:
    """Score a baseline on the test lists a trained model with the same data settings and seed is scored on (and
    with `full_ranking` over the whole catalogue); writes `output_dir/metrics.json`
    (the same keys as a trained run's) and returns it."""
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
    ranking = None
    if method == "popularity":
        scores = popularity_scores(domain, users["train"], lists["lists"])
        if full_ranking:
            counts = popularity(domain, users["train"])
            ranking = fixed_full_ranking(domain, "test", users["test"],
                                         torch.tensor([counts[item] for item in domain.titles]))
    elif method == "similarity":
        backbone = canonical_model_name(backbone)
        scores = similarity_scores(backbone, EvalSamples(domain, lists), max_length)
        if full_ranking:
            ranking = model_full_ranking(similarity_model(backbone), domain, "test", users["test"],
                                         collator=similarity_collator(backbone, domain, max_length))
    else:
        scores = random_scores(seed, lists["lists"])
        if full_ranking:
            order = np.random.default_rng(seed).random((len(users["test"]), len(domain.titles)))
            ranking = fixed_full_ranking(domain, "test", users["test"], torch.from_numpy(order))
    metrics = load_ranking_metric().compute(predictions=scores,
                                            references=[entry["label"] for entry in lists["lists"]])
    if ranking is not None:
        metrics["full_ranking"] = ranking
    settings = {"command": "baseline", "method": method, "data_dir": data_dir, "domain": domain_name,
                "output_dir": str(output_dir), "backbone": canonical_model_name(backbone),
                "max_train_users": max_train_users, "max_eval_users": max_eval_users, "val_users": val_users,
                "max_length": max_length, "seed": seed, "full_ranking": full_ranking}
    metrics.update(split="test", num_users=len(users["test"]), num_train_users=len(users["train"]),
                   trainable_parameters=0, wall_time_s=round(time.time() - started, 1), settings=settings)
    write_metrics(output_dir, metrics)
    return metrics
