"""Your own interactions as a domain folder: a table of (user, item, timestamp) and a table of (item, title), checked
and written in the layout every command reads (meta_data.json, smap.json, train.json, test.json, and timestamps.json
with each history's times; see data.py).

    xcross prepare --interactions events.csv --items items.csv --output-dir data/MyShop

A table is a file: CSV (.csv, or another --delimiter), TSV (.tsv), JSON Lines (.jsonl, .json), Parquet (.parquet),
RecBole's atomic files (.inter, .item: tab-separated, a `name:type` header), the text ones also compressed (.gz,
.bz2, .xz); or, in Python, a pandas DataFrame, a `datasets.Dataset`, or a `datasets.DatasetDict` with the split to
read (`dataset_split`).

Files are read as text, without type guessing: a CSV cell is a string, so ids `0012` and `12` stay two ids. A time
column is all numbers (e.g. Unix seconds) or all ISO 8601 text, zone-less times read as UTC, so the order of a
history does not depend on the machine's time zone. Each user's history is sorted by time, and the users are written
in time order of their last interaction, so that "latest" reads time. Users are split into train and test users by
time (the test users are the ones whose last interaction is the latest: train on the past, test on the future) or at
random. The ids are kept as written: smap.json maps each item's own id to the integer the folder numbers it with, and
train.json / test.json are keyed by the users' own ids. What is dropped (duplicate rows, items without a usable
title, users with too few interactions) is counted and printed; input that cannot be used (an empty, undecodable or
damaged file, a missing column, an interaction with an item the item table lacks, no usable history) is refused with
the file, row or column named.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import math
import random
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..checkpoint import atomic_write
from .data import MIN_HISTORY, TIMES_FILE, DataError, clean_title

SPLITS = ("time", "random")
TABLE_FORMATS = {".csv": "csv", ".tsv": "csv", ".inter": "atomic", ".item": "atomic", ".jsonl": "json",
                 ".json": "json", ".parquet": "parquet"}
# The delimiter of a delimited text file without --delimiter: tabs for TSV and RecBole's atomic files.
TAB_SEPARATED = (".tsv", ".inter", ".item")
# Compressed text files, read as the file inside: the suffix before this one names its format.
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# What a damaged compressed file raises while it is read.
DAMAGED = (OSError, EOFError, zlib.error, lzma.LZMAError)
# --delimiter's names of characters that are awkward to type.
DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


@dataclass(frozen=True)
class InteractionColumns:
    """Column names of the two tables; `items_item` is the item column of the item table (default: `item`)."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    title: str = "title"
    items_item: str | None = None

    @property
    def item_table_item(self) -> str:
        return self.items_item or self.item


@dataclass
class Domain:
    """A domain folder's files' contents (`times`: timestamps.json) and the counts of what was kept and dropped."""

    meta: dict[str, str]
    smap: dict[str, int]
    train: dict[str, list[int]]
    test: dict[str, list[int]]
    report: Counter = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        kept = f"kept {len(self.train)} train users, {len(self.test)} test users, {len(self.smap)} items"
        return "\n".join([kept, *(f"{reason}: {count}" for reason, count in sorted(self.report.items()))])


def number_items(histories: dict[str, list[str]], train_users: list[str], test_users: list[str],
                 ) -> tuple[dict[str, int], dict[str, list[int]], dict[str, list[int]]]:
    """Dense item ids from 0 in order of first appearance through the train users, then the test users:
    (smap {item: id}, train {user: ids}, test {user: ids})."""
    smap: dict[str, int] = {}
    train = {user: [smap.setdefault(item, len(smap)) for item in histories[user]] for user in train_users}
    test = {user: [smap.setdefault(item, len(smap)) for item in histories[user]] for user in test_users}
    return smap, train, test


