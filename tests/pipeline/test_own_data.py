"""Your own interactions (`xcross prepare`, pipeline/interactions.py) and long titles cut instead of refused, on
tiny tables written here and the tiny random BERT."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoTokenizer
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from conftest import SMALL, make_domain
from modeling_xcross.pipeline.cli import main
from modeling_xcross.inference.collator import RecommendationCollator
from modeling_xcross.pipeline.data import DataError, load_domain
from modeling_xcross.pipeline.interactions import InteractionColumns, read_interactions

ROOT = Path(__file__).resolve().parents[2]
EVENTS = [("u1", "i1", 1), ("u1", "i2", 2), ("u1", "i2", 2), ("u1", "i3", 5),  # a repeated row
          ("u2", "i3", 3), ("u2", "i1", 1), ("u2", "i4", 2),  # out of time order; i4 has no title
          ("u3", "i1", 10), ("u3", "i5", 11), ("u3", "i2", 12),  # the latest last interaction
          ("u4", "i1", 4)]  # one interaction
ITEMS = [("i1", "Red ball"), ("i2", "Blue kite"), ("i3", "Green car"), ("i4", ""), ("i5", "Doll"),
         ("i5", "Doll, again"), ("i6", "Never bought")]


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def tables(tmp_path):
    return (write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], EVENTS),
            write_csv(tmp_path / "items.csv", ["item_id", "title"], ITEMS))


def test_prepare_writes_a_domain_folder_split_by_time_and_says_what_it_dropped(tables, tmp_path, capsys):
    events, items = tables
    assert main(["prepare", "--interactions", str(events), "--items", str(items), "--output-dir",
                 str(tmp_path / "Shop"), "--min-interactions", "2", "--test-fraction", "0.34"]) == 0
    printed = capsys.readouterr().out
    for line in ("kept 2 train users, 1 test users, 4 items", "duplicates (same user, item and time): 1",
                 "interactions dropped: item without a usable title: 1", "a repeated item (the first row kept): 1",
                 "fewer than 2 interactions: 1", "titled but in no kept user's history: 1"):
        assert line in printed
    folder = tmp_path / "Shop"
    smap = json.loads((folder / "smap.json").read_text())
    assert smap == {"i1": 0, "i2": 1, "i3": 2, "i5": 3}
    assert json.loads((folder / "meta_data.json").read_text())["i5"] == "Doll"
    # Time order within each history; u3's last interaction is the latest, so u3 is the test user.
    assert json.loads((folder / "train.json").read_text()) == {"u1": [0, 1, 2], "u2": [0, 2]}
    assert json.loads((folder / "test.json").read_text()) == {"u3": [0, 3, 1]}
    domain = load_domain(tmp_path, "Shop")
    assert domain.titles[3] == "Doll" and set(domain.train) == {"u1", "u2"}


def test_other_formats_column_names_and_random_split(tmp_path):
    rows = [{"who": user, "what": item, "when": f"2024-01-{day:02d}T10:00:00"} for user, item, day in EVENTS]
    with open(tmp_path / "events.jsonl", "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    Dataset.from_dict({"sku": [i for i, _ in ITEMS], "name": [t for _, t in ITEMS]}).to_parquet(
        tmp_path / "items.parquet")
    columns = InteractionColumns(user="who", item="what", timestamp="when", title="name", items_item="sku")
    by_time = read_interactions(tmp_path / "events.jsonl", tmp_path / "items.parquet", columns, 2, 0.34)
    assert by_time.test == {"u3": [0, 3, 1]}
    in_memory = Dataset.from_list(rows)
    by_chance = [read_interactions(in_memory, tmp_path / "items.parquet", columns, 2, 0.34, "random", seed)
                 for seed in range(6)]
    assert all(len(domain.train) == 2 and len(domain.test) == 1 for domain in by_chance)
    assert len({tuple(domain.test) for domain in by_chance}) > 1, "a random split depends on the seed"


@pytest.mark.parametrize("problem, message", [
    ("column", "has no column 'timestamp' (it has 'user_id', 'item_id', 'time'); name the right one with "
               "--time-column"),
    ("unknown", "item 'i7' (column 'item_id') has no row in the items table"),
    ("short", "No user of"),
    ("time", "column 'timestamp' holds 'yesterday', not a time"),
])
def test_unusable_tables_are_refused_with_the_column_and_the_fix(tmp_path, capsys, problem, message):
    events = {"column": (["user_id", "item_id", "time"], EVENTS),
              "unknown": (["user_id", "item_id", "timestamp"], [*EVENTS, ("u1", "i7", 9)]),
              "short": (["user_id", "item_id", "timestamp"], [("u1", "i1", 1), ("u2", "i1", 1)]),
              "time": (["user_id", "item_id", "timestamp"], [("u1", "i1", "yesterday")])}[problem]
    path = write_csv(tmp_path / "events.csv", *events)
    items = write_csv(tmp_path / "items.csv", ["item_id", "title"], ITEMS)
    assert main(["prepare", "--interactions", str(path), "--items", str(items), "--output-dir",
                 str(tmp_path / "Shop")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "Shop").exists()
    with pytest.raises(DataError, match="not .csv, .jsonl, .json or .parquet"):
        read_interactions(tmp_path / "events.xlsx", items)


def test_csv_quickstart_trains_an_adapter_and_xcross_and_recommends(tiny_backbone, tmp_path, capsys):
    """examples/csv_quickstart.py at tiny scale: the CI run of the example."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import csv_quickstart
    finally:
        sys.path.remove(str(ROOT / "examples"))
    csv_quickstart.main(["--output-dir", str(tmp_path), "--backbone", str(tiny_backbone), "--users", "40",
                         "--items", "60", "--max-steps", "4", "--max-length", "32"])
    printed = capsys.readouterr().out
    assert "users dropped: fewer than 3 interactions: 1" in printed
    assert (tmp_path / "lora-books" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "xcross-games" / "metrics.json").read_text())["settings"]["domain"] == "Games"
    table = printed[printed.rindex("rank"):].splitlines()[1:]
    titles = set(json.loads((tmp_path / "data" / "Games" / "meta_data.json").read_text()).values())
    assert len(table) == 5 and all(line.split(None, 3)[3].split("   <-")[0] in titles for line in table)


