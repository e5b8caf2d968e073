"""The README's Python example runs as printed: on the tiny random BERT instead of MiniLM (its one Hub id swapped for
the tiny base's path) with two random LoRA adapters where it names its adapter directories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import make_adapter

ROOT = Path(__file__).resolve().parents[2]
MINILM = '"sentence-transformers/all-MiniLM-L6-v2"'


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_readme_python_example_runs_and_reloads_the_same_scores(tiny_backbone, tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert MINILM in code
    for seed, name in ((1, "toys"), (2, "sports")):
        make_adapter(tmp_path / "runs" / f"lora-{name}", tiny_backbone, seed=seed)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace(MINILM, repr(str(tiny_backbone))), "README.md", "exec"), namespace)

    printed = capsys.readouterr().out.splitlines()
    scores = [float(value) for value in re.findall(r"-?\d+\.\d+", printed[0])]
    assert printed[0].startswith("tensor([[") and len(scores) == len(namespace["counts"])
    # The example reloads with AutoModel and recommends from that model: it scores the example as the built one did.
    reloaded, example = namespace["model"], namespace["example"]
    from modeling_xcross.inference.model_inputs import model_collator

    with torch.no_grad():
        again = reloaded(**model_collator(reloaded)([example])).logits[0].tolist()
    assert [round(value, 4) for value in again] == scores
    top = namespace["top"]
    assert printed[1] == str([(item.rank, item.title, round(item.score, 3)) for item in top])
    assert [item.rank for item in top] == [1, 2] and {item.title for item in top} <= set(namespace["counts"])
    # The catalogue is the candidates: its top 2 are their two best scores (encoded in other batches: float noise).
    assert [item.score for item in top] == pytest.approx(sorted(again, reverse=True)[:2], abs=1e-4)
