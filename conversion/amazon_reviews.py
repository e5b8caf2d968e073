"""Convert a raw Amazon Reviews 2018 category into a domain folder (the format of ../shared/data/amazon).

    python -m conversion.amazon_reviews --reviews Toys_and_Games_5.json.gz --meta meta_Toys_and_Games.json.gz \
        --output-dir data/amazon/Toys [--user-fraction 0.2] [--test-fraction 0.2] [--title-words 8] [--seed 0]

The same recipe as the shared data: interactions with items without a usable title dropped; users with at least
--min-interactions left kept, and of those a seeded random --user-fraction; each history sorted by review time
(ties keep file order); users split at random into train and test; titles cut to their first --title-words words
(otherwise left raw: HTML entities are the loader's business). Item ids are dense from 0 in order of first appearance
through the train users then the test users; user ids likewise, train users first.

Writes meta_data.json {asin: title}, smap.json {asin: item_id}, train.json and test.json {user_id: [item_id, ...]},
each atomically, and prints what was kept and dropped, and why.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from modeling_xcross.errors import XCrossError
from modeling_xcross.pipeline.interactions import Domain, number_items, write_domain

REVIEW_KEYS = ("reviewerID", "asin", "unixReviewTime")


class ConversionError(XCrossError):
    """Raw input that cannot be converted; the message names the file and the fix."""


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a .json(.gz) file of one object per line. A line is read as
    JSON, else as a Python literal (some released meta files use single quotes); never evaluated as code."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist; pass the path of the downloaded Amazon Reviews 2018 file.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield number, _parse_line(line, path, number)
    except (OSError, EOFError, UnicodeDecodeError) as error:  # BadGzipFile is an OSError
        raise ConversionError(f"{path} cannot be read ({error}): it is truncated or not a gzip of UTF-8 text; "
                              "download it again.") from error


def _parse_line(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise ConversionError(f"{path}:{number} is neither JSON nor a Python literal ({error}); the file is "
                                  "damaged: download it again.") from error
    if not isinstance(record, dict):
        raise ConversionError(f"{path}:{number} holds a {type(record).__name__}, expected one object per line.")
    return record


def read_titles(meta_path: Path, title_words: int, report: Counter) -> dict[str, str]:
    """{asin: title cut to its first `title_words` words}, for the items whose metadata has a non-empty title."""
    titles = {}
    for number, record in read_records(meta_path):
        if "asin" not in record:
            raise ConversionError(f"{meta_path}:{number} has no 'asin'; is this a meta_<Category>.json.gz file?")
        words = record.get("title").split() if isinstance(record.get("title"), str) else []
        if words:
            titles[record["asin"]] = " ".join(words[:title_words])
        else:
            report["meta records without a usable title"] += 1
    return titles


def read_histories(reviews_path: Path, titles: dict[str, str], report: Counter) -> dict[str, list[str]]:
    """{reviewerID: asins sorted by review time}, leaving out reviews of items without a title."""
    reviews = defaultdict(list)
    without_meta = set()
    for number, record in read_records(reviews_path):
        missing = [key for key in REVIEW_KEYS if key not in record]
        if missing:
            raise ConversionError(f"{reviews_path}:{number} lacks {', '.join(missing)}; is this a <Category>_5.json.gz "
                                  "review file?")
        history = reviews[record["reviewerID"]]  # a user whose every item is untitled is counted, with no items
        if record["asin"] in titles:
            try:
                history.append((int(record["unixReviewTime"]), record["asin"]))
            except (TypeError, ValueError):
                raise ConversionError(f"{reviews_path}:{number} has unixReviewTime {record['unixReviewTime']!r}, "
                                      "not a number of seconds; the file is damaged: download it again.") from None
        else:
            without_meta.add(record["asin"])
            report["interactions dropped: item without titled metadata"] += 1
    report["items dropped: reviewed but without titled metadata"] = len(without_meta)
    return {user: [asin for _, asin in sorted(items, key=lambda pair: pair[0])] for user, items in reviews.items()}


def convert(reviews_path: Path, meta_path: Path, user_fraction: float = 0.2, test_fraction: float = 0.2,
            min_interactions: int = 4, title_words: int = 8, seed: int = 0) -> Domain:
    """Read the raw files and apply the recipe of the module docstring."""
    report: Counter = Counter()
    titles = read_titles(meta_path, title_words, report)
    histories = read_histories(reviews_path, titles, report)
    eligible = sorted(user for user, items in histories.items() if len(items) >= min_interactions)
    report[f"users dropped: fewer than {min_interactions} interactions with titled items"] = (
        len(histories) - len(eligible))
    rng = random.Random(seed)
    sampled = rng.sample(eligible, round(len(eligible) * user_fraction))
    report["users dropped: not in the random user fraction"] = len(eligible) - len(sampled)
    if not sampled:
        raise ConversionError(f"No user left from {reviews_path} ({len(eligible)} with at least {min_interactions} "
                              "titled interactions); raise --user-fraction or lower --min-interactions.")
    test_count = round(len(sampled) * test_fraction)
    ordered = sorted(sampled[test_count:]) + sorted(sampled[:test_count])  # user ids: train users first
    renamed = {str(user_id): histories[user] for user_id, user in enumerate(ordered)}
    users = list(renamed)
    smap, train, test = number_items(renamed, users[:len(ordered) - test_count], users[len(ordered) - test_count:])
    report["items dropped: titled but in no kept user's history"] = len(titles) - len(smap)
    return Domain({asin: titles[asin] for asin in smap}, smap, train, test, report)


def _fraction(low_open: bool):
    def parse(text: str) -> float:
        value = float(text)
        if not (0 < value <= 1 if low_open else 0 <= value < 1):
            raise argparse.ArgumentTypeError(f"{text} is outside {'(0, 1]' if low_open else '[0, 1)'}")
        return value
    return parse


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=Path, required=True, help="the category's 5-core file, <Category>_5.json.gz")
    parser.add_argument("--meta", type=Path, required=True, help="the category's metadata, meta_<Category>.json.gz")
    parser.add_argument("--output-dir", type=Path, required=True, help="the domain folder to write (created)")
    parser.add_argument("--user-fraction", type=_fraction(low_open=True), default=0.2,
                        help="fraction of the eligible users kept at random (default 0.2: one in five)")
    parser.add_argument("--test-fraction", type=_fraction(low_open=False), default=0.2,
                        help="fraction of the kept users that become test users (default 0.2)")
    parser.add_argument("--min-interactions", type=_positive_int, default=4,
                        help="users with fewer interactions with titled items are dropped (default 4: more than 3)")
    parser.add_argument("--title-words", type=_positive_int, default=8, help="words kept of each title (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user sampling and split (default 0)")
    args = parser.parse_args(argv)
    try:
        domain = convert(args.reviews, args.meta, args.user_fraction, args.test_fraction, args.min_interactions,
                         args.title_words, args.seed)
    except ConversionError as error:
        parser.exit(1, f"error: {error}\n")
    write_domain(domain, args.output_dir)
    print(f"{args.output_dir}: {domain.summary()}")


if __name__ == "__main__":
    main()
