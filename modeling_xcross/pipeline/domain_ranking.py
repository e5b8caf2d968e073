"""Ranking a domain's whole catalogue: `xcross recommend` for a history or a user of the domain, and the full-ranking
evaluation (each user's true next item among every item of the domain outside its history).

A recommendation names items by the domain's own ids (smap.json's keys: a shop's SKUs, the Amazon asins), and takes
them in a history, so that the ids a shop writes are the ids it reads back."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..auto_loading import load_trained_model
from ..inference.catalogue import (DEFAULT_RERANK_TOP, HISTORIES_PER_CHUNK, Catalogue, CatalogueRanker, RecommendedItem,
                                   excluding, ranks_of)
from .data import DataError, DomainData, load_domain
from .ranking_metrics.ranking_metrics import metrics_of_ranks

FULL_RANKING_AT = 10


def user_history(domain: DomainData, user: str) -> tuple[list[int], int | None]:
    """A user's history and its held-out item: a test user's test.json history without its last item, which is
    held out; a train user's whole train.json history, with none held out."""
    if user in domain.test:
        *history, held_out = domain.test[user]
        return history, held_out
    if user in domain.train:
        return domain.train[user], None
    examples = ", ".join([*list(domain.train)[:2], *list(domain.test)[:2]])
    raise DataError(f"User {user!r} is not a user of {domain.name} (train.json and test.json, {len(domain.train)} + "
                    f"{len(domain.test)} usable users, e.g. {examples}); pass one of them, or the history itself with "
                    "--history.")


def shop_history(domain: DomainData, history: Sequence) -> list:
    """A history with each of the domain's own ids (a string that is a key of smap.json) read as its item; integer
    item ids and other strings (titles) as they are."""
    return [domain.item_of(item) if isinstance(item, str) and domain.item_of(item) is not None else item
            for item in history]


def history_of_ids(domain: DomainData, ids: Sequence[str]) -> list[int]:
    """`--history-ids`: the domain's own item ids (an Amazon asin, a shop's SKU), or its integer item ids as text
    where no own id reads the same."""
    items = []
    for given in ids:
        item = domain.item_of(given)
        if item is None and given.strip().isdigit() and int(given) in domain.titles:
            item = int(given)
        if item is None or item not in domain.titles:
            examples = ", ".join(repr(domain.shop_id(item)) for item in list(domain.titles)[:3])
            raise DataError(f"--history-ids: {given!r} is not the id of a titled item of {domain.name} (smap.json, "
                            f"e.g. {examples}); pass the item ids as the domain's data writes them, or titles with "
                            "--history.")
        items.append(item)
    return items


class SemicolonHistory(list):
    """`--history`'s titles: its text split at ';', which splits a title that holds one (see `refuse_split_title`)."""

    def __init__(self, text: str):
        super().__init__(title.strip() for title in text.split(";") if title.strip())


def refuse_split_title(history: Sequence, catalogue: Catalogue) -> None:
    """Refuse a `SemicolonHistory` in which ';' split a catalogue title: its pieces would be read as other texts and
    the item itself recommended back."""
    title = catalogue.split_title(history) if isinstance(history, SemicolonHistory) else None
    if title is not None:
        raise DataError(f"--history splits at ';' the catalogue title {title!r}, which holds one; pass the history "
                        "with --history-json, e.g. --history-json " + repr(json.dumps([title], ensure_ascii=False))
                        + ".")


