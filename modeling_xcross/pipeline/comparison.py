"""One table of finished runs scored on the same test lists: X-Cross beside its baselines, with the sentence a reader
wants first (which wins, by how much), as markdown, JSON and a bar chart of MRR."""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import atomic_write
from ..errors import XCrossError
from .runs import METRICS_NAME

COLUMNS = ("mrr", "hit@1", "hit@10")
class ComparisonError(XCrossError):
    """A run to compare that is missing or unfinished; the message names it."""


def _row(label: str, directory: Path) -> dict:
    path = Path(directory) / METRICS_NAME
    if not path.is_file():
        raise ComparisonError(f"{label}: {path} is missing; finish that run first (rerunning its command resumes it).")
    metrics = json.loads(path.read_text())
    return {"model": label, **{key: metrics[key] for key in COLUMNS},
            "trainable_parameters": metrics.get("trainable_parameters", 0),
            "train_time_s": metrics.get("wall_time_s"), "test_users": metrics["num_users"], "run": str(directory),
            # A reference needs no training (an `xcross baseline` run): what a trained recommender must beat.
            "reference": metrics.get("settings", {}).get("command") == "baseline",
            # An `xcross baseline --method best-reference` run: which reference won on validation users.
            "best_reference": metrics.get("best_reference", {}).get("description")}


def verdict(rows: list[dict], model: str) -> str:
    """One sentence: how `model` compares with the best of the other rows, by MRR."""
    ours = next(row for row in rows if row["model"] == model)
    best = max((row for row in rows if row["model"] != model), key=lambda row: row["mrr"])
    gap = ours["mrr"] - best["mrr"]
    if gap > 0:
        return (f"{model} wins: MRR {ours['mrr']:.4f}, {gap:+.4f} over the best other row ({best['model']}, "
                f"{best['mrr']:.4f}).")
    return (f"{model} does not win: MRR {ours['mrr']:.4f}, {gap:+.4f} against the best row ({best['model']}, "
            f"{best['mrr']:.4f}).")


def best_reference_line(rows: list[dict], model: str) -> str | None:
    """One sentence on the best-reference row, if any: which reference validation chose and how `model` compares."""
    chosen = [row for row in rows if row["best_reference"]]
    if not chosen:
        return None
    best, ours = chosen[0], next(row for row in rows if row["model"] == model)
    return (f"Best reference, chosen on validation users: {best['best_reference']}, test MRR {best['mrr']:.4f}; "
            f"{model} {ours['mrr'] - best['mrr']:+.4f}.")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| Model | MRR | Hit@1 | Hit@10 | Trainable parameters | Train time (s) |", "|---|---|---|---|---|---|"]
    for row in rows:
        time_s = "–" if row["reference"] or row["train_time_s"] is None else f"{row['train_time_s']:.0f}"
        label = f"{row['model']}: {row['best_reference']}" if row["best_reference"] else row["model"]
        lines.append(f"| {label} | {row['mrr']:.4f} | {row['hit@1']:.4f} | {row['hit@10']:.4f} | "
                     f"{row['trainable_parameters']:,} | {time_s} |")
    return "\n".join(lines)


def plot_mrr(rows: list[dict], path: Path) -> None:
    """Horizontal bars, one per row in table order (top to bottom), each labelled with its MRR: long model names
    stay readable, and the figure grows with the number of rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["model"] for row in rows]
    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.45 * len(rows)))
    bars = axes.barh(labels, [row["mrr"] for row in rows],
                     color=["tab:gray" if row["reference"] else "tab:blue" for row in rows])
    axes.bar_label(bars, fmt="%.4f", padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(row["mrr"] for row in rows) * 1.18)
    axes.set(xlabel="test MRR (gray: references, no training)",
             title=f"Test MRR, {rows[0]['test_users']} users, 30 candidates each")
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)


def compare(runs: dict[str, Path], output_dir: Path, model: str = "X-Cross") -> str:
    """Write `comparison.md`, `comparison.json` and `comparison_mrr.png` into `output_dir` from `{label: run dir}`,
    refusing runs scored on other test users; returns the markdown."""
    rows = [_row(label, directory) for label, directory in runs.items()]
    if len({row["test_users"] for row in rows}) != 1:
        raise ComparisonError(f"The runs were scored on different numbers of test users "
                              f"({ {row['model']: row['test_users'] for row in rows} }); give them the same "
                              "--max-eval-users and --seed.")
    if model not in runs:
        raise ComparisonError(f"{model!r} is not among the compared runs {sorted(runs)}.")
    sentences = [verdict(rows, model), best_reference_line(rows, model)]
    text = f"{markdown_table(rows)}\n\n" + "".join(f"{sentence}\n" for sentence in sentences if sentence)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(output_dir / "comparison.md", lambda path: path.write_text(text))
    record = {"rows": rows, "verdict": sentences[0], "best_reference": sentences[1]}
    atomic_write(output_dir / "comparison.json", lambda path: path.write_text(json.dumps(record, indent=2)))
    plot_mrr(rows, output_dir / "comparison_mrr.png")
    return text