def write_domain(domain: Domain, output_dir: str | Path) -> None:
    """Write the files of the domain folder, each atomically; timestamps.json only for a domain with times."""
    files = {"meta_data.json": domain.meta, "smap.json": domain.smap, "train.json": domain.train,
             "test.json": domain.test, **({TIMES_FILE: domain.times} if domain.times else {})}
    for name, content in files.items():
        atomic_write(Path(output_dir) / name, lambda path, content=content: path.write_text(json.dumps(content),
                                                                                             encoding="utf-8"))


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse a folder that already holds files, unless `overwrite`: a domain folder written over would lose its
    four files without a word."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--output-dir {folder} is a file, not a folder; choose a new folder for the domain.")
    held = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    if held and not overwrite:
        raise DataError(f"--output-dir {folder} already holds files ({', '.join(held[:5])}"
                        f"{', ...' if len(held) > 5 else ''}); choose a new or empty folder, or pass --overwrite to "
                        "replace its domain files.")


@dataclass
class Table:
    """A table's columns as lists of values, and where it comes from (for messages)."""

    where: str
    columns: dict[str, list]

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()), []))


@dataclass(frozen=True)
class TableFile:
    """A table file's format suffix (a `TABLE_FORMATS` key) and compression (a `COMPRESSIONS` key, or None): e.g.
    events.csv.gz is .csv, compressed with .gz."""

    path: Path
    suffix: str
    compression: str | None

    @classmethod
    def of(cls, path: Path, role: str) -> "TableFile":
        suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
        compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
        if not suffixes or suffixes[-1] not in TABLE_FORMATS:
            raise DataError(f"The {role} table {path} is not .csv, .jsonl, .json or .parquet, nor .tsv or RecBole's "
                            ".inter / .item (the text ones may end in .gz, .bz2 or .xz); convert it to one of these, "
                            "or pass a pandas DataFrame or a datasets.Dataset in Python.")
        if suffixes[-1] == ".parquet" and compression:
            raise DataError(f"The {role} table {path} is a compressed Parquet file; Parquet compresses inside the "
                            "file, so write it as plain .parquet.")
        return cls(path, suffixes[-1], compression)

    @property
    def kind(self) -> str:
        return TABLE_FORMATS[self.suffix]

    def delimiter(self, given: str | None) -> str:
        """`given`, else the format's own: tabs for .tsv and RecBole's files, else commas."""
        return given or ("\t" if self.suffix in TAB_SEPARATED else ",")


def checked_delimiter(text: str | None) -> str | None:
    """--delimiter as one character (`\\t`, tab, comma, semicolon, pipe and space name theirs); None: the file's own."""
    if text is None:
        return None
    delimiter = DELIMITER_NAMES.get(text.lower(), text)
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise DataError(f"--delimiter {text!r} is not one character; pass e.g. ';', '|' or tab (for '\\t').")
    return delimiter


def _decoded(file: TableFile, role: str, encoding: str) -> str:
    """The file's text (a compressed file's, uncompressed); one without a byte-order mark reads the same under utf-8
    and utf-8-sig."""
    opener = COMPRESSIONS.get(file.compression, open)
    try:
        with opener(file.path, "rt", encoding="utf-8-sig" if codecs.lookup(encoding).name == "utf-8"
                    else encoding) as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise DataError(f"The {role} table {file.path} is not {encoding} text (byte "
                        f"{error.object[error.start]:#04x} at position {error.start}); save it as UTF-8, or name its "
                        "encoding with --encoding (e.g. --encoding latin-1).") from error
    except DAMAGED as error:
        if file.compression is None:
            raise
        raise DataError(f"The {role} table {file.path} is not a readable {file.compression} file ({error}): it is "
                        "truncated or damaged; compress it again.") from error


