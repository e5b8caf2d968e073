"""Issue 14, one test per case: exact resume (patience, later epochs, moved dirs), atomic saves, complete
checkpoints, run settings recorded after validation, a clear message for every user error, no silent acceptance of
damaged or edited inputs, and no deprecated transformers call."""

from __future__ import annotations

import json
import re
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from peft.config import PeftConfigMixin
from transformers import TrainerCallback

from configuration_xcross import PAPER_SCORING
from conftest import SMALL, make_adapter, make_base, make_domain, random_inputs
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.checkpoint import atomic_write
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import DataError, load_domain
from modeling_xcross.lora_recommender import LoraRecommender
from modeling_xcross.pipeline.resume import last_complete_checkpoint
from modeling_xcross.pipeline.runs import RunSettings, prepare_output_dir, train


def _settings(data_dir, backbone, output_dir) -> RunSettings:
    # 20 train users in batches of 4: 5 steps per epoch; checkpoints every 3 steps fall mid-epoch. With this learning
    # rate the best validation MRR comes at step 3 and patience 2 stops the run at step 9.
    return RunSettings(command="train-adapter", data_dir=str(data_dir), domain="Toys", output_dir=str(output_dir),
                       backbone=str(backbone), max_train_users=20, max_eval_users=6, val_users=4, epochs=3,
                       batch_size=4, eval_batch_size=3, train_negatives=3, max_length=48, save_steps=3, seed=0,
                       learning_rate=2e-2, patience=2)


class StopAt(TrainerCallback):
    """Interrupts a run at the end of a step, or when training ends (before the final save)."""

    def __init__(self, step: int | None = None):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")

    def on_train_end(self, args, state, control, **kwargs):
        if self.step is None:
            raise KeyboardInterrupt("killed")


def _outcome(output_dir: Path, metrics: dict) -> dict:
    """Weights, test metrics, the checkpoints kept and every evaluation of the last one's history."""
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return {"digest": metrics["weights_digest_by_rank"], "mrr": metrics["mrr"],
            "best": metrics["best_validation_mrr"],
            "checkpoints": sorted(path.name for path in output_dir.glob("checkpoint-*")),
            "evaluations": [(entry["step"], entry["eval_mrr"]) for entry in history if "eval_mrr" in entry]}


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tiny_backbone, tmp_path_factory) -> dict:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    outcome = _outcome(output_dir, train(_settings(data_dir, tiny_backbone, output_dir)))
    assert outcome["evaluations"][-1][0] == 9 and len(outcome["evaluations"]) == 3, "the run stops early at step 9"
    return outcome


# ------------------------------------------------------------------------------------------------ 1. exact resume

def test_resume_in_a_later_epoch_keeps_patience_and_negatives(data_dir, tiny_backbone, tmp_path, uninterrupted):
    """Killed at step 7 (epoch 2), resumed from checkpoint-6 (mid-epoch 2, one evaluation without improvement):
    the run still stops at step 9, after the same evaluations."""
    with pytest.raises(KeyboardInterrupt):
        train(_settings(data_dir, tiny_backbone, tmp_path), callbacks=[StopAt(7)])
    assert _outcome(tmp_path, train(_settings(data_dir, tiny_backbone, tmp_path))) == uninterrupted


def test_moved_output_dir_resumes_a_run_that_had_ended(data_dir, tiny_backbone, tmp_path, uninterrupted):
    """Killed after training ended (before the final save), then moved: the rerun loads the best checkpoint from the
    new place, without training another step."""
    with pytest.raises(KeyboardInterrupt):
        train(_settings(data_dir, tiny_backbone, tmp_path / "before"), callbacks=[StopAt()])
    shutil.move(tmp_path / "before", tmp_path / "after")
    metrics = train(_settings(data_dir, tiny_backbone, tmp_path / "after"))
    assert _outcome(tmp_path / "after", metrics) == uninterrupted


def test_same_dir_by_another_path_resumes(data_dir, tiny_backbone, tmp_path, monkeypatch):
    settings = _settings(data_dir, tiny_backbone, tmp_path / "run")
    assert prepare_output_dir(settings) is None
    monkeypatch.chdir(tmp_path)
    settings.output_dir = "run"
    assert prepare_output_dir(settings) is None  # the same run: no refusal


# ------------------------------------------------------------------------------------------- 2. atomic saves

def test_interrupted_resave_keeps_the_good_adapter(adapters, tmp_path, monkeypatch):
    directory = shutil.copytree(adapters / "toys", tmp_path / "toys")
    before = {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}
    model = LoraRecommender.from_pretrained(directory)

    def open_then_crash(self, save_directory, **kwargs):
        open(os.path.join(save_directory, "adapter_config.json"), "w").close()
        raise KeyboardInterrupt("killed while writing adapter_config.json")

    monkeypatch.setattr(PeftConfigMixin, "save_pretrained", open_then_crash)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(directory)
    assert {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()} == before
    assert not list(directory.glob(".*"))  # nor a temporary left
    LoraRecommender.from_pretrained(directory)


