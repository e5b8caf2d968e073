"""Training speed of dual scoring: today's path (`TrainSamples`, per-example negatives) against user batches
(`user_batches`, negatives shared by the batch, each distinct title encoded once), in examples per second.

    python -m benchmarks.training --quick      # under 3 minutes: 4 timed steps per path and model
    python -m benchmarks.training              # 16 timed steps per path and model
    python -m benchmarks.training --data-dir /path/to/amazon --domain Tools --batch-size 8

A step is what the Trainer runs per batch: collating (tokenizing) the batch, forward, loss, backward and an AdamW
step of the trainable weights, in train mode, on real train users of the domain (every position of a history is an
example, the CLI's defaults: recency-weighted item histories, decay 0.5, popularity prior). Both paths take the
same number of examples per batch (`--batch-size`; a user batch holds whole users, so about that many). Models:
X-Cross over `--streams` random rank-8 adapters of all-MiniLM-L6-v2 (untrained adapters time like trained ones), and
the LoRA recommender (rank 8) on the same backbone. The two paths' steps alternate, one of each per round after a
warm-up round, so load from other processes on a shared machine hits both alike: the ratio of one run is what
counts, not the absolute rates. Writes `training_batch<B>[_quick].json` and `.md` into `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.backbones import prepare_backbone
from modeling_xcross import DEFAULT_BACKBONE, XCrossForSequentialRecommendation
from modeling_xcross.checkpoint import atomic_write
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR, load_domain, split_users
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.inference.model_inputs import model_collator
from modeling_xcross.pipeline.samples import TrainSamples, title_counts
from modeling_xcross.pipeline.user_batches import (SHARED_NEGATIVE_MODES, TITLE_CHUNKS, UserBatchCollator,
                                                   UserBatches, distinct_title_loss)

# The CLI's dual-scoring defaults (modeling_xcross/pipeline/cli.py).
DUAL = {"scoring": "dual", "history_encoding": "items", "history_decay": 0.5, "popularity_weight": 1.0,
        "temperature": 0.2, "max_length": 128}
RESULTS_DIR = Path("docs/performance")


MODELS = ("xcross", "lora")


def build_models(names: list[str], streams: int, scratch: Path) -> dict:
    """{label: build()} of the `names` asked for."""
    builds = {}
    if "xcross" in names:
        base_dir, adapters, _ = prepare_backbone("minilm", streams, scratch)
        builds[f"X-Cross (MiniLM, n={streams})"] = lambda: XCrossForSequentialRecommendation.from_adapters(
            base_dir, adapters, normalize_fusion_input=True, **DUAL)
    if "lora" in names:
        builds["LoRA recommender (MiniLM, r=8)"] = lambda: LoraRecommender.create(DEFAULT_BACKBONE, r=8,
                                                                                 lora_alpha=16, seed=0, **DUAL)
    return builds


def todays_batches(domain, users: list[str], batch_size: int, negatives: int, seed: int, popularity) -> list[list]:
    """Batches of examples as the Trainer draws them from `TrainSamples`: a seeded shuffle, `batch_size` each."""
    samples = TrainSamples(domain, users, negatives, seed, positions="all", popularity=popularity)
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    return [[samples[index] for index in order[start:start + batch_size]]
            for start in range(0, len(order) - batch_size + 1, batch_size)]


def user_batch_items(domain, users: list[str], batch_size: int, mode: str, negatives: int, seed: int,
                     popularity) -> list[dict]:
    dataset = UserBatches(domain, users, batch_size, mode, negatives, seed, popularity=popularity)
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    return [dataset[index] for index in order]


def timed_step(model, optimizer, collate, items, loss_of) -> tuple[float, int, int]:
    """Seconds of one training step (collating included), its examples and the titles it encoded."""
    start = time.perf_counter()
    batch = collate(items)
    loss = loss_of(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    if TITLE_CHUNKS in batch:
        titles = sum(len(chunk["input_ids"]) for chunk in batch[TITLE_CHUNKS])
    else:
        titles = len(batch["input_ids"]) + batch["candidate_input_ids"][..., 0].numel()
    return seconds, len(batch["labels"]), titles


def todays_loss(model, batch):
    return model(**batch).loss


def measure_model(build, domain, users, args) -> dict:
    torch.manual_seed(0)
    model = build().train()
    collator = model_collator(model, max_length=DUAL["max_length"])
    popularity = title_counts(domain, users)
    today = todays_batches(domain, users, args.batch_size, args.train_negatives, args.seed, popularity)
    shared = user_batch_items(domain, users, args.batch_size, args.negatives, args.train_negatives, args.seed,
                              popularity)
    rounds = args.steps + 1  # the first round warms up, untimed
    if min(len(today), len(shared)) < rounds:
        raise SystemExit(f"{len(users)} users give {len(today)} / {len(shared)} batches, fewer than the {rounds} "
                         "steps asked; pass more --users or fewer --steps.")
    optimizer = torch.optim.AdamW([parameter for parameter in model.parameters() if parameter.requires_grad],
                                  lr=1e-5)
    user_collator = UserBatchCollator(collator)
    paths = {"today": (collator, today, todays_loss),
             "user batches": (user_collator, [[item] for item in shared], distinct_title_loss)}
    totals = {name: {"seconds": 0.0, "examples": 0, "titles": 0} for name in paths}
    for step in range(rounds):
        for name, (collate, batches, loss_of) in paths.items():
            seconds, examples, titles = timed_step(model, optimizer, collate, batches[step], loss_of)
            if step:
                totals[name]["seconds"] += seconds
                totals[name]["examples"] += examples
                totals[name]["titles"] += titles
    result = {name: {"examples_per_s": total["examples"] / total["seconds"],
                     "examples_per_step": total["examples"] / args.steps,
                     "titles_per_step": total["titles"] / args.steps,
                     "seconds_per_step": total["seconds"] / args.steps} for name, total in totals.items()}
    result["speedup"] = result["user batches"]["examples_per_s"] / result["today"]["examples_per_s"]
    return result


def markdown(results: dict, args, machine: dict) -> str:
    lines = [f"# Training speed: today's path against user batches ({args.domain}, batch size {args.batch_size}, "
             f"{args.steps} timed steps per path, negatives {args.negatives})", "",
             f"Machine: {machine['cpu_count']} CPUs ({machine['processor']}), torch {machine['torch']}, "
             f"{machine['torch_threads']} threads; shared with other processes, so only ratios of one run count.", "",
             "| model | path | examples / s | examples / step | titles encoded / step | s / step |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for model, result in results.items():
        for path in ("today", "user batches"):
            row = result[path]
            lines.append(f"| {model} | {path} | {row['examples_per_s']:.2f} | {row['examples_per_step']:.1f} | "
                         f"{row['titles_per_step']:.1f} | {row['seconds_per_step']:.2f} |")
    lines += [""] + [f"- {model}: training speedup {result['speedup']:.2f} x" for model, result in results.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="default: %(default)s")
    parser.add_argument("--domain", default="Tools", help="default: %(default)s")
    parser.add_argument("--users", type=int, default=400, help="train users the batches come from")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch of both paths")
    parser.add_argument("--train-negatives", type=int, default=7,
                        help="per example (today) and per batch (user batches); default: %(default)s")
    parser.add_argument("--negatives", choices=SHARED_NEGATIVE_MODES, default="uniform",
                        help="the user batches' negative mode; default: %(default)s")
    parser.add_argument("--steps", type=int, default=16, help="timed steps per path and model")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="default: both")
    parser.add_argument("--streams", type=int, default=2, help="n, X-Cross's source adapters")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on a machine other processes load, more threads than free "
                             "cores spend a small step waiting on each other; default: %(default)s")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="default: %(default)s")
    parser.add_argument("--quick", action="store_true", help="4 timed steps per path and model, 200 users")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.users = 4, 200
    torch.set_num_threads(args.threads)
    if not (Path(args.data_dir) / args.domain / "train.json").is_file():
        print(f"Skipped: no {args.domain} data under --data-dir {args.data_dir} (it needs {args.domain}/train.json, "
              "meta_data.json, smap.json, test.json); pass --data-dir.")
        return {}
    domain = load_domain(args.data_dir, args.domain)
    users = split_users(domain, 100, args.seed, max_train_users=args.users)["train"]
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "python": sys.version.split()[0]}
    results = {}
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        for name, build in build_models(args.models, args.streams, Path(scratch)).items():
            results[name] = measure_model(build, domain, users, args)
            today, shared = results[name]["today"], results[name]["user batches"]
            print(f"{name}: today {today['examples_per_s']:.2f} examples/s ({today['titles_per_step']:.0f} titles "
                  f"per step), user batches {shared['examples_per_s']:.2f} examples/s "
                  f"({shared['titles_per_step']:.0f} titles per step)")
            print(f"{name}: training speedup: {results[name]['speedup']:.2f} x")
    record = {"options": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
              "machine": machine, "wall_time_s": round(time.time() - started, 1), "results": results}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"training_batch{args.batch_size}" + ("_quick" if args.quick else "")
    atomic_write(args.output_dir / f"{stem}.json", lambda path: path.write_text(json.dumps(record, indent=2)))
    atomic_write(args.output_dir / f"{stem}.md", lambda path: path.write_text(markdown(results, args, machine)))
    print(f"Wrote {args.output_dir / stem}.json and .md")
    return record


if __name__ == "__main__":
    main()