@pytest.mark.parametrize("scoring", ["dual", "cross"])
def test_a_long_title_is_cut_with_one_note_not_refused(tiny_backbone, tmp_path, scoring):
    long_title = " ".join(["puzzle"] * 40)  # far more tokens than --max-length 32 leaves; the other titles fit
    make_domain(tmp_path, "Long", meta_overrides={"A0003": long_title})
    tokens = len(AutoTokenizer.from_pretrained(tiny_backbone)(long_title, add_special_tokens=False)["input_ids"])
    with CaptureLogger(logging.get_logger("transformers.modeling_xcross.pipeline.models")) as captured:
        assert main(["train-adapter", "--data-dir", str(tmp_path), "--domain", "Long", "--output-dir",
                     str(tmp_path / "run"), "--backbone", str(tiny_backbone), *SMALL, "--max-steps", "2",
                     "--max-length", "32", "--scoring", scoring]) == 0
    notes = [line for line in captured.out.splitlines() if "titles take more than" in line]
    assert len(notes) == 1 and notes[0].startswith("1 of 60 titles") and f"(the longest {tokens})" in notes[0]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_users"] == 6


def test_cross_prompts_keep_a_candidate_whole_where_it_fits_and_cut_its_end_otherwise(tiny_backbone):
    collator = RecommendationCollator(AutoTokenizer.from_pretrained(tiny_backbone), text_pair=True, max_length=24)
    long_title, short_title = " ".join(["puzzle"] * 40), "toy drill"
    cut = collator.fit_title(long_title)
    assert long_title.startswith(cut) and collator.title_lengths([cut]) == [collator.candidate_budget]
    assert collator.fit_title(short_title) == short_title
    history = [" ".join(["tent"] * 30)]
    batch = collator([{"history": history, "candidates": [long_title, short_title], "label": 0}])
    assert batch["input_ids"].shape[-1] == 24
    decoded = [collator.tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "")
               for ids in batch["input_ids"][0]]
    assert decoded[1].endswith("toydrill") and decoded[0].endswith(cut.replace(" ", ""))