def test_atomic_writes_give_the_permissions_of_a_plain_write(adapters, tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.json", lambda path: path.write_text("{}"))
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
        (tmp_path / "new.json").chmod(0o600)
        atomic_write(tmp_path / "new.json", lambda path: path.write_text("[]"))
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o600  # a replaced file keeps its mode
        LoraRecommender.from_pretrained(adapters / "toys").save_pretrained(tmp_path / "saved")
        assert {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "saved").iterdir()} == {
            name: 0o644 for name in ("adapter_config.json", "adapter_model.safetensors", "config.json",
                                     "model.safetensors", "README.md")}
    finally:
        os.umask(umask)


# ------------------------------------------------------------------------------------ 3. complete checkpoints

def test_half_written_checkpoint_is_not_the_resume_point(tmp_path, capsys):
    for step in (3, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6, "log_hist')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert "checkpoint-6 is incomplete" in capsys.readouterr().out
    assert not (tmp_path / "checkpoint-6").exists()  # the resumed run writes it again


# ---------------------------------------------------------------------------- 4. settings recorded after checks

def test_mistyped_domain_does_not_claim_the_output_dir(data_dir, tiny_backbone, tmp_path, capsys):
    command = ["train-adapter", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "run"), "--backbone",
               str(tiny_backbone), *SMALL]
    assert main([*command, "--domain", "Tolls"]) == 1
    assert "Tolls" in capsys.readouterr().err and not (tmp_path / "run" / "run_settings.json").exists()
    assert main([*command, "--domain", "Toys", "--max-steps", "1"]) == 0


# ----------------------------------------------------------------------- 5, 6. user errors: message, status 1

def _evaluate(model_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["evaluate", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
            "--max-eval-users", "4", "--val-users", "4", "--max-length", "48", *extra]


def _edit_json(path: Path, **changes) -> None:
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


@pytest.fixture
def adapter_copy(adapters, tmp_path) -> Path:
    return shutil.copytree(adapters / "toys", tmp_path / "toys")


@pytest.fixture
def xcross_dir(adapters, tiny_backbone, tmp_path) -> Path:
    """An X-Cross checkpoint over two adapters of ranks 4 and 2 (the bank pads the second to rank 4)."""
    sources = {name: make_adapter(tmp_path / name, tiny_backbone, seed=seed, r=r)
               for name, seed, r in (("wide", 1, 4), ("narrow", 2, 2))}
    XCrossForSequentialRecommendation.from_adapters(tiny_backbone, sources,
                                                    **PAPER_SCORING).save_pretrained(tmp_path / "xcross")
    return tmp_path / "xcross"


@pytest.mark.parametrize("content", ["", '{"r": 8, '])
def test_malformed_adapter_config_is_named(adapter_copy, data_dir, tiny_backbone, tmp_path, content, capsys):
    (adapter_copy / "adapter_config.json").write_text(content)
    assert main(_evaluate(adapter_copy, data_dir)) == 1
    assert main(["train", "--target", "Toys", "--sources", str(adapter_copy), "--data-dir", str(data_dir),
                 "--output-dir", str(tmp_path / "x"), "--backbone", str(tiny_backbone), *SMALL]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 2 and all(f"{adapter_copy / 'adapter_config.json'} is not valid JSON" in line
                                    for line in errors)


@pytest.mark.parametrize("file", ["adapter_model.safetensors", "model.safetensors"])
def test_truncated_safetensors_is_named(adapter_copy, data_dir, file, capsys):
    path = adapter_copy / file
    path.write_bytes(path.read_bytes()[:100])
    assert main(_evaluate(adapter_copy, data_dir)) == 1
    assert f"{path} is not a valid safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"r": 4}, "declares r=4 but its weights have ranks [8]"),
    ({"target_modules": ["query", "key", "value"]}, "target_modules edited"),
])
def test_adapter_config_edited_against_its_weights_is_refused(adapter_copy, data_dir, change, message, capsys):
    _edit_json(adapter_copy / "adapter_config.json", **change)
    assert main(_evaluate(adapter_copy, data_dir)) == 1
    assert message in capsys.readouterr().err


def test_missing_model_safetensors_is_named_without_a_hub_url(xcross_dir, data_dir, capsys):
    (xcross_dir / "model.safetensors").unlink()
    assert main(_evaluate(xcross_dir, data_dir)) == 1
    error = capsys.readouterr().err
    assert "no model.safetensors" in error and "huggingface.co" not in error


@pytest.mark.parametrize("option, value", [("--epochs", "nan"), ("--epochs", "0"), ("--epochs", "-1"),
                                           ("--learning-rate", "nan"), ("--learning-rate", "-1"), ("--seed", "-1"),
                                           ("--max-steps", "0")])
def test_invalid_numbers_are_usage_errors(data_dir, tmp_path, option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train-adapter", "--domain", "Toys", "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
              option, value])
    assert exit_.value.code == 2 and f"argument {option}:" in capsys.readouterr().err


