"""The exceptions the CLI turns into one line (exit code 2 for bad input, 1 for failed work), and how values
appear in their messages."""

import reprlib


class UserError(Exception):
    """Bad input from the user: a study file, an argument, a missing file or study.

    The message is shown as it is, on one line, so it must name the file or
    argument, the field and what is allowed.
    """


class WorkFailed(Exception):
    """Work that could not be done with good input (a retrain that diverged): one line, exit code 1."""


class OutOfMemory(WorkFailed):
    """A training or evaluation batch that did not fit in its device's memory (CUDA, or the CPU's allocator),
    raised by ``hpo/train/trainer.py`` once that memory is released: in a search the trial is FAILED with it and the
    study goes on. The message starts ``out of memory at batch size N``; its note (``__notes__``) holds the
    traceback of the allocation that failed, for the run's error.txt."""


class SpecError(UserError):
    """A study file (or a ``--set`` override) that does not validate."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field = source, field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


# At most a few levels, items and characters: a value's repr is never computed in full, so a YAML alias bomb
# (337 bytes that stand for a structure of billions of items) costs nothing to describe.
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel, _BOUNDED.maxstring, _BOUNDED.maxother = 3, 60, 60
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = 4
SHOWN_LIMIT = 60  # characters of a value in a message


def shown(value) -> str:
    """A user's value for an error message: its repr when short, else its type and size."""
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN_LIMIT else f"a string of {len(value):,} characters"
    text = _BOUNDED.repr(value)
    if len(text) <= SHOWN_LIMIT and "..." not in text:
        return text
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value):,} items"
    return f"a {type(value).__name__}"
