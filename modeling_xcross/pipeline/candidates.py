"""Candidate lists: the true next item among sampled negatives (items of the domain not in the user's history).

Evaluation lists are sampled once with a fixed seed and stored as JSON next to the results, so every model is
scored on the same candidates; training negatives are drawn afresh each epoch from (seed, epoch, example).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..checkpoint import atomic_write
from .data import DataError, DomainData

EVAL_NEGATIVES = 29


def sample_negatives(rng: random.Random, items: list[int], history: list[int], count: int) -> list[int]:
    """`count` distinct items of `items` that are not in `history`."""
    excluded = set(history)
    if len(items) - len(excluded) < count:
        raise DataError(f"Only {len(items) - len(excluded)} items lie outside a history; cannot sample {count} "
                        "negatives. Lower the number of negatives or use a larger domain.")
    negatives: list[int] = []
    chosen = set()
    while len(negatives) < count:
        item = items[rng.randrange(len(items))]
        if item not in excluded and item not in chosen:
            chosen.add(item)
            negatives.append(item)
    return negatives


def candidate_list(rng: random.Random, items: list[int], history: list[int], count: int,
                   target: int | None = None) -> tuple[list[int], int]:
    """The target (by default the last item of `history`) placed at a random position among `count` negatives that
    avoid the whole history: (items, label)."""
    candidates = sample_negatives(rng, items, history, count)
    label = rng.randrange(count + 1)
    candidates.insert(label, history[-1] if target is None else target)
    return candidates, label


def build_eval_lists(domain: DomainData, split: str, users: list[str], seed: int,
                     num_negatives: int = EVAL_NEGATIVES) -> dict:
    """Fixed candidate lists for `users` of `split` ("validation" users come from train.json)."""
    histories = domain.test if split == "test" else domain.train
    rng = random.Random(f"{seed}-{domain.name}-{split}")
    items = domain.item_ids
    lists = []
    for user in users:
        candidates, label = candidate_list(rng, items, histories[user], num_negatives)
        lists.append({"user": user, "candidates": candidates, "label": label})
    return {"domain": domain.name, "split": split, "seed": seed, "num_negatives": num_negatives, "lists": lists}


def save_eval_lists(lists: dict, path: Path) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(lists)))


def load_eval_lists(path: Path, domain: DomainData) -> dict:
    """Stored lists, checked against the domain they are used on."""
    try:
        lists = json.loads(Path(path).read_text())
        entries = lists["lists"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a candidate-list file written by xcross ({error}); delete it to resample "
                        "or pass the right --candidates file.") from error
    if lists.get("domain") != domain.name:
        raise DataError(f"{path} holds candidates of domain {lists.get('domain')!r}, not {domain.name!r}.")
    for entry in entries:
        histories = domain.test if lists["split"] == "test" else domain.train
        if entry["user"] not in histories or any(item not in domain.titles for item in entry["candidates"]):
            raise DataError(f"{path} names user {entry['user']!r} or items this {domain.name} data does not have; "
                            "it was made from other data: delete it to resample.")
    return lists


def eval_lists_for(domain: DomainData, split: str, users: list[str], seed: int, path: Path,
                   store: bool = True) -> dict:
    """The stored lists at `path` when they exist (same domain, split and users), else newly sampled and, with
    `store`, stored (sampling is seeded, so a process that does not store gets the same lists)."""
    if path.is_file():
        lists = load_eval_lists(path, domain)
        if lists["split"] == split and [entry["user"] for entry in lists["lists"]] == users:
            return lists
        raise DataError(f"{path} holds candidate lists for other {split} users or split; delete it, or keep the "
                        "user counts and --seed of the run that wrote it.")
    lists = build_eval_lists(domain, split, users, seed)
    if store:
        save_eval_lists(lists, path)
    return lists
