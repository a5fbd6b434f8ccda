"""Machine-local locks: files in the temp folder, held with flock while a few steps must not interleave.

Used where processes of one machine share a store: creating a storage's or
MLflow's schema, creating a study, claiming a trial, deciding to retrain.
(Workers on several machines need a lock the database itself holds.)
"""

from __future__ import annotations

import contextlib
import fcntl
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
    return file_lock(lock_path(url, name))
