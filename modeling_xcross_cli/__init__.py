"""The `xcross` console command. Importing the CLI loads torch and transformers (several seconds), and importing any
module of `modeling_xcross` does so first, so this entry point lives beside the package: it imports the CLI inside
its own Ctrl-C handling, and an interrupt while the libraries load exits 130 with one line, as one later does.

What needs no command (`xcross`, `xcross --help`, `xcross --version`, a mistyped command) is answered by `light_parser`,
which reads the commands and their help from the CLI's source instead of importing it: in a fraction of a second
(tests/pipeline/test_cli_habits.py holds its help to the full parser's). `--quiet` turns tqdm's progress bars off
before anything imports tqdm, which reads that setting once.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The shell's status for a command stopped by Ctrl-C (128 + SIGINT), as modeling_xcross.pipeline.cli's.
EXIT_INTERRUPTED = 130


def package_version() -> str:
    """As modeling_xcross.pipeline.cli.package_version."""
    try:
        return version("xcross-rec")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def cli_source() -> ast.Module:
    """modeling_xcross/pipeline/cli.py, parsed; found without importing the package (which imports torch)."""
    package = Path(importlib.util.find_spec("modeling_xcross").origin).parent
    path = package / "pipeline" / "cli.py"
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def commands_of(source: ast.Module) -> dict[str, str]:
    """Each `commands.add_parser(name, help=...)` of the CLI's source, in source order (build_parser's order):
    {name: help}."""
    found = sorted((node.lineno, node.args[0].value, keyword.value.value) for node in ast.walk(source)
                   if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                   and node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant)
                   for keyword in node.keywords if keyword.arg == "help")
    return {name: help_text for _, name, help_text in found}


def light_parser(commands: dict[str, str]) -> argparse.ArgumentParser:
    """The CLI's top-level parser (description, --version, `commands` and their help) without the commands'
    options."""
    parser = argparse.ArgumentParser(prog="xcross", description=ast.get_docstring(cli_source(), clean=False),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    names = parser.add_subparsers(dest="command", required=True)
    for name, help_text in commands.items():
        names.add_parser(name, help=help_text)
    return parser


def main() -> int:
    """`modeling_xcross.pipeline.cli.main`, imported here so that Ctrl-C during the import is handled too; what
    names no command is answered by `light_parser`, without importing it."""
    arguments = sys.argv[1:]
    try:
        commands = commands_of(cli_source())
        if not arguments or arguments[0] not in commands:
            light_parser(commands).parse_args(arguments)  # prints the help, the version or the error, and exits
        if "--quiet" in arguments:
            os.environ["TQDM_DISABLE"] = "1"
        from modeling_xcross.pipeline.cli import main as run

        return run()
    except KeyboardInterrupt:
        if "--debug" in arguments:
            raise
        print("xcross: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
