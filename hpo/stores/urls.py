"""Where the stores are: the study storage's URL, MLflow's tracking URI and artifact folder, and their checks.

Each has one rule for its default (a flag, else an environment variable, else a file in the current
directory), and URLs that cannot work are refused in one line before anything is created. Passwords in
them are masked wherever they are shown (``hpo/core/masking.py``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from hpo.core.errors import UserError
from hpo.core.masking import masked

DEFAULT_STORAGE = "sqlite:///hpo.db"  # in the current directory
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlartifacts"  # in the current directory


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL (``sqlite:///relative.db``, ``sqlite:////absolute.db``, with or without the
    driver's options after ``?``), else None."""
    return Path(url[len("sqlite:///"):].partition("?")[0]) if url.startswith("sqlite:///") else None


def absolute_sqlite(url: str) -> str:
    """``url`` with a relative SQLite file made absolute, for MLflow. MLflow keeps one database engine per URL
    string in a process, so ``sqlite:///mlflow.db`` would go on reaching the folder where it was first used
    after the process moved to another (two ``hpo.api.run`` in two folders of one notebook)."""
    path, (_, mark, query) = sqlite_path(url), url.partition("?")
    if path is None or path.is_absolute() or str(path) in ("", ":memory:"):
        return url
    return f"sqlite:///{path.resolve()}{mark}{query}"


def local_path(url: str) -> Path | None:
    """The file or folder behind a local store: an SQLite URL, a ``file:`` URI or a plain path (MLflow's file
    store); None for a server or a service."""
    if url.startswith("file:"):
        return Path(url[len("file:"):].removeprefix("//"))
    if "://" in url or url.startswith("databricks"):
        return sqlite_path(url)
    return Path(url)


def bound_mlflow_requests() -> None:
    """A tracking server that does not answer is hpo's retry policy's to judge (hpo/stores/retry.py: 15.5 s,
    then one line). MLflow's own client would otherwise retry each request 7 times with exponential back-off
    and wait up to 120 s for each answer, inside each of hpo's retries: minutes of silence. (Defaults only: a
    user's own MLFLOW_HTTP_REQUEST_* settings stand.)"""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def check_server_answers(uri: str, flag: str = "--tracking-uri / MLFLOW_TRACKING_URI", timeout_s: float = 5.0) -> None:
    """Refuse an http(s) tracking URI whose server does not accept a connection, before anything is created."""
    import socket

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise UserError(f"{flag}: no MLflow server answers at {parts.hostname}:{port} "
                        f"({err.strerror or type(err).__name__}); start it (docs/scaling.md) or fix the URL") from None


def check_storage_exists(url: str) -> None:
    """Refuse a storage that must hold a study already (``hpo show``, ``retrain``, ``dashboard``) but is an SQLite
    file that does not exist, without creating it."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise UserError(f"no study storage at {url} ({path} does not exist); pass --storage or set HPO_STORAGE")


def normalized(url: str) -> str:
    """``url`` with an SQLite file's path made absolute: the same database however its path is spelled."""
    path = sqlite_path(url)
    return url if path is None else "sqlite:///" + str(path.resolve())


def storage_url(cli_value: str | None = None) -> str:
    """The Optuna storage: --storage, else $HPO_STORAGE, else sqlite:///hpo.db."""
    return cli_value or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE


