"""The prior variants research/validation_references.py tries on validation users: the history popularity a per-user
prior weight follows (the counts that favour later users are tested with references.py); the pooling the script
scores with."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from modeling_xcross.pipeline.data import load_domain
from modeling_xcross.pipeline.samples import title_counts

from conftest import make_domain

SCRIPT = Path(__file__).resolve().parents[2] / "research" / "validation_references.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("validation_references", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    return load_domain(make_domain(tmp_path_factory.mktemp("data"), "Tools", train_users=40), "Tools")


def test_history_popularity_leaves_the_users_own_share_out(script, domain):
    user = list(domain.train)[3]
    history = domain.train[user][:-1]
    alone = script.weighted_counts(domain, {user: 1.0})
    # Counted on this user alone, its history is popular only through itself: nothing is left once its share goes.
    assert script.history_popularity(domain, history, alone, own=alone) == pytest.approx(0.0, abs=1e-9)
    counts = title_counts(domain, list(domain.train))
    expected = sum(math.log1p(counts[domain.titles[item]]) for item in history) / len(history)
    assert script.history_popularity(domain, history, counts) == pytest.approx(expected)


def test_pooling_reaches_the_untrained_model(script, tiny_backbone, tmp_path, monkeypatch):
    """`--pooling` changes how titles are represented, so the same lists score differently; the record says which."""
    data = make_domain(tmp_path / "data", "Tools", train_users=40)
    results = {}
    for pooling in ("mean", "last"):
        output = tmp_path / f"{pooling}.json"
        monkeypatch.setattr(sys, "argv", [
            "validation_references.py", "--domain", "Tools", "--data-dir", str(data), "--backbone", str(tiny_backbone),
            "--val-users", "8", "--max-train-users", "20", "--max-length", "48", "--decays", "1", "--temperatures",
            "0.2", "--popularity-weights", "0", "--pooling", pooling, "--output", str(output)])
        script.main()
        results[pooling] = json.loads(output.read_text())
    assert [results[pooling]["settings"]["pooling"] for pooling in ("mean", "last")] == ["mean", "last"]
    assert results["mean"]["validation_users"] == 8
    mean, last = (results[pooling]["untrained_dual"][0] for pooling in ("mean", "last"))
    assert mean["loss"] != pytest.approx(last["loss"], abs=1e-6)
