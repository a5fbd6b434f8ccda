"""The files a command writes where the user says (``--output``): never a store, never a file hpo did not write.

Checked before any work, so a command refused here has trained, registered and written nothing: the path is
not a folder, not a database (the study storage or MLflow's, under any name), and where a file is there
already it is one hpo wrote of the same kind (an earlier report, checkpoint or plot), which it replaces.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from hpo.core.errors import UserError
from hpo.stores.retry import check_writable

SQLITE_HEADER = b"SQLite format 3\x00"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _is_report(path: Path) -> bool:
    head = path.read_bytes()[:4096]
    return b"<title>hpo report: " in head or head.startswith(b"# hpo report: ")


def _is_torch_file(path: Path) -> bool:
    """What ``torch.save`` writes: a zip holding ``<name>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


KINDS = {  # what an earlier output of each kind looks like
    "report": ("an hpo report", _is_report),
    "checkpoint": ("a checkpoint", _is_torch_file),
    "plot": ("a PNG picture", lambda path: path.read_bytes()[:8] == PNG_HEADER),
}


def check_output(path: str | Path, flag: str, kind: str) -> Path:
    """``path`` if ``kind`` of output (report, checkpoint, plot) may be written there; else UserError naming
    ``flag`` and what to do."""
    path = Path(path)
    what, looks_right = KINDS[kind]
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder; name the file, e.g. {path / ('out' + path.suffix)}")
    if path.is_file():
        with open(path, "rb") as file:
            header = file.read(16)
        if header == SQLITE_HEADER:
            raise UserError(f"{flag}: {path} is a database (a study storage or MLflow's); hpo never writes over "
                            f"one: name another file")
        if path.stat().st_size and not looks_right(path):
            raise UserError(f"{flag}: {path} exists and is not {what} hpo wrote; name another file or remove it")
    check_writable(path, flag)
    return path
