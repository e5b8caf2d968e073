"""The `xcross` training defaults train at the scale of the data: all train users, epochs only as an upper bound
(validation stops training), and the negatives chosen on validation users where user batches apply, each path with
the batch size that suits it."""

from __future__ import annotations

import pytest

from modeling_xcross.errors import XCrossError
from modeling_xcross.pipeline.cli import (DEFAULT_BATCH_SIZE, DEFAULT_NEGATIVES, build_parser,
                                          negatives_and_batch_size)

COMMANDS = {"train-adapter": ["train-adapter", "--domain", "Tools"],
            "train": ["train", "--target", "Tools", "--sources", "a"],
            "train-head": ["train-head", "--domain", "Tools"]}


def _parse(command: str, *options: str):
    return build_parser().parse_args([*COMMANDS[command], "--output-dir", "out", *options])


@pytest.mark.parametrize("command", COMMANDS)
def test_defaults_train_on_all_users_until_validation_stops_improving(command):
    args = _parse(command)
    assert args.max_train_users is None and args.max_steps == -1
    assert args.epochs > 1, "--epochs is an upper bound; --patience stops training"
    assert negatives_and_batch_size(args) == (DEFAULT_NEGATIVES, DEFAULT_BATCH_SIZE["user batches"])
    assert DEFAULT_NEGATIVES != "per-example"


def test_the_default_negatives_fall_back_where_user_batches_do_not_apply():
    for options in (["--scoring", "cross"], ["--history-encoding", "text"], ["--in-batch-negatives"]):
        assert negatives_and_batch_size(_parse("train-adapter", *options)) == (
            "per-example", DEFAULT_BATCH_SIZE["per-example"]), options
    assert negatives_and_batch_size(_parse("train", "--negatives", "per-example")) == ("per-example", 8)
    assert negatives_and_batch_size(_parse("train", "--negatives", "uniform", "--batch-size", "5")) == ("uniform", 5)


def test_the_default_negatives_are_per_example_on_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: user batches train on one process
    assert negatives_and_batch_size(_parse("train")) == ("per-example", DEFAULT_BATCH_SIZE["per-example"])


def test_shared_negatives_asked_for_where_they_do_not_apply_are_refused():
    with pytest.raises(XCrossError, match="--negatives uniform trains on batches of whole users"):
        negatives_and_batch_size(_parse("train-adapter", "--scoring", "cross", "--negatives", "uniform"))
