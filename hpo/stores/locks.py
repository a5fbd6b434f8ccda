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

from hpo.stores.urls import normalized


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

    key = int.from_bytes(hashlib.sha256(f"hpo:{name}".encode()).digest()[:8], "big", signed=True)
    with _engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:  # no open transaction
        connection.execute(text("select pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dropped connection has released the lock already
                connection.execute(text("select pg_advisory_unlock(:key)"), {"key": key})


@functools.cache
def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    # A connection per lock, closed when it is released; keepalives, so PostgreSQL notices within about a minute
    # that a machine holding a lock is gone (the default is two hours) and releases it.
    scheme = url.split("://", 1)[0]
    libpq = scheme.split("+", 1)[1] in ("psycopg", "psycopg2") if "+" in scheme else True  # plain: psycopg2
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    return create_engine(url, poolclass=NullPool, connect_args=keepalives if libpq else {})
