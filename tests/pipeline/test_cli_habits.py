"""The command's habits (issue 40): `xcross --help` and `--version` answered without importing torch, the same help
as the full parser's; --json on evaluate and compare; the project's warnings labelled [xcross] and silenced by
--quiet; no installed path shown as --data-dir's default."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modeling_xcross_cli
from modeling_xcross.pipeline.cli import build_parser, main
from modeling_xcross.pipeline.data import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]


def entry_point(*arguments: str) -> subprocess.CompletedProcess:
    """`xcross ARGUMENTS` through the console entry point, in a fresh interpreter that then says whether torch was
    imported."""
    code = ("import sys, modeling_xcross_cli\n"
            f"sys.argv = ['xcross', *{list(arguments)!r}]\n"
            "try:\n    modeling_xcross_cli.main()\n"
            "finally:\n    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("arguments, status, shown", [
    (["--help"], 0, "prepare"),
    ([], 2, "the following arguments are required: command"),
    (["--version"], 0, f"xcross {modeling_xcross_cli.package_version()}"),
    (["trian"], 2, "invalid choice: 'trian'"),
])
def test_what_names_no_command_is_answered_without_torch(arguments, status, shown):
    done = entry_point(*arguments)
    assert done.returncode == status, done.stderr
    assert shown in done.stdout + done.stderr
    assert "torch imported: False" in done.stderr


def test_the_light_help_is_the_full_parsers():
    light = modeling_xcross_cli.light_parser(modeling_xcross_cli.commands_of(modeling_xcross_cli.cli_source()))
    assert light.format_help() == build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["--version"])


def test_data_dir_defaults_to_the_variable_and_shows_no_installed_path(monkeypatch, tmp_path):
    help_text = build_parser()._subparsers._group_actions[0].choices["recommend"].format_help()
    assert "$XCROSS_DATA_DIR" in " ".join(help_text.split()) and str(DEFAULT_DATA_DIR) not in help_text
    monkeypatch.setenv("XCROSS_DATA_DIR", str(tmp_path))
    args = build_parser().parse_args(["evaluate", "--model-dir", "m", "--domain", "Toys"])
    assert args.data_dir == str(tmp_path)


@pytest.fixture(scope="module")
def model_dir(adapters, tmp_path_factory):
    """A copy of the trained Toys adapter, so that what evaluate and recommend write stays out of the shared one."""
    copy = tmp_path_factory.mktemp("habits") / "toys"
    shutil.copytree(adapters / "toys", copy)
    return copy


def test_evaluate_json_prints_only_the_metrics_on_stdout(model_dir, data_dir, capsys):
    assert main(["evaluate", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
                 "--max-eval-users", "6", "--val-users", "4", "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["num_users"] == 6 and "mrr" in metrics
    assert "[data] Toys" in captured.err


def test_compare_json_prints_the_comparison_record(tmp_path, capsys):
    runs = []
    for label, mrr in (("X-Cross", 0.4), ("popularity", 0.3)):
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps({"mrr": mrr, "hit@1": mrr / 2, "hit@10": mrr * 2,
                                                                   "num_users": 10}))
        runs.append(f"{label}={tmp_path / label}")
    assert main(["compare", "--runs", *runs, "--output-dir", str(tmp_path / "out"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in record["rows"]] == ["X-Cross", "popularity"]
    assert record["verdict"].startswith("X-Cross wins")


def test_the_projects_warnings_are_labelled_xcross_and_quiet_silences_them(model_dir, data_dir, capsys):
    recommend = ["recommend", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--domain", "Toys",
                 "--history", "a title of no catalogue", "--top-k", "3"]
    assert main(recommend) == 0
    err = capsys.readouterr().err
    assert "[xcross] History 0: 1 of its 1 titles are not in the catalogue" in err
    assert "[transformers] History" not in err
    assert main([*recommend, "--quiet"]) == 0
    assert "History 0" not in capsys.readouterr().err
    assert main([*recommend, "--log-level", "error"]) == 0
    assert "History 0" not in capsys.readouterr().err
