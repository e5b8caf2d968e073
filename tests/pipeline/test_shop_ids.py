"""A shop's own ids and times through the whole path (issue 40): a CSV with string ids (leading zeros, letters) is
prepared, an adapter and X-Cross are trained on it, and `recommend` names the shop's SKUs, for a train user, a test
user and a history of SKUs; the prepared users are in time order of their last event, and the references read time.
Tiny tables written here and the tiny random BERT."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from conftest import SMALL, WORDS
from modeling_xcross.inference.catalogue import Catalogue
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.data import TIMES_FILE, DataError, DomainData, load_domain
from modeling_xcross.pipeline.references import latest_validation_users, recency_weights

SKUS = [f"{index:06d}" if index % 2 else f"SKU-{index:03d}x" for index in range(40)]


def write_shop(folder: Path, users: int = 44, seed: int = 0) -> tuple[Path, Path]:
    """events.csv (customers like runs of neighbouring SKUs, at Unix times that do not follow the user ids) and
    items.csv."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "events.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for number in range(users):
            first, moment = number % (len(SKUS) - 3), 1_700_000_000 + rng.randrange(10**7)  # every SKU bought
            for step in range(min(rng.randrange(4, 8), len(SKUS) - first)):
                writer.writerow([f"{number:05d}" if number % 3 else f"cust-{number}", SKUS[first + step],
                                 moment + 3600 * step])
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title"])
        writer.writerows((sku, f"{rng.choice(WORDS)} {rng.choice(WORDS)} {index}") for index, sku in enumerate(SKUS))
    return folder / "events.csv", folder / "items.csv"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """The prepared domain folder `Shop` under the returned data dir."""
    root = tmp_path_factory.mktemp("shop")
    events, items = write_shop(root / "csv")
    assert main(["prepare", "--interactions", str(events), "--items", str(items), "--output-dir",
                 str(root / "data" / "Shop")]) == 0
    return root / "data"


def last_times(folder: Path, split: str) -> list[float]:
    times = json.loads((folder / TIMES_FILE).read_text())
    return [times[user][-1] for user in json.loads((folder / f"{split}.json").read_text())]


def test_prepare_keeps_the_ids_as_written_and_the_users_in_time_order(shop):
    folder = shop / "Shop"
    smap = json.loads((folder / "smap.json").read_text())
    assert set(smap) == set(SKUS) and "000001" in smap and "SKU-000x" in smap
    train, test = (json.loads((folder / f"{split}.json").read_text()) for split in ("train", "test"))
    assert "00001" in {**train, **test} and "cust-0" in {**train, **test}
    for split in ("train", "test"):
        assert last_times(folder, split) == sorted(last_times(folder, split)), f"{split}.json is not in time order"
    assert max(last_times(folder, "train")) <= min(last_times(folder, "test"))
    assert list(train) != sorted(train), "the synthetic times must not follow the user ids"
    domain = load_domain(shop, "Shop")
    assert domain.shop_id(smap["000001"]) == "000001" and domain.item_of("SKU-000x") == smap["SKU-000x"]
    assert domain.train_users_by_time() == list(train)
    catalogue = Catalogue.of(domain.own_titles())  # what model.recommend takes: SKUs in, SKUs out
    assert catalogue.item_ids[catalogue.position("000001")] == "000001"
    assert catalogue.resolve(["000001"])[0] == [domain.titles[smap["000001"]]]
    assert all(len(domain.times[user]) == len(history) for user, history in domain.train.items())


