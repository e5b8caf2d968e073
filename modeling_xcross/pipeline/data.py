"""Reading one domain folder (meta_data.json, smap.json, train.json, test.json, and timestamps.json where `xcross
prepare` wrote one) into clean, counted user histories.

Every problem in the raw files (HTML entities, non-string titles, unknown item ids, histories too short to predict
from) is handled by an explicit rule and counted in `DomainData.report`, so nothing is dropped silently.

Items are numbered inside the folder (smap.json maps each item's own id, an Amazon asin or a shop's SKU, to its
integer id), and `DomainData.shop_ids` maps them back, so that a recommendation names the item as its shop does.
timestamps.json holds each history's times (seconds), so that what reads "latest" reads time; without it the file
order of the users stands for time, as in the Amazon domains.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import XCrossError

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon"
DOMAIN_FILES = ("meta_data.json", "smap.json", "train.json", "test.json")
# Optional: {user: [seconds of each item of the user's history]}, for the users of train.json and test.json.
TIMES_FILE = "timestamps.json"
# Where --data-dir points by default: this variable, else the shared Amazon data beside the checkout.
DATA_DIR_VARIABLE = "XCROSS_DATA_DIR"
DATA_DIR_HELP = f"${DATA_DIR_VARIABLE}, else ../shared/data/amazon beside the checkout"
MIN_HISTORY = 2  # one item to predict from, plus the target


class DataError(XCrossError):
    """A domain folder that cannot be used; the message names the file and the fix."""


@dataclass
class DomainData:
    """A domain's item titles by item id and its users' cleaned, time-ordered histories; `shop_ids`: each item id's
    own id (smap.json's key); `times`: each history's times where the folder has timestamps.json, else empty."""

    name: str
    titles: dict[int, str]
    train: dict[str, list[int]]
    test: dict[str, list[int]]
    report: Counter = field(default_factory=Counter)
    shop_ids: dict[int, str] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[int]:
        return sorted(self.titles)

    def shop_id(self, item: int) -> str | int:
        """The id the domain's own files give item `item` (the integer itself where none is known)."""
        return self.shop_ids.get(item, item)

    @cached_property
    def _items_by_shop_id(self) -> dict[str, int]:
        return {shop: item for item, shop in self.shop_ids.items()}

    def item_of(self, shop_id: str) -> int | None:
        """The item id of a shop's id, None when no item has it."""
        return self._items_by_shop_id.get(shop_id)

    def own_titles(self) -> dict[str | int, str]:
        """{own id: title} of the titled items: a catalogue for `model.recommend` that names items, and takes them in
        a history, by the domain's own ids."""
        return {self.shop_id(item): title for item, title in self.titles.items()}

    def train_users_by_time(self) -> list[str]:
        """The train users, earliest last interaction first: by timestamps.json's times where the folder has them
        (ties in file order), else in file order."""
        users = list(self.train)
        if self.times:
            users.sort(key=lambda user: self.times[user][-1])
        return users

    def summary(self) -> str:
        counts = ", ".join(f"{key}: {value}" for key, value in sorted(self.report.items())) or "nothing dropped"
        return (f"[data] {self.name}: {len(self.titles)} items with a usable title, {len(self.train)} train users, "
                f"{len(self.test)} test users ({counts})")


def _read_json(path: Path, expected: type):
    if not path.is_file():
        raise DataError(f"{path} is missing: a domain folder needs {', '.join(DOMAIN_FILES)}. Check --data-dir and "
                        "the domain name.")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}); restore the file from the data release.") from error
    if not isinstance(content, expected):
        raise DataError(f"{path} must hold a JSON {expected.__name__}, found {type(content).__name__}.")
    return content


def _is_item_id(value) -> bool:
    """An integer, but not a JSON boolean (which Python reads as 0 or 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def clean_title(raw) -> str | None:
    """The title with HTML entities decoded and whitespace collapsed; None when unusable (not a string, empty)."""
    if not isinstance(raw, str):
        return None
    title = " ".join(html.unescape(raw).split())
    return title or None


def _user_times(times: dict | None, user: str, items: list, path: Path) -> list[float] | None:
    """The user's times from timestamps.json (`times`; None without the file), one number per history item."""
    if times is None:
        return None
    found = times.get(user)
    if (not isinstance(found, list) or len(found) != len(items)
            or not all(isinstance(time, (int, float)) and not isinstance(time, bool) and math.isfinite(time)
                       for time in found)):
        raise DataError(f"{path.parent / TIMES_FILE}: user {user!r} needs a list of {len(items)} times (seconds), one "
                        f"per item of its history in {path.name}; prepare the domain again, or remove {TIMES_FILE} to "
                        "read the users in file order.")
    return found


