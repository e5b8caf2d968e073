"""The top items of a catalogue for a batch of history representations, without a (histories x items) score matrix.

Every search holds the dual score as one inner product (`SimilarityHead.index_items`: centred unit vectors with the
popularity prior over the scale as an extra dimension, so the prior is part of the search, not added after it),
computed once per catalogue. `exact` multiplies them in chunks of items and keeps a running top-k, so a call holds at
most `SCORES_PER_CHUNK` scores whatever the catalogue's size. The FAISS indexes (`pip install faiss-cpu`, optional)
hold them too: `faiss-flat` (IndexFlatIP, exact), `faiss-hnsw` and `faiss-ivf` (approximate); the items an index
retrieves are scored again by the head. Ties keep catalogue order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..errors import XCrossError

logger = logging.get_logger(f"transformers.{__name__}")

INDEXES = ("auto", "exact", "faiss-flat", "faiss-hnsw", "faiss-ivf")
# `auto` searches catalogues of this many items or more with `AUTO_INDEX` when faiss is installed, smaller ones exactly.
AUTO_INDEX_ITEMS = 200_000
AUTO_INDEX = "faiss-ivf"
# The most scores an exact search holds at once (16 MB of float32), whatever the catalogue's size.
SCORES_PER_CHUNK = 2**22
# Items whose index vectors are computed (and added to an index) at once.
ITEMS_PER_CHUNK = 65_536
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 128
# Inverted lists: about 2 * sqrt(items), trained on 40 vectors each (faiss asks for 39 or more); lists probed per
# query (see docs/performance.md for its recall at a million items).
IVF_PROBES = 64
IVF_TRAINING_PER_LIST = 40


def faiss_module(index: str):
    """`faiss`, imported on first use: it is an optional dependency."""
    try:
        import faiss
    except ImportError as error:
        raise XCrossError(f"index={index!r} needs FAISS: pip install faiss-cpu (or xcross-rec[faiss]), or pass "
                          "index='exact'.") from error
    return faiss


def resolved_index(index: str, items: int) -> str:
    """The search `index` names for a catalogue of `items`: `auto` is exact below `AUTO_INDEX_ITEMS`, else
    `AUTO_INDEX` when faiss is installed (exact, with a warning, when it is not)."""
    if index not in INDEXES:
        raise XCrossError(f"index must be one of {', '.join(INDEXES)}; got {index!r}.")
    if index != "auto":
        return index
    if items < AUTO_INDEX_ITEMS:
        return "exact"
    try:
        faiss_module(AUTO_INDEX)
    except XCrossError:
        logger.warning(f"The catalogue has {items:,} items: pip install faiss-cpu for an index that ranks it in "
                       "milliseconds; searching it exactly.")
        return "exact"
    return AUTO_INDEX


def ivf_lists(items: int) -> int:
    return max(1, min(int(2 * math.sqrt(items)), items // IVF_TRAINING_PER_LIST))


class FaissIndex:
    """An inner-product FAISS index over `items` index vectors of `width`; `vectors(selection)` gives those of a
    slice or of positions, so that they are computed and added in chunks."""

    def __init__(self, kind: str, items: int, width: int, vectors: Callable[[slice | torch.Tensor], torch.Tensor],
                 seed: int = 0):
        faiss = faiss_module(kind)
        self.quantizer = None
        if kind == "faiss-flat":
            self.index = faiss.IndexFlatIP(width)
        elif kind == "faiss-hnsw":
            self.index = faiss.IndexHNSWFlat(width, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction, self.index.hnsw.efSearch = HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH
        elif kind == "faiss-ivf":
            lists = ivf_lists(items)
            self.quantizer = faiss.IndexFlatIP(width)
            self.index = faiss.IndexIVFFlat(self.quantizer, width, lists, faiss.METRIC_INNER_PRODUCT)
            generator = torch.Generator().manual_seed(seed)
            sample = torch.randperm(items, generator=generator)[:lists * IVF_TRAINING_PER_LIST].sort().values
            self.index.train(vectors(sample).float().cpu().contiguous().numpy())
            self.index.nprobe = min(IVF_PROBES, lists)
        else:
            raise XCrossError(f"{kind!r} is not a FAISS index; choose faiss-flat, faiss-hnsw or faiss-ivf.")
        for start in tqdm(range(0, items, ITEMS_PER_CHUNK), desc=f"building the {kind} index", unit="chunk",
                          leave=False):
            self.index.add(vectors(slice(start, start + ITEMS_PER_CHUNK)).float().cpu().contiguous().numpy())

    def search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """`(queries, k)` positions of the best items, -1 where the index found fewer."""
        _, positions = self.index.search(queries.float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(positions)


def merge_top(positions: torch.Tensor, scores: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `depth` best of each row, best first; ties keep the order they come in (catalogue order)."""
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :depth]
    return positions.gather(1, order), scores.gather(1, order)


