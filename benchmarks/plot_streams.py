"""Plot fused/floor and fused/best-peer of one or more `benchmark_streams` JSON files, one panel per backbone.

    python -m benchmarks.plot_streams docs/performance/forward_minilm.json docs/performance/forward_llama.json \
        --output docs/performance/forward_ratios.png

A ratio below 1 means fused X-Cross is faster; the dashed line is the 1.10 x floor target.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET = 1.10


def load_records(paths: list[Path], key: str) -> dict[str, list[dict]]:
    """`{backbone: [record, ...]}` of the records that have ratios for `key` ("forward_ratios" or "train_ratios")."""
    by_backbone: dict[str, list[dict]] = {}
    for path in paths:
        for record in json.loads(path.read_text())["records"]:
            if record.get(key):
                by_backbone.setdefault(record["backbone"], []).append(record)
    return by_backbone


def plot_ratios(by_backbone: dict[str, list[dict]], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not by_backbone:
        raise ValueError(f"No record has {key}: run the benchmark without --no-train for training-step ratios.")
    figure, axes = plt.subplots(len(by_backbone), 1, figsize=(13, 3.4 * len(by_backbone)), squeeze=False)
    for axis, (backbone, records) in zip(axes[:, 0], sorted(by_backbone.items())):
        records = sorted(records, key=lambda r: (r["rows"], r["seq_len"], r["n"]))
        positions = range(len(records))
        width = 0.4
        axis.bar([p - width / 2 for p in positions], [r[key]["fused/floor"] for r in records], width,
                 label="fused / floor")
        axis.bar([p + width / 2 for p in positions], [r[key]["fused/best_peer"] for r in records], width,
                 label="fused / best peer")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.axhline(TARGET, color="red", linestyle="--", linewidth=0.8, label=f"target {TARGET} x floor")
        axis.set_xticks(list(positions), [f"n={r['n']}\n{r['rows']}x{r['seq_len']}" for r in records],
                        fontsize="x-small")
        axis.set(ylabel="time ratio", xlabel="adapters n, rows x tokens",
                 title=f"{backbone}: {key.split('_')[0]} (below 1: fused is faster)")
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="benchmark_streams JSON files")
    parser.add_argument("--kind", choices=["forward", "train"], default="forward")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    key = f"{args.kind}_ratios"
    plot_ratios(load_records(args.inputs, key), key, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