def tracking_uri(cli_value: str | None = None) -> str:
    """MLflow's tracking URI: --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def existing_tracking_uri(cli_value: str | None = None) -> str | None:
    """The MLflow store a command that only reads looks in (``hpo show --top``, ``hpo report``): --tracking-uri,
    else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db when that file is here; else None. Reading never creates
    a store."""
    given = cli_value or os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        return given
    return DEFAULT_TRACKING_URI if sqlite_path(DEFAULT_TRACKING_URI).is_file() else None


def artifact_root(cli_value: str | None = None) -> Path:
    """Where a new MLflow experiment keeps artifacts: --artifacts, else $HPO_ARTIFACTS, else ./mlartifacts."""
    return Path(cli_value or os.environ.get("HPO_ARTIFACTS") or DEFAULT_ARTIFACT_ROOT).resolve()


def relative_artifact_location(tracking: str, root: Path) -> str | None:
    """The artifact root ``root`` as a path relative to the folder of the SQLite store ``tracking``, when that
    folder is the current directory and ``root`` lies inside it; else None (an absolute location is kept).

    MLflow resolves a relative artifact location against the current directory of whoever reads it (logging,
    ``mlflow ui``, ``load_model``, ``mlflow models serve``), as it does ``sqlite:///mlflow.db`` itself: so
    the relative form is right only where the store's folder is that directory, and then the folder can be
    moved or copied whole."""
    path = sqlite_path(tracking)
    if path is None or path.resolve().parent != Path.cwd().resolve():
        return None
    with contextlib.suppress(ValueError):  # outside the store's folder: it would not move with it
        return root.resolve().relative_to(path.resolve().parent).as_posix()
    return None


def is_relative_location(location: str) -> bool:
    """An artifact location that is a relative path (``mlartifacts``; see relative_artifact_location)."""
    return "://" not in location and ":" not in location.split("/", 1)[0] and not Path(location).is_absolute()


# MLflow's tracking stores, by URI scheme. A plain path or file: is MLflow's file store, which MLflow 3 refuses
# unless MLFLOW_ALLOW_FILE_STORE=true ("in maintenance mode").
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
FILE_STORE_SCHEMES = ("", "file")


def _in_memory(url: str) -> bool:
    """An SQLite URL without a file (``sqlite://``, ``sqlite:///``, ``:memory:``): gone when the process ends."""
    if not url.startswith("sqlite:"):
        return False
    path = url.split("?", 1)[0].removeprefix("sqlite:").lstrip("/")
    return path in ("", ":memory:") or url.split("?", 1)[0].endswith(":memory:")


def check_storage_url(url: str, flag: str = "--storage") -> None:
    """Refuse a storage URL SQLAlchemy cannot use, before anything is created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if _in_memory(url):
        raise UserError(f"{flag} / HPO_STORAGE: {url} is a database in memory, lost when hpo exits; name a file, "
                        f"e.g. sqlite:///hpo.db")
    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise UserError(f"{flag} / HPO_STORAGE: {masked(url)!r} is not a database URL SQLAlchemy knows "
                        f"({(str(err).splitlines() or [''])[0]}); e.g. sqlite:///hpo.db or "
                        f"postgresql://USER@HOST/DB") from None
    tables = sqlite_tables(url)
    if tables and "experiments" in tables and "studies" not in tables:
        raise UserError(f"{flag} / HPO_STORAGE: {url} is MLflow's database, not a study storage; give the studies "
                        f"a file of their own, e.g. sqlite:///hpo.db")


def check_tracking_uri(uri: str, flag: str = "--tracking-uri") -> None:
    """Refuse a tracking URI MLflow has no store for, before anything is created."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a path
        scheme = ""
    if scheme in FILE_STORE_SCHEMES and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise UserError(f"{flag} / MLFLOW_TRACKING_URI: {masked(uri)!r} is a folder, MLflow's file store, which "
                        f"MLflow 3 keeps only in maintenance mode; use sqlite:///mlflow.db (`mlflow "
                        f"migrate-filestore` moves a folder's runs there), or set MLFLOW_ALLOW_FILE_STORE=true")
    if scheme not in TRACKING_SCHEMES + FILE_STORE_SCHEMES:
        raise UserError(f"{flag} / MLFLOW_TRACKING_URI: {masked(uri)!r} has the scheme {scheme!r}, which MLflow "
                        f"stores nothing in; use one of {', '.join(s + ':' for s in TRACKING_SCHEMES)}")
    if _in_memory(uri):
        raise UserError(f"{flag} / MLFLOW_TRACKING_URI: {uri} is a database in memory, lost when hpo exits; name "
                        f"a file, e.g. sqlite:///mlflow.db")
    tables = sqlite_tables(uri)
    if tables and "studies" in tables and "experiments" not in tables:
        raise UserError(f"{flag} / MLFLOW_TRACKING_URI: {uri} is a study storage, not MLflow's database; give "
                        f"MLflow a file of its own, e.g. sqlite:///mlflow.db")


def sqlite_tables(url: str) -> set[str] | None:
    """The tables of the SQLite file behind ``url``, read without writing; None for another database or a
    file that does not exist yet. Read as immutable: a read-only connection to a file in WAL mode would
    leave its -wal and -shm files behind (a table created moments ago may still be in the log: unseen)."""
    import sqlite3

    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as file:
        header = file.read(16)
    if header and header != b"SQLite format 3\x00":
        raise UserError(f"{url}: {path} is not an SQLite database; point the URL at another file")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)) as db:
            return {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.DatabaseError:  # a page being written by another process at this moment: not known
        return None
