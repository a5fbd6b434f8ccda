"""The first creation of an SQLite store, whole or not at all.

MLflow builds its schema in dozens of migrations and Optuna in a few statements. A Ctrl-C or a kill halfway
through used to leave a file that every later command refused (``index ... already exists``, ``table
_alembic_tmp_experiments already exists``). Here the schema is built in a temporary file beside the store
and renamed into place once complete, so the store's own name holds either nothing or a whole schema. A
creation cut short leaves only the temporary file (and its journal), which the next creation removes.

Callers hold the store's lock (``hpo/stores/locks.py``), so two first runs never build the same file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from hpo.stores.urls import sqlite_path

SIDE_FILES = ("", "-journal", "-wal", "-shm")  # an SQLite database and the files it may leave beside it


def created_whole(url: str, build: Callable[[str], None]) -> bool:
    """Build the SQLite store at ``url`` with ``build(temporary_url)`` and rename it into place, when it does
    not exist yet (or is an empty file); True when it was created. Other databases are left to ``build``'s
    own callers: a database server creates its schema in one transaction per migration."""
    path, (_, mark, query) = sqlite_path(url), url.partition("?")  # sqlite:///hpo.db?timeout=30: the options kept
    if path is None or str(path) in ("", ":memory:") or (path.exists() and path.stat().st_size > 0):
        return False
    for cut_short in path.parent.glob(f".{path.name}.creating-*"):  # left by a creation that was stopped
        cut_short.unlink(missing_ok=True)
    # A name of its own, absolute: MLflow keeps one engine per URL in a process, so a name used before (in
    # another folder, by an earlier command of the same Python process) would reach that engine's file.
    building = path.resolve().with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    build(f"sqlite:///{building}{mark}{query}")
    if any(Path(f"{building}{side}").exists() for side in SIDE_FILES[1:]):
        raise RuntimeError(f"{building} still has a journal beside it after its schema was built")
    os.replace(building, path)
    return True


def build_optuna_schema(url: str) -> None:
    import optuna

    optuna.storages.RDBStorage(url).engine.dispose()


def build_mlflow_schema(url: str) -> None:
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(url, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH).engine.dispose()
