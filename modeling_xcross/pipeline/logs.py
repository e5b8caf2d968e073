"""The `xcross` command's messages: the project's warnings labelled `[xcross]`, not `[transformers]`, and one level
(--log-level, --quiet) for them and the libraries'.

The package's modules log under transformers' root logger (`transformers.modeling_xcross.*`), so that
`transformers.logging.set_verbosity_*` and TRANSFORMERS_VERBOSITY reach them in Python; the command gives them their
own handler and label while it runs (transformers' own handler lets them pass, so they are shown once, and they still
propagate to Python's root logger as before), and puts everything back afterwards, so that a Python caller's logging
is left as it was.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from transformers.utils import logging as hf_logging

# The logger every module of the package logs under (`logging.get_logger(f"transformers.{__name__}")`).
PROJECT_LOGGER = "transformers.modeling_xcross"
LABEL = "[xcross] %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _NotTheProjects(logging.Filter):
    """Lets pass every record but the project's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(PROJECT_LOGGER)


@contextmanager
def command_logging(level: str | None = None):
    """While the block runs, the project's messages go to stderr labelled `[xcross]` and, with `level` (one of
    `LOG_LEVELS`), only those of that level or above, of the project and of transformers."""
    project = logging.getLogger(PROJECT_LOGGER)
    handler = logging.StreamHandler()  # sys.stderr as it is now
    handler.setFormatter(logging.Formatter(LABEL))
    # transformers' console handler would print the message again, as [transformers]; other handlers (a test's
    # capture, a file) keep receiving it.
    library_handlers = [library_handler for library_handler in logging.getLogger("transformers").handlers
                        if type(library_handler) is logging.StreamHandler]
    skip_ours = _NotTheProjects()
    saved = project.level, hf_logging.get_verbosity()
    project.addHandler(handler)
    for library_handler in library_handlers:
        library_handler.addFilter(skip_ours)
    if level is not None:
        project.setLevel(level.upper())
        hf_logging.set_verbosity(logging.getLevelName(level.upper()))
    try:
        yield
    finally:
        project.removeHandler(handler)
        for library_handler in library_handlers:
            library_handler.removeFilter(skip_ours)
        project.setLevel(saved[0])
        hf_logging.set_verbosity(saved[1])