@pytest.mark.parametrize("scoring, max_length", [("dual", "1"), ("dual", "2"), ("cross", "4")])
def test_max_length_too_small_for_the_prompts_is_refused_upfront(data_dir, tiny_backbone, tmp_path, scoring,
                                                                  max_length, capsys):
    # [CLS] title [SEP] (dual), [CLS] history [SEP] candidate [SEP] (cross): no room for a title token.
    assert main(["train-adapter", "--domain", "Toys", "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
                 "--backbone", str(tiny_backbone), *SMALL, "--max-length", max_length, "--scoring", scoring]) == 1
    assert f"--max-length {max_length} is too small" in capsys.readouterr().err
    assert not (tmp_path / "run_settings.json").exists()


def test_debug_shows_the_traceback(data_dir, tmp_path):
    with pytest.raises(DataError, match="Tolls"):
        main(["train-adapter", "--domain", "Tolls", "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
              "--debug"])


def test_wrong_model_type_is_refused(xcross_dir, data_dir, capsys):
    _edit_json(xcross_dir / "config.json", model_type="bert")
    assert main(_evaluate(xcross_dir, data_dir)) == 1
    assert "model_type 'bert', not 'xcross'" in capsys.readouterr().err


def test_missing_base_config_is_named(xcross_dir):
    content = json.loads((xcross_dir / "config.json").read_text())
    del content["base_config"]
    (xcross_dir / "config.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match="base_config is missing"):
        XCrossForSequentialRecommendation.from_pretrained(xcross_dir)


@pytest.mark.parametrize("rank", [1, 3])
def test_edited_rank_in_a_checkpoint_config_is_refused(xcross_dir, rank):
    """The narrow adapter (r=2) sits in a bank padded to rank 4, so any r up to 4 has the stored shapes."""
    content = json.loads((xcross_dir / "config.json").read_text())
    content["adapters"][1]["r"] = rank
    (xcross_dir / "config.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=rf"adapter 'narrow' is declared with r={rank}.*rank 2"):
        XCrossForSequentialRecommendation.from_pretrained(xcross_dir)


@pytest.fixture
def recommenders(adapters, xcross_dir):
    return [XCrossForSequentialRecommendation.from_pretrained(xcross_dir), LoraRecommender.from_pretrained(
        adapters / "toys")]


def _valid_inputs(model) -> dict:
    """Inputs of the model's scoring form: 2 examples, 3 candidates, 4 tokens."""
    candidates, _ = random_inputs(2, 3, 4)
    if model.config.scoring == "dual":
        return {"input_ids": candidates[:, 0], "candidate_input_ids": candidates}
    return {"input_ids": candidates}


def test_inputs_of_other_shapes_are_refused(recommenders):
    assert {model.config.scoring for model in recommenders} == {"cross", "dual"}, "both scoring forms are covered"
    for model in recommenders:
        for name, ids in _valid_inputs(model).items():
            mask = torch.ones_like(ids).reshape(*reversed(ids.shape))
            shown = re.escape(f"has shape {tuple(mask.shape)}, but {name} {tuple(ids.shape)}")
            with pytest.raises(ValueError, match=shown):
                model(**_valid_inputs(model), **{name.replace("input_ids", "attention_mask"): mask})


def test_empty_batch_and_labels_out_of_range_are_refused(recommenders):
    for model in recommenders:
        inputs = _valid_inputs(model)
        with pytest.raises(ValueError, match="is empty"):
            model(**{name: ids[:0] for name, ids in inputs.items()})
        with pytest.raises(ValueError, match=r"candidate indices from 0 to 2, got \[0, 3\]"):
            model(**inputs, labels=torch.tensor([0, 3]))


@pytest.mark.parametrize("problem", ["duplicate", "boolean-id", "boolean-history"])
def test_ambiguous_item_ids_are_refused(tmp_path, problem):
    root = make_domain(tmp_path, "Toys")
    smap_file, train_file = root / "Toys" / "smap.json", root / "Toys" / "train.json"
    if problem == "duplicate":
        _edit_json(smap_file, A0001=0)  # A0000 and A0001 would share item 0 and its title
    elif problem == "boolean-id":
        _edit_json(smap_file, A0001=True)  # Python reads true as 1
    else:
        _edit_json(train_file, **{"0": [0, True, 2]})
    match = {"duplicate": "'A0000' and 'A0001' both map to item id 0", "boolean-id": "maps to True, not an integer",
             "boolean-history": "user '0' has true in its history"}[problem]
    with pytest.raises(DataError, match=match):
        load_domain(root, "Toys")


# -------------------------------------------------------------------------------------- 7. forward compatibility

def test_decoder_forward_uses_no_deprecated_transformers_call(tmp_path):
    base = make_base(tmp_path / "llama", "llama")
    adapter = make_adapter(tmp_path / "lora", base, seed=1, family="llama")
    model = XCrossForSequentialRecommendation.from_adapters(base, {"a": adapter, "b": adapter}, **PAPER_SCORING)
    input_ids, attention_mask = random_inputs(2, 3, 5, pad_from=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        model(input_ids, attention_mask=attention_mask)