def _read_csv(path: Path, role: str, text: str, delimiter: str) -> dict[str, list]:
    """Every cell as a string: no type guessing, so `0012` and `12` stay apart."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"The {role} table {path} is empty; write its header (the column names) and its rows.")
        rows = []
        for row in reader:
            if row and len(row) != len(header):
                raise DataError(f"The {role} table {path} line {reader.line_num} has {len(row)} fields where the "
                                f"header has {len(header)}; quote fields that hold {_named(delimiter)}s, check "
                                "--delimiter, or fix that line.")
            if row:
                rows.append(row)
    except csv.Error as error:
        raise DataError(f"The {role} table {path} line {reader.line_num} is not valid CSV ({error}); fix that "
                        "line.") from error
    return {name: [row[index] for row in rows] for index, name in enumerate(header)}


def _named(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space"}.get(delimiter, repr(delimiter))


def _read_atomic(path: Path, role: str, text: str, delimiter: str) -> dict[str, list]:
    """RecBole's atomic file: tab-separated, each header field `name:type` (token, token_seq, float, float_seq);
    the columns are named without their types."""
    columns = _read_csv(path, role, text, delimiter)
    untyped = [field for field in columns if ":" not in field]
    if untyped:
        raise DataError(f"The {role} table {path} is a RecBole atomic file, but its header field {untyped[0]!r} has "
                        "no type; write every field as name:type (e.g. user_id:token, timestamp:float), or name the "
                        "file .tsv.")
    return {field.rpartition(":")[0]: values for field, values in columns.items()}


def _records_to_columns(records: list, path: Path, role: str, line_of) -> dict[str, list]:
    """Columns of JSON objects (a key an object lacks is None there); `line_of(index)` names a record's line."""
    names: dict[str, None] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"The {role} table {path} {line_of(index)} is a JSON {type(record).__name__}, not an "
                            "object; write one object per row, e.g. {\"user_id\": \"u1\", ...}.")
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


def _read_json(path: Path, role: str, text: str) -> dict[str, list]:
    """JSON Lines (one object per line), or one JSON list of objects."""
    if not text.strip():
        raise DataError(f"The {role} table {path} is empty; write one JSON object per row.")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"The {role} table {path} is not valid JSON ({error}); fix it, or write it as JSON Lines "
                            "(one object per line).") from error
        return _records_to_columns(records, path, role, lambda index: f"row {index + 1}")
    lines, records = [], []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 and the like may be in a string
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"The {role} table {path} line {number} is not valid JSON ({error.msg}); fix or remove "
                                "that line.") from error
            lines.append(number)
    return _records_to_columns(records, path, role, lambda index: f"line {lines[index]}")


def _read_parquet(path: Path, role: str) -> dict[str, list]:
    import pyarrow as pa  # here: only `prepare` needs it
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"The {role} table {path} is not a readable Parquet file ({error}): it is truncated or "
                        "damaged; write it again.") from error


def _in_memory(source, role: str, dataset_split: str | None) -> Table:
    """The columns of a pandas DataFrame, a `datasets.Dataset`, or a `datasets.DatasetDict`'s `dataset_split` (its
    only split when None)."""
    if type(source).__name__ == "DataFrame" and hasattr(source, "columns"):  # pandas, not imported for it
        return Table("(a DataFrame)", {str(name): source[name].tolist() for name in source.columns})
    from datasets import Dataset, DatasetDict  # here: slow to import

    if isinstance(source, DatasetDict):
        splits = ", ".join(map(repr, source))
        if dataset_split is None and len(source) != 1:
            raise DataError(f"The {role} table is a DatasetDict with splits {splits}; name the one to read with "
                            f"dataset_split=, e.g. dataset_split={next(iter(source))!r}.")
        name = dataset_split if dataset_split is not None else next(iter(source))
        if name not in source:
            raise DataError(f"The {role} table is a DatasetDict without a split {name!r} (it has {splits}); pass one "
                            "of these as dataset_split.")
        return Table(f"(split {name!r} of a DatasetDict)", source[name].to_dict())
    if isinstance(source, Dataset):
        return Table("(a Dataset)", source.to_dict())
    raise DataError(f"The {role} table is a {type(source).__name__}; pass a file path, a pandas DataFrame, a "
                    "datasets.Dataset or a datasets.DatasetDict.")


