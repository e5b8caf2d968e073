"""The references a user would try first, each with its settings chosen on validation users, and the best of them
("best reference"): what a trained recommender must beat, scored on the very test lists the models are scored on.

- popularity: each candidate's count in the histories of all the domain's train users (every user a run may see;
  a run's validation users are train users too), not only the `--max-train-users` a model trains on.
- recency popularity: the same counts with later users weighing more (`recency_weights`), half-life chosen.
- similarity: the untrained backbone in dual scoring (the `similarity` baseline).
- similarity + prior: similarity + w * log(1 + count of the candidate's title), the dual models' popularity prior
  (`SimilarityHead`), with the weight w and the counts' half-life chosen.

The validation users are the LATEST `val_users` train users, by the time of their last interaction where the domain
has timestamps (timestamps.json, written by `xcross prepare`), else by file order (the Amazon domains list their users
in time order: test users after every train user, item ids growing along the file); their references count the train
users before them. The test lists are then scored with the counts of all train users. Test users never take part in
a choice.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .candidates import eval_lists_for
from .data import DataError, DomainData
from ..inference.encoding import dual_scores
from .metrics import load_ranking_metric
from .runs import METRICS_NAME
from .samples import EvalSamples

BEST_REFERENCE = "best-reference"
REFERENCES = ("popularity", "recency popularity", "similarity", "similarity + prior")
# Half-lives as fractions of the train users' span (of time, else of file order); None: every user counts the same.
RECENCY_HALF_LIVES = (None, 1.0, 0.5, 0.25, 0.1)
PRIOR_WEIGHTS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def recency_weights(domain: DomainData, users: list[str], half_life: float | None) -> dict[str, float]:
    """Each user's weight in the counts, mean 1 over `users`, with `half_life` h: where the domain has timestamps, a
    user whose last interaction is at t weighs 0.5 ** ((T - t) / (h * S)), T the train users' latest last
    interaction and S the span of their last interactions, so the weight halves every h of that span; else a user
    at position p of the file's N train users weighs 0.5 ** ((N - 1 - p) / (h * N)); with None, 1 for everyone."""
    if half_life is None:
        return dict.fromkeys(users, 1.0)
    if not half_life > 0:
        raise ValueError(f"A recency half-life must be a positive fraction of the train users, got {half_life!r}.")
    age, span = _ages(domain)
    weights = {user: 0.5 ** (age[user] / (half_life * span)) for user in users}
    scale = len(users) / sum(weights.values())
    return {user: weight * scale for user, weight in weights.items()}


def _ages(domain: DomainData) -> tuple[dict[str, float], float]:
    """Each train user's age (the latest last interaction's time less its own, or its file positions before the
    last) and the span that ages are fractions of (of time, at least one second; or the number of train users)."""
    if domain.times:
        last = {user: domain.times[user][-1] for user in domain.train}
        latest = max(last.values())
        return {user: latest - time for user, time in last.items()}, max(latest - min(last.values()), 1.0)
    count = len(domain.train)
    return {user: count - 1 - position for position, user in enumerate(domain.train)}, count


def weighted_item_counts(domain: DomainData, weights: dict[str, float]) -> Counter:
    """Each item's occurrences in the users' train histories, each user's at that user's weight (`popularity`
    with weights 1)."""
    counts = Counter()
    for user, weight in weights.items():
        for item in domain.train[user]:
            counts[item] += weight
    return counts


def weighted_counts(domain: DomainData, weights: dict[str, float]) -> Counter:
    """`title_counts` with each user's items counted at that user's weight: what the dual models' prior reads."""
    counts = Counter()
    for item, count in weighted_item_counts(domain, weights).items():
        counts[domain.titles[item]] += count
    return counts


def latest_validation_users(domain: DomainData, num_validation: int) -> dict[str, list[str]]:
    """`validation`: the `num_validation` train users with the latest last interactions (by timestamps where the
    domain has them, else the last in file order); `counted`: the train users before them."""
    ordered = domain.train_users_by_time()
    if not 0 < num_validation < len(ordered):
        raise DataError(f"Domain {domain.name} has {len(ordered)} usable train users; the references need between 1 "
                        f"and {len(ordered) - 1} validation users, got {num_validation}: change --val-users.")
    return {"validation": ordered[-num_validation:], "counted": ordered[:-num_validation]}


def _describe(name: str, settings: dict) -> str:
    parts = [f"w {settings['prior_weight']}" if "prior_weight" in settings else None,
             f"half-life {settings['recency_half_life']}" if settings.get("recency_half_life") is not None else None]
    parts = [part for part in parts if part]
    return f"{name} ({', '.join(parts)})" if parts else name


