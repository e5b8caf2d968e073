"""Dual-scoring training whose step costs its distinct titles (`history_encoding="items"`).

Today's path (`TrainSamples` + `RecommendationCollator`) encodes, per example, its own 7 sampled negatives, and the
titles of histories once per batch; most of a step is negatives. Here a batch is a group of users with every
training position of each, so a history's titles serve all its positions (a position differs only in its row of
`history_weights`), and the batch shares one pool of candidates:

- `uniform`: the batch's positives and `num_negatives` items drawn uniformly per batch; each example scores its own
  positive against the uniform items only (the evaluation's lists are uniform too);
- `in-batch-logq`: the same pool, the other examples' positives being negatives too, with the logits corrected by
  log q (the chance an item is in the pool: E * p_i + U / N for E examples, U uniform items of N, p_i the item's
  share of the training targets), so popular items are not pushed down for being sampled more often;
- `full`: every item of the domain (opt-in: each step encodes the whole catalogue).

An example never scores its own user's other history items (masked, as `TrainSamples` avoids them). Every distinct
title, of a history or a candidate, is encoded once per step, titles of similar length together (`title_chunks`).
Batches are fixed by the seed and their negatives by (seed, epoch, batch index), so a resumed run draws exactly
the negatives of an uninterrupted one. `distinct_title_logits` computes, from such a batch, the logits the model's
forward gives the same examples and candidates (tests/pipeline/test_user_batches.py checks it on per-example lists).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..head import history_query
from .candidates import sample_negatives
from .data import DataError, DomainData
from .samples import TRAIN_POSITIONS, title_counts, training_positions

# `per-example`: today's path, 7 negatives of each example's own (`TrainSamples`); the others train on user batches.
NEGATIVE_MODES = ("per-example", "uniform", "in-batch-logq", "full")
SHARED_NEGATIVE_MODES = NEGATIVE_MODES[1:]
# Titles encoded in one pass: sorted by length first, so a long title pads only its own chunk.
TITLES_PER_CHUNK = 32
# The key of a distinct-title batch (`RecommenderTrainer.compute_loss` tells the two kinds of batch apart by it).
TITLE_CHUNKS = "title_chunks"


def group_users(domain: DomainData, users: list[str], batch_size: int, positions: str, seed: int) -> list[list[str]]:
    """Users in batches of about `batch_size` examples: a batch ends where its size is closest to `batch_size` (a
    user is never split), so batches average `batch_size`; users of similar history length together, the order
    within a length a seeded shuffle."""
    shuffled = list(users)
    random.Random(f"{seed}-user-batches").shuffle(shuffled)
    batches, current, size = [], [], 0
    for user in sorted(shuffled, key=lambda name: len(domain.train[name])):
        count = len(training_positions(domain.train[user], positions))
        if current and size + count - batch_size > batch_size - size:  # adding the user would overshoot more
            batches.append(current)
            current, size = [], 0
        current.append(user)
        size += count
    return batches + ([current] if current else [])


class UserBatches(Dataset):
    """One item per training batch: its examples (every position of its users), the shared candidate pool, what each
    example may not score, and with `popularity` (`title_counts` of the train users) each candidate's count without
    the example's own user. Serve it one item per step (the Trainer's batch size 1) to `UserBatchCollator`."""

    def __init__(self, domain: DomainData, users: list[str], batch_size: int, negatives: str, num_negatives: int,
                 seed: int, positions: str = "all", popularity: Counter | None = None):
        if negatives not in SHARED_NEGATIVE_MODES:
            raise ValueError(f"negatives must be one of {SHARED_NEGATIVE_MODES} for user batches, got {negatives!r}.")
        if positions not in TRAIN_POSITIONS:
            raise ValueError(f"positions must be one of {TRAIN_POSITIONS}, got {positions!r}.")
        if negatives != "full" and num_negatives > len(domain.item_ids):
            raise DataError(f"{num_negatives} uniform negatives per batch, but the domain has only "
                            f"{len(domain.item_ids)} items; lower --train-negatives.")
        self.domain, self.negatives, self.num_negatives, self.seed = domain, negatives, num_negatives, seed
        self.positions, self.popularity = positions, popularity
        self.items = domain.item_ids
        self.batches = group_users(domain, users, batch_size, positions, seed)
        targets = Counter(domain.train[user][end - 1] for user in users
                          for end in training_positions(domain.train[user], positions))
        self.target_share = {item: count / sum(targets.values()) for item, count in targets.items()}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        examples = [(user, end) for user in self.batches[index]
                    for end in training_positions(self.domain.train[user], self.positions)]
        targets = [self.domain.train[user][end - 1] for user, end in examples]
        uniform = self._uniform_items(index)
        pool = list(self.items) if self.negatives == "full" else list(dict.fromkeys(targets + uniform))
        column = {item: position for position, item in enumerate(pool)}
        allowed_others = set(uniform) if self.negatives == "uniform" else None
        batch = {
            "histories": [[self.domain.titles[item] for item in self.domain.train[user][:end - 1]]
                          for user, end in examples],
            "candidates": [self.domain.titles[item] for item in pool],
            "labels": [column[target] for target in targets],
            "masked": [self._masked(set(self.domain.train[user]), target, pool, allowed_others)
                       for (user, _), target in zip(examples, targets)],
        }
        if self.negatives == "in-batch-logq":
            batch["candidate_logq"] = [math.log(len(examples) * self.target_share.get(item, 0.0)
                                                + len(uniform) / len(self.items)) for item in pool]
        if self.popularity is not None:
            own = {user: title_counts(self.domain, [user]) for user in self.batches[index]}
            batch["candidate_popularity"] = [[self.popularity[title] - own[user][title]
                                              for title in batch["candidates"]] for user, _ in examples]
        return batch

    def _uniform_items(self, index: int) -> list[int]:
        if self.negatives == "full":
            return []
        rng = random.Random(f"{self.seed}-{self.epoch}-batch{index}")
        return sample_negatives(rng, self.items, [], self.num_negatives)

    @staticmethod
    def _masked(history: set[int], target: int, pool: list[int], allowed_others: set[int] | None) -> list[int]:
        """Pool columns an example may not score: its user's other history items, and under `uniform` every item
        that is neither its target nor a uniform draw."""
        return [position for position, item in enumerate(pool) if item != target
                and (item in history or (allowed_others is not None and item not in allowed_others))]


def distinct_title_batch(collator, histories: list[list[str]], candidates: list[str] | list[list[str]],
                         labels: list[int], masked: list[list[int]] | None = None,
                         candidate_popularity: list[list[float]] | None = None,
                         candidate_logq: list[float] | None = None) -> dict:
    """Tensors of a distinct-title batch: every distinct title of `histories` and `candidates` once, sorted by length
    into `title_chunks` (tokenized by `collator.encode_items`), `history_weights` over those titles, and
    `candidate_index` into them: `(pool,)` for one shared pool (`candidates` a list of titles) or `(examples,
    candidates)` for a list per example. `masked` (shared pool only): columns each example may not score."""
    shared = bool(candidates) and isinstance(candidates[0], str)
    candidate_titles = candidates if shared else [title for row in candidates for title in row]
    titles = sorted(dict.fromkeys([title for history in histories for title in history] + candidate_titles),
                    key=len)
    position = {title: index for index, title in enumerate(titles)}
    index = torch.tensor([position[title] for title in candidates] if shared
                         else [[position[title] for title in row] for row in candidates], dtype=torch.long)
    batch = {
        TITLE_CHUNKS: [collator.encode_items(titles[start:start + TITLES_PER_CHUNK])
                       for start in range(0, len(titles), TITLES_PER_CHUNK)],
        "history_weights": collator.history_weights(histories, titles),
        "candidate_index": index,
        "labels": torch.tensor(labels, dtype=torch.long),
    }
    if masked is not None:
        mask = torch.zeros(len(histories), len(candidates), dtype=torch.bool)
        for row, columns in enumerate(masked):
            mask[row, columns] = True
        batch["candidate_mask"] = mask
    if candidate_popularity is not None:
        batch["candidate_popularity"] = torch.tensor(candidate_popularity, dtype=torch.float32)
    if candidate_logq is not None:
        batch["candidate_logq"] = torch.tensor(candidate_logq, dtype=torch.float32)
    return batch


class UserBatchCollator:
    """Collates the single `UserBatches` item of a step into a distinct-title batch; `item_collator` (a dual-scoring
    `RecommendationCollator` with `history_encoding="items"`) tokenizes, and serves evaluation unchanged."""

    def __init__(self, item_collator):
        if item_collator.scoring != "dual" or item_collator.history_encoding != "items":
            raise ValueError("User batches share each history's item titles across its positions: they need dual "
                             "scoring with history_encoding='items' (--scoring dual --history-encoding items); use "
                             "--negatives per-example otherwise.")
        self.item_collator = item_collator
        self.scoring = item_collator.scoring

    def __call__(self, items: list[dict]) -> dict:
        if len(items) != 1:
            raise ValueError(f"Each UserBatches item is a whole batch; serve them one per step (batch size 1), got "
                             f"{len(items)}.")
        item = items[0]
        return distinct_title_batch(self.item_collator, item["histories"], item["candidates"], item["labels"],
                                    item["masked"], item.get("candidate_popularity"), item.get("candidate_logq"))


def distinct_title_logits(model, batch: dict) -> torch.Tensor:
    """`(examples, candidates)` logits of a distinct-title batch: each title encoded once (`model.encode`), histories
    the weighted mean of their items, candidates indexed out of the same representations; the logQ correction
    subtracted and masked candidates at -inf."""
    encoded = torch.cat([model.encode(**chunk) for chunk in batch[TITLE_CHUNKS]])
    queries = history_query(encoded, batch["history_weights"])
    logits = model.head(queries, encoded[batch["candidate_index"]], batch.get("candidate_popularity"))
    if "candidate_logq" in batch:
        logits = logits - batch["candidate_logq"].to(logits.dtype)
    if "candidate_mask" in batch:
        logits = logits.masked_fill(batch["candidate_mask"], float("-inf"))
    return logits


def distinct_title_loss(model, batch: dict) -> torch.Tensor:
    """The softmax cross-entropy of a distinct-title batch, as the model's forward computes it from its logits."""
    return F.cross_entropy(distinct_title_logits(model, batch).float(), batch["labels"])
