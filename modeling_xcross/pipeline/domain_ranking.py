"""Ranking a domain's whole catalogue: `xcross recommend` for a history or a test user, and the full-ranking
evaluation (each user's true next item among every item of the domain outside its history)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..auto_loading import load_trained_model
from ..inference.catalogue import (DEFAULT_RERANK_TOP, HISTORIES_PER_CHUNK, Catalogue, CatalogueRanker, RecommendedItem,
                                   excluding, ranks_of)
from .data import DataError, DomainData, load_domain
from .ranking_metrics.ranking_metrics import metrics_of_ranks

FULL_RANKING_AT = 10


def user_history(domain: DomainData, user: str) -> tuple[list[int], int]:
    """A test user's history (test.json without its last item) and that held-out last item."""
    if user not in domain.test:
        examples = ", ".join(sorted(domain.test)[:3])
        raise DataError(f"User {user!r} is not a test user of {domain.name} (test.json, {len(domain.test)} usable "
                        f"users, e.g. {examples}); pass one of them, or the history itself with --history.")
    *history, held_out = domain.test[user]
    return history, held_out


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
                       history: Sequence | None = None, user: str | None = None, top_k: int = 10,
                       exclude_history: bool = True,
                       rerank_top: int = DEFAULT_RERANK_TOP) -> tuple[list[RecommendedItem], int | None]:
    """`xcross recommend`: a trained model's top items of a domain for `history` (titles or item ids) or a test
    `user`'s history, item vectors cached in `model_dir`; and the user's held-out next item (None for a history).
    The domain's `[data]` line goes to stderr, so that stdout holds only the recommendations (`--json`)."""
    domain = load_domain(data_dir, domain_name)
    print(domain.summary(), file=sys.stderr)
    held_out = None
    if user is not None:
        history, held_out = user_history(domain, user)
    model, _ = load_trained_model(Path(model_dir))
    ranker = CatalogueRanker(model, domain, rerank_top=rerank_top, cache_dir=model_dir)
    refuse_split_title(history, ranker.catalogue)
    return ranker.recommend([history], top_k, exclude_history)[0], held_out


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
