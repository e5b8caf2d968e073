"""Catalogue recommendation speed: items encoded per second, top-10 latency per user once the catalogue is encoded,
and full-ranking evaluation time for N users.

    python -m benchmarks.recommend --quick                        # seconds: 100 titles, 3 users
    python -m benchmarks.recommend                                # 10,000 titles, dual X-Cross (n=2) on MiniLM
    python -m benchmarks.recommend --scoring cross --users 20     # two stages: similarity top 100, X-Cross re-ranks

The catalogue is synthetic: seeded titles of 3 to 6 words and a model number (MiniLM: 8 to 14 tokens, like the
Amazon titles' median), and users whose histories are 3 to 8 random items of it. The model is X-Cross over
`--streams` random rank-8 adapters of all-MiniLM-L6-v2 (random fusion heads off zero), forward only, on the CPU.
Latency is the median over users of one `CatalogueRanker.recommend([history], 10)` call (tokenizing, the history
encode, the product with the cached item vectors, the sort; cross scoring: the first stage and re-ranking
`--rerank-top` items), after a warm-up call. The item cache is read back once to time a warm start.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.backbones import prepare_backbone
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.inference.catalogue import CatalogueRanker
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
                                                            popularity_weight=None)
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
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.users, args.latency_users, args.rerank_top = 100, 3, 2, 10
    if args.threads:
        torch.set_num_threads(args.threads)
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
