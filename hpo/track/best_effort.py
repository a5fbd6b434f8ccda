"""Pictures, notes and links are worth a console line, never a trial: each is made in a ``best_effort`` block.

A picture or a note that cannot be made costs one console line (once per kind per process) and the work goes
on. That includes a full or read-only store: the trial's own logging or its retrain's checkpoint, which need
it, stop the study with that store's line (``hpo/stores/retry.py``).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from hpo.core.masking import masked

_said: set[str] = set()  # the kinds of failure already reported by this process


@contextlib.contextmanager
def best_effort(what: str, print_line: Callable[[str], None] | None = None) -> Iterator[None]:
    """Run the block; an exception becomes one console line (the first time for ``what``), not a failure."""
    try:
        yield
    except Exception as err:
        if what not in _said:
            _said.add(what)
            first = str(err).splitlines()[0] if str(err) else ""
            line = f"hpo: {what} failed ({type(err).__name__}: {masked(first)}); the work goes on without it"
            (print_line or (lambda text: print(text, flush=True)))(line)