class ReferenceScorer:
    """The scores of every reference setting on one split's lists: `counted` users' histories give the counts,
    `similarity` the untrained model's scores of the same lists."""

    def __init__(self, domain: DomainData, lists: list[dict], counted: list[str], similarity: torch.Tensor):
        self.domain, self.lists, self.counted, self.similarity = domain, lists, counted, similarity
        self.labels = np.array([entry["label"] for entry in lists])
        self._metric = load_ranking_metric()
        self._counts_by_half_life = {}  # every prior weight reads the same counts

    def _counts(self, half_life: float | None) -> dict[str, Counter]:
        if half_life not in self._counts_by_half_life:
            weights = recency_weights(self.domain, self.counted, half_life)
            self._counts_by_half_life[half_life] = {"items": weighted_item_counts(self.domain, weights),
                                                    "titles": weighted_counts(self.domain, weights)}
        return self._counts_by_half_life[half_life]

    def scores(self, name: str, settings: dict) -> torch.Tensor:
        """`(lists, candidates)` scores of reference `name` with `settings` (prior_weight, recency_half_life)."""
        if name == "similarity":
            return self.similarity
        counts = self._counts(settings.get("recency_half_life"))
        if name in ("popularity", "recency popularity"):
            return torch.tensor([[counts["items"][item] for item in entry["candidates"]] for entry in self.lists],
                                dtype=torch.float64)
        titles = counts["titles"]
        prior = torch.log1p(torch.tensor([[titles[self.domain.titles[item]] for item in entry["candidates"]]
                                          for entry in self.lists], dtype=torch.float32))
        return self.similarity + settings["prior_weight"] * prior

    def metrics(self, name: str, settings: dict) -> dict:
        return self._metric.compute(predictions=self.scores(name, settings).numpy(), references=self.labels)


def reference_grid(half_lives=RECENCY_HALF_LIVES, weights=PRIOR_WEIGHTS) -> dict[str, list[dict]]:
    """The settings each reference chooses among on validation users (one for those with nothing to choose)."""
    recent = [half_life for half_life in half_lives if half_life is not None]
    return {"popularity": [{"recency_half_life": None}],
            "recency popularity": [{"recency_half_life": half_life} for half_life in recent],
            "similarity": [{}],
            "similarity + prior": [{"prior_weight": weight, "recency_half_life": half_life}
                                   for half_life, weight in itertools.product(half_lives, weights)]}


def choose_references(validation: ReferenceScorer, test: ReferenceScorer, grid: dict[str, list[dict]]) -> dict:
    """Each reference's best setting by validation MRR (the first of equals, in grid order) with its test metrics,
    and the best reference: `{"references": {name: {...}}, "best_reference": {...}, "validation_grid": [...]}`."""
    tried, references = [], {}
    for name, settings_list in grid.items():
        if not settings_list:
            continue
        rows = [{"reference": name, **settings, "validation_mrr": validation.metrics(name, settings)["mrr"]}
                for settings in settings_list]
        tried += rows
        best = max(range(len(rows)), key=lambda index: (rows[index]["validation_mrr"], -index))
        settings = settings_list[best]
        references[name] = {"settings": settings, "description": _describe(name, settings),
                            "validation_mrr": rows[best]["validation_mrr"], "test": test.metrics(name, settings)}
    name = max(references, key=lambda key: references[key]["validation_mrr"])
    return {"references": references, "best_reference": {"name": name, **references[name]},
            "validation_grid": tried}


def evaluate_references(domain: DomainData, test_lists: dict, num_validation: int, seed: int, model, collator,
                        output_dir: Path, grid: dict[str, list[dict]] | None = None) -> dict:
    """Choose every reference's settings on the latest `num_validation` train users (their lists stored in
    `output_dir` like the test lists) and score them on `test_lists`; `model` and `collator`: the untrained dual
    model without a prior (`untrained_model`). Returns `choose_references`' record with the validation users'
    numbers."""
    users = latest_validation_users(domain, num_validation)
    path = Path(output_dir) / f"candidates_validation_latest_{num_validation}users_seed{seed}.json"
    validation_lists = eval_lists_for(domain, "validation", users["validation"], seed, path)
    samples = [EvalSamples(domain, lists) for lists in (validation_lists, test_lists)]
    examples = [split[index] for split in samples for index in range(len(split))]
    similarity = dual_scores(model, collator, examples)  # every title encoded once for both splits
    split = len(validation_lists["lists"])
    validation = ReferenceScorer(domain, validation_lists["lists"], users["counted"], similarity[:split])
    test = ReferenceScorer(domain, test_lists["lists"], list(domain.train), similarity[split:])
    record = choose_references(validation, test, grid or reference_grid())
    record.update(validation_users=len(users["validation"]), validation_counted_users=len(users["counted"]),
                  test_counted_users=len(domain.train))
    return record


def best_reference(run_dir: str | Path) -> dict:
    """The best reference of a finished `xcross baseline --method best-reference` run: `{"name", "settings",
    "description", "validation_mrr", "test": metrics}`, for reports that set models beside it."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise DataError(f"{path} is missing; run `xcross baseline --method {BEST_REFERENCE}` into {run_dir} first.")
    metrics = json.loads(path.read_text())
    if "best_reference" not in metrics:
        raise DataError(f"{path} is not a best-reference run (method {metrics.get('settings', {}).get('method')!r});"
                        f" run `xcross baseline --method {BEST_REFERENCE}`.")
    return metrics["best_reference"]
