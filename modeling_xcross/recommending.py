"""`model.recommend(...)`: the top items of a whole catalogue for each history, on X-Cross and the single-domain
recommenders alike. The inference layer does the work (`modeling_xcross.inference.catalogue`: the model's own
tokenizer and prompt, item representations cached next to the model, two-stage ranking for cross scoring) and
registers it here when imported, so that the model layer never imports upward; this mixin gives it a method. The
inference layer is imported wherever the model class is: by the package's `__init__`, and at the end of the flat
remote-code file (see `remote_code`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

# The ranking function `recommend` calls: set by `register_ranker` when `modeling_xcross.inference` is imported.
_ranker: Callable


def register_ranker(ranker: Callable) -> None:
    """Make `ranker(model, histories, catalogue, top_k, exclude_history, **options)` the work of `model.recommend`."""
    global _ranker
    _ranker = ranker


class CatalogueRecommendationMixin:
    """Adds `recommend` to a recommender with `encode`, `head` and a `scoring` form."""

    def recommend(self, histories: Sequence[Sequence], catalogue: Mapping | Sequence[str], top_k: int = 10,
                  exclude_history: bool = True, *, rerank_top: int = 100, first_stage=None,
                  cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                  popularity: Mapping[str, float] | None = None, index: str = "auto") -> list[list]:
        """The `top_k` items of `catalogue` for each history, best first.

        Args:
            histories: One list per user of item titles or item ids of `catalogue`, oldest first. Titles not in the
                catalogue are read as text (a warning counts them); a string that is both an id and another item's
                title is read as the id (with a warning); a history empty after cleaning, or an item that is
                neither text nor an id (a list, a boolean), is refused.
            catalogue: The items to rank: `{item_id: title}`, a list of titles (ids are their positions), a
                `modeling_xcross.inference.catalogue.Catalogue` or a `DomainData`.
            top_k: Items returned per history (at most the catalogue's items outside the history).
            exclude_history: Leave out the items of the history, and every item whose title is in it (a catalogue
                may give one title to several items).
            rerank_top: Cross scoring: how many items the first stage retrieves for the model to re-rank (at least
                `top_k`); the catalogue's size re-ranks everything.
            first_stage: Cross scoring: the dual-scoring recommender that retrieves them; by default the untrained
                backbone's similarity (mean-pooled cosine).
            cache_dir: Where the item representations are cached (`item_cache/` under it); by default the directory
                the model was loaded from, none when it was not loaded from a directory.
            batch_size: Texts per encoding batch.
            popularity: A dual model with a popularity prior (`config.popularity_weight`): each title's count in the
                train histories (finite, non-negative integers); by default the `item_popularity.json` its run
                saved beside it.
            index: How the catalogue is searched: `"exact"` (every item scored, in chunks), `"faiss-flat"` (a FAISS
                inner-product index, exact), `"faiss-hnsw"` or `"faiss-ivf"` (approximate, for catalogues of
                millions), or `"auto"`: exact below 200,000 items, else `"faiss-ivf"` when faiss-cpu is installed.
                Cross scoring: the first stage's search.

        Returns:
            Per history, a list of `RecommendedItem(item_id, title, score, rank)`.
        """
        return _ranker(self, histories, catalogue, top_k, exclude_history, rerank_top=rerank_top,
                       first_stage=first_stage, cache_dir=cache_dir, batch_size=batch_size, popularity=popularity,
                       index=index)
