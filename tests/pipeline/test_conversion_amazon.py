"""conversion.amazon_reviews on tiny raw files written here: exact output, the drop rules, errors, the loader."""

from __future__ import annotations

import gzip
import json

import pytest

from conversion.amazon_reviews import ConversionError, convert, main

META = [
    '{"asin": "A1", "title": "Wooden Train Set with Forty Two Pieces and a Bridge"}',
    "{'asin': 'A2', 'title': 'Puzzle &amp; Game', 'price': '$3'}",  # a Python-literal line, as in some releases
    '{"asin": "A3", "title": "Kite"}',
    '{"asin": "A4", "title": ""}',  # metadata without a usable title
    '{"asin": "A9", "title": "Never Reviewed"}',
]
REVIEWS = [  # (reviewerID, asin, unixReviewTime), in no particular order
    ("u1", "A2", 30), ("u1", "A1", 10), ("u1", "A3", 20), ("u1", "A1", 40),
    ("u2", "A3", 5), ("u2", "AX", 6), ("u2", "A2", 7), ("u2", "A1", 8), ("u2", "A4", 9), ("u2", "A3", 1),
    ("u3", "A1", 1), ("u3", "A2", 2), ("u3", "AX", 3), ("u3", "A3", 4),  # 3 titled interactions: too few
    ("u4", "AX", 1),  # no titled interaction at all
]


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@pytest.fixture
def raw(tmp_path):
    reviews = [json.dumps({"reviewerID": user, "asin": asin, "unixReviewTime": time, "overall": 5.0})
               for user, asin, time in REVIEWS]
    return write_gz(tmp_path / "Toys_5.json.gz", reviews), write_gz(tmp_path / "meta_Toys.json.gz", META)


def test_converts_exactly(raw, tmp_path, capsys):
    main(["--reviews", str(raw[0]), "--meta", str(raw[1]), "--output-dir", str(tmp_path / "Toys"),
          "--user-fraction", "1", "--test-fraction", "0.5", "--title-words", "3"])
    written = {name: json.loads((tmp_path / "Toys" / f"{name}.json").read_text())
               for name in ("meta_data", "smap", "train", "test")}
    # u1 and u2 are eligible (u3 has 3 titled interactions); seed 0 puts u1 in train (user 0) and u2 in test (user 1);
    # items are numbered in order of first appearance in the time-sorted histories, train users first.
    assert written == {
        "meta_data": {"A3": "Kite", "A2": "Puzzle &amp; Game", "A1": "Wooden Train Set"},
        "smap": {"A1": 0, "A3": 1, "A2": 2},
        "train": {"0": [0, 1, 2, 0]},
        "test": {"1": [1, 1, 2, 0]},
    }
    summary = capsys.readouterr().out
    for line in ("kept 1 train users, 1 test users, 3 items", "interactions dropped: item without titled metadata: 4",
                 "items dropped: reviewed but without titled metadata: 2", "meta records without a usable title: 1",
                 "users dropped: fewer than 4 interactions with titled items: 2",
                 "items dropped: titled but in no kept user's history: 1"):
        assert line in summary
    assert not list((tmp_path / "Toys").glob("*.tmp"))


def test_sampling_is_seeded(raw):
    runs = [convert(*raw, user_fraction=0.5, test_fraction=0.0, seed=seed) for seed in (3, 3)]
    assert runs[0] == runs[1]
    assert len(runs[0].train) == 1 and not runs[0].test
    assert runs[0].report["users dropped: not in the random user fraction"] == 1


def test_round_trips_through_the_loader(raw, tmp_path):
    data = pytest.importorskip("modeling_xcross.pipeline.data", reason="the data loader is not on this branch")
    convert_dir = tmp_path / "amazon"
    main(["--reviews", str(raw[0]), "--meta", str(raw[1]), "--output-dir", str(convert_dir / "Toys"),
          "--user-fraction", "1", "--test-fraction", "0.5"])
    domain = data.load_domain(convert_dir, "Toys")
    assert domain.titles == {0: "Wooden Train Set with Forty Two Pieces and", 1: "Kite", 2: "Puzzle & Game"}
    assert domain.train == {"0": [0, 1, 2, 0]} and domain.test == {"1": [1, 1, 2, 0]}


@pytest.mark.parametrize("problem, message", [
    ("missing", "does not exist"),
    ("not gzip", "cannot be read"),
    ("bad line", ":2 is neither JSON nor a Python literal"),
    ("no asin", ":1 has no 'asin'"),
])
def test_bad_meta_is_named(raw, tmp_path, problem, message):
    meta = tmp_path / "meta_bad.json.gz"
    if problem == "not gzip":
        meta.write_text("not gzip")
    elif problem == "bad line":
        write_gz(meta, [META[0], "{'asin': __import__('os').getcwd()}"])
    elif problem == "no asin":
        write_gz(meta, ['{"title": "x"}'])
    with pytest.raises(ConversionError, match=message) as caught:
        convert(raw[0], meta)
    assert str(meta) in str(caught.value)


def test_bad_reviews_and_empty_result_are_named(raw, tmp_path):
    reviews = write_gz(tmp_path / "reviews.json.gz", ['{"reviewerID": "u", "asin": "A1"}'])
    with pytest.raises(ConversionError, match=r"reviews.json.gz:1 lacks unixReviewTime"):
        convert(reviews, raw[1])
    reviews = write_gz(tmp_path / "reviews.json.gz", ['{"reviewerID": "u", "asin": "A1", "unixReviewTime": "soon"}'])
    with pytest.raises(ConversionError, match=r"reviews.json.gz:1 has unixReviewTime 'soon'"):
        convert(reviews, raw[1])
    with pytest.raises(ConversionError, match="No user left.*--min-interactions"):
        convert(raw[0], raw[1], min_interactions=10)


def test_cli_refuses_bad_options(raw, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--reviews", str(raw[0]), "--meta", str(raw[1]), "--output-dir", str(tmp_path), "--user-fraction", "0"])
    assert "outside (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="1"):
        main(["--reviews", str(tmp_path / "absent.gz"), "--meta", str(raw[1]), "--output-dir", str(tmp_path)])
    assert "absent.gz does not exist" in capsys.readouterr().err
