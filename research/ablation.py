"""The X-Cross ablation of issue 39: each change to the dual form alone and all together, on validation users.

    python -m research.ablation --dry-run                      # the runs and their commands
    python -m research.ablation --runs Tools/all,Tools/before  # run some (a run with a record is skipped)
    python -m research.ablation --report                       # the table; research/results/ablation/ablation.png

Rows (X-Cross unless named LoRA): `before` is the dual form as it was (the frozen streams with dropout, the fusion
input unscaled and z unbounded, the rate decaying linearly to zero, fusion heads at 1e-5, no head projection, the
head's start fixed); each other row changes one thing, `all` every one. Target LoRA runs as it was and with the
head changes (projection, chosen start, constant rate). Every run reads the same sources, users, lists and seed;
the choice between rows is made on validation MRR only. Records: research/results/ablation/<target>_<row>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "research" / "results" / "ablation"
RUNS = ROOT / "runs" / "ablation"
SOURCES = {"Tools": ("toys", "sports"), "Toys": ("tools", "sports")}
# The scale: a few hundred target users (the data-scarce setting), epochs capped alike for every row.
SCALE = ["--max-train-users", "300", "--val-users", "200", "--max-eval-users", "200", "--max-length", "48",
         "--epochs", "3", "--patience", "1", "--seed", "42", "--batch-size", "32", "--eval-batch-size", "16"]
# The dual form before issue 39, flag by flag (a flag maps to its values; the `all` row is today's defaults).
BEFORE = {"--stream-dropout": [], "--scale-fusion-input": ["--no-scale-fusion-input"], "--fusion-bound": ["none"],
          "--fusion-learning-rate": ["1e-5"], "--projection-rank": ["none"], "--choose-start": ["--no-choose-start"],
          "--choose-temperature": ["--no-choose-temperature"], "--lr-scheduler": ["linear"], "--warmup-steps": ["0"]}
CHANGES = {
    "no stream dropout": {"--stream-dropout": ["--no-stream-dropout"]},
    "conditioned integrator": {"--scale-fusion-input": [], "--fusion-bound": ["1.0"], "--fusion-learning-rate": ["5e-4"],
                               "--lr-scheduler": ["constant_with_warmup"], "--warmup-steps": ["20"]},
    "head projection": {"--projection-rank": ["16"]},
    "start chosen": {"--choose-start": [], "--choose-temperature": []},
}
# Run after the first rows showed that the temperature chosen by cross-entropy (0.3, the softest of its grid, every
# time) held training back: the start chosen at the configured temperature.
TEMPERATURE_KEPT = {"--choose-temperature": ["--no-choose-temperature"]}
HEAD_FLAGS = ("--projection-rank", "--choose-start", "--choose-temperature", "--lr-scheduler", "--warmup-steps")


def _flags(settings: dict[str, list[str]]) -> list[str]:
    """Flag -> values as arguments; a value that is itself a flag (`--no-...`) replaces its flag."""
    out = []
    for flag, values in settings.items():
        out += values if values and values[0].startswith("--") else [flag, *values]
    return out


def rows() -> dict[str, tuple[str, list[str]]]:
    """Row name -> (command, its flags beyond the scale)."""
    every_change = {key: value for change in CHANGES.values() for key, value in change.items()}
    table = {"before": ("train", _flags(BEFORE))}
    table.update({row: ("train", _flags({**BEFORE, **change})) for row, change in CHANGES.items()})
    table["all"] = ("train", _flags({**BEFORE, **every_change}))
    table["LoRA before"] = ("train-adapter", _flags({flag: BEFORE[flag] for flag in HEAD_FLAGS}))
    table["LoRA with head changes"] = ("train-adapter", _flags({flag: {**BEFORE, **every_change}[flag]
                                                               for flag in HEAD_FLAGS}))
    table["all with temperature kept"] = ("train", _flags({**BEFORE, **every_change, **TEMPERATURE_KEPT}))
    table["LoRA with head changes and temperature kept"] = (
        "train-adapter", _flags({flag: {**BEFORE, **every_change, **TEMPERATURE_KEPT}[flag] for flag in HEAD_FLAGS}))
    lora_before = {flag: BEFORE[flag] for flag in HEAD_FLAGS}
    table["LoRA start chosen"] = ("train-adapter", _flags({**lora_before, **CHANGES["start chosen"]}))
    table["LoRA start chosen with temperature kept"] = ("train-adapter", _flags({**lora_before, **CHANGES["start chosen"],
                                                                            **TEMPERATURE_KEPT}))
    table["LoRA head projection"] = ("train-adapter", _flags({**lora_before, **CHANGES["head projection"]}))
    table["LoRA constant rate"] = ("train-adapter", _flags({**lora_before, "--lr-scheduler": ["constant_with_warmup"],
                                                            "--warmup-steps": ["20"]}))
    return table


def slug(row: str) -> str:
    return row.replace(" ", "_")


def command(target: str, row: str, data_dir: str) -> list[str]:
    name, flags = rows()[row]
    out = RUNS / target / slug(row)
    domain = (["--target", target, "--sources", *[str(RUNS / "sources" / f"lora-{source}")
                                                  for source in SOURCES[target]]]
              if name == "train" else ["--domain", target])
    return [sys.executable, "-m", "modeling_xcross.pipeline.cli", name, *domain, "--data-dir", data_dir, *SCALE,
            *flags, "--output-dir", str(out)]


def run(target: str, row: str, data_dir: str) -> None:
    record = RECORDS / f"{target}_{slug(row)}.json"
    if record.is_file():
        print(f"[ablation] {target}/{row}: recorded, skipped")
        return
    arguments = command(target, row, data_dir)
    started = time.time()
    subprocess.run(arguments, check=True, cwd=ROOT)
    metrics = json.loads((RUNS / target / slug(row) / "metrics.json").read_text())
    RECORDS.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({
        "target": target, "row": row, "command": " ".join(arguments[1:]).replace(str(ROOT) + "/", ""),
        "validation_mrr_start": metrics["starting_validation_mrr"], "validation_mrr_best": metrics["best_validation_mrr"],
        "kept_start": metrics["kept_starting_point"], "test_mrr": metrics["mrr"],
        "test_mrr_start": metrics["starting_test"]["mrr"], "epochs_run": metrics.get("epochs_run"),
        "trainable_parameters": metrics["trainable_parameters"], "head_start": metrics.get("head_start"),
        "wall_time_s": round(time.time() - started, 1), "machine": f"{os.cpu_count()} CPU cores",
    }, indent=2))


def report() -> str:
    records = [json.loads(path.read_text()) for path in sorted(RECORDS.glob("*.json"))
               if not path.name.startswith("new_domain")]
    order = list(rows())
    lines = ["| target | row | validation MRR, start | validation MRR, best | epochs | test MRR (start) | "
             "trainable | wall s |", "|---|---|---|---|---|---|---|---|"]
    for record in sorted(records, key=lambda r: (r["target"], order.index(r["row"]))):
        best = record["validation_mrr_best"]
        lines.append(f"| {record['target']} | {record['row']} | {record['validation_mrr_start']:.4f} | "
                     f"{'-' if best is None else f'{best:.4f}'} | {record['epochs_run']} | "
                     f"{record['test_mrr']:.4f} ({record['test_mrr_start']:.4f}) | "
                     f"{record['trainable_parameters']:,} | {record['wall_time_s']:.0f} |")
    return "\n".join(lines)


def plot(path: Path) -> None:
    """Validation MRR per row and target: the best checkpoint as a bar (X-Cross blue, target LoRA orange), the
    untrained start as a tick, one panel per target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(record.read_text()) for record in sorted(RECORDS.glob("*.json"))
               if not record.name.startswith("new_domain")]
    targets = sorted({record["target"] for record in records})
    if not targets:
        return
    figure, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4), squeeze=False)
    for axis, target in zip(axes[0], targets):
        done = {record["row"]: record for record in records if record["target"] == target}
        names = [row for row in rows() if row in done]
        starts = [done[row]["validation_mrr_start"] for row in names]
        bests = [max(done[row]["validation_mrr_best"] or 0.0, done[row]["validation_mrr_start"]) for row in names]
        axis.barh(names, bests, color=["tab:orange" if row.startswith("LoRA") else "tab:blue" for row in names],
                  label="best checkpoint (or the start, when kept)")
        axis.scatter(starts, names, color="black", marker="|", s=200, zorder=3, label="untrained start")
        axis.set_xlim(min(starts) - 0.02, max(bests) + 0.01)
        axis.invert_yaxis()
        axis.set_title(f"{target}: validation MRR")
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=lambda text: text.split(","), default=[],
                        help="TARGET/ROW,... (e.g. Tools/all); default: none")
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", str(ROOT.parent / "shared/data/amazon")))
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the table of the recorded runs")
    args = parser.parse_args()
    if args.report:
        print(report())
        plot(RECORDS / "ablation.png")
        return 0
    for run_id in args.runs or ([f"{target}/{row}" for target in SOURCES for row in rows()] if args.dry_run else []):
        target, _, row = run_id.partition("/")
        if args.dry_run:
            print(run_id, " ".join(command(target, row, args.data_dir)[1:]))
        else:
            run(target, row, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
