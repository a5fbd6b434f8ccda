"""Ctrl-C and SIGTERM as an exception, so a stopped ``hpo run`` leaves its trial and runs ended.

Inside :func:`interrupts_raise`, SIGINT and SIGTERM raise :class:`Interrupted`
(a ``KeyboardInterrupt``) in the main thread: the running trial is failed in
Optuna at once, its MLflow run and the parent run end KILLED, and the process
exits with 128 + the signal's number. A second signal while that cleanup runs
is ignored, so the cleanup finishes.
"""

from __future__ import annotations

import contextlib
import signal

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interrupts_raise():
    received: list[int] = []

    def handler(signum, frame):
        if received:
            return  # already stopping
        received.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
