"""The errors a user's input can cause (options, data, directories, saved files), as opposed to bugs.

Every expected error derives from `XCrossError`, so the CLI prints it as one line and exits with status 1, while any
other exception keeps its traceback. It is a `ValueError`, so code that caught the errors as such still does.
"""


class XCrossError(ValueError):
    """An input X-Cross cannot use; the message names the problem and the fix."""


class CheckpointError(XCrossError):
    """A saved model, adapter or file that is damaged or does not fit the model it is loaded into."""