def read_table(source, role: str, encoding: str = "utf-8", delimiter: str | None = None,
               dataset_split: str | None = None) -> Table:
    """The columns of a table (see the module docstring): a file, text ones read in `encoding` and delimited ones
    split at `delimiter` (by default tabs for .tsv/.inter/.item, else commas), or a table in memory; refused in one
    line when empty, undecodable or damaged."""
    if not isinstance(source, (str, Path)):
        table = _in_memory(source, role, dataset_split)
    else:
        path = Path(source)
        file = TableFile.of(path, role)
        if not path.is_file():
            raise DataError(f"The {role} table {path} does not exist; check the path.")
        try:
            codecs.lookup(encoding)
        except LookupError as error:
            raise DataError(f"--encoding {encoding!r} is not a known text encoding; pass e.g. utf-8 or latin-1.") \
                from error
        if file.kind == "parquet":
            columns = _read_parquet(path, role)
        elif file.kind == "json":
            columns = _read_json(path, role, _decoded(file, role, encoding))
        else:
            read = _read_atomic if file.kind == "atomic" else _read_csv
            columns = read(path, role, _decoded(file, role, encoding), file.delimiter(checked_delimiter(delimiter)))
        table = Table(str(path), columns)
    if table.rows == 0:
        raise DataError(f"The {role} table {table.where} has {'a header but ' if table.columns else ''}no rows; write "
                        "at least one row.")
    return table


def _columns(table: Table, options: dict[str, str], role: str) -> list[list]:
    """The named columns' values; `options` maps each column name to the CLI option that sets it."""
    missing = [name for name in options if name not in table.columns]
    if missing:
        fix = _delimiter_fix(table) or f"name the right one with {', '.join(f'--{options[name]}' for name in missing)}"
        raise DataError(f"The {role} table {table.where} has no column {', '.join(map(repr, missing))} (it has "
                        f"{', '.join(map(repr, table.columns))}); {fix}.")
    return [table.columns[name] for name in options]


