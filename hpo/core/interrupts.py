"""Ctrl-C and SIGTERM as an exception, so a stopped ``hpo run`` leaves its trial and runs ended.

Inside :func:`interrupts_raise`, SIGINT and SIGTERM raise :class:`Interrupted`
(a ``KeyboardInterrupt``) in the main thread: the running trial is failed in
Optuna at once, its MLflow run and the parent run end KILLED, and the process
exits with 128 + the signal's number. A second signal while that cleanup runs
is ignored, so the cleanup finishes. Inside :func:`signals_deferred` a signal
waits until the block ends, for steps that must not be cut in half (creating a
trial and naming its process; telling Optuna and ending the run).

(The signal mask cannot do the deferring: a signal sent to the process is taken
by any thread that does not block it, and Python then runs the handler in the
main thread anyway.)
"""

from __future__ import annotations

import contextlib
import signal
import sys

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    deferring = 0  # nesting depth of signals_deferred blocks
    pending: int | None = None  # a signal that arrived while deferring
    stopping = False  # one signal has been raised: ignore the rest
    raised: int | None = None  # the signal raised, for raise_if_swallowed


def _handler(signum, frame):
    if _State.stopping:
        return
    if _State.deferring:
        _State.pending = signum
        return
    _State.stopping, _State.raised = True, signum
    raise Interrupted(signum)


def raise_if_swallowed() -> None:
    """Raise again a signal whose Interrupted never arrived. Python prints and drops an exception raised in
    a ``__del__`` or a weakref callback (SQLAlchemy runs some at garbage collection), so a signal handled
    just then would be lost. Called where the work loops go on (each trial, each epoch): an Interrupted
    that did arrive never lets them get there."""
    if _State.raised is not None:
        signum, _State.raised = _State.raised, None
        raise Interrupted(signum)


def interrupt_behind(err: BaseException) -> Interrupted | None:
    """The Ctrl-C or SIGTERM that ``err`` stands for, if any: library code that catches the Interrupted raised
    inside it and fails otherwise (alembic cleaning up a cut migration on the broken connection, pydantic's
    schema builder wrapping it in a SchemaError) turns the user's stop into an unrelated exception."""
    seen = err
    while seen is not None:
        if isinstance(seen, Interrupted):
            return seen
        seen = seen.__cause__ or seen.__context__
    if _State.raised is not None:  # raised, then swallowed or replaced
        signum, _State.raised = _State.raised, None
        return Interrupted(signum)
    return None


def forget() -> None:
    """Start a command with no signal on record: one raised in an earlier command in this process (the Python
    API, a notebook, a test) says nothing about the next one's errors."""
    _State.deferring, _State.pending, _State.stopping, _State.raised = 0, None, False, None


def _quiet_unraisable(previous):
    """``sys.unraisablehook`` that says nothing of an Interrupted dropped in a ``__del__`` or a weakref callback
    (Python would print "Exception ignored in ..." and its traceback): raise_if_swallowed raises it again."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, Interrupted):
            previous(unraisable)
    return hook


@contextlib.contextmanager
def interrupts_raise():
    forget()
    previous = {s: signal.signal(s, _handler) for s in HANDLED}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block has ended; then raise them as usual."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending is not None and not _State.stopping:
            signum, _State.pending, _State.stopping = _State.pending, None, True
            _State.raised = signum
            raise Interrupted(signum)


@contextlib.contextmanager
def imports_uninterrupted():
    """Heavy imports (torch) with SIGINT and SIGTERM held back until they are done, then raised as Interrupted:
    a KeyboardInterrupt raised inside an extension's initialisation (torch's pybind11 code) aborts the process
    (SIGABRT, "terminate called after throwing ...") instead of unwinding."""
    with interrupts_raise(), signals_deferred():
        yield