def finite(scores: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(scores).all():
        raise XCrossError("The model gives NaN or infinite scores: it diverged; check its weights.")
    return scores


def excluded_tensors(excluded: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    return [torch.tensor(sorted(set(positions)), dtype=torch.long) for positions in excluded]


class ItemSearch:
    """The top items of `(items, d)` representations (and their counts, for a head with a popularity prior) under a
    dual-scoring head, exactly in chunks or through a FAISS index (`index`: one of `INDEXES`)."""

    def __init__(self, head, items: torch.Tensor, popularity: torch.Tensor | None = None, index: str = "auto"):
        self.head, self.items, self.popularity = head, items, popularity
        self.kind = resolved_index(index, len(items))
        self.index = self.vectors = None
        with torch.no_grad():
            if self.kind == "exact":
                self.vectors = self._all_index_vectors()
            else:
                self.index = FaissIndex(self.kind, len(items), items.shape[1] + 1, self._index_vectors)

    def _index_vectors(self, selection: slice | torch.Tensor) -> torch.Tensor:
        """`SimilarityHead.index_items` of some items."""
        return self.head.index_items(self.items[selection],
                                     None if self.popularity is None else self.popularity[selection])

    def _all_index_vectors(self) -> torch.Tensor:
        vectors = torch.empty(len(self.items), self.items.shape[1] + 1, dtype=torch.float32)
        for start in range(0, len(self.items), ITEMS_PER_CHUNK):
            vectors[start:start + ITEMS_PER_CHUNK] = self._index_vectors(slice(start, start + ITEMS_PER_CHUNK))
        return vectors

    def scores(self, queries: torch.Tensor, items: torch.Tensor,
               popularity: torch.Tensor | None) -> torch.Tensor:
        """The head's scores of `items` `(queries, k, d)`, one list per query."""
        return finite(self.head(queries, items, popularity).float().cpu())

    @torch.no_grad()
    def top(self, queries: torch.Tensor, excluded: Sequence[Sequence[int]],
            depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `min(depth, items)` best items `(queries, depth)` (positions) and their scores, best first; each row's
        `excluded` positions score -inf (they come last, when a row has fewer than `depth` others)."""
        depth = min(depth, len(self.items))
        excluded = excluded_tensors(excluded)
        if self.index is None:
            return self.exact_top(queries, excluded, depth)
        return self.indexed_top(queries, excluded, depth)

    def exact_top(self, queries: torch.Tensor, excluded: list[torch.Tensor],
                  depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item scored, `SCORES_PER_CHUNK // queries` items at a time, with a running top `depth`."""
        rows, vectors = len(queries), self.vectors
        if vectors is None:  # an index whose search came short
            vectors = self._all_index_vectors()
        chunk = max(depth, SCORES_PER_CHUNK // max(rows, 1))
        queries, scale = self.head.index_queries(queries).to(vectors.dtype), self.head.scale()
        best_positions, best_scores = torch.empty(rows, 0, dtype=torch.long), torch.empty(rows, 0)
        for start in range(0, len(self.items), chunk):
            stop = min(start + chunk, len(self.items))
            scores = finite((scale * queries @ vectors[start:stop].T).float().cpu())
            for row, positions in enumerate(excluded):
                scores[row, positions[(positions >= start) & (positions < stop)] - start] = -torch.inf
            positions = torch.arange(start, stop).expand(rows, -1)
            best_positions, best_scores = merge_top(torch.cat([best_positions, positions], dim=1),
                                                    torch.cat([best_scores, scores], dim=1), depth)
        return best_positions, best_scores

    def indexed_top(self, queries: torch.Tensor, excluded: list[torch.Tensor],
                    depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The index's `depth` (plus the excluded) best items, scored again by the head. Rows for which the index
        found too few items left (an approximate index can) are searched exactly."""
        width = min(len(self.items), depth + max(len(positions) for positions in excluded))
        found = self.index.search(self.head.index_queries(queries), width)
        valid = found >= 0
        # Catalogue order first, so that the stable sort by score keeps it among ties; missing slots go last.
        found = found.where(valid, len(self.items)).sort(dim=1).values
        valid = found < len(self.items)
        positions = found.clamp(max=len(self.items) - 1)
        scores = self.scores(queries, self.items[positions],
                             None if self.popularity is None else self.popularity[positions])
        dropped = ~valid | torch.stack([torch.isin(row, row_excluded) for row, row_excluded in zip(positions, excluded)])
        scores = scores.masked_fill(dropped, -torch.inf)
        positions, scores = merge_top(positions, scores, depth)
        wanted = torch.tensor([min(depth, len(self.items) - len(row_excluded)) for row_excluded in excluded])
        short = (torch.isfinite(scores).sum(dim=1) < wanted).nonzero().flatten().tolist()
        if short:
            logger.warning(f"The {self.kind} index found fewer than {depth} items for {len(short)} of {len(queries)} "
                           "histories; searching those exactly.")
            exact_positions, exact_scores = self.exact_top(queries[short], [excluded[row] for row in short], depth)
            positions[short], scores[short] = exact_positions, exact_scores
        return positions, scores
