"""The `xcross` command's messages: the project's warnings labelled `[xcross]`, not `[transformers]`, and one level
(--log-level, --quiet) for them and the libraries'.

The package's modules log under transformers' root logger (`transformers.modeling_xcross.*`), so that
`transformers.logging.set_verbosity_*` and TRANSFORMERS_VERBOSITY reach them in Python; the command gives them their
own handler and label while it runs, and puts everything back afterwards, so that a Python caller's logging is left
as it was.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from transformers.utils import logging as hf_logging

# The logger every module of the package logs under (`logging.get_logger(f"transformers.{__name__}")`).
PROJECT_LOGGER = "transformers.modeling_xcross"
LABEL = "[xcross] %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@contextmanager
def command_logging(level: str | None = None):
    """While the block runs, the project's messages go to stderr labelled `[xcross]` and, with `level` (one of
    `LOG_LEVELS`), only those of that level or above, of the project and of transformers."""
    project = logging.getLogger(PROJECT_LOGGER)
    handler = logging.StreamHandler()  # sys.stderr as it is now
    handler.setFormatter(logging.Formatter(LABEL))
    saved = project.propagate, project.level, hf_logging.get_verbosity()
    project.addHandler(handler)
    project.propagate = False  # transformers' handler would print it again, as [transformers]
    if level is not None:
        project.setLevel(level.upper())
        hf_logging.set_verbosity(logging.getLevelName(level.upper()))
    try:
        yield
    finally:
        project.removeHandler(handler)
        project.propagate, level_before, verbosity = saved
        project.setLevel(level_before)
        hf_logging.set_verbosity(verbosity)
