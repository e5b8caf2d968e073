"""The zero-training references on a domain's VALIDATION lists, and the untrained dual model over a grid of its
scoring settings (history decay, temperature, popularity weight): how the `xcross` defaults of dual scoring were
chosen, without looking at test users.

    python -m research.validation_references --domain Tools --val-users 1000 --max-train-users 2000 \
        --output research/results/validation_references_Tools.json

`--recency-half-lives` also tries counts that favour later users (the shared domains list users in time order): a
train user at position p of the file's N train users counts 0.5 ** ((N - 1 - p) / (h * N)), rescaled to a mean of 1
per counted user, so h = 0.25 halves the weight every quarter of the file; "none" is the plain count.
`--history-popularity-exponents` a tries a prior whose weight follows how popular the user's own history is:
w * (p_u / p_train) ** a, p_u the mean log(1 + count) of the history's titles, p_train its mean over the train users
(their own items left out), so a user whose history is less popular than the train users' leans less on the prior.
`--center` subtracts the titles' common direction first (for decoder backbones, whose mean-pooled title states all
point nearly the same way); `--pooling last` tries a decoder's last-token state instead of the mean.

Prints one line per setting (validation MRR and the mean cross-entropy over the 30 candidates, the training loss an
untrained model starts from) and writes them as JSON. Every title is encoded once; the settings only change how the
encodings are combined.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from configuration_xcross import POOLING_MODES
from modeling_xcross.head import history_query
from modeling_xcross.packaged_models import DEFAULT_BACKBONE
from modeling_xcross.pipeline.baselines import popularity_scores, untrained_model
from modeling_xcross.pipeline.candidates import build_eval_lists
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR, DomainData, load_domain, split_users
from modeling_xcross.inference.encoding import encode_items
from modeling_xcross.pipeline.metrics import load_ranking_metric
from modeling_xcross.pipeline.references import recency_weights, weighted_counts


def history_popularity(domain: DomainData, history: list[int], counts: Counter, own: Counter | None = None) -> float:
    """Mean log(1 + count) of a history's titles, less the user's `own` share of the counts."""
    own = own or Counter()
    return sum(math.log1p(counts[domain.titles[item]] - own[domain.titles[item]]) for item in history) / len(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--val-users", type=int, default=1000)
    parser.add_argument("--max-train-users", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--decays", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.2, 0.1, 0.05])
    parser.add_argument("--popularity-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--recency-half-lives", nargs="+", default=[None],
                        type=lambda text: None if text == "none" else float(text),
                        help="half-lives of the recency-weighted counts, as fractions of the train users in file "
                             "order, or none for plain counts; default: none")
    parser.add_argument("--history-popularity-exponents", type=float, nargs="+", default=[0.0],
                        help="exponents a of the per-user prior weight w * (p_u / p_train) ** a; default: 0 (the "
                             "same weight for every user)")
    parser.add_argument("--center", action="store_true",
                        help="subtract the mean representation of the listed candidates' titles (a uniform sample of "
                             "the catalogue) before the cosine: removes the direction every title shares, which "
                             "dominates a decoder's mean-pooled states")
    parser.add_argument("--pooling", choices=POOLING_MODES, default=None,
                        help="how a title's token states become one representation (the models' `--pooling`); "
                             "default: the dual-scoring default, mean")
    parser.add_argument("--validation", choices=("random", "latest"), default="random",
                        help="validation users: a seeded sample of the train users (the pipeline's split), or the "
                             "last --val-users in the file's order (the shared domains list their users in time "
                             "order, test users after every train user), the train users then a seeded sample of "
                             "the others; default: %(default)s")
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()

    domain = load_domain(args.data_dir, args.domain)
    if args.validation == "latest":
        ordered = list(domain.train)
        earlier = ordered[:-args.val_users]
        users = {"validation": ordered[-args.val_users:],
                 "train": random.Random(args.seed).sample(earlier, min(args.max_train_users, len(earlier)))}
    else:
        users = split_users(domain, args.val_users, args.seed, args.max_train_users)
    lists = build_eval_lists(domain, "validation", users["validation"], args.seed)["lists"]
    labels = torch.tensor([entry["label"] for entry in lists])
    metric = load_ranking_metric()

    def evaluate(scores: torch.Tensor) -> dict:
        return {"mrr": round(metric.compute(predictions=scores.numpy(), references=labels.numpy())["mrr"], 4),
                "loss": round(F.cross_entropy(scores, labels).item(), 4)}

    results = {"settings": vars(args) | {"output": str(args.output)}, "validation_users": len(lists),
               "train_users": len(users["train"]),
               "popularity": evaluate(torch.from_numpy(popularity_scores(domain, users["train"], lists))),
               "untrained_dual": []}
    model, collator = untrained_model(args.backbone, domain, args.max_length, pooling=args.pooling)
    histories = [[domain.titles[item] for item in domain.train[entry["user"]][:-1]] for entry in lists]
    candidates = [[domain.titles[item] for item in entry["candidates"]] for entry in lists]
    titles = list(dict.fromkeys(itertools.chain(*candidates, *histories)))
    position = {title: index for index, title in enumerate(titles)}
    items = encode_items(model, collator, titles)
    if args.center:
        items = items - items[[position[title] for title in dict.fromkeys(itertools.chain(*candidates))]].mean(dim=0)
    items = F.normalize(items, dim=-1)
    listed = items[torch.tensor([[position[title] for title in row] for row in candidates])]
    log_counts, relative_popularity = {}, {}
    for half_life in args.recency_half_lives:
        weights = recency_weights(domain, users["train"], half_life)
        counts = weighted_counts(domain, weights)
        log_counts[half_life] = torch.log1p(torch.tensor([[counts[title] for title in row] for row in candidates],
                                                         dtype=torch.float32))
        train_mean = sum(history_popularity(domain, domain.train[user][:-1], counts,
                                            weighted_counts(domain, {user: weights[user]}))
                         for user in users["train"]) / len(users["train"])
        relative_popularity[half_life] = torch.tensor(
            [history_popularity(domain, domain.train[entry["user"]][:-1], counts) / train_mean for entry in lists])
    pairs = ~torch.eye(listed.shape[1], dtype=torch.bool)
    spread = (listed @ listed.transpose(1, 2))[:, pairs].std(dim=1).mean().item()
    results["candidate_cosine_std"] = round(spread, 4)
    print(f"{args.domain}: {len(lists)} validation users, {len(users['train'])} train users; "
          f"popularity {results['popularity']}; std of the candidates' pairwise cosines {spread:.4f}")
    for decay in args.decays:
        collator.history_decay = decay
        queries = F.normalize(history_query(items, collator.history_weights(histories, titles)), dim=-1)
        cosine = torch.einsum("bd,bcd->bc", queries, listed)
        for half_life, exponent, temperature, weight in itertools.product(
                args.recency_half_lives, args.history_popularity_exponents, args.temperatures,
                args.popularity_weights):
            user_weight = weight * relative_popularity[half_life].pow(exponent)
            row = {"history_decay": decay, "temperature": temperature, "popularity_weight": weight,
                   "recency_half_life": half_life, "history_popularity_exponent": exponent,
                   **evaluate(cosine / temperature + user_weight[:, None] * log_counts[half_life])}
            results["untrained_dual"].append(row)
            print(json.dumps(row))
    best = max(results["untrained_dual"], key=lambda row: row["mrr"])
    print(f"best validation MRR: {best}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
