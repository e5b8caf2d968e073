"""Catalogues of millions: the chunked exact search, the FAISS indexes (skipped without faiss-cpu) and resumable item
encoding, on tiny vectors and the tiny random BERT."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import count_item_encodings, dual_lora_recommender
from modeling_xcross.errors import XCrossError
from modeling_xcross.head import SimilarityHead
from modeling_xcross.inference import catalogue as catalogue_module
from modeling_xcross.inference import item_search
from modeling_xcross.inference.catalogue import Catalogue, item_cache_path, item_representations
from modeling_xcross.inference.item_search import ItemSearch, resolved_index
from modeling_xcross.inference.model_inputs import model_collator

try:
    import faiss
except ImportError:
    faiss = None
needs_faiss = pytest.mark.skipif(faiss is None, reason="faiss-cpu is not installed (pip install faiss-cpu)")

TITLES = ["red ball", "drill 7", "saw blade", "tent", "bike lamp", "rope kit", "hammer", "toy car", "puzzle 12",
          "kite"]


def prior_head(width: int) -> SimilarityHead:
    """A dual head with every part of the score: a centre, a temperature and a popularity prior."""
    head = SimilarityHead(temperature=0.05, popularity_weight=0.3, hidden_size=width)
    head.set_center(torch.randn(width, generator=torch.Generator().manual_seed(3)) * 0.1)
    return head


def vectors(items: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Item vectors with exact duplicates (ties), their counts, and 6 queries."""
    generator = torch.Generator().manual_seed(seed)
    representations = torch.randn(items, width, generator=generator)
    representations[items // 2:items // 2 + 5] = representations[:5]
    counts = torch.randint(0, 50, (items,), generator=generator).float()
    counts[items // 2:items // 2 + 5] = counts[:5]
    return representations, counts, torch.randn(6, width, generator=generator)


def full_product_top(head, queries, items, counts, excluded, depth):
    with torch.no_grad():
        scores = head(queries, items, counts)
    for row, positions in enumerate(excluded):
        scores[row, positions] = -torch.inf
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :depth]
    return order, scores.gather(1, order)


EXCLUDED = [[0, 5], [], [3, 250, 251], [499], [], list(range(0, 500, 7))]


def test_the_index_vectors_give_the_heads_score_as_one_inner_product():
    items, counts, queries = vectors(50, 8)
    head = prior_head(8)
    with torch.no_grad():
        product = head.scale() * head.index_queries(queries) @ head.index_items(items, counts).T
        torch.testing.assert_close(product, head(queries, items, counts), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("index", ["exact", pytest.param("faiss-flat", marks=needs_faiss)])
def test_the_chunked_search_and_the_flat_index_give_the_full_products_top_k_ties_included(monkeypatch, index):
    monkeypatch.setattr(item_search, "SCORES_PER_CHUNK", 6 * 37)  # exact: chunks of 37 items
    items, counts, queries = vectors(500, 8)
    head = prior_head(8)
    positions, scores = ItemSearch(head, items, counts, index=index).top(queries, EXCLUDED, 20)
    expected_positions, expected_scores = full_product_top(head, queries, items, counts, EXCLUDED, 20)
    assert torch.equal(positions, expected_positions)
    torch.testing.assert_close(scores, expected_scores)


def clustered(items: int, width: int, clusters: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(clusters, width, generator=generator), dim=1)
    chosen = torch.randint(0, clusters, (items,), generator=generator)
    return centres[chosen] + 0.3 * torch.randn(items, width, generator=generator) / width ** 0.5


@needs_faiss
@pytest.mark.parametrize("index", ["faiss-hnsw", "faiss-ivf"])
def test_an_approximate_index_recalls_the_exact_top_10(index):
    items = clustered(4000, 32, 40)
    queries = items[torch.arange(0, 4000, 100)] + 0.05 * torch.randn(40, 32, generator=torch.Generator().manual_seed(1))
    head = SimilarityHead(temperature=0.05)
    exact, _ = ItemSearch(head, items, index="exact").top(queries, [[]] * 40, 10)
    found, _ = ItemSearch(head, items, index=index).top(queries, [[]] * 40, 10)
    recall = sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), found.tolist())) / exact.numel()
    assert recall >= 0.9


def test_auto_searches_exactly_below_the_threshold(monkeypatch):
    monkeypatch.setattr(item_search, "AUTO_INDEX_ITEMS", 100)
    assert resolved_index("auto", 99) == "exact"
    assert resolved_index("exact", 10**7) == "exact"
    if faiss is not None:
        assert resolved_index("auto", 100) == item_search.AUTO_INDEX
    monkeypatch.setitem(sys.modules, "faiss", None)  # faiss not installed
    assert resolved_index("auto", 100) == "exact"
    with pytest.raises(XCrossError, match="pip install faiss-cpu"):
        ItemSearch(SimilarityHead(0.05), torch.randn(5, 4), index="faiss-hnsw")
    with pytest.raises(XCrossError, match="index must be one of"):
        resolved_index("annoy", 5)


@pytest.fixture(scope="module")
def model(tiny_backbone):
    return dual_lora_recommender(tiny_backbone)


@needs_faiss
def test_recommend_through_the_flat_index_equals_the_exact_search(model):
    histories = [["red ball", "kite"], ["tent"]]
    exact = model.recommend(histories, TITLES, top_k=5, index="exact")
    indexed = model.recommend(histories, TITLES, top_k=5, index="faiss-flat")
    assert [[item.item_id for item in row] for row in indexed] == [[item.item_id for item in row] for row in exact]
    for row, expected in zip(indexed, exact):
        assert [item.score for item in row] == pytest.approx([item.score for item in expected], abs=1e-5)


def test_an_interrupted_encoding_resumes_at_the_first_missing_chunk(model, tmp_path, monkeypatch):
    catalogue, collator = Catalogue.of(TITLES), model_collator(model)
    uninterrupted = item_representations(model, collator, catalogue, tmp_path / "once", chunk_size=3)

    encode = catalogue_module.encode_items
    calls = []

    def killed_at_the_third_chunk(*arguments):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode(*arguments)

    monkeypatch.setattr(catalogue_module, "encode_items", killed_at_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        item_representations(model, collator, catalogue, tmp_path, chunk_size=3)
    path = item_cache_path(tmp_path, catalogue)
    assert not path.exists() and len(list(path.with_suffix(".parts").iterdir())) == 2

    monkeypatch.setattr(catalogue_module, "encode_items", encode)
    encoded = count_item_encodings(monkeypatch)
    resumed = item_representations(model, collator, catalogue, tmp_path, chunk_size=3)
    assert encoded == [3, 1]  # the third chunk and the last one (10 titles in chunks of 3)
    assert torch.equal(resumed, uninterrupted)
    assert path.is_file() and not path.with_suffix(".parts").exists()
    encoded.clear()
    assert torch.equal(item_representations(model, collator, catalogue, tmp_path, chunk_size=3), uninterrupted)
    assert encoded == []
