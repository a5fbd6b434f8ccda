"""Which process runs a trial or an MLflow run, and whether it still exists.

Trials and runs carry their process's identity (``hpo.host``, ``hpo.pid``,
``hpo.pid_started``), so a later ``hpo run`` on the same machine can tell at
once that a RUNNING trial or run was left behind by a killed process and end
it. A process on another machine cannot be checked from here: its trials are
failed by Optuna's heartbeat after the grace period.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that reuses its pid by its start time."""

    host: str
    pid: int
    started: str  # clock ticks after boot (/proc/PID/stat); "" where there is no /proc

    @classmethod
    def current(cls) -> "ProcessId":
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()))

    def as_attrs(self) -> dict[str, str]:
        return {"hpo.host": self.host, "hpo.pid": str(self.pid), "hpo.pid_started": self.started}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, str]) -> "ProcessId | None":
        if "hpo.host" not in attrs or "hpo.pid" not in attrs:
            return None
        return cls(attrs["hpo.host"], int(attrs["hpo.pid"]), attrs.get("hpo.pid_started", ""))

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_gone(self) -> bool:
        """True only for a process of this machine that has ended; another machine's is never 'gone'."""
        if not self.is_local():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, under another user
            return False
        return bool(self.started) and _start_time(self.pid) != self.started


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name
