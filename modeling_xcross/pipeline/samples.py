"""Torch datasets of (history titles, candidate titles, label) examples, leave-last-out.

`TrainSamples` draws fresh negatives every epoch (the Trainer calls `set_epoch`), as a pure function of
(seed, epoch, index) so a resumed run sees exactly the negatives of an uninterrupted one. With
`positions="all"` every position t >= 1 of a train history is an example (item t predicted from the items before
it), not only the last. `EvalSamples` serves the stored candidate lists. Given title counts (`title_counts`), both
add each candidate's `candidate_popularity`; a training example's counts leave out its own user's history, since a
test user's counts cannot include the item it is about to buy.
"""

from __future__ import annotations

import random
from collections import Counter

from torch.utils.data import Dataset

from .candidates import candidate_list
from .data import DomainData


TRAIN_POSITIONS = ("last", "all")


def training_positions(history: list[int], positions: str) -> list[int]:
    """The prefix lengths whose last item is a target: every position t >= 1 (`"all"`), or only the last."""
    return list(range(2, len(history) + 1)) if positions == "all" else [len(history)]


def title_counts(domain: DomainData, users: list[str]) -> Counter:
    """How often each title occurs in the train histories of `users`: the popularity a dual model's prior reads."""
    return Counter(domain.titles[item] for user in users for item in domain.train[user])


def _example(domain: DomainData, history: list[int], candidates: list[int], label: int,
             popularity: Counter | None = None, own: Counter | None = None) -> dict:
    example = {
        "history": [domain.titles[item] for item in history[:-1]],
        "candidates": [domain.titles[item] for item in candidates],
        "label": label,
    }
    if popularity is not None:
        own = own or Counter()
        example["candidate_popularity"] = [popularity[title] - own[title] for title in example["candidates"]]
    return example


class TrainSamples(Dataset):
    """`in_batch` marks the examples so the dual-scoring collator pools every example's candidates; `popularity`
    (`title_counts` of the train users) adds the candidates' counts."""

    def __init__(self, domain: DomainData, users: list[str], num_negatives: int, seed: int, positions: str = "last",
                 in_batch: bool = False, popularity: Counter | None = None):
        if positions not in TRAIN_POSITIONS:
            raise ValueError(f"positions must be one of {TRAIN_POSITIONS}, got {positions!r}.")
        self.domain, self.num_negatives, self.seed, self.in_batch = domain, num_negatives, seed, in_batch
        self.popularity = popularity
        self.items = domain.item_ids
        # (user, length of the history prefix whose last item is the target)
        self.examples = [(user, end) for user in users for end in training_positions(domain.train[user], positions)]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        user, end = self.examples[index]
        history = self.domain.train[user]
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        # Negatives avoid the user's whole history, also the items after this position.
        candidates, label = candidate_list(rng, self.items, history, self.num_negatives, target=history[end - 1])
        own = title_counts(self.domain, [user]) if self.popularity is not None else None
        example = _example(self.domain, history[:end], candidates, label, self.popularity, own)
        return {**example, "in_batch": True} if self.in_batch else example


class EvalSamples(Dataset):
    """`popularity`: title counts of the train users (validation users are not among them)."""

    def __init__(self, domain: DomainData, lists: dict, popularity: Counter | None = None):
        self.domain, self.popularity = domain, popularity
        self.histories = domain.test if lists["split"] == "test" else domain.train
        self.lists = lists["lists"]

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, index: int) -> dict:
        entry = self.lists[index]
        return _example(self.domain, self.histories[entry["user"]], entry["candidates"], entry["label"],
                        self.popularity)
