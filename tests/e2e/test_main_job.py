"""The README's main job end to end at a tiny scale (tiny random BERT, synthetic domains), and its table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modeling_xcross.pipeline.comparison import ComparisonError, compare

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["X-Cross", "Target LoRA", "popularity", "similarity", "similarity + popularity (untrained)", "random",
        "best reference"]


def test_main_job_trains_scores_and_tabulates(data_dir, tiny_backbone, tmp_path):
    env = {**os.environ, "DATA_DIR": str(data_dir), "BACKBONE": str(tiny_backbone), "TRAIN_USERS": "12",
           "EVAL_USERS": "6", "VAL_USERS": "4", "EPOCHS": "1", "MAX_LENGTH": "48", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    job = [str(ROOT / "examples" / "minilm_toys_sports_to_tools.sh"), str(tmp_path / "out")]
    first = subprocess.run(["bash", *job], env=env, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    table = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert [row["model"] for row in table["rows"]] == ROWS
    assert all({"mrr", "hit@1", "hit@10", "trainable_parameters", "train_time_s"} <= set(row) for row in table["rows"])
    assert {row["test_users"] for row in table["rows"]} == {6}
    assert [row["reference"] for row in table["rows"]] == [False, False, True, True, True, True, True], \
        "the `xcross baseline` rows are the references (no train time in the table)"
    assert (tmp_path / "out" / "comparison_mrr.png").stat().st_size > 0
    assert table["best_reference"].startswith("Best reference, chosen on validation users: ")
    assert "| X-Cross |" in first.stdout and table["verdict"] in first.stdout
    # It ends with X-Cross's top 10 of the whole catalogue for a test user.
    recommended = first.stdout.split("top 10 of the Tools catalogue")[1].splitlines()
    assert recommended[1].split() == ["rank", "score", "item", "title"] and recommended[11].split()[0] == "10"
    # A rerun reuses every finished stage and only rebuilds the table.
    second = subprocess.run(["bash", *job], env=env, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0 and second.stdout.count("done before") == 9, second.stdout[-2000:]


def _metrics(directory: Path, mrr: float, users: int = 10) -> Path:
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"mrr": mrr, "hit@1": mrr / 2, "hit@10": mrr * 2,
                                                        "num_users": users, "wall_time_s": 3.0,
                                                        "trainable_parameters": 7}))
    return directory


def test_comparison_says_who_wins_and_refuses_mismatched_runs(tmp_path):
    runs = {"X-Cross": _metrics(tmp_path / "x", 0.30), "popularity": _metrics(tmp_path / "p", 0.25)}
    text = compare(runs, tmp_path / "out")
    assert "X-Cross wins: MRR 0.3000, +0.0500 over the best other row (popularity, 0.2500)." in text
    runs["similarity"] = _metrics(tmp_path / "s", 0.35)
    assert "X-Cross does not win: MRR 0.3000, -0.0500 against the best row (similarity" in compare(runs, tmp_path / "o")
    runs["random"] = _metrics(tmp_path / "r", 0.13, users=12)
    with pytest.raises(ComparisonError, match="different numbers of test users"):
        compare(runs, tmp_path / "out")
    with pytest.raises(ComparisonError, match="is missing"):
        compare({"X-Cross": tmp_path / "nowhere"}, tmp_path / "out")
