"""The tables a shop has (issue 40): TSV, compressed files, another delimiter, RecBole's atomic files, a pandas
DataFrame, a `datasets.Dataset` and a `DatasetDict` all give the domain the CSV gives; what cannot be read is refused
in one line that names the file, the column and the fix. Tiny tables written here; no model."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import DataError
from modeling_xcross.pipeline.interactions import read_interactions

EVENTS = [("007", "0012", 1), ("007", "A-5", 2), ("007", "12", 3), ("u2", "12", 4), ("u2", "A-5", 5),
          ("u2", "0012", 6), ("u3", "0012", 7), ("u3", "12", 8), ("u3", "A-5", 9)]
ITEMS = [("0012", "Red ball"), ("12", "Blue kite"), ("A-5", "Green car")]
HEADERS = (["user_id", "item_id", "timestamp"], ["item_id", "title"])


def delimited(header: list[str], rows, delimiter: str = ",") -> str:
    lines = [delimiter.join(header), *(delimiter.join(map(str, row)) for row in rows)]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix, open)
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def as_domain(domain) -> tuple:
    return domain.meta, domain.smap, domain.train, domain.test, domain.times


@pytest.fixture
def expected(tmp_path):
    events = write(tmp_path / "events.csv", delimited(HEADERS[0], EVENTS))
    items = write(tmp_path / "items.csv", delimited(HEADERS[1], ITEMS))
    return as_domain(read_interactions(events, items, min_interactions=2, test_fraction=0.34))


@pytest.mark.parametrize("events_name, items_name, delimiter, option", [
    ("events.tsv", "items.tsv", "\t", None),
    ("events.csv.gz", "items.csv.bz2", ",", None),
    ("events.tsv.xz", "items.tsv.gz", "\t", None),
    ("events.csv", "items.csv", ";", "semicolon"),
    ("events.csv", "items.csv", "|", "|"),
])
def test_delimited_and_compressed_files_give_the_csv_domain(tmp_path, expected, events_name, items_name,
                                                            delimiter, option):
    events = write(tmp_path / events_name, delimited(HEADERS[0], EVENTS, delimiter))
    items = write(tmp_path / items_name, delimited(HEADERS[1], ITEMS, delimiter))
    domain = read_interactions(events, items, min_interactions=2, test_fraction=0.34, delimiter=option)
    assert as_domain(domain) == expected


def test_recbole_atomic_files_give_the_csv_domain(tmp_path, expected, capsys):
    inter = write(tmp_path / "shop.inter", delimited(["user_id:token", "item_id:token", "rating:float",
                                                      "timestamp:float"],
                                                     [(user, item, 5.0, float(time)) for user, item, time in EVENTS],
                                                     "\t"))
    item = write(tmp_path / "shop.item", delimited(["item_id:token", "movie_title:token_seq"], ITEMS, "\t"))
    assert main(["prepare", "--interactions", str(inter), "--items", str(item), "--output-dir", str(tmp_path / "Shop"),
                 "--min-interactions", "2", "--test-fraction", "0.34", "--title-column", "movie_title"]) == 0
    folder = tmp_path / "Shop"
    written = [json.loads((folder / name).read_text())
               for name in ("meta_data.json", "smap.json", "train.json", "test.json", "timestamps.json")]
    assert tuple(written) == expected


def test_tables_in_memory_give_the_csv_domain(expected):
    events = pd.DataFrame(EVENTS, columns=HEADERS[0])
    items = pd.DataFrame(ITEMS, columns=HEADERS[1])
    assert as_domain(read_interactions(events, items, min_interactions=2, test_fraction=0.34)) == expected
    dataset = Dataset.from_pandas(events)
    splits = DatasetDict(train=Dataset.from_pandas(items), test=Dataset.from_pandas(items.head(1)))
    domain = read_interactions(DatasetDict(train=dataset), splits, min_interactions=2, test_fraction=0.34,
                               dataset_split="train")
    assert as_domain(domain) == expected
    assert as_domain(read_interactions(dataset, Dataset.from_pandas(items), min_interactions=2,
                                       test_fraction=0.34)) == expected


def test_pandas_times_and_integer_ids_are_read(expected):
    """Datetimes and integer ids of a DataFrame: ids become their text, times their UTC seconds."""
    events = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [10, 11, 11, 10],
                           "timestamp": pd.to_datetime(["2024-05-01 10:00", "2024-05-01 09:00", "2024-05-02 00:00",
                                                        "2024-05-03 00:00"])})
    items = pd.DataFrame({"item_id": [10, 11], "title": ["Red ball", "Blue kite"]})
    domain = read_interactions(events, items, min_interactions=2, test_fraction=0.5)
    assert domain.smap.keys() == {"10", "11"} and domain.train == {"1": [domain.smap["11"], domain.smap["10"]]}
    assert domain.times["1"] == [pd.Timestamp("2024-05-01 09:00", tz="UTC").timestamp(),
                                 pd.Timestamp("2024-05-01 10:00", tz="UTC").timestamp()]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case, parts", [
    ("a TSV named .csv", ["events.csv has no column 'user_id', 'item_id', 'timestamp'", "its header holds tabs",
                          "pass --delimiter tab"]),
    ("a truncated gzip file", ["events.csv.gz is not a readable .gz file", "compress it again"]),
    ("a corrupted xz file", ["events.csv.xz is not a readable .xz file", "compress it again"]),
    ("an atomic header without types", ["shop.inter is a RecBole atomic file", "'user_id' has no type",
                                        "name:type"]),
    ("a compressed Parquet file", ["events.parquet.gz is a compressed Parquet file", "plain .parquet"]),
    ("a delimiter of two characters", ["--delimiter '::' is not one character"]),
    ("the items table's item column", ["items.csv has no column 'item_id' (it has 'sku', 'title')",
                                       "--item-column (both tables), or --items-item-column"]),
    ("a format nobody reads", ["events.xlsx is not .csv, .jsonl, .json or .parquet, nor .tsv"]),
])
def test_unreadable_inputs_are_refused_in_one_line(tmp_path, capsys, case, parts):
    events = write(tmp_path / "events.csv", delimited(HEADERS[0], EVENTS))
    items = write(tmp_path / "items.csv", delimited(HEADERS[1], ITEMS))
    options = []
    if case == "a TSV named .csv":
        events = write(tmp_path / "events.csv", delimited(HEADERS[0], EVENTS, "\t"))
    elif case == "a truncated gzip file":
        events = write(tmp_path / "events.csv.gz", delimited(HEADERS[0], EVENTS))
        events.write_bytes(events.read_bytes()[:-12])
    elif case == "a corrupted xz file":
        events = write(tmp_path / "events.csv.xz", delimited(HEADERS[0], EVENTS))
        data = bytearray(events.read_bytes())
        data[40:48] = b"\xff" * 8
        events.write_bytes(bytes(data))
    elif case == "an atomic header without types":
        events = write(tmp_path / "shop.inter", delimited(HEADERS[0], EVENTS, "\t"))
    elif case == "a compressed Parquet file":
        events = write(tmp_path / "events.parquet.gz", "")
    elif case == "a delimiter of two characters":
        options = ["--delimiter", "::"]
    elif case == "the items table's item column":
        items = write(tmp_path / "items.csv", delimited(["sku", "title"], ITEMS))
    else:
        events = write(tmp_path / "events.xlsx", "")
    assert main(["prepare", "--interactions", str(events), "--items", str(items), "--output-dir",
                 str(tmp_path / "Shop"), *options]) == 1
    err = one_line(capsys)
    assert err.startswith("xcross prepare: error: ")
    for part in parts:
        assert part in err, err
    assert not (tmp_path / "Shop").exists()


def test_a_dataset_dict_needs_an_existing_split(expected):
    items = Dataset.from_dict({"item_id": [item for item, _ in ITEMS], "title": [title for _, title in ITEMS]})
    events = pd.DataFrame(EVENTS, columns=HEADERS[0])
    with pytest.raises(DataError, match=r"is a DatasetDict with splits 'train', 'test'; name the one to read with "
                                        r"dataset_split=, e.g. dataset_split='train'"):
        read_interactions(events, DatasetDict(train=items, test=items), min_interactions=2)
    with pytest.raises(DataError, match=r"without a split 'valid' \(it has 'train'\)"):
        read_interactions(events, DatasetDict(train=items), min_interactions=2, dataset_split="valid")
    with pytest.raises(DataError, match="The items table is a list; pass a file path, a pandas DataFrame"):
        read_interactions(events, list(ITEMS), min_interactions=2)
