"""Reading one domain folder (meta_data.json, smap.json, train.json, test.json) into clean, counted user histories.

Every problem in the raw files (HTML entities, non-string titles, unknown item ids, histories too short to predict
from) is handled by an explicit rule and counted in `DomainData.report`, so nothing is dropped silently.
"""

from __future__ import annotations

import html
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import XCrossError

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon"
DOMAIN_FILES = ("meta_data.json", "smap.json", "train.json", "test.json")
MIN_HISTORY = 2  # one item to predict from, plus the target


class DataError(XCrossError):
    """A domain folder that cannot be used; the message names the file and the fix."""


@dataclass
class DomainData:
    """A domain's item titles by item id and its users' cleaned, time-ordered histories."""

    name: str
    titles: dict[int, str]
    train: dict[str, list[int]]
    test: dict[str, list[int]]
    report: Counter = field(default_factory=Counter)

    @property
    def item_ids(self) -> list[int]:
        return sorted(self.titles)

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


def _clean_histories(raw: dict, path: Path, titles: dict[int, str], report: Counter, split: str) -> dict:
    histories = {}
    for user, items in raw.items():
        if not isinstance(items, list):
            raise DataError(f"{path}: user {user!r} has {type(items).__name__} instead of a list of item ids.")
        kept = []
        for item in items:
            if not _is_item_id(item):
                raise DataError(f"{path}: user {user!r} has {json.dumps(item)} in its history, not an integer item "
                                "id; restore the file from the data release.")
            if item in titles:
                kept.append(item)
            else:
                report[f"{split}_dropped_unknown_or_untitled_items"] += 1
        if len(kept) < MIN_HISTORY:
            report[f"{split}_dropped_short_histories"] += 1
            continue
        histories[str(user)] = kept
    return histories


def load_domain(data_dir: str | Path, domain: str) -> DomainData:
    """Load and clean `data_dir/domain`; raise DataError naming the file when it cannot be used."""
    folder = Path(data_dir) / domain
    if not folder.is_dir():
        raise DataError(f"Domain folder {folder} does not exist; pass --data-dir pointing at the folder that holds "
                        f"the domain folders (default {DEFAULT_DATA_DIR}) and an existing domain name.")
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
    train = _clean_histories(_read_json(folder / "train.json", dict), folder / "train.json", titles, report, "train")
    test = _clean_histories(_read_json(folder / "test.json", dict), folder / "test.json", titles, report, "test")
    if not train:
        raise DataError(f"{folder / 'train.json'} has no usable user (every history has fewer than {MIN_HISTORY} "
                        "items with a known, titled item id); check smap.json and meta_data.json of the domain.")
    return DomainData(domain, titles, train, test, report)


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
