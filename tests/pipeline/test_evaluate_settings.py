"""`xcross evaluate` reads a model as it was trained: its own tokenizer, prompt form and max length."""

from __future__ import annotations

import json

from conftest import SMALL
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline.runs import METRICS_NAME


def test_evaluate_without_max_length_reproduces_the_runs_own_metrics(data_dir, tiny_backbone, tmp_path, capsys):
    run = tmp_path / "cross"
    # Cross prompts hold the history and the candidate: at 24 tokens their oldest history is cut, so the length the
    # model is read at changes its scores.
    assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Toys", "--output-dir", str(run),
                 "--backbone", str(tiny_backbone), *SMALL, "--max-length", "24", "--scoring", "cross"]) == 0
    trained = json.loads((run / METRICS_NAME).read_text())
    scale = ["--data-dir", str(data_dir), "--max-eval-users", "6", "--val-users", "4", "--seed", "0",
             "--eval-batch-size", "3"]
    assert main(["evaluate", "--model-dir", str(run), "--domain", "Toys", *scale]) == 0
    evaluated = json.loads((run / "eval_Toys_test" / METRICS_NAME).read_text())
    assert {key: evaluated[key] for key in METRIC_KEYS} == {key: trained[key] for key in METRIC_KEYS}
    assert "overrides" not in capsys.readouterr().out
    assert main(["evaluate", "--model-dir", str(run), "--domain", "Toys", *scale, "--max-length", "128"]) == 0
    assert "--max-length 128 overrides the model's own 24" in capsys.readouterr().out
    overridden = json.loads((run / "eval_Toys_test" / METRICS_NAME).read_text())
    assert {key: overridden[key] for key in METRIC_KEYS} != {key: trained[key] for key in METRIC_KEYS}, \
        "the length matters here, so the first evaluation could have failed"