def test_the_whole_path_recommends_the_shops_skus(shop, tiny_backbone, tmp_path, capsys):
    common = ["--data-dir", str(shop), "--backbone", str(tiny_backbone), *SMALL, "--max-steps", "2",
              "--max-length", "32"]
    assert main(["train-adapter", "--domain", "Shop", "--output-dir", str(tmp_path / "lora"), *common]) == 0
    assert main(["train", "--target", "Shop", "--sources", str(tmp_path / "lora"), "--output-dir",
                 str(tmp_path / "xcross"), *common]) == 0
    domain = load_domain(shop, "Shop")
    train_user = next(iter(domain.train))
    recommend = ["recommend", "--model-dir", str(tmp_path / "xcross"), "--data-dir", str(shop), "--domain", "Shop",
                 "--top-k", "5"]
    capsys.readouterr()
    assert main([*recommend, "--user", train_user, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    owned = {domain.shop_id(item) for item in domain.train[train_user]}
    assert len(listed) == 5 and all(item["item_id"] in SKUS and item["item_id"] not in owned for item in listed)
    assert all(domain.titles[domain.item_of(item["item_id"])] == item["title"] for item in listed)

    test_user = next(iter(domain.test))
    history = [domain.shop_id(item) for item in domain.test[test_user][:-1]]
    assert main([*recommend, "--top-k", str(len(domain.titles) - len(set(history))), "--user", test_user]) == 0
    table = capsys.readouterr().out
    held_out = domain.shop_id(domain.test[test_user][-1])
    marked = [line for line in table.splitlines() if "<- the user's held-out next item" in line]
    assert len(marked) == 1 and f" {held_out} " in marked[0]

    assert main([*recommend, "--history-ids", *history, "--json"]) == 0
    by_ids = json.loads(capsys.readouterr().out)
    assert main([*recommend, "--history-json", json.dumps(history), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_ids
    assert all(item["item_id"] not in history for item in by_ids)


def test_unknown_ids_and_users_are_refused_in_one_line(shop, tmp_path, capsys):
    recommend = ["recommend", "--model-dir", str(tmp_path), "--data-dir", str(shop), "--domain", "Shop"]
    assert main([*recommend, "--history-ids", "000001", "1"]) == 1  # an integer item id: read, then no model
    assert "pass the output directory of a finished" in capsys.readouterr().err
    for given, message in ((["--history-ids", "000001", "999"], "--history-ids: '999' is not the id of a titled item "
                                                                "of Shop (smap.json, e.g. "),
                           (["--user", "nobody"], "User 'nobody' is not a user of Shop")):
        assert main([*recommend, *given]) == 1
        data, err = capsys.readouterr().err.strip().splitlines()  # the [data] line, then the one-line error
        assert data.startswith("[data] Shop") and message in err


def test_amazon_style_integer_ids_still_work(shop):
    domain = load_domain(shop, "Shop")
    from modeling_xcross.pipeline.domain_ranking import history_of_ids

    assert history_of_ids(domain, ["SKU-000x", str(domain.item_of("000001"))]) == [domain.item_of("SKU-000x"),
                                                                                 domain.item_of("000001")]


def timed_domain(times: dict[str, float]) -> DomainData:
    """Users u0.. in file order, with the given last times (an empty dict: no timestamps)."""
    users = [f"u{index}" for index in range(4)]
    return DomainData("Timed", {0: "a", 1: "b"}, {user: [0, 1] for user in users}, {},
                      times={user: [0.0, time] for user, time in times.items()})


def test_the_references_read_time_where_the_domain_has_it():
    in_file_order = timed_domain({})
    assert latest_validation_users(in_file_order, 1)["validation"] == ["u3"]
    by_time = timed_domain({"u0": 400.0, "u1": 100.0, "u2": 300.0, "u3": 200.0})
    assert latest_validation_users(by_time, 2) == {"validation": ["u2", "u0"], "counted": ["u1", "u3"]}
    weights = recency_weights(by_time, list(by_time.train), 1.0)  # halves over the whole span (300 s)
    assert weights["u0"] == pytest.approx(2 * weights["u1"]) and weights["u2"] > weights["u3"]
    file_weights = recency_weights(in_file_order, list(in_file_order.train), 1.0)
    assert file_weights["u3"] > file_weights["u0"]


def test_a_timestamps_file_that_does_not_match_the_histories_is_refused(shop, tmp_path):
    folder = tmp_path / "Shop"
    folder.mkdir()
    for name in ("meta_data.json", "smap.json", "train.json", "test.json"):
        (folder / name).write_text((shop / "Shop" / name).read_text())
    times = json.loads((shop / "Shop" / TIMES_FILE).read_text())
    user = next(iter(json.loads((folder / "train.json").read_text())))
    times[user] = times[user][:-1]
    (folder / TIMES_FILE).write_text(json.dumps(times))
    with pytest.raises(DataError, match=f"timestamps.json: user '{user}' needs a list of .* remove timestamps.json"):
        load_domain(tmp_path, "Shop")
    (folder / TIMES_FILE).unlink()
    assert not load_domain(tmp_path, "Shop").times  # without the file: file order, as the Amazon domains
    assert load_domain(tmp_path, "Shop").train_users_by_time() == list(json.loads((folder / "train.json").read_text()))
