"""The `xcross` console command. Importing the CLI loads torch and transformers (several seconds), and importing any
module of `modeling_xcross` does so first, so this entry point lives beside the package: it imports the CLI inside
its own Ctrl-C handling, and an interrupt while the libraries load exits 130 with one line, as one later does."""

from __future__ import annotations

import sys

# The shell's status for a command stopped by Ctrl-C (128 + SIGINT), as modeling_xcross.pipeline.cli's.
EXIT_INTERRUPTED = 130


def main() -> int:
    """`modeling_xcross.pipeline.cli.main`, imported here so that Ctrl-C during the import is handled too."""
    try:
        from modeling_xcross.pipeline.cli import main as run

        return run()
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:
            raise
        print("xcross: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED

