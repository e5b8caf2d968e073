"""Runs that hold up (issue 42): Ctrl-C while the CLI's libraries load exits 130 with one line, a second training
into a busy output folder is refused, and a truncated run_settings.json is named in one line when the same command
runs again. Tiny random BERT, synthetic domains."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SMALL
from modeling_xcross.pipeline.cli import main
from modeling_xcross.pipeline.run_lock import lock_output_dir

ROOT = Path(__file__).resolve().parents[2]
# Holds an exclusive flock of the folder argv[1] (the lock trainings take) until killed.
HOLD_LOCK = ("import fcntl, os, sys, time; descriptor = os.open(sys.argv[1], os.O_RDONLY); "
             "fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked', flush=True); time.sleep(300)")


def train_adapter(data_dir, backbone, output_dir: Path) -> int:
    return main(["train-adapter", "--data-dir", str(data_dir), "--domain", "Toys", "--output-dir", str(output_dir),
                 "--backbone", str(backbone), *SMALL, "--max-steps", "1"])


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if "error:" in line]


def test_ctrl_c_while_the_cli_imports_its_libraries_exits_130_with_one_line():
    """The console entry point imports the CLI (torch, transformers: seconds) inside its Ctrl-C handling; the
    interrupt lands mid-import here (it used to print a 14-43 frame traceback)."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; from modeling_xcross_cli import main; "
                                "print('importing', flush=True); sys.exit(main())", "recommend", "--help"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "importing\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err == "xcross: interrupted.\n"


def test_a_second_training_into_a_busy_output_folder_is_refused(data_dir, tiny_backbone, tmp_path, capsys):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert train_adapter(data_dir, tiny_backbone, output_dir) == 1
    finally:
        holder.kill()
        holder.wait()
    assert error_lines(capsys) == [f"xcross train-adapter: error: --output-dir {output_dir} is in use: another "
                                   "training is writing into it right now. Wait for it to end (then rerun to "
                                   "resume), or choose another --output-dir."]
    assert not any(output_dir.iterdir()), "refused before it recorded anything"
    lock = lock_output_dir(output_dir)  # the holder is gone, and the kernel released its lock
    assert lock is not None and lock_output_dir(output_dir) is lock, "a process never blocks itself"
    retry = subprocess.run([sys.executable, "-c", HOLD_LOCK.replace("time.sleep(300)", "pass"), str(output_dir)],
                           capture_output=True, text=True)
    assert retry.returncode == 1 and "BlockingIOError" in retry.stderr, "held while the lock object lives"
    del lock
    retry = subprocess.run([sys.executable, "-c", HOLD_LOCK.replace("time.sleep(300)", "pass"), str(output_dir)],
                           capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr


def test_a_truncated_run_settings_file_is_named_in_one_line_when_the_command_runs_again(data_dir, tiny_backbone,
                                                                                         tmp_path, capsys):
    output_dir = tmp_path / "run"
    assert train_adapter(data_dir, tiny_backbone, output_dir) == 0
    settings = output_dir / "run_settings.json"
    settings.write_text(settings.read_text()[:40])
    capsys.readouterr()
    assert train_adapter(data_dir, tiny_backbone, output_dir) == 1
    [line] = error_lines(capsys)
    assert line.startswith(f"xcross train-adapter: error: {settings} is not valid JSON")
    assert "truncated or damaged" in line
