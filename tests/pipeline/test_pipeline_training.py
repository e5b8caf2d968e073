"""Training and evaluating through the CLI on a tiny random BERT and synthetic domains: adapters that load into
X-Cross, resume after a kill, refusals with a fix, and two-process training with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from conftest import SMALL, make_base, make_tokenizer
from run_helpers import KillAt, assert_killed_run_resumes_to_the_same_run, small_run_settings
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.pipeline.cli import main
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline.runs import OutputDirError, RunSettings, prepare_output_dir, train

ROOT = Path(__file__).resolve().parents[2]
def test_train_adapter_writes_metrics_and_a_peft_adapter(adapters, tiny_backbone):
    directory = adapters / "toys"
    metrics = json.loads((directory / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["num_users"] == 6
    assert metrics["settings"]["domain"] == "Toys" and metrics["split"] == "test"
    assert (directory / "adapter_model.safetensors").is_file()
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and sorted(config["target_modules"]) == ["query", "value"]
    assert json.loads(next(directory.glob("candidates_test_*.json")).read_text())["lists"][0]["candidates"]
    trained = LoraRecommender.from_pretrained(directory)
    assert any(p.abs().sum() > 0 for n, p in trained.named_parameters() if "lora_B" in n), "LoRA B trained"


def test_saved_adapter_loads_into_xcross_and_matches_the_recommender(adapters, tiny_backbone):
    recommender = LoraRecommender.from_pretrained(adapters / "toys")
    assert (recommender.scoring, recommender.pooling) == ("dual", "mean"), "the CLI's default scoring"
    config = recommender.config
    # The CLI's default dual settings: item histories, a prior and a projection (the start chosen on validation users
    # sets the prior's weight, the decay and the temperature).
    assert (config.history_encoding, config.popularity_weight is not None, config.projection_rank) == ("items", True, 16)
    xcross = XCrossForSequentialRecommendation.from_adapters(
        tiny_backbone, {"toys": adapters / "toys"}, scoring="dual", history_encoding=config.history_encoding,
        history_decay=config.history_decay, popularity_weight=config.popularity_weight, temperature=0.05,
        projection_rank=config.projection_rank).eval()
    xcross.head.load_state_dict(recommender.head.state_dict())
    # Two histories of 3 and 2 items (5 item titles), 3 candidates each with their counts.
    inputs = {"input_ids": torch.randint(5, 80, (5, 10)), "candidate_input_ids": torch.randint(5, 80, (2, 3, 6)),
              "history_weights": torch.tensor([[0.2, 0.3, 0.5, 0, 0], [0, 0, 0, 0.4, 0.6]]),
              "candidate_popularity": torch.tensor([[0.0, 3.0, 1.0], [7.0, 0.0, 2.0]])}
    with torch.no_grad():
        torch.testing.assert_close(xcross(**inputs).logits, recommender(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_xcross_train_and_evaluate(adapters, data_dir, tiny_backbone, tmp_path):
    out = tmp_path / "xcross"
    assert main(["train", "--data-dir", str(data_dir), "--target", "Tools", "--sources", str(adapters / "toys"),
                 str(adapters / "sports"), "--output-dir", str(out), "--backbone", str(tiny_backbone), *SMALL,
                 "--beta", "0.5", "--gamma", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["settings"]["sources"][1].endswith("sports")
    model = XCrossForSequentialRecommendation.from_pretrained(out)
    assert model.adapter_names == ["toys", "sports"]
    assert (model.config.beta, model.config.gamma) == (0.5, 0) and metrics["settings"]["beta"] == 0.5
    assert main(["evaluate", "--model-dir", str(out), "--data-dir", str(data_dir), "--domain", "Tools",
                 "--max-eval-users", "6", "--val-users", "4", "--seed", "0", "--max-length", "48"]) == 0
    evaluated = json.loads((out / "eval_Tools_test" / "metrics.json").read_text())
    assert {key: evaluated[key] for key in METRIC_KEYS} == pytest.approx({key: metrics[key] for key in METRIC_KEYS})


def test_killed_run_resumes_to_the_same_weights(data_dir, tiny_backbone, tmp_path):
    assert_killed_run_resumes_to_the_same_run(lambda out: small_run_settings(data_dir, tiny_backbone, out), 4,
                                              "checkpoint-3", tmp_path)


def test_output_dir_of_another_run_is_refused(adapters, data_dir, tiny_backbone, capsys):
    code = main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Sports", "--output-dir",
                 str(adapters / "toys"), "--backbone", str(tiny_backbone), *SMALL])
    assert code == 1
    assert "holds another run" in capsys.readouterr().err


def test_run_recorded_before_a_setting_existed_still_resumes(tmp_path):
    settings = RunSettings(command="train", data_dir="d", domain="Tools", output_dir=str(tmp_path), backbone="b")
    recorded = asdict(settings)
    del recorded["beta"], recorded["gamma"]  # written by a version without them
    (tmp_path / "run_settings.json").write_text(json.dumps(recorded))
    assert prepare_output_dir(settings) is None  # same run, nothing to resume from yet
    settings.beta = 0.5
    with pytest.raises(OutputDirError, match=r"\['beta'\]"):
        prepare_output_dir(settings)


def test_non_finite_beta_is_refused_by_the_cli(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--target", "Tools", "--sources", "a", "--output-dir", "o", "--beta", "nan"])
    assert "--beta: expected a finite number, got 'nan'" in capsys.readouterr().err


def test_source_adapter_of_another_backbone_is_refused(adapters, data_dir, tmp_path, capsys):
    other = make_tokenizer(make_base(tmp_path / "other-base", "bert", seed=9))
    code = main(["train", "--data-dir", str(data_dir), "--target", "Tools", "--sources", str(adapters / "toys"),
                 "--output-dir", str(tmp_path / "x"), "--backbone", str(other), *SMALL])
    assert code == 1
    assert "--backbone" in capsys.readouterr().err


def test_missing_domain_and_model_dir_errors(data_dir, tmp_path, tiny_backbone, capsys):
    assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Garden", "--output-dir",
                 str(tmp_path / "g"), "--backbone", str(tiny_backbone)]) == 1
    assert "Garden" in capsys.readouterr().err
    assert main(["evaluate", "--model-dir", str(tmp_path), "--data-dir", str(data_dir), "--domain", "Tools"]) == 1
    assert "--model-dir" in capsys.readouterr().err


def test_cli_module_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "modeling_xcross.pipeline.cli", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    for command in ("train-adapter", "train", "train-head", "baseline", "compare", "evaluate", "recommend"):
        assert command in result.stdout


def test_two_processes_end_with_identical_weights(data_dir, tiny_backbone, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # --standalone: a local rendezvous on a free port, so parallel test runs do not clash on a fixed one.
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "modeling_xcross.pipeline.cli", "train-adapter", "--data-dir", str(data_dir),
                             "--domain", "Toys", "--output-dir", str(out), "--backbone", str(tiny_backbone), *SMALL],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = json.loads((out / "metrics.json").read_text())["weights_digest_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_decoder_backbone_trains_adapters_and_xcross(data_dir, tmp_path):
    """The decoder path end to end: cross scoring (single-text prompts, last-token pooling, shared-prefix evaluation)
    for the sources, the default dual scoring for X-Cross, Llama blocks in X-Cross."""
    backbone = make_tokenizer(make_base(tmp_path / "llama", "llama"))
    for domain in ("Toys", "Sports"):
        assert main(["train-adapter", "--data-dir", str(data_dir), "--domain", domain, "--output-dir",
                     str(tmp_path / domain), "--backbone", str(backbone), *SMALL, "--scoring", "cross"]) == 0
    assert json.loads((tmp_path / "Toys" / "adapter_config.json").read_text())["target_modules"] in (
        ["q_proj", "v_proj"], ["v_proj", "q_proj"])
    assert main(["train", "--data-dir", str(data_dir), "--target", "Tools", "--sources", str(tmp_path / "Toys"),
                 str(tmp_path / "Sports"), "--output-dir", str(tmp_path / "xcross"), "--backbone", str(backbone),
                 *SMALL]) == 0
    metrics = json.loads((tmp_path / "xcross" / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    model = XCrossForSequentialRecommendation.from_pretrained(tmp_path / "xcross")
    assert (model.config.scoring, model.pooling, model.config.base_config.model_type) == ("dual", "mean", "llama")
    assert LoraRecommender.from_pretrained(tmp_path / "Toys").pooling == "last"


@pytest.mark.parametrize("command", ["train-adapter", "train"])
def test_plain_trainer_resumes_and_loads_the_best_model_quietly(command, adapters, data_dir, tiny_backbone, tmp_path):
    """Checkpoints hold only what trains; the frozen keys they lack are declared, so nothing is reported missing."""
    from safetensors import safe_open
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    settings = small_run_settings(data_dir, tiny_backbone, tmp_path / "run")
    settings.command, settings.epochs = command, 1
    settings.sources = [str(adapters / "toys"), str(adapters / "sports")] if command == "train" else []
    with pytest.raises(KeyboardInterrupt):
        train(settings, callbacks=[KillAt(4)])
    with safe_open(tmp_path / "run" / "checkpoint-3" / "model.safetensors", "pt") as handle:
        saved = set(handle.keys())
    assert saved and not any(".lora_" not in key and not key.startswith("head.") and "fusion_head" not in key
                             and key != "domain_weights" for key in saved), "no frozen base weight in a checkpoint"
    with CaptureLogger(logging.get_logger("transformers.trainer")) as captured:
        metrics = train(settings)
    assert "missing keys" not in captured.out and "unexpected keys" not in captured.out
    assert metrics["best_validation_mrr"] is not None


def test_checkpoint_of_an_earlier_version_is_a_clear_error(data_dir, tiny_backbone, tmp_path, capsys):
    settings = small_run_settings(data_dir, tiny_backbone, tmp_path / "old")
    prepare_output_dir(settings)
    (tmp_path / "old" / "checkpoint-3").mkdir()
    (tmp_path / "old" / "checkpoint-3" / "trainable.safetensors").write_bytes(b"")
    (tmp_path / "old" / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    with pytest.raises(OutputDirError, match="earlier xcross version.*delete the checkpoint-"):
        train(settings)
