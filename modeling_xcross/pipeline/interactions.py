"""Your own interactions as a domain folder: a table of (user, item, timestamp) and a table of (item, title), as CSV,
JSON Lines, Parquet or a `datasets.Dataset`, checked and written in the four-file layout every command reads
(meta_data.json, smap.json, train.json, test.json; see data.py).

    xcross prepare --interactions events.csv --items items.csv --output-dir data/MyShop

Each user's history is sorted by time. Users are split into train and test users by time (the test users are the
ones whose last interaction is the latest: train on the past, test on the future) or at random. What is dropped
(duplicate rows, items without a usable title, users with too few interactions) is counted and printed; input that
cannot be used (a missing column, an interaction with an item the item table lacks, no usable history) is refused
with the column or file named.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..checkpoint import atomic_write
from .data import MIN_HISTORY, DataError, clean_title

SPLITS = ("time", "random")
TABLE_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


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
    """A domain folder's four files' contents and the counts of what was kept and dropped."""

    meta: dict[str, str]
    smap: dict[str, int]
    train: dict[str, list[int]]
    test: dict[str, list[int]]
    report: Counter = field(default_factory=Counter)

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
    """Write the four files of the domain folder, each atomically."""
    for name, content in (("meta_data.json", domain.meta), ("smap.json", domain.smap),
                          ("train.json", domain.train), ("test.json", domain.test)):
        atomic_write(Path(output_dir) / name, lambda path, content=content: path.write_text(json.dumps(content),
                                                                                             encoding="utf-8"))


def read_table(source, role: str):
    """A `datasets.Dataset` from a Dataset, or a .csv, .jsonl/.json (one object per line) or .parquet file."""
    from datasets import Dataset  # here: slow to import, and only `prepare` needs it

    if isinstance(source, Dataset):
        return source
    path = Path(source)
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"The {role} table {path} is not .csv, .jsonl, .json or .parquet; convert it to one of these "
                        "or pass a datasets.Dataset.")
    if not path.is_file():
        raise DataError(f"The {role} table {path} does not exist; check the path.")
    reader = {"csv": Dataset.from_csv, "json": Dataset.from_json, "parquet": Dataset.from_parquet}[kind]
    return reader(str(path), keep_in_memory=True)


def _columns(table, options: dict[str, str], role: str, where: str) -> list[list]:
    """The named columns' values; `options` maps each column name to the CLI option that sets it."""
    missing = [name for name in options if name not in table.column_names]
    if missing:
        raise DataError(f"The {role} table {where} has no column {', '.join(map(repr, missing))} (it has "
                        f"{', '.join(map(repr, table.column_names))}); name the right one with "
                        f"{', '.join(f'--{options[name]}' for name in missing)}.")
    return [table[name] for name in options]


def _time(value, row: int, column: str, where: str) -> float:
    """A timestamp as a number: numbers as they are, numeric text, or ISO 8601 text (2024-05-01T10:00:00). `row`
    counts data rows from 1."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.strip()).timestamp()
        except ValueError:
            pass
    raise DataError(f"{where} row {row}: column {column!r} holds {value!r}, not a time; use numbers (e.g. Unix "
                    "seconds) or ISO 8601 text such as 2024-05-01T10:00:00.")


def _key(value, row: int, column: str, where: str) -> str:
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        raise DataError(f"{where} row {row}: column {column!r} is empty; every row needs a {column}.")
    return str(value).strip()


def read_interactions(interactions, items, columns: InteractionColumns = InteractionColumns(),
                      min_interactions: int = 3, test_fraction: float = 0.2, split: str = "time",
                      seed: int = 0) -> Domain:
    """Check the two tables and build a domain: see the module docstring. `interactions` and `items` are paths or
    `datasets.Dataset`s."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    if min_interactions < MIN_HISTORY:
        raise DataError(f"min_interactions must be at least {MIN_HISTORY} (one item to predict from and the one "
                        f"to predict), got {min_interactions}.")
    where_items = str(items) if isinstance(items, (str, Path)) else "(a Dataset)"
    where_events = str(interactions) if isinstance(interactions, (str, Path)) else "(a Dataset)"
    report: Counter = Counter()

    titles: dict[str, str] = {}
    untitled: set[str] = set()
    item_column, title_column = _columns(read_table(items, "items"), {
        columns.item_table_item: "items-item-column", columns.title: "title-column"}, "items", where_items)
    for row, (raw_item, raw_title) in enumerate(zip(item_column, title_column), 1):
        item = _key(raw_item, row, columns.item_table_item, where_items)
        if item in titles or item in untitled:
            report["item rows dropped: a repeated item (the first row kept)"] += 1
            continue
        title = clean_title(raw_title)
        if title is None:
            untitled.add(item)
            report["items dropped: no usable title (empty or not text)"] += 1
        else:
            titles[item] = str(raw_title).strip()
    if not titles:
        raise DataError(f"The items table {where_items} has no item with a usable title in column "
                        f"{columns.title!r}; name the title column with --title-column.")

    events = read_table(interactions, "interactions")
    if len(events) == 0:
        raise DataError(f"The interactions table {where_events} has no rows.")
    users, item_ids, times = _columns(events, {
        columns.user: "user-column", columns.item: "item-column", columns.timestamp: "time-column"}, "interactions",
        where_events)
    timed = defaultdict(set)
    order: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for row, (raw_user, raw_item, raw_time) in enumerate(zip(users, item_ids, times), 1):
        user = _key(raw_user, row, columns.user, where_events)
        item = _key(raw_item, row, columns.item, where_events)
        time = _time(raw_time, row, columns.timestamp, where_events)
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
    return Domain({item: titles[item] for item in smap}, smap, train, test, +report)
