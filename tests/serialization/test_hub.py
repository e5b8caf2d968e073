"""Publishing to and loading from the Hub, through the real clients talking HTTP to the loopback fake Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModel

from configuration_xcross import PAPER_SCORING
from conftest import make_adapter, make_base, random_inputs, randomize_integrator
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.peft_export import export_adapter

REPO = "org/xcross-toys-tools"
INPUTS = random_inputs(2, 3, 6, pad_from=4)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A tiny BERT base and two PEFT adapters on disk, and a newer version of the toys adapter."""
    root = tmp_path_factory.mktemp("hub-sources")
    base = make_base(root / "base", "bert")
    return {"base": base, "toys": make_adapter(root / "toys", base, seed=1), "tools": make_adapter(root / "tools", base, seed=3),
            "toys_v2": make_adapter(root / "toys_v2", base, seed=5)}


@pytest.fixture
def published(hub, local):
    """Base and adapters published as ordinary transformers / PEFT repos; returns their commits."""
    AutoModel.from_pretrained(local["base"]).push_to_hub("org/tiny-bert")
    api = HfApi()
    commits = {"base": api.model_info("org/tiny-bert").sha}
    for name in ("toys", "tools"):
        api.create_repo(f"org/{name}-lora")
        commits[name] = api.upload_folder(repo_id=f"org/{name}-lora", folder_path=local[name]).oid
    return commits


def logits_of(model):
    with torch.no_grad():
        return model(INPUTS[0], attention_mask=INPUTS[1]).logits


def build(seed=7):
    model = XCrossForSequentialRecommendation.from_adapters(
        "org/tiny-bert", {"toys": "org/toys-lora", "tools": ("org/tools-lora", "main")}, beta=0.5, gamma=0.25,
                                                            **PAPER_SCORING).eval()
    randomize_integrator(model, seed=seed)
    return model


def clear_cache():
    from huggingface_hub import constants
    import shutil
    shutil.rmtree(constants.HF_HUB_CACHE, ignore_errors=True)


def test_downloads_record_commits(published):
    model = build()
    assert model.config.base_model_revision == published["base"]
    assert [(spec.source, spec.revision) for spec in model.config.adapter_specs] == [
        ("org/toys-lora", published["toys"]), ("org/tools-lora", published["tools"])]


def test_push_refers_to_base_and_adapters_and_loads_into_empty_cache(published):
    model = build()
    expected = logits_of(model)
    commit = model.push_to_hub(REPO, metrics={"ndcg@10": 0.4321})
    files = {entry.path for entry in HfApi().list_repo_tree(REPO)}
    assert files == {".gitattributes", "config.json", "model.safetensors", "configuration_xcross.py",
                     "modeling_xcross.py", "README.md"}
    with safe_open(hf_hub_download(REPO, "model.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert keys == {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    config = json.loads(Path(hf_hub_download(REPO, "config.json")).read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_xcross.XCrossForSequentialRecommendation"
    card = Path(hf_hub_download(REPO, "README.md")).read_text()
    assert published["base"] in card and published["toys"] in card and "0.4321" in card and "beta = 0.5" in card

    clear_cache()
    loaded = AutoModel.from_pretrained(REPO)
    assert type(loaded) is XCrossForSequentialRecommendation
    torch.testing.assert_close(logits_of(loaded), expected)
    assert AutoModel.from_pretrained(REPO, revision=commit.oid).config.adapters == model.config.adapters


def test_self_contained_push_holds_base_and_bank(published):
    model = build()
    model.push_to_hub(REPO, self_contained=True)
    with safe_open(hf_hub_download(REPO, "model.safetensors"), "pt") as handle:
        assert set(handle.keys()) == set(model.state_dict())
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(REPO)), logits_of(model))


def test_pinned_revisions_survive_newer_pushes(published, local):
    model = build()
    first = model.push_to_hub(REPO).oid
    # A newer adapter on the adapter repo's main and a newer X-Cross on the model repo's main.
    HfApi().upload_folder(repo_id="org/toys-lora", folder_path=local["toys_v2"])
    newer = build(seed=8)
    assert newer.config.adapter_specs[0].revision != published["toys"]
    newer.push_to_hub(REPO)
    clear_cache()
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(REPO, revision=first)), logits_of(model))
    torch.testing.assert_close(logits_of(AutoModel.from_pretrained(REPO)), logits_of(newer))


def _run_python(script: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | env
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=120)


LOAD_AND_PRINT = """
import json, sys, torch
from transformers import AutoModel
ids, mask = torch.tensor(json.loads(sys.argv[-1] if False else {inputs!r}))
model = AutoModel.from_pretrained({repo!r})
print(type(model).__module__)
print(json.dumps(model(ids, attention_mask=mask).logits.tolist()))
"""

