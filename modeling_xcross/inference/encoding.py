"""Dual scoring over many examples: every distinct text is encoded once, then scores are similarities.

Candidate lists share items (1,000 test users x 30 candidates name a few thousand distinct titles), so encoding each
title once and indexing into the result is several times cheaper than encoding every candidate of every list.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from ..errors import XCrossError
from ..head import history_query

ENCODE_BATCH_SIZE = 64
# Titles the representation centre is the mean of: a sample bounds the cost on large domains.
CENTER_TITLES = 2048


@torch.no_grad()
def encode_texts(model, tokenize: Callable[[list], dict[str, torch.Tensor]], texts: list, desc: str,
                 batch_size: int = ENCODE_BATCH_SIZE) -> torch.Tensor:
    """`(len(texts), d)` representations: `tokenize` (a collator's `encode_items` / `encode_histories`) batches of
    texts, `model.encode` pools them. Texts are sorted by length first so each batch pads little."""
    order = sorted(range(len(texts)), key=lambda index: len(str(texts[index])))
    parts, device = [], model_device(model)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        batch = tokenize([texts[index] for index in order[start:start + batch_size]])
        parts.append(model.encode(**{key: value.to(device) for key, value in batch.items()}).float())
    encoded = torch.cat(parts) if parts else torch.empty(0)
    return encoded[torch.argsort(torch.tensor(order))] if parts else encoded


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def encode_items(model, collator, titles: list[str], batch_size: int = ENCODE_BATCH_SIZE) -> torch.Tensor:
    """`(len(titles), d)` item representations of a dual-scoring model."""
    return encode_texts(model, collator.encode_items, titles, "encoding items", batch_size)


def encode_histories(model, collator, histories: list[list[str]],
                     batch_size: int = ENCODE_BATCH_SIZE) -> torch.Tensor:
    """`(len(histories), d)` history representations of a dual-scoring model (each history: titles, oldest first):
    one prompt per history, or with `history_encoding="items"` the weighted mean of its titles' representations."""
    if collator.history_encoding != "items":
        return encode_texts(model, collator.encode_histories, histories, "encoding histories", batch_size)
    titles = list(dict.fromkeys(title for history in histories for title in history))
    return item_mean_histories(collator, histories, titles, encode_items(model, collator, titles, batch_size))


def fit_center(model, collator, titles: list[str], seed: int = 0) -> torch.Tensor:
    """Set a centred dual model's `head.center` to the mean representation of `titles` (a seeded sample of
    `CENTER_TITLES` of them at most) under the model as it is, before any training; returns the centre."""
    if not titles:
        raise XCrossError("The representation centre is the mean of the training titles, and there are none.")
    titles = sorted(set(titles))
    if len(titles) > CENTER_TITLES:
        titles = random.Random(seed).sample(titles, CENTER_TITLES)
    with evaluation_mode(model):  # without dropout, as the model scores
        center = encode_items(model, collator, titles).mean(dim=0)
    model.head.set_center(center)
    return center


@contextmanager
def evaluation_mode(model) -> Iterator[None]:
    """The model in eval mode for the block, and every module's own mode back after it: a built model mixes train
    and eval modules (X-Cross's frozen streams stay in eval mode while it trains)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def item_mean_histories(collator, histories: list[list[str]], titles: list[str], items: torch.Tensor) -> torch.Tensor:
    """`(len(histories), d)`: each history as the collator's recency-weighted mean of its titles' representations,
    `items` holding those of `titles` (which cover every history title)."""
    return history_query(items, collator.history_weights(histories, titles))


def representation_scores(model, histories: torch.Tensor, items: torch.Tensor,
                          popularity: torch.Tensor | None = None) -> torch.Tensor:
    """Dual scores from representations: `histories` `(batch, d)` against `items` `(items, d)` (one pool, e.g. a whole
    catalogue) or `(batch, num_candidates, d)` (a list per history), with the items' counts `popularity` (shaped
    like `items` without `d`) for a model with a popularity prior. Every dual score of an evaluation or a
    recommendation (candidate lists, catalogues, full ranking) goes through here."""
    return model.head(histories, items, popularity)


@torch.no_grad()
def dual_scores(model, collator, examples: list[dict], batch_size: int = ENCODE_BATCH_SIZE) -> torch.Tensor:
    """`(examples, candidates)` scores of a dual-scoring model on candidate lists, each distinct title encoded once
    (history titles too, when histories are the mean of their items); examples carry `candidate_popularity` when the
    model has a popularity prior. On the CPU, where the metrics are computed, whatever device the model is on."""
    histories = [example["history"] for example in examples]
    by_items = collator.history_encoding == "items"
    titles = list(dict.fromkeys([title for example in examples for title in example["candidates"]]
                                + ([title for history in histories for title in history] if by_items else [])))
    position = {title: index for index, title in enumerate(titles)}
    items = encode_items(model, collator, titles, batch_size)
    queries = (item_mean_histories(collator, histories, titles, items) if by_items
               else encode_histories(model, collator, histories, batch_size))
    lists = torch.tensor([[position[title] for title in example["candidates"]] for example in examples],
                         device=items.device)
    popularity = (torch.tensor([example["candidate_popularity"] for example in examples], dtype=torch.float32)
                  if "candidate_popularity" in examples[0] else None)
    return representation_scores(model, queries, items[lists], popularity).cpu()
