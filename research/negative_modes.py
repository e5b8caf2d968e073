"""Summarise the runs that chose the default `--negatives` (research/results/negatives/README.md): per mode, the
validation MRR of the untrained start and after each evaluation, and the training examples per second (the run's
training time without its evaluations, read from its log's progress bars).

    python -m research.negative_modes RUNS_DIR research/results/negatives/negative_modes.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from modeling_xcross.checkpoint import atomic_write

# An evaluation's progress bar when it completes ("encoding items: 100%|...| 42/42 [02:18<...").
EVAL_DONE = re.compile(r"encoding items: 100%\|[^|]*\| (\d+)/\1 \[(\d+):(\d+)<")
# A training progress bar's position ("| 15/30 [07:31<...").
TRAIN_STEP = re.compile(r"\| (\d+)/(\d+) \[(\d+):(\d+)<")


def summarise(run_dir: Path, log: Path) -> dict:
    """One mode's run: its evaluations (step, validation MRR) and the seconds its steps took without evaluations."""
    text = log.read_text(errors="replace")
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    history = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]
    evaluations = [{"step": entry["step"], "validation_mrr": entry["eval_mrr"]} for entry in history
                   if "eval_mrr" in entry]
    eval_seconds = [int(minutes) * 60 + int(seconds) for _, minutes, seconds in EVAL_DONE.findall(text)]
    # The training bar's last position before the evaluation after the last saved step (its time includes the
    # evaluations done within training: the first evaluation is the untrained start's, before the bar).
    settings = json.loads((run_dir / "run_settings.json").read_text())
    steps = [(int(step), int(minutes) * 60 + int(seconds)) for step, total, minutes, seconds in TRAIN_STEP.findall(text)
             if int(total) == settings["max_steps"]]  # not the evaluations' bars
    last_step = evaluations[-1]["step"]
    bar_seconds = min(seconds for step, seconds in steps if step == last_step)  # before its evaluation
    in_training = eval_seconds[1:1 + len(evaluations) - 1]  # evaluations finished before the last step's
    return {
        "negatives": settings["negatives"],
        "batch_size": settings["batch_size"],
        "starting_validation_mrr": json.loads((run_dir / "starting_point" / "validation.json").read_text())[
            "validation_mrr"],
        "evaluations": evaluations,
        "steps": last_step,
        "training_seconds_without_evaluation": bar_seconds - sum(in_training),
        "evaluation_seconds": eval_seconds,
    }


def main(runs_dir: str, output: str) -> None:
    root = Path(runs_dir)
    runs = {log.stem: summarise(root / log.stem, log) for log in sorted(root.glob("*.log"))
            if any((root / log.stem).glob("checkpoint-*"))}  # evaluated after training at least once
    atomic_write(Path(output), lambda path: path.write_text(json.dumps(runs, indent=2)))
    for mode, run in runs.items():
        print(mode, run["starting_validation_mrr"], run["evaluations"], run["training_seconds_without_evaluation"])


if __name__ == "__main__":
    main(*sys.argv[1:])
