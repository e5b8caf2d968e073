"""One base class for the errors a user's input causes: the CLI prints those (and missing files) as one line with
exit status 1, and lets anything else, a bare ValueError from a bug among them, reach the caller with its traceback."""

from __future__ import annotations

import pytest

from conversion.amazon_reviews import ConversionError
from conversion.gguf_to_hf import GgufConversionError
from modeling_xcross.auto_loading import ModelDirError
from modeling_xcross.errors import CheckpointError, XCrossError
from modeling_xcross.inference.catalogue import CatalogueError
from modeling_xcross.pipeline import cli
from modeling_xcross.pipeline.comparison import ComparisonError
from modeling_xcross.pipeline.data import DataError
from modeling_xcross.pipeline.runs import OutputDirError
from research.experiments import ConfigError


@pytest.mark.parametrize("error", [CheckpointError, ModelDirError, CatalogueError, DataError, OutputDirError,
                                   ComparisonError, ConfigError, ConversionError, GgufConversionError])
def test_every_expected_error_is_an_xcross_error_and_a_value_error(error):
    assert issubclass(error, XCrossError) and issubclass(error, ValueError)


def _compare_raising(monkeypatch, error: Exception):
    def compare(*args, **kwargs):
        raise error
    monkeypatch.setattr(cli, "compare", compare)
    return ["compare", "--runs", "X-Cross=runs/a", "--output-dir", "out"]


@pytest.mark.parametrize("error", [DataError("Domain 'Tolls' is missing; pass one of Toys, Tools."),
                                   OSError("runs/a/metrics.json: no such file")])
def test_a_user_error_is_one_line_with_status_1(monkeypatch, capsys, error):
    assert cli.main(_compare_raising(monkeypatch, error)) == 1
    assert capsys.readouterr().err == f"xcross compare: error: {error}\n"


def test_a_bare_value_error_keeps_its_traceback(monkeypatch, capsys):
    with pytest.raises(ValueError, match="a bug"):
        cli.main(_compare_raising(monkeypatch, ValueError("a bug")))
    assert capsys.readouterr().err == ""


def test_a_damaged_file_is_a_checkpoint_error(tmp_path):
    from modeling_xcross.checkpoint import read_json
    (tmp_path / "config.json").write_text('{"r": 8, ')
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        read_json(tmp_path / "config.json")
