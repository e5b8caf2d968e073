"""`xcross prepare` on tables a careless or hostile user could give it (issue 42): ids read as text, times read one
way, damaged or empty files refused in one line naming the file and the fix, and a domain folder never written over
without --overwrite. Tiny tables written here; no model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.interactions import read_interactions

EVENTS = [("u1", "i1", 1), ("u1", "i2", 2), ("u1", "i3", 3), ("u2", "i2", 4), ("u2", "i3", 5), ("u2", "i1", 6),
          ("u3", "i3", 7), ("u3", "i1", 8), ("u3", "i2", 9)]
ITEMS = [("i1", "Red ball"), ("i2", "Blue kite"), ("i3", "Green car")]


def write_csv(path: Path, header: list[str], rows, encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def prepare(tmp_path: Path, events: Path, items: Path, *options: str) -> int:
    return main(["prepare", "--interactions", str(events), "--items", str(items), "--output-dir",
                 str(tmp_path / "Shop"), "--min-interactions", "2", "--test-fraction", "0.34", *options])


@pytest.fixture
def items_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "items.csv", ["item_id", "title"], ITEMS)


@pytest.fixture
def events_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], EVENTS)


def one_line_error(capsys, *parts: str) -> str:
    """The command's error: one line, no traceback, holding every part."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


# -------------------------------------------------------------------------------------------- ids read as text

def test_item_ids_with_leading_zeros_stay_distinct(tmp_path):
    """`0012` and `12` are two items (type guessing read both as 12, dropped the second and credited its events to
    the first); users `007` and `7` are two users."""
    items = write_csv(tmp_path / "items.csv", ["item_id", "title"], [("0012", "Hammer"), ("12", "Saw"), ("5", "Nail")])
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"],
                       [("007", "0012", 1), ("007", "5", 2), ("007", "12", 3),
                        ("7", "12", 1), ("7", "5", 2), ("7", "0012", 3)])
    domain = read_interactions(events, items, min_interactions=2, test_fraction=0.5)
    assert set(domain.smap) == {"0012", "12", "5"}
    assert domain.meta == {"0012": "Hammer", "12": "Saw", "5": "Nail"}
    histories = {**domain.train, **domain.test}
    assert set(histories) == {"007", "7"} and all(len(history) == 3 for history in histories.values())
    assert not domain.report  # nothing dropped as a repeat


def test_numeric_titles_are_titles_and_an_empty_title_column_is_refused(tmp_path, events_csv, capsys):
    numbered = write_csv(tmp_path / "numbered.csv", ["item_id", "title"], [("i1", "1984"), ("i2", "2001"),
                                                                           ("i3", "Green car")])
    assert prepare(tmp_path, events_csv, numbered) == 0
    assert "items kept whose title is only a number (check --title-column title): 2" in capsys.readouterr().out
    assert json.loads((tmp_path / "Shop" / "meta_data.json").read_text())["i1"] == "1984"
    empty = write_csv(tmp_path / "empty_titles.csv", ["item_id", "title"], [("i1", ""), ("i2", " "), ("i3", "")])
    assert prepare(tmp_path / "b", events_csv, empty) == 1
    one_line_error(capsys, "no item with a usable title in column 'title' (every value is empty or not text)")


# --------------------------------------------------------------------------- files refused in one line, exit 1

@pytest.mark.parametrize("case, parts", [
    ("empty file", ["events.csv is empty"]),
    ("header without rows", ["events.csv has a header but no rows"]),
    ("latin-1", ["events.csv is not utf-8 text (byte 0xe9", "--encoding latin-1"]),
    ("broken JSON line", ["events.jsonl line 3 is not valid JSON", "fix or remove that line"]),
    ("truncated Parquet", ["events.parquet is not a readable Parquet file", "truncated or damaged"]),
    ("ragged CSV", ["events.csv line 3 has 4 fields where the header has 3"]),
])
def test_unreadable_interaction_files_are_refused_in_one_line(tmp_path, items_csv, capsys, case, parts):
    if case == "empty file":
        events = tmp_path / "events.csv"
        events.write_text("")
    elif case == "header without rows":
        events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], [])
    elif case == "latin-1":
        events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"],
                           [("José", "i1", 1), *EVENTS], encoding="latin-1")
    elif case == "broken JSON line":
        rows = [{"user_id": u, "item_id": i, "timestamp": t} for u, i, t in EVENTS]
        events = write_jsonl(tmp_path / "events.jsonl", rows)
        lines = events.read_text().splitlines()
        lines[2] = lines[2][:-5]
        events.write_text("\n".join(lines) + "\n")
    elif case == "truncated Parquet":
        events = tmp_path / "events.parquet"
        pq.write_table(pa.table({"user_id": [u for u, _, _ in EVENTS], "item_id": [i for _, i, _ in EVENTS],
                                 "timestamp": [t for _, _, t in EVENTS]}), events)
        events.write_bytes(events.read_bytes()[:-40])
    else:
        events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], EVENTS)
        lines = events.read_text().splitlines()
        lines[2] += ",extra"
        events.write_text("\n".join(lines) + "\n")
    assert prepare(tmp_path, events, items_csv) == 1
    one_line_error(capsys, "xcross prepare: error: The interactions table", *parts)
    assert not (tmp_path / "Shop").exists()


