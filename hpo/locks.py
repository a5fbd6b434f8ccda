"""Locks held while a few steps must not interleave: creating a storage's or MLflow's schema, creating a
study, claiming a trial, deciding to retrain.

On a PostgreSQL store the lock is one of PostgreSQL's advisory locks, which every machine that reaches
the database sees, so workers on several machines share one exact budget. Elsewhere (SQLite, a file
store) it is a file in this machine's temp folder held with flock: such stores are one machine's anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import tempfile
from pathlib import Path

from hpo.urls import normalized


def lock_path(url: str, name: str) -> Path:
    """The lock file for ``name`` within the store at ``url``."""
    digest = hashlib.sha256(f"{normalized(url)}\0{name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"hpo-{name}-{digest}.lock"


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_lock(url: str, name: str):
    """Hold the lock for ``name`` within the store at ``url``."""
    if url.startswith("postgresql"):
        return advisory_lock(url, name)
    return file_lock(lock_path(url, name))


@contextlib.contextmanager
def advisory_lock(url: str, name: str):
    """PostgreSQL's session advisory lock numbered by ``name``, on a connection of its own."""
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with _engine(url).connect() as connection:
        connection.execute(text("select pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("select pg_advisory_unlock(:key)"), {"key": key})


@functools.cache
def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool)  # a connection per lock, closed when it is released
