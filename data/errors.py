"""The error a data set loader raises for bad input: what is wrong, and the study field it came from.

``data/`` knows nothing of study files or the command line; the caller (``hpo``)
adds the file name and turns it into its one-line message.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data folder, file or loader option that cannot be used.

    ``field`` is the study-file field at fault (``data.root``), or None when the
    message already names what is wrong (a file path)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


class DataFailed(RuntimeError):
    """Good data that could not be read this time (a DataLoader worker killed): the work stops, the input
    is not at fault. ``hpo`` says it in one line, exit code 1, and a search fails only the trial."""
