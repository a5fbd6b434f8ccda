"""Passwords out of every text that leaves hpo: what we print, log, tag or pass on shows ``user:***@host``.

A storage or tracking URL may carry a password (``postgresql://u:secret@host/db``,
``http://u:secret@mlflow:5000``). :func:`masked` replaces every password in a text, so it is applied where
text leaves hpo: console lines, error messages, ``hpo show --json``, MLflow tags and params, checkpoints.
Workers receive the real URLs through their environment, never on their command line (``ps``).
"""

from __future__ import annotations

import re

# scheme://user:password@  (the password: anything up to the last '@' before the host, without '/' or space)
_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]*)@")


def masked(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)