def _clean_histories(raw: dict, path: Path, titles: dict[int, str], report: Counter, split: str,
                     times: dict | None = None, kept_times: dict | None = None) -> dict:
    """The usable histories of `raw`; with `times` (timestamps.json), each kept history's times go to `kept_times`."""
    histories = {}
    for user, items in raw.items():
        if not isinstance(items, list):
            raise DataError(f"{path}: user {user!r} has {type(items).__name__} instead of a list of item ids.")
        user_times = _user_times(times, str(user), items, path)
        kept, kept_at = [], []
        for position, item in enumerate(items):
            if not _is_item_id(item):
                raise DataError(f"{path}: user {user!r} has {json.dumps(item)} in its history, not an integer item "
                                "id; restore the file from the data release.")
            if item in titles:
                kept.append(item)
                kept_at.append(user_times[position] if user_times is not None else None)
            else:
                report[f"{split}_dropped_unknown_or_untitled_items"] += 1
        if len(kept) < MIN_HISTORY:
            report[f"{split}_dropped_short_histories"] += 1
            continue
        histories[str(user)] = kept
        if user_times is not None:
            kept_times[str(user)] = kept_at
    return histories


def default_data_dir() -> str:
    """--data-dir's default: $XCROSS_DATA_DIR, else the shared Amazon data beside the checkout."""
    return os.environ.get(DATA_DIR_VARIABLE) or str(DEFAULT_DATA_DIR)


def load_domain(data_dir: str | Path, domain: str) -> DomainData:
    """Load and clean `data_dir/domain`; raise DataError naming the file when it cannot be used."""
    folder = Path(data_dir) / domain
    if not folder.is_dir():
        raise DataError(f"Domain folder {folder} does not exist; pass --data-dir pointing at the folder that holds "
                        f"the domain folders (default: {DATA_DIR_HELP}) and an existing domain name.")
    meta = _read_json(folder / "meta_data.json", dict)
    smap = _read_json(folder / "smap.json", dict)
    report: Counter = Counter()
    titles: dict[int, str] = {}
    asin_of: dict[int, str] = {}
    for asin, item_id in smap.items():
        if not _is_item_id(item_id):
            raise DataError(f"{folder / 'smap.json'}: {asin!r} maps to {item_id!r}, not an integer item id.")
        if item_id in asin_of:
            raise DataError(f"{folder / 'smap.json'}: {asin_of[item_id]!r} and {asin!r} both map to item id "
                            f"{item_id}; every item needs its own id. Restore the file from the data release.")
        asin_of[item_id] = asin
        if asin not in meta:
            report["items_without_metadata"] += 1
            continue
        title = clean_title(meta[asin])
        if title is None:
            report["items_with_unusable_title"] += 1
            continue
        titles[item_id] = title
    times = _read_json(folder / TIMES_FILE, dict) if (folder / TIMES_FILE).is_file() else None
    kept_times: dict[str, list[float]] = {}
    train = _clean_histories(_read_json(folder / "train.json", dict), folder / "train.json", titles, report, "train",
                             times, kept_times)
    test = _clean_histories(_read_json(folder / "test.json", dict), folder / "test.json", titles, report, "test",
                            times, kept_times)
    if not train:
        raise DataError(f"{folder / 'train.json'} has no usable user (every history has fewer than {MIN_HISTORY} "
                        "items with a known, titled item id); check smap.json and meta_data.json of the domain.")
    return DomainData(domain, titles, train, test, report, asin_of, kept_times)


def split_users(domain: DomainData, num_validation: int, seed: int, max_train_users: int | None = None,
                max_test_users: int | None = None) -> dict[str, list[str]]:
    """Seeded user split: validation users held out from the train users, the rest (capped) for training; test users
    (capped) kept for the final test only."""
    train_users = sorted(domain.train)
    random.Random(seed).shuffle(train_users)
    if num_validation >= len(train_users):
        raise DataError(f"Domain {domain.name} has {len(train_users)} usable train users, too few to hold out "
                        f"{num_validation} for validation; lower --val-users.")
    test_users = sorted(domain.test)
    random.Random(seed + 1).shuffle(test_users)
    return {
        "validation": train_users[:num_validation],
        "train": train_users[num_validation:][:max_train_users],
        "test": test_users[:max_test_users],
    }