def _delimiter_fix(table: Table) -> str | None:
    """Where the whole header reads as one column that holds a tab, ';' or '|': the --delimiter to pass."""
    header = next(iter(table.columns)) if len(table.columns) == 1 else ""
    found = next((character for character in "\t;|" if character in header), None)
    if found is None:
        return None
    return (f"its header holds {_named(found)}s, so the file is not comma-separated: pass --delimiter "
            f"{'tab' if found == chr(9) else repr(found)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _time(value) -> tuple[str, float] | None:
    """A timestamp's kind ("number" or "ISO 8601") and its seconds, or None when it is neither: numbers and numeric
    text as they are, ISO 8601 text and datetimes as Unix seconds, zone-less ones read as UTC."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                return None
    if _is_number(value):
        return ("number", float(value)) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return "ISO 8601", (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return None


def read_times(values: list, column: str, where: str) -> list[float]:
    """The time column as seconds, all of one kind: a column that mixes numbers and ISO 8601 text is refused at its
    first row of the other kind (Unix seconds beside dates read in some zone would order histories by chance)."""
    times, first = [], None
    for row, value in enumerate(values, 1):
        read = _time(value)
        if read is None:
            raise DataError(f"{where} row {row}: column {column!r} holds {value!r}, not a time; use numbers (e.g. "
                            "Unix seconds) or ISO 8601 text such as 2024-05-01T10:00:00 (read as UTC).")
        first = first or (row, value, read[0])
        if read[0] != first[2]:
            raise DataError(f"{where} row {row}: column {column!r} holds {value!r} ({read[0]}), but row {first[0]} "
                            f"holds {first[1]!r} ({first[2]}); a time column is all numbers or all ISO 8601 text: "
                            "convert it to one of them.")
        times.append(read[1])
    return times


def _key(value, row: int, column: str, where: str) -> str:
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        raise DataError(f"{where} row {row}: column {column!r} is empty; every row needs a {column}.")
    return str(value).strip()


def _only_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _title(raw) -> str | None:
    """A title as text (a number is the text it reads as, e.g. the title 1984), or None when unusable."""
    if _is_number(raw) and math.isfinite(raw):
        raw = str(raw)
    return str(raw).strip() if clean_title(raw) is not None else None


def read_interactions(interactions, items, columns: InteractionColumns = InteractionColumns(),
                      min_interactions: int = 3, test_fraction: float = 0.2, split: str = "time",
                      seed: int = 0, encoding: str = "utf-8", delimiter: str | None = None,
                      dataset_split: str | None = None) -> Domain:
    """Check the two tables and build a domain: see the module docstring. `interactions` and `items` are paths
    (text files read in `encoding`, delimited ones split at `delimiter`) or tables in memory (a DatasetDict's
    `dataset_split` read)."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    if min_interactions < MIN_HISTORY:
        raise DataError(f"min_interactions must be at least {MIN_HISTORY} (one item to predict from and the one "
                        f"to predict), got {min_interactions}.")
    report: Counter = Counter()

    titles: dict[str, str] = {}
    untitled: set[str] = set()
    item_table = read_table(items, "items", encoding, delimiter, dataset_split)
    where_items = item_table.where
    item_option = ("items-item-column" if columns.items_item
                   else "item-column (both tables), or --items-item-column (the items table alone)")
    item_column, title_column = _columns(item_table, {
        columns.item_table_item: item_option, columns.title: "title-column"}, "items")
    for row, (raw_item, raw_title) in enumerate(zip(item_column, title_column), 1):
        item = _key(raw_item, row, columns.item_table_item, where_items)
        if item in titles or item in untitled:
            report["item rows dropped: a repeated item (the first row kept)"] += 1
            continue
        title = _title(raw_title)
        if title is None:
            untitled.add(item)
            report["items dropped: no usable title (empty or not text)"] += 1
        else:
            titles[item] = title
            if _only_a_number(title):
                report[f"items kept whose title is only a number (check --title-column {columns.title})"] += 1
    if not titles:
        raise DataError(f"The items table {where_items} has no item with a usable title in column "
                        f"{columns.title!r} (every value is empty or not text); name the title column with "
                        "--title-column.")

    events = read_table(interactions, "interactions", encoding, delimiter, dataset_split)
    where_events = events.where
    users, item_ids, raw_times = _columns(events, {
        columns.user: "user-column", columns.item: "item-column", columns.timestamp: "time-column"}, "interactions")
    times = read_times(raw_times, columns.timestamp, where_events)
    timed = defaultdict(set)
    order: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for row, (raw_user, raw_item, time) in enumerate(zip(users, item_ids, times), 1):
        user = _key(raw_user, row, columns.user, where_events)
        item = _key(raw_item, row, columns.item, where_events)
        if item not in titles and item not in untitled:
            raise DataError(f"{where_events} row {row}: item {item!r} (column {columns.item!r}) has no row in the "
                            f"items table {where_items}; add its title there or remove its interactions.")
        if (item, time) in timed[user]:
            report["interactions dropped: duplicates (same user, item and time)"] += 1
            continue
        timed[user].add((item, time))
        if item in untitled:
            report["interactions dropped: item without a usable title"] += 1
            continue
        order[user].append((time, row, item))
    histories = {user: [item for _, _, item in sorted(rows)] for user, rows in order.items()}
    report["users dropped: every interaction with an untitled item"] = len(timed) - len(histories)

    kept = sorted(user for user, history in histories.items() if len(history) >= min_interactions)
    report[f"users dropped: fewer than {min_interactions} interactions"] = len(histories) - len(kept)
    if not kept:
        raise DataError(f"No user of {where_events} has {min_interactions} or more interactions with titled items, "
                        "so every history is empty or too short; lower --min-interactions or check the item column.")
    if split == "time":  # the latest last interactions are the test users
        kept.sort(key=lambda user: (max(time for time, _, _ in order[user]), user))
    else:
        random.Random(seed).shuffle(kept)
    test_count = min(round(len(kept) * test_fraction), len(kept) - 1)
    train_users, test_users = kept[:len(kept) - test_count], kept[len(kept) - test_count:]
    smap, train, test = number_items(histories, sorted(train_users), sorted(test_users))
    report["items dropped: titled but in no kept user's history"] = len(titles) - len(smap)
    times = {user: [time for time, _, _ in sorted(order[user])] for user in kept}
    return Domain({item: titles[item] for item in smap}, smap, by_last_time(train, times),
                  by_last_time(test, times), +report, by_last_time(times, times))


def by_last_time(users: dict, times: dict[str, list[float]]) -> dict:
    """`users` ({user: ...}) in time order of each user's last interaction (ties by user id): the file order that
    everything reading "the latest users" relies on."""
    return dict(sorted(users.items(), key=lambda pair: (times[pair[0]][-1], pair[0])))