def recommend_from_dir(model_dir: str | os.PathLike, data_dir: str | os.PathLike, domain_name: str, *,
                       history: Sequence | None = None, item_ids: Sequence[str] | None = None,
                       user: str | None = None, top_k: int = 10, exclude_history: bool = True,
                       rerank_top: int = DEFAULT_RERANK_TOP) -> tuple[list[RecommendedItem], str | int | None]:
    """`xcross recommend`: a trained model's top items of a domain for `history` (titles, the domain's own item ids
    or its integer ids), `item_ids` (the domain's own ids, `history_of_ids`) or a `user`'s history (`user_history`),
    item vectors cached in `model_dir`; and the user's held-out next item (None for a history). Items are named by
    the domain's own ids. The domain's `[data]` line goes to stderr, so that stdout holds only the recommendations
    (`--json`)."""
    domain = load_domain(data_dir, domain_name)
    print(domain.summary(), file=sys.stderr)
    held_out = None
    if user is not None:
        history, held_out = user_history(domain, user)
    elif item_ids is not None:
        history = history_of_ids(domain, item_ids)
    elif isinstance(history, list) and not isinstance(history, SemicolonHistory):
        history = shop_history(domain, history)
    model, _ = load_trained_model(Path(model_dir))
    ranker = CatalogueRanker(model, domain, rerank_top=rerank_top, cache_dir=model_dir)
    refuse_split_title(history, ranker.catalogue)
    items = ranker.recommend([history], top_k, exclude_history)[0]
    return ([replace(item, item_id=domain.shop_id(item.item_id)) for item in items],
            None if held_out is None else domain.shop_id(held_out))


@dataclass
class FullRankingCases:
    """Leave-last-out over a whole domain: each user's history (titles), true next item and excluded items (the
    history's other items), as catalogue positions."""

    histories: list[list[str]]
    targets: torch.Tensor
    excluded: list[list[int]]

    @classmethod
    def of(cls, domain: DomainData, catalogue: Catalogue, split: str, users: list[str]) -> "FullRankingCases":
        sequences = domain.test if split == "test" else domain.train
        if not users:
            raise DataError(f"Domain {domain.name} has no {split} user to rank for.")
        histories, targets, excluded = [], [], []
        for user in users:
            *history, target = sequences[user]
            histories.append([domain.titles[item] for item in history])
            targets.append(catalogue.position(target))
            excluded.append(sorted({catalogue.position(item) for item in history if item != target}))
        return cls(histories, torch.tensor(targets), excluded)

    def chunks(self) -> list[slice]:
        return [slice(start, start + HISTORIES_PER_CHUNK) for start in range(0, len(self.histories),
                                                                               HISTORIES_PER_CHUNK)]


def full_ranking_metrics(ranks: torch.Tensor) -> dict:
    """Recall@10 (= hit@10: one true item), NDCG@10 and MRR of the true items' full-ranking ranks."""
    metrics = metrics_of_ranks(ranks.numpy())
    return {f"recall@{FULL_RANKING_AT}": metrics[f"hit@{FULL_RANKING_AT}"],
            f"ndcg@{FULL_RANKING_AT}": metrics[f"ndcg@{FULL_RANKING_AT}"], "mrr": metrics["mrr"], "users": len(ranks)}


def model_full_ranking(model, domain: DomainData, split: str, users: list[str], *, collator=None,
                       rerank_top: int = DEFAULT_RERANK_TOP, cache_dir: str | os.PathLike | None = None,
                       popularity: Mapping[str, float] | None = None) -> dict:
    """Full-ranking metrics of a model: each user's true next item ranked among every item of the domain outside
    its history (`collator`, `rerank_top`, `cache_dir` as for `CatalogueRanker`)."""
    ranker = CatalogueRanker(model, domain, collator=collator, rerank_top=rerank_top, cache_dir=cache_dir,
                             popularity=popularity)
    cases = FullRankingCases.of(domain, ranker.catalogue, split, users)
    ranks = [ranker.true_item_ranks(cases.histories[chunk], cases.targets[chunk], cases.excluded[chunk])
             for chunk in tqdm(cases.chunks(), desc="full ranking", unit="chunk")]
    return full_ranking_metrics(torch.cat(ranks))


def fixed_full_ranking(domain: DomainData, split: str, users: list[str], scores: torch.Tensor) -> dict:
    """Full-ranking metrics of fixed item scores (popularity, a random order): `(items,)` shared by every user or
    `(users, items)`, items in the order of `Catalogue.of(domain)`."""
    catalogue = Catalogue.of(domain)
    cases = FullRankingCases.of(domain, catalogue, split, users)
    scores = excluding(scores.float().expand(len(users), len(catalogue)), cases.excluded)
    return full_ranking_metrics(ranks_of(scores, cases.targets))