def _load_script() -> str:
    inputs = json.dumps([INPUTS[0].tolist(), INPUTS[1].tolist()])
    return LOAD_AND_PRINT.format(inputs=inputs, repo=REPO).replace(
        "torch.tensor(json.loads(sys.argv[-1] if False else ", "map(torch.tensor, json.loads(")


def test_offline_load_from_cache(hub, published, tmp_path):
    model = build()
    model.push_to_hub(REPO)
    clear_cache()
    AutoModel.from_pretrained(REPO)  # fills the cache: X-Cross repo, base and adapters
    before = len(hub.requests)
    script = "import modeling_xcross\n" + _load_script()
    result = _run_python(script, cwd=Path.cwd(), HF_HUB_OFFLINE="1", PYTHONPATH=str(Path.cwd()))
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.tensor(json.loads(result.stdout.strip().splitlines()[-1])), logits_of(model))
    assert len(hub.requests) == before, "an offline load must not reach the Hub"


def test_missing_repo_is_a_clear_error(hub):
    with pytest.raises(OSError, match="org/nope is not a local folder and is not a valid model identifier"):
        AutoModel.from_pretrained("org/nope")


def test_missing_adapter_repo_is_a_clear_error(published):
    with pytest.raises(OSError, match="Cannot read the PEFT LoRA adapter from Hub repo 'org/nope-lora'"):
        XCrossForSequentialRecommendation.from_adapters("org/tiny-bert", {"toys": "org/nope-lora"}, **PAPER_SCORING)


def test_missing_weights_file_is_a_clear_error(published, tmp_path):
    build().config.save_pretrained(tmp_path)
    HfApi().create_repo(REPO)
    HfApi().upload_file(path_or_fileobj=tmp_path / "config.json", path_in_repo="config.json", repo_id=REPO)
    with pytest.raises(OSError, match="does not appear to have a file named model.safetensors"):
        AutoModel.from_pretrained(REPO)


def test_unknown_revision_is_a_clear_error(published):
    build().push_to_hub(REPO)
    with pytest.raises(OSError, match="v9 is not a valid git identifier"):
        AutoModel.from_pretrained(REPO, revision="v9")


def test_corrupted_weights_file_is_a_clear_error(hub, published):
    build().push_to_hub(REPO)
    hub.corrupt(REPO, "model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(OSError, match="is not a valid safetensors file .* force_download=True"):
        AutoModel.from_pretrained(REPO)


def test_exported_bank_adapter_is_a_peft_repo(published, local, tmp_path):
    model = build()
    HfApi().create_repo("org/toys-exported")
    HfApi().upload_folder(repo_id="org/toys-exported", folder_path=export_adapter(model, "toys", tmp_path / "toys"))
    base = AutoModel.from_pretrained(local["base"]).eval()
    ids = INPUTS[0][:, 0]
    with torch.no_grad():
        original = PeftModel.from_pretrained(base, local["toys"]).eval()(ids).last_hidden_state
        base = AutoModel.from_pretrained(local["base"]).eval()
        exported = PeftModel.from_pretrained(base, "org/toys-exported").eval()(ids).last_hidden_state
    torch.testing.assert_close(exported, original)


def test_build_cli_from_hub_repos_records_commits(published, tmp_path):
    from conversion.build_xcross import main

    main(["--base", "org/tiny-bert", "--base-revision", "main", "--adapter", "toys=org/toys-lora@main",
          "--adapter", "tools=org/tools-lora", "--output-dir", str(tmp_path / "x")])
    config = json.loads((tmp_path / "x" / "config.json").read_text())
    assert config["base_model_revision"] == published["base"]
    assert [entry["revision"] for entry in config["adapters"]] == [published["toys"], published["tools"]]


def test_export_adapters_cli_pushes_peft_repos(published, local, tmp_path):
    from conversion.export_adapters import export_and_push

    build().push_to_hub(REPO)
    commits = export_and_push(REPO, tmp_path / "out", push_prefix="org/exported-")
    assert set(commits) == {"toys", "tools"} and (tmp_path / "out" / "tools" / "adapter_config.json").is_file()
    ids = INPUTS[0][:, 0]
    with torch.no_grad():
        expected = PeftModel.from_pretrained(AutoModel.from_pretrained(local["base"]), local["tools"])(ids)
        got = PeftModel.from_pretrained(AutoModel.from_pretrained(local["base"]), "org/exported-tools")(ids)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state)
