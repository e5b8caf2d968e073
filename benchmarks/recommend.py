"""Catalogue recommendation speed: items encoded per second, top-10 latency per user once the catalogue is encoded,
and full-ranking evaluation time for N users.

    python -m benchmarks.recommend --quick                        # seconds: 100 titles, 3 users
    python -m benchmarks.recommend                                # 10,000 titles, dual X-Cross (n=2) on MiniLM
    python -m benchmarks.recommend --scoring cross --users 20     # two stages: similarity top 100, X-Cross re-ranks
    python -m benchmarks.recommend --vectors 1000000              # search only: exact vs a FAISS index, 1M items

The catalogue is synthetic: seeded titles of 3 to 6 words and a model number (MiniLM: 8 to 14 tokens, like the
Amazon titles' median), and users whose histories are 3 to 8 random items of it. The model is X-Cross over
`--streams` random rank-8 adapters of all-MiniLM-L6-v2 (random fusion heads off zero), forward only, on the CPU.
Latency is the median over users of one `CatalogueRanker.recommend([history], 10)` call (tokenizing, the history
encode, the product with the cached item vectors, the sort; cross scoring: the first stage and re-ranking
`--rerank-top` items), after a warm-up call. The item cache is read back once to time a warm start.

`--vectors N` times the search alone (no model, no encoding): N clustered unit vectors of MiniLM's width (384),
generated in chunks, with popularity counts scored by a dual head with a prior (temperature 0.05, weight 0.05), and
users whose history is the mean of 3 to 8 items of one or two clusters (and, as the hard case, of 3 to 8 items of the
whole catalogue: "mixed"). It prints the top-10 latency per user (median), the memory (RSS: tracemalloc does not see
faiss) the exact search and each `--index` add to the vectors, the index's build time and its recall@10 against
exact.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.backbones import prepare_backbone
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.checkpoint import atomic_write
from modeling_xcross.head import SimilarityHead
from modeling_xcross.inference.catalogue import CatalogueRanker
from modeling_xcross.inference.item_search import ItemSearch
from modeling_xcross.pipeline.domain_ranking import model_full_ranking
from modeling_xcross.pipeline.data import DomainData

WORDS = ("cordless drill driver kit heavy duty steel hammer wrench socket set saw blade pro compact lithium "
         "battery charger led work light tape measure level clamp bit sander grinder toolbox cable ties glue "
         "gloves safety glasses pliers screwdriver magnetic tray ladder bench vise").split()


def synthetic_domain(items: int, users: int, seed: int = 0) -> DomainData:
    """`items` distinct titles and `users` test users whose histories (3 to 8 items, the last held out) are random."""
    rng = random.Random(seed)
    titles = {index: " ".join(rng.choices(WORDS, k=rng.randint(3, 6))) + f" {rng.choice('ABCDEFGH')}{index}"
              for index in range(items)}
    test = {f"user{user}": rng.sample(range(items), rng.randint(3, 8)) for user in range(users)}
    return DomainData("Synthetic", titles, train={}, test=test)


def build_model(scoring: str, streams: int, scratch: Path) -> XCrossForSequentialRecommendation:
    base_dir, adapters, _ = prepare_backbone("minilm", streams, scratch)
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, adapters, scoring=scoring, max_length=64,
                                                            temperature=0.05, history_encoding="text", history_decay=1.0,
                                                            popularity_weight=None, projection_rank=None)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in model.fusion_heads:
            head.weight.normal_(0.0, 1e-3, generator=generator)
    return model.eval()


def measure(args) -> dict:
    domain = synthetic_domain(args.items, max(args.users, args.latency_users))
    users = sorted(domain.test)
    with tempfile.TemporaryDirectory() as scratch:
        model = build_model(args.scoring, args.streams, Path(scratch))
        cache_dir = Path(scratch) / "cache"
        started = time.perf_counter()
        ranker = CatalogueRanker(model, domain, rerank_top=args.rerank_top, cache_dir=cache_dir)
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        first_stage = ranker.retriever if ranker.reranks else None
        CatalogueRanker(model, domain, rerank_top=args.rerank_top, cache_dir=cache_dir, first_stage=first_stage)
        warm_start_s = time.perf_counter() - started
        histories = [[domain.titles[item] for item in domain.test[user][:-1]] for user in users]
        ranker.recommend(histories[:1], 10)  # warm-up
        latencies = []
        for history in histories[:args.latency_users]:
            started = time.perf_counter()
            ranker.recommend([history], 10)
            latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        metrics = model_full_ranking(model, domain, "test", users[:args.users], rerank_top=args.rerank_top,
                                     cache_dir=cache_dir)
        full_ranking_s = time.perf_counter() - started
    return {"items": args.items, "scoring": args.scoring, "streams": args.streams, "rerank_top": args.rerank_top,
            "encode_s": encode_s, "items_per_s": args.items / encode_s, "warm_start_s": warm_start_s,
            "top10_latency_ms": 1000 * statistics.median(latencies), "latency_users": len(latencies),
            "full_ranking_users": metrics["users"], "full_ranking_s": full_ranking_s,
            "full_ranking_s_per_1000_users": 1000 * full_ranking_s / metrics["users"]}


def clustered_vectors(items: int, width: int = 384, clusters: int = 4096, noise: float = 1.0,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(items, width)` unit vectors around `clusters` random centres (a noise of norm about `noise` each: cosine
    about 0.7 to its centre), generated 100,000 at a time, and each one's cluster."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(clusters, width, generator=generator), dim=1)
    vectors, labels = torch.empty(items, width), torch.randint(0, clusters, (items,), generator=generator)
    for start in range(0, items, 100_000):
        stop = min(start + 100_000, items)
        chunk = centres[labels[start:stop]]
        chunk += noise * torch.randn(stop - start, width, generator=generator) / width ** 0.5
        vectors[start:stop] = torch.nn.functional.normalize(chunk, dim=1)
    return vectors, labels


def interest_histories(labels: torch.Tensor, users: int, seed: int = 0) -> list[list[int]]:
    """Per user 3 to 8 items of one or two clusters (a user's interests), as real histories keep to a few topics."""
    rng = random.Random(seed)
    histories = []
    for _ in range(users):
        interests = rng.sample(range(int(labels.max()) + 1), rng.randint(1, 2))
        pool = torch.isin(labels, torch.tensor(interests)).nonzero().flatten().tolist()
        histories.append(rng.sample(pool, min(len(pool), rng.randint(3, 8))))
    return histories


def random_histories(items: int, users: int, seed: int = 0) -> list[list[int]]:
    """Per user 3 to 8 items drawn from the whole catalogue: a mixture of unrelated topics, the hard case for an
    index (the best items lie in many lists)."""
    rng = random.Random(seed)
    return [rng.sample(range(items), rng.randint(3, 8)) for _ in range(users)]


def rss_mb() -> float:
    """The process' resident memory now."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def recall_at_10(exact: list[list[int]], found: list[list[int]]) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(exact, found)) / (10 * len(found))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_top(search: ItemSearch, queries: torch.Tensor) -> tuple[list[list[int]], float]:
    """Each user's top 10, one call per user, and the median latency in ms (after a warm-up call)."""
    search.top(queries[:1], [[]], 10)
    tops, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        positions, _ = search.top(query.unsqueeze(0), [[]], 10)
        latencies.append(time.perf_counter() - started)
        tops.append(positions[0].tolist())
    return tops, 1000 * statistics.median(latencies)


def measure_vectors(args) -> dict:
    started = time.perf_counter()
    items, labels = clustered_vectors(args.vectors)
    torch.manual_seed(1)
    popularity = torch.distributions.Geometric(probs=torch.tensor(0.2)).sample((args.vectors,)).float()
    queries = torch.stack([items[history].mean(dim=0) for history in interest_histories(labels, args.latency_users)])
    mixed = torch.stack([items[history].mean(dim=0) for history in random_histories(args.vectors, args.latency_users)])
    head = SimilarityHead(temperature=0.05, popularity_weight=0.05).eval()
    result = {"vectors": args.vectors, "width": items.shape[1], "users": len(queries),
              "generate_s": time.perf_counter() - started, "rss_vectors_mb": rss_mb()}
    search = ItemSearch(head, items, popularity, index="exact")
    exact_top, result["exact_ms"] = timed_top(search, queries)
    exact_mixed, _ = timed_top(search, mixed)
    result["exact_added_rss_mb"] = rss_mb() - result["rss_vectors_mb"]
    del search
    for index in args.index:
        started = time.perf_counter()
        search = ItemSearch(head, items, popularity, index=index)
        build_s = time.perf_counter() - started
        for probes in (args.probes if index == "faiss-ivf" else [None]):
            if probes is not None:
                search.index.index.nprobe = probes
            found, latency = timed_top(search, queries)
            found_mixed, latency_mixed = timed_top(search, mixed)
            name = index if probes is None else f"{index} (probes {probes})"
            result[name] = {"build_s": build_s, "top10_ms": latency, "recall_at_10": recall_at_10(exact_top, found),
                            "mixed_top10_ms": latency_mixed,
                            "mixed_recall_at_10": recall_at_10(exact_mixed, found_mixed),
                            "added_rss_mb": rss_mb() - result["rss_vectors_mb"]}
        del search
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def report_vectors(result: dict) -> None:
    print(f"{result['vectors']:,} clustered unit vectors of width {result['width']} (generated in "
          f"{result['generate_s']:.1f} s; RSS {result['rss_vectors_mb']:.0f} MB), {result['users']} users of one "
          "or two interests (and as many of random items: 'mixed')")
    print(f"exact (chunks of items): top-10 {result['exact_ms']:.1f} ms per user; RSS added "
          f"{result['exact_added_rss_mb']:.0f} MB")
    for index, measured in result.items():
        if isinstance(measured, dict):
            print(f"{index}: built in {measured['build_s']:.1f} s; top-10 {measured['top10_ms']:.2f} ms per user "
                  f"({result['exact_ms'] / measured['top10_ms']:.0f}x exact); recall@10 "
                  f"{measured['recall_at_10']:.3f} (mixed: {measured['mixed_top10_ms']:.2f} ms, "
                  f"{measured['mixed_recall_at_10']:.3f}); RSS added {measured['added_rss_mb']:.0f} MB")
    print(f"peak RSS of the run: {result['peak_rss_mb']:.0f} MB")


INDEX_CHOICES = ("faiss-flat", "faiss-ivf", "faiss-hnsw")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000, help="catalogue size")
    parser.add_argument("--users", type=int, default=200, help="users of the full-ranking evaluation")
    parser.add_argument("--latency-users", type=int, default=20, help="users timed one by one")
    parser.add_argument("--scoring", choices=("dual", "cross"), default="dual")
    parser.add_argument("--streams", type=int, default=2, help="n, the number of source adapters")
    parser.add_argument("--rerank-top", type=int, default=100, help="cross scoring: items re-ranked per user")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="100 items, 3 users, 2 timed one by one, re-ranking 10")
    parser.add_argument("--vectors", type=int, default=None,
                        help="time the search alone over this many synthetic item vectors (no model)")
    parser.add_argument("--index", nargs="+", choices=INDEX_CHOICES, default=["faiss-ivf"],
                        help="--vectors: the indexes compared with exact search (default: %(default)s)")
    parser.add_argument("--probes", type=int, nargs="+", default=[32, 64, 128],
                        help="--vectors: the faiss-ivf lists probed per query, each timed (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="--vectors: also write the result there")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.users, args.latency_users, args.rerank_top = 100, 3, 2, 10
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vectors:
        result = measure_vectors(args)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
              f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average "
              f"{os.getloadavg()[0]:.1f}")
        report_vectors(result)
        if args.json:
            atomic_write(args.json, lambda path: path.write_text(json.dumps(result, indent=2)))
        return result
    result = measure(args)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"X-Cross ({result['scoring']} scoring, n={result['streams']}) on all-MiniLM-L6-v2, {result['items']:,} "
          f"synthetic titles" + (f", re-ranking the similarity's top {result['rerank_top']}"
                                 if result["scoring"] == "cross" else ""))
    print(f"items encoded: {result['items_per_s']:.0f} items/s ({result['encode_s']:.1f} s for the catalogue); "
          f"warm start from the cache: {result['warm_start_s']:.2f} s")
    print(f"top-10 latency per user: {result['top10_latency_ms']:.1f} ms (median of {result['latency_users']})")
    print(f"full-ranking evaluation: {result['full_ranking_s']:.1f} s for {result['full_ranking_users']} users "
          f"({result['full_ranking_s_per_1000_users']:.0f} s per 1,000 users, catalogue encoded)")
    return result


if __name__ == "__main__":
    main()
