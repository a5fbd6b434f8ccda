"""Store URLs without their secrets: what we print, log, tag or pass on shows ``user:***@host``.

A storage or tracking URL may carry a password (``postgresql://u:secret@host/db``,
``http://u:secret@mlflow:5000``). :func:`masked` replaces every password in a
text, so it is applied where text leaves hpo: console lines, error messages,
``hpo show --json``, MLflow tags and params, checkpoints. Workers receive the
real URLs through their environment, never on their command line (``ps``).
"""

from __future__ import annotations

import re

from hpo.errors import UserError

# scheme://user:password@  (the password: anything up to the last '@' before the host, without '/' or space)
_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]*)@")


def masked(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)


# MLflow's tracking stores, by URI scheme (a plain path is a file store).
TRACKING_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def check_storage_url(url: str, flag: str = "--storage") -> None:
    """Refuse a storage URL SQLAlchemy cannot use, before anything is created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise UserError(f"{flag} / HPO_STORAGE: {masked(url)!r} is not a database URL SQLAlchemy knows "
                        f"({str(err).splitlines()[0]}); e.g. sqlite:///hpo.db or "
                        f"postgresql://USER@HOST/DB") from None


def check_tracking_uri(uri: str, flag: str = "--tracking-uri") -> None:
    """Refuse a tracking URI MLflow has no store for, before anything is created."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a path
        scheme = ""
    if scheme not in TRACKING_SCHEMES:
        raise UserError(f"{flag} / MLFLOW_TRACKING_URI: {masked(uri)!r} has the scheme {scheme!r}, which MLflow "
                        f"stores nothing in; use one of {', '.join(s + ':' for s in TRACKING_SCHEMES if s)} "
                        f"or a folder path")
