"""Failing stores: a passing failure is retried with back-off; a full or read-only store stops the work.

The study storage and MLflow are databases (SQLite files, PostgreSQL, an
MLflow server) that fail for a moment (a lock another process holds past
SQLite's timeout, a server restarting, a dropped connection) or for good (the
disk is full, the file system is read-only). :func:`retried` calls a store
again after 0.5, 1, 2, 4 and 8 seconds while the failure looks passing; a full
or read-only store raises :class:`StoreUnwritable` at once, and a passing
failure that outlasts the retries :class:`StoreUnavailable`: either stops the
study with one line (exit code 1) saying what to free, fix or start. What a trial
has trained is not thrown away because logging failed: see ``RunLog`` in
``hpo/track/tracker.py``.

Before any work, :func:`check_writable` refuses an SQLite file or artifact
folder on a read-only or full file system (exit code 2), so nothing is
created in one store when another cannot be written.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hpo.core.errors import UserError, WorkFailed
from hpo.core.masking import masked

DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # 15.5 s in all: a lock released, a restarted server back
MIN_FREE_BYTES = 1 << 20  # a store whose file system has less than this is refused before work starts

# How the drivers (sqlite3, psycopg, urllib3 under MLflow's REST client) word the failures, lower-cased.
PASSING = ("database is locked", "database table is locked", "connection refused", "connection reset",
           "could not connect", "server closed the connection", "timed out", "temporarily unavailable",
           "too many connections", "max retries exceeded", "bad gateway", "service unavailable",
           "terminating connection", "connection is closed", "the database system is starting up",
           "the database system is shutting down", "connection to server")  # the last four: a restarting PostgreSQL
PASSING_ERRNOS = (errno.ECONNREFUSED, errno.ECONNRESET)
FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = ("read-only file system", "readonly database")
READ_ONLY_ERRNOS = (errno.EROFS,)


class StoreUnwritable(WorkFailed):
    """A store that cannot take another write until the user frees space or fixes its permissions."""


class StoreUnavailable(WorkFailed):
    """A store that kept failing in a passing way for longer than the retries wait."""


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _matching(err: BaseException, words: tuple[str, ...], codes: tuple[int, ...]) -> BaseException | None:
    """The error in ``err``'s chain that says it (by errno or in the driver's words), if any."""
    return next((e for e in _chain(err)
                 if getattr(e, "errno", None) in codes or any(w in str(e).lower() for w in words)), None)


def is_full(err: BaseException) -> bool:
    return _matching(err, FULL, FULL_ERRNOS) is not None


def is_read_only(err: BaseException) -> bool:
    return _matching(err, READ_ONLY, READ_ONLY_ERRNOS) is not None


def is_passing(err: BaseException) -> bool:
    return not is_full(err) and not is_read_only(err) and _matching(err, PASSING, PASSING_ERRNOS) is not None


def first_line(err: BaseException) -> str:
    """The error's first line; after its class name, unless it is one of ours, whose words say it all."""
    text = str(err).strip().splitlines()
    line = text[0][:300] if text else ""
    data_errors = sys.modules.get("hpo.data.errors")  # loaded with any loader; importing it here would load torch
    if isinstance(err, (UserError, WorkFailed)) or (data_errors and isinstance(err, data_errors.DataFailed)):
        return line
    return f"{type(err).__name__}: {line}"


def unwritable(what: str, err: BaseException) -> StoreUnwritable:
    full = _matching(err, FULL, FULL_ERRNOS)
    cause = full or _matching(err, READ_ONLY, READ_ONLY_ERRNOS) or err
    return StoreUnwritable(f"{what}: {'its disk is full' if full else 'it is read-only'} "
                           f"({masked(first_line(cause))}); free space or make it writable, then run the same "
                           f"command again (hpo run goes on where it stopped)")


_nesting = threading.local()  # how deep this thread is in retried() calls


def retried(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, again after each of DELAYS_S while it fails in a passing way. A full or
    read-only store raises StoreUnwritable naming ``what``; a passing failure that outlasts the retries
    raises StoreUnavailable; any other failure is raised as it is.

    Only the outermost ``retried`` of a thread retries: inside it (a claim retried as a whole, whose steps
    write through ``hpo/study/record.py``) a failure goes straight out to it, so a retry starts the whole
    step again, after the locks it took were released, rather than waiting inside them."""
    if getattr(_nesting, "depth", 0):
        return call(*args, **kwargs)
    _nesting.depth = 1
    try:
        return _retried(what, call, *args, **kwargs)
    finally:
        _nesting.depth = 0


def _retried(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    for delay in (*DELAYS_S, None):
        try:
            return call(*args, **kwargs)
        except (StoreUnwritable, StoreUnavailable):  # a store that hpo gave up on already (its own retry)
            raise
        except Exception as err:
            if is_full(err) or is_read_only(err):
                raise unwritable(what, err) from err
            if not is_passing(err):
                raise
            if delay is None:
                raise StoreUnavailable(f"{what}: still failing after {sum(DELAYS_S):g} s of retries "
                                       f"({masked(first_line(err))}); check that it is up, then run the same "
                                       f"command again") from err
            time.sleep(delay)


def check_writable(path: Path, what: str) -> None:
    """Refuse a store file or folder that cannot be written (read-only file system, no permission, a full
    disk, a file where a folder must go), before anything is created: UserError naming it and what to do."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise UserError(f"{what}: cannot write {path}: {existing} is a file, not a folder")
    folder = existing if existing.is_dir() else existing.parent
    stats = os.statvfs(folder)
    if stats.f_flag & os.ST_RDONLY:
        raise UserError(f"{what}: cannot write {path}: {folder.resolve()} is on a read-only file system; run where "
                        f"you can write, or point {what} elsewhere")
    for target in {folder, existing}:
        if not os.access(target, os.W_OK):
            raise UserError(f"{what}: cannot write {path}: {target.resolve()} is not writable by this user; run "
                            f"where you can write, or point {what} elsewhere")
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise UserError(f"{what}: cannot write {path}: its file system has {free // 1024} KiB free; free some "
                        f"space, or point {what} elsewhere")
