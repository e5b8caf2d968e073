"""From your own CSV files to recommendations: two small shops' interactions and item titles, written here, become
domain folders (`xcross prepare`); a LoRA adapter is trained on one shop, X-Cross on the other from it, and X-Cross
recommends the second shop's top items for one of its test customers, naming them by the shop's own ids (G-12, ...).
`--user` takes any customer (a train customer: from the whole history), `--history-ids G-3 G-4` the shop's ids.

    python examples/csv_quickstart.py --output-dir runs/csv-quickstart

The same as the commands:

    xcross prepare --interactions books/events.csv --items books/items.csv --output-dir data/Books
    xcross prepare --interactions games/events.csv --items games/items.csv --output-dir data/Games \\
        --user-column customer --item-column product --time-column bought_at --title-column name
    xcross train-adapter --data-dir data --domain Books --output-dir lora-books
    xcross train --data-dir data --target Games --sources lora-books --output-dir xcross-games
    xcross recommend --model-dir xcross-games --data-dir data --domain Games --user <a test customer>

The shops are synthetic (customers buy runs of neighbouring items), with a repeated row, an item without a title
and a one-purchase customer, so `prepare` has something to drop and say so.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from modeling_xcross import DEFAULT_BACKBONE
from modeling_xcross.pipeline.cli import main as xcross

WORDS = {"Books": ("novel", "atlas", "poems", "cookbook", "diary", "guide", "history", "mystery"),
         "Games": ("chess", "puzzle", "cards", "dice", "racing", "quest", "strategy", "trivia")}
# The Games shop's tables use other column names than the defaults, and ISO 8601 times.
GAMES_COLUMNS = ["--user-column", "customer", "--item-column", "product", "--time-column", "bought_at",
                 "--title-column", "name"]


def write_shop(folder: Path, shop: str, num_users: int, num_items: int, seed: int) -> tuple[Path, Path]:
    """events.csv (user, item, time) and items.csv (item, title) of one synthetic shop."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    games = shop == "Games"
    user, item, time, title = ("customer", "product", "bought_at", "name") if games else (
        "user_id", "item_id", "timestamp", "title")
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    events = []
    for number in range(num_users):
        first, moment = rng.randrange(num_items - 8), start + timedelta(days=rng.randrange(300))
        for step in range(rng.randrange(4, 9)):
            moment += timedelta(hours=rng.randrange(1, 200))
            events.append({user: f"{shop[0]}{number}", item: f"{shop[0]}-{first + step}",
                           time: moment.isoformat() if games else int(moment.timestamp())})
    events.append(dict(events[0]))  # a repeated row
    events.append({user: "one-purchase", item: f"{shop[0]}-0", time: events[0][time]})
    with open(folder / "events.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [user, item, time])
        writer.writeheader()
        writer.writerows(events)
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [item, title])
        writer.writeheader()
        for index in range(num_items):  # the last item has no title
            name = "" if index == num_items - 1 else f"{rng.choice(WORDS[shop])} {rng.choice(WORDS[shop])} {index}"
            writer.writerow({item: f"{shop[0]}-{index}", title: name})
    return folder / "events.csv", folder / "items.csv"


def run(output_dir: Path, backbone: str, num_users: int, num_items: int, max_steps: int, max_length: int,
        seed: int = 0) -> None:
    """Write the CSVs, prepare both shops, train, recommend; every step is an `xcross` command."""
    data_dir = output_dir / "data"
    scale = ["--backbone", backbone, "--max-steps", str(max_steps), "--max-length", str(max_length),
             "--val-users", str(max(4, num_users // 10)), "--max-eval-users", str(max(6, num_users // 10)),
             "--batch-size", "4", "--eval-batch-size", "4", "--seed", str(seed)]
    for shop in ("Books", "Games"):
        events, items = write_shop(output_dir / "csv" / shop.lower(), shop, num_users, num_items, seed)
        check(xcross(["prepare", "--interactions", str(events), "--items", str(items), "--output-dir",
                      str(data_dir / shop), *(GAMES_COLUMNS if shop == "Games" else [])]))
    check(xcross(["train-adapter", "--data-dir", str(data_dir), "--domain", "Books", "--output-dir",
                  str(output_dir / "lora-books"), *scale]))
    check(xcross(["train", "--data-dir", str(data_dir), "--target", "Games", "--sources",
                  str(output_dir / "lora-books"), "--output-dir", str(output_dir / "xcross-games"), *scale]))
    test_user = next(iter(json.loads((data_dir / "Games" / "test.json").read_text())))
    check(xcross(["recommend", "--model-dir", str(output_dir / "xcross-games"), "--data-dir", str(data_dir),
                  "--domain", "Games", "--user", test_user, "--top-k", "5"]))


def check(status: int) -> None:
    if status != 0:
        raise SystemExit(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/csv-quickstart"),
                        help="where the CSVs, domain folders and runs go; default: %(default)s")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="default: %(default)s")
    parser.add_argument("--users", type=int, default=300, help="customers per shop; default: %(default)s")
    parser.add_argument("--items", type=int, default=80, help="items per shop (at least 40); default: %(default)s")
    parser.add_argument("--max-steps", type=int, default=40, help="training steps per model; default: %(default)s")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per prompt; default: %(default)s")
    args = parser.parse_args(argv)
    run(args.output_dir, args.backbone, args.users, args.items, args.max_steps, args.max_length)


if __name__ == "__main__":
    main()
