"""Torch datasets of (history titles, candidate titles, label) examples, leave-last-out.

`TrainSamples` draws fresh negatives every epoch (the Trainer calls `set_epoch`), as a pure function of
(seed, epoch, index) so a resumed run sees exactly the negatives of an uninterrupted one. `EvalSamples` serves
the stored candidate lists.
"""

from __future__ import annotations

import random

from torch.utils.data import Dataset

from .candidates import candidate_list
from .data import DomainData


def _example(domain: DomainData, history: list[int], candidates: list[int], label: int) -> dict:
    return {
        "history": [domain.titles[item] for item in history[:-1]],
        "candidates": [domain.titles[item] for item in candidates],
        "label": label,
    }


class TrainSamples(Dataset):
    def __init__(self, domain: DomainData, users: list[str], num_negatives: int, seed: int):
        self.domain, self.users, self.num_negatives, self.seed = domain, users, num_negatives, seed
        self.items = domain.item_ids
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> dict:
        history = self.domain.train[self.users[index]]
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        candidates, label = candidate_list(rng, self.items, history, self.num_negatives)
        return _example(self.domain, history, candidates, label)


class EvalSamples(Dataset):
    def __init__(self, domain: DomainData, lists: dict):
        self.domain = domain
        self.histories = domain.test if lists["split"] == "test" else domain.train
        self.lists = lists["lists"]

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, index: int) -> dict:
        entry = self.lists[index]
        return _example(self.domain, self.histories[entry["user"]], entry["candidates"], entry["label"])
