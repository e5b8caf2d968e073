"""A saved X-Cross model is a complete, portable artifact: every way of saving it (save_pretrained, Trainer.save_model,
Trainer.push_to_hub, push_to_hub) gives a directory or repo that AutoModel + AutoTokenizer load in a fresh process
without this package, scoring histories and candidates given as text to the logits of the model that was saved."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as transformers_logging

from configuration_xcross import PAPER_SCORING
from conftest import WORDS, make_adapter, make_base, make_tokenizer, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.modeling_xcross import logger as xcross_logger

HISTORIES = [[f"{WORDS[0]} {WORDS[1]}", f"{WORDS[2]} kit", f"{WORDS[5]} {WORDS[3]}"], [f"{WORDS[4]} rope"]]
CANDIDATES = [[f"{WORDS[6]} lamp", f"{WORDS[7]}", f"{WORDS[8]} {WORDS[9]} 3"], ["hammer", "toy car", "tent"]]

# The subprocess plays a user without this package: no PYTHONPATH, cwd in a temp dir, no user site, and the
# editable install's finder removed before anything is imported; it checks that neither module can be found.
ISOLATION = """
import importlib.util, sys
sys.meta_path[:] = [finder for finder in sys.meta_path if not getattr(finder, "__module__", "").startswith("__editable__")]
sys.path[:] = [entry for entry in sys.path if "__editable__" not in entry]
importlib.invalidate_caches()
for name in ("modeling_xcross", "configuration_xcross"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the isolated process"
"""

def logits_from_text(model, tokenizer, histories=HISTORIES, candidates=CANDIDATES):
    """Scores of every (history, candidate) given as text, from what an artifact holds: its tokenizer and the prompt
    settings of its config (the subprocess runs this very source)."""
    import torch

    tokenizer.truncation_side = "left"
    separator = model.config.prompt["separator"]
    first = [separator.join(history) for history, items in zip(histories, candidates) for _ in items]
    second = [item for items in candidates for item in items]
    batch = tokenizer(first, second, truncation="only_first", max_length=model.config.max_length, padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        return model(**{key: value.view(len(histories), len(candidates[0]), -1) for key, value in batch.items()}).logits


LOAD_AND_SCORE = inspect.getsource(logits_from_text).replace("=HISTORIES", "").replace("=CANDIDATES", "") + """
import json
from transformers import AutoModel, AutoTokenizer
histories, candidates, sources = json.loads(sys.argv[1])
results = {}
for source in sources:
    model = AutoModel.from_pretrained(source, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)  # transformers 5 reads the config first
    logits = logits_from_text(model, tokenizer, histories, candidates)
    results[str(source)] = {"module": type(model).__module__, "logits": logits.tolist()}
# A model loaded from remote code saves again (its own flat files) into a directory that loads the same way.
model.save_pretrained("resaved")
model = AutoModel.from_pretrained("resaved", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("resaved", trust_remote_code=True)
results["resaved"] = {"module": type(model).__module__,
                      "logits": logits_from_text(model, tokenizer, histories, candidates).tolist()}
print(json.dumps(results))
"""


def run_without_the_package(script: str, argument, tmp_path: Path):
    """The JSON last line `script` prints, run in a fresh process without this package (see ISOLATION) and with an
    empty Hub cache; `argument` reaches it as JSON in sys.argv[1]."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment |= {"PYTHONNOUSERSITE": "1", "HF_HOME": str(tmp_path / "fresh-hf-home")}
    workdir = tmp_path / "user"
    workdir.mkdir()
    result = subprocess.run([sys.executable, "-c", ISOLATION + script, json.dumps(argument)],
                            cwd=workdir, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def load_without_the_package(sources: list[str], tmp_path: Path) -> dict:
    return run_without_the_package(LOAD_AND_SCORE, [HISTORIES, CANDIDATES, sources], tmp_path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    base = make_tokenizer(make_base(root / "base", "bert"))
    return {"base": base, "toys": make_adapter(root / "toys", base, seed=1),
            "tools": make_adapter(root / "tools", base, seed=3)}


@pytest.fixture
def model(hub, sources):
    """X-Cross built from a base (with its tokenizer) and adapters published on the test Hub."""
    api = HfApi()
    for repo, folder in (("org/tiny-bert", "base"), ("org/toys-lora", "toys"), ("org/tools-lora", "tools")):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=sources[folder])
    model = XCrossForSequentialRecommendation.from_adapters(
        "org/tiny-bert", {"toys": "org/toys-lora", "tools": "org/tools-lora"}, beta=0.5, max_length=12,
                                                            **PAPER_SCORING).eval()
    randomize_integrator(model, seed=3)
    return model


def test_every_way_of_saving_loads_without_the_package(model, sources, tmp_path):
    expected = logits_from_text(model, AutoTokenizer.from_pretrained(sources["base"]))
    model.save_pretrained(tmp_path / "saved")
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to="none",
                                                          use_cpu=True, hub_model_id="org/xcross-trainer"))
    trainer.save_model(str(tmp_path / "trainer-saved"))
    trainer.push_to_hub()
    model.push_to_hub("org/xcross-pushed")
    artifacts = [str(tmp_path / "saved"), str(tmp_path / "trainer-saved"), "org/xcross-trainer", "org/xcross-pushed"]

    results = load_without_the_package(artifacts, tmp_path)
    for artifact in [*artifacts, "resaved"]:
        assert results[artifact]["module"].startswith("transformers_modules."), artifact
        torch.testing.assert_close(torch.tensor(results[artifact]["logits"]), expected, msg=artifact)
    for repo in artifacts[2:]:
        files = {entry.path for entry in HfApi().list_repo_tree(repo)}
        assert {"tokenizer_config.json", "configuration_xcross.py", "modeling_xcross.py"} <= files, repo


def test_saved_config_carries_the_prompt_and_a_local_base_warns(sources, tmp_path):
    model = XCrossForSequentialRecommendation.from_adapters(sources["base"], {"toys": sources["toys"]},
                                                            prompt={"separator": " | ", "decoder_prefix": "History:",
                                                                    "decoder_suffix": " Next: "}, **PAPER_SCORING)
    with CaptureLogger(xcross_logger) as captured:
        model.save_pretrained(tmp_path / "local")
    assert "by local path" in captured.out and "include_base=True" in captured.out
    config = json.loads((tmp_path / "local" / "config.json").read_text())
    assert config["prompt"]["separator"] == " | " and config["max_length"] == 128
    assert config["auto_map"]["AutoModel"] == "modeling_xcross.XCrossForSequentialRecommendation"
    assert AutoTokenizer.from_pretrained(tmp_path / "local").get_vocab() == AutoTokenizer.from_pretrained(
        sources["base"]).get_vocab()
    with CaptureLogger(xcross_logger) as captured:
        model.save_pretrained(tmp_path / "full", include_base=True)
    assert "by local path" not in captured.out
    transformers_logging.set_verbosity_error()  # transformers' verbosity reaches X-Cross's logger
    try:
        with CaptureLogger(xcross_logger) as captured:
            model.config.base_model_name_or_path = str(sources["toys"])  # another local path: a new warning
            model.save_pretrained(tmp_path / "quiet")
    finally:
        transformers_logging.set_verbosity_warning()
    assert captured.out == ""


def test_tokenizer_given_is_saved_and_a_base_without_one_warns(sources, tmp_path):
    model = XCrossForSequentialRecommendation.from_adapters(sources["base"], {"toys": sources["toys"]}, **PAPER_SCORING)
    tokenizer = AutoTokenizer.from_pretrained(sources["base"], model_max_length=77)
    model.save_pretrained(tmp_path / "given", tokenizer=tokenizer)
    assert AutoTokenizer.from_pretrained(tmp_path / "given").model_max_length == 77
    model.tokenizer = tokenizer
    model.save_pretrained(tmp_path / "attached", include_base=True)
    assert AutoTokenizer.from_pretrained(tmp_path / "attached").model_max_length == 77

    bare = make_base(tmp_path / "bare-base", "bert")  # no tokenizer files
    model = XCrossForSequentialRecommendation.from_adapters(bare, {"toys": sources["toys"]}, **PAPER_SCORING)
    with CaptureLogger(xcross_logger) as captured:
        model.save_pretrained(tmp_path / "no-tokenizer", include_base=True)
    assert "No tokenizer saved" in captured.out and "tokenizer=" in captured.out
    assert not (tmp_path / "no-tokenizer" / "tokenizer_config.json").exists()


def test_prompt_defaults_match_the_pipeline_prompt_format():
    from dataclasses import asdict

    from configuration_xcross import DEFAULT_PROMPT
    from modeling_xcross.inference.prompts import PROMPT

    assert asdict(PROMPT) == DEFAULT_PROMPT


# ------------------------------------------------------------------------------- standard from_pretrained arguments

REPO = "org/xcross-kwargs"


@pytest.fixture
def pushed(model, sources):
    """`model` pushed to REPO (from a clean cache), and its logits on text inputs."""
    model.push_to_hub(REPO)
    from huggingface_hub import constants
    import shutil

    shutil.rmtree(constants.HF_HUB_CACHE, ignore_errors=True)
    return model, logits_from_text(model, AutoTokenizer.from_pretrained(sources["base"]))


def score(loaded, sources):
    return logits_from_text(loaded, AutoTokenizer.from_pretrained(sources["base"]))


@pytest.mark.parametrize("device_map", ["cpu", "auto", {"": "cpu"}, torch.device("cpu")])
def test_device_map_puts_the_whole_model_on_one_device(pushed, sources, device_map):
    loaded = AutoModel.from_pretrained(REPO, device_map=device_map)
    expected_device = torch.device("cuda" if device_map == "auto" and torch.cuda.is_available() else "cpu")
    assert {parameter.device.type for parameter in loaded.parameters()} == {expected_device.type}
    torch.testing.assert_close(score(loaded.cpu(), sources), pushed[1])


@pytest.mark.parametrize("device_map", [{"backbone": "cpu", "head": "meta"}, "balanced"])
def test_device_map_that_splits_the_model_is_refused(pushed, device_map):
    with pytest.raises(ValueError, match="one device"):
        AutoModel.from_pretrained(REPO, device_map=device_map)


def test_low_cpu_mem_usage_is_accepted(pushed, sources):
    torch.testing.assert_close(score(AutoModel.from_pretrained(REPO, low_cpu_mem_usage=True), sources), pushed[1])


def test_output_loading_info_returns_the_model_and_its_info(pushed, sources):
    loaded, info = AutoModel.from_pretrained(REPO, output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    torch.testing.assert_close(score(loaded, sources), pushed[1])


def test_attn_implementation_reaches_the_backbone(pushed, sources):
    assert AutoModel.from_pretrained(REPO).backbone.config._attn_implementation == "sdpa"
    eager = AutoModel.from_pretrained(REPO, attn_implementation="eager")
    assert eager.backbone.config._attn_implementation == "eager"
    torch.testing.assert_close(score(eager, sources), pushed[1], atol=1e-5, rtol=1e-4)


def test_revision_loads_that_commit(pushed, sources):
    first = HfApi().model_info(REPO).sha
    newer = pushed[0]
    randomize_integrator(newer, seed=11)
    newer.push_to_hub(REPO)
    torch.testing.assert_close(score(AutoModel.from_pretrained(REPO, revision=first), sources), pushed[1])
    assert not torch.allclose(score(AutoModel.from_pretrained(REPO), sources), pushed[1])


def test_token_reaches_the_repo_and_the_base(hub, pushed):
    before = len(hub.authorizations)
    AutoModel.from_pretrained(REPO, token="hf_portable_test")
    downloads = [entry for entry in hub.authorizations[before:] if "/resolve/" in entry[0]]
    assert {path.split("/resolve/")[0] for path, _ in downloads} == {f"/{REPO}", "/org/tiny-bert", "/org/toys-lora",
                                                                     "/org/tools-lora"}
    assert {authorization for _, authorization in downloads} == {"Bearer hf_portable_test"}


def test_cache_dir_holds_the_repo_and_the_base(pushed, tmp_path):
    AutoModel.from_pretrained(REPO, cache_dir=tmp_path / "cache")
    cached = {path.name for path in (tmp_path / "cache").iterdir()}
    assert {"models--org--xcross-kwargs", "models--org--tiny-bert"} <= cached


def test_local_files_only_needs_the_cache_and_then_stays_offline(hub, pushed, sources):
    with pytest.raises(OSError):
        AutoModel.from_pretrained(REPO, local_files_only=True)
    AutoModel.from_pretrained(REPO)
    before = len(hub.requests)
    loaded = XCrossForSequentialRecommendation.from_pretrained(REPO, local_files_only=True)
    torch.testing.assert_close(score(loaded, sources), pushed[1])
    assert hub.requests[before:] == []


@pytest.mark.parametrize("argument", [{"quantization_config": {"load_in_8bit": True}}, {"gguf_file": "x.gguf"},
                                      {"tp_plan": "auto"}, {"variant": "fp16"}])
def test_arguments_that_cannot_apply_are_clear_errors(pushed, argument):
    # The class itself: AutoModel reads a gguf_file before it gets there.
    with pytest.raises(ValueError, match=f"does not support `{next(iter(argument))}`"):
        XCrossForSequentialRecommendation.from_pretrained(REPO, **argument)
