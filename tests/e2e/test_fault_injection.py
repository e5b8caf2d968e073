"""A real (tiny) training run killed with SIGKILL at several points and rerun with the same command ends exactly
as an uninterrupted run: same trainable weights bit for bit, same evaluations, same test metrics.

The kills come from tests/fault_injection/sitecustomize.py (`XCROSS_FAULT`), which Python loads at start-up when
that folder is on PYTHONPATH; the package itself carries no fault hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_base, make_domain, make_tokenizer
from modeling_xcross.pipeline.metrics import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parents[1] / "fault_injection"
# 20 train users in batches of 4: 5 steps per epoch, 15 in all; evaluated and checkpointed every 3 steps, so
# checkpoints fall mid-epoch (3 in epoch 1, 6 and 9 in epoch 2, 12 in epoch 3) and the last one at step 15.
OPTIONS = ["--max-train-users", "20", "--val-users", "4", "--max-eval-users", "6", "--batch-size", "4",
           "--train-negatives", "3", "--max-length", "48", "--eval-batch-size", "3", "--seed", "0", "--epochs", "3",
           "--save-steps", "3", "--learning-rate", "1e-2", "--patience", "2"]


@pytest.fixture(scope="module")
def start_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-injection")
    backbone = make_tokenizer(make_base(root / "bert", "bert"))
    data = make_domain(root / "data", "Toys")

    def start(output_dir: Path, fault: str | None = None) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(FAULTS)])}
        env.pop("XCROSS_FAULT", None)
        if fault:
            env["XCROSS_FAULT"] = fault
        return subprocess.Popen([sys.executable, "-m", "modeling_xcross.pipeline.cli", "train-adapter", "--data-dir",
                                 str(data), "--domain", "Toys", "--output-dir", str(output_dir), "--backbone",
                                 str(backbone), *OPTIONS], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    return start


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _outcome(output_dir: Path) -> dict:
    """What must not depend on kills: weights digest, test metrics, checkpoints kept, every evaluation."""
    metrics = json.loads((output_dir / "metrics.json").read_text())
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return {
        "digest": metrics["weights_digest_by_rank"],
        "metrics": {key: metrics[key] for key in (*METRIC_KEYS, "best_validation_mrr")},
        "checkpoints": sorted(path.name for path in output_dir.glob("checkpoint-*")),
        "evaluations": [{key: value for key, value in entry.items() if key in ("step", "eval_mrr", "loss")}
                        for entry in history if "eval_mrr" in entry or "loss" in entry],
        # PEFT writes target_modules from a set, in an order that varies between processes.
        "adapter_config": {key: sorted(value) if key == "target_modules" else value
                           for key, value in json.loads((output_dir / "adapter_config.json").read_text()).items()},
    }


def test_runs_killed_anywhere_resume_to_the_uninterrupted_result(start_run, tmp_path, request):
    reference = start_run(tmp_path / "uninterrupted")  # runs alongside the killed ones
    request.addfinalizer(reference.kill)

    killed = tmp_path / "killed"
    # Each rerun resumes from what the kill before it left and is killed again further on.
    steps = [
        ("step:4", "mid-epoch in epoch 1, after checkpoint-3"),
        ("checkpoint:6", "checkpoint-6 half written (resumed from checkpoint-3, mid-epoch 1)"),
        ("step:8", "mid-epoch in epoch 2 (checkpoint-6 incomplete: resumed from checkpoint-3 again)"),
        ("final-save", "adapter_config.json of the final save (resumed from checkpoint-6, mid-epoch 2)"),
    ]
    outputs = {}
    for fault, where in steps:
        result = _finish(start_run(killed, fault))
        assert result.returncode == -9, f"{fault} ({where}) did not kill the run: {result.stderr[-2000:]}"
        outputs[fault] = result.stdout
    assert "checkpoint-6 is incomplete" in outputs["step:8"] and "resuming from" in outputs["step:8"]
    # Killed inside PEFT's write, which goes to a temporary dir: no empty adapter_config.json in the output dir.
    assert not (killed / "adapter_config.json").exists()
    final = _finish(start_run(killed))
    assert final.returncode == 0, final.stderr[-2000:]
    reference = _finish(reference)
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert _outcome(killed) == _outcome(tmp_path / "uninterrupted")
