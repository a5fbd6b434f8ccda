"""The first creation of an SQLite store, whole or not at all.

MLflow builds its schema in dozens of migrations and Optuna in a few statements. A Ctrl-C or a kill halfway
through used to leave a file that every later command refused (``index ... already exists``, ``table
_alembic_tmp_experiments already exists``). Here the schema is built in a temporary file beside the store
and renamed into place once complete, so the store's own name holds either nothing or a whole schema. A
creation cut short leaves only the temporary file, which the next creation removes and redoes.

Callers hold the store's lock (``hpo/stores/locks.py``), so two first runs never build the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from hpo.stores.urls import sqlite_path

SIDE_FILES = ("", "-journal", "-wal", "-shm")  # an SQLite database and the files it may leave beside it


def created_whole(url: str, build: Callable[[str], None]) -> bool:
    """Build the SQLite store at ``url`` with ``build(temporary_url)`` and rename it into place, when it does
    not exist yet (or is an empty file); True when it was created. Other databases are left to ``build``'s
    own callers: a database server creates its schema in one transaction per migration."""
    path = sqlite_path(url)
    if path is None or str(path) == ":memory:" or (path.exists() and path.stat().st_size > 0):
        return False
    building = path.with_name(f".{path.name}.creating")
    _remove(building)  # a creation cut short
    build(f"sqlite:///{building}")
    if any(Path(f"{building}{side}").exists() for side in SIDE_FILES[1:]):
        raise RuntimeError(f"{building} still has a journal beside it after its schema was built")
    os.replace(building, path)
    return True


def _remove(path: Path) -> None:
    for side in SIDE_FILES:
        Path(f"{path}{side}").unlink(missing_ok=True)


def build_optuna_schema(url: str) -> None:
    import optuna

    optuna.storages.RDBStorage(url).engine.dispose()


def build_mlflow_schema(url: str) -> None:
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(url, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH).engine.dispose()