def test_an_empty_items_file_is_refused_in_one_line(tmp_path, events_csv, capsys):
    (tmp_path / "items.jsonl").write_text("\n")
    assert prepare(tmp_path, events_csv, tmp_path / "items.jsonl") == 1
    one_line_error(capsys, "The items table", "items.jsonl is empty")


def test_a_declared_encoding_is_read(tmp_path, items_csv, capsys):
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"],
                       [("José", "i1", 1), ("José", "i2", 2), *EVENTS], encoding="latin-1")
    assert prepare(tmp_path, events, items_csv, "--encoding", "latin-1") == 0
    histories = {**json.loads((tmp_path / "Shop" / "train.json").read_text()),
                 **json.loads((tmp_path / "Shop" / "test.json").read_text())}
    assert "José" in histories
    assert prepare(tmp_path / "b", events, items_csv, "--encoding", "klingon") == 1
    one_line_error(capsys, "--encoding 'klingon' is not a known text encoding")


def test_line_breaks_inside_titles_stay_inside_their_row(tmp_path, events_csv):
    """A quoted CSV field may hold a line break, and a JSON string a U+2028 (a line break to str.splitlines)."""
    items = write_csv(tmp_path / "items.csv", ["item_id", "title"], [("i1", "Red\nball"), *ITEMS[1:]])
    assert read_interactions(events_csv, items, min_interactions=2).meta["i1"] == "Red\nball"
    jsonl = write_jsonl(tmp_path / "items.jsonl", [{"item_id": "i1", "title": "Red\u2028ball"},
                                                   *({"item_id": i, "title": t} for i, t in ITEMS[1:])])
    jsonl.write_text(jsonl.read_text().replace("\\u2028", "\u2028"))  # the raw character, as JSON allows
    assert read_interactions(events_csv, jsonl, min_interactions=2).meta["i1"] == "Red\u2028ball"


def test_a_utf8_byte_order_mark_does_not_rename_the_first_column(tmp_path, items_csv):
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], EVENTS, encoding="utf-8-sig")
    assert prepare(tmp_path, events, items_csv) == 0


# ------------------------------------------------------------------------------------------ time read one way

def test_a_time_column_mixing_numbers_and_iso_text_is_refused_at_the_first_other_row(tmp_path, items_csv, capsys):
    rows = [("u1", "i1", "1714550400"), ("u1", "i2", "1714554000"), ("u1", "i3", "2024-05-01T12:00:00"),
            ("u2", "i1", "2024-05-01T13:00:00+02:00")]
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], rows)
    assert prepare(tmp_path, events, items_csv) == 1
    one_line_error(capsys, "row 3: column 'timestamp' holds '2024-05-01T12:00:00' (ISO 8601), but row 1 holds "
                           "'1714550400' (number)", "all numbers or all ISO 8601")


def test_zone_less_times_are_utc_whatever_the_machine_zone(tmp_path, items_csv, monkeypatch):
    """10:30 without a zone is 10:30 UTC, so it comes after 12:00+02:00 (10:00 UTC) on any machine."""
    import time

    rows = [("u1", "i1", "2024-05-01T09:00:00Z"), ("u1", "i2", "2024-05-01T10:30:00"),
            ("u1", "i3", "2024-05-01T12:00:00+02:00")]
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "timestamp"], rows)
    orders = []
    for zone in ("UTC", "America/Los_Angeles", "Asia/Tokyo"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        domain = read_interactions(events, items_csv, min_interactions=2, test_fraction=0)
        orders.append([next(item for item, i in domain.smap.items() if i == position)
                       for position in domain.train["u1"]])
    monkeypatch.delenv("TZ")
    time.tzset()
    assert orders == [["i1", "i3", "i2"]] * 3


# -------------------------------------------------------------------------------------- nothing overwritten

def test_an_existing_domain_folder_is_not_written_over_without_overwrite(tmp_path, events_csv, items_csv, capsys):
    assert prepare(tmp_path, events_csv, items_csv) == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "Shop").iterdir()}
    fewer = write_csv(tmp_path / "fewer.csv", ["user_id", "item_id", "timestamp"], EVENTS[:6])
    capsys.readouterr()
    assert prepare(tmp_path, fewer, items_csv) == 1
    one_line_error(capsys, "Shop already holds files (meta_data.json, smap.json, test.json, timestamps.json, "
                   "train.json)",
                   "--overwrite")
    assert {path.name: path.read_bytes() for path in (tmp_path / "Shop").iterdir()} == before
    assert prepare(tmp_path, fewer, items_csv, "--overwrite") == 0
    assert {path.name: path.read_bytes() for path in (tmp_path / "Shop").iterdir()} != before
    assert not list((tmp_path / "Shop").glob(".*"))  # no temporary left: each file was replaced whole
