"""Training state files: a training resumes, not restarts, from the latest epoch it kept.

After every epoch a trial writes its state (``hpo.train.trainer.fit``'s ``keep_state``: weights, optimizer,
schedule, EMA and SWA averages, random number generators) and the values it reported to Optuna to
``STATE_FOLDER/<study>/trial-<N>.pt``, replacing the epoch before; the file goes when the trial
finishes. A retry of a trial whose process died (``hpo/study/retries.py``) reports again what the dead
trial had reported (so the pruner sees one history), then trains only the missing epochs. A retrain keeps
its state the same way (``retrain-trial-<N>-<E>ep-seed<S>.pt``, with its early-stopping bookkeeping) and a
rerun resumes it.

With a tracking server (several machines), a trial's run also keeps a copy of its state file in its
artifacts (``hpo-state/``, ``RunLog.keep_state``), so a retry on another machine downloads it and goes on
from it too; the copies go when the trial's line finishes. The retrain's state stays on its machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FOLDER = "hpo-state"  # beside the default stores; $HPO_STATE moves it


def state_folder() -> Path:
    """Where the state files go: $HPO_STATE, else ./hpo-state."""
    return Path(os.environ.get("HPO_STATE") or STATE_FOLDER)


def fingerprint(*parts: Any) -> str:
    """What a state must have been saved by to be resumed: the study's id in its storage, the parameters, the
    seed, the epochs (their ``repr``, hashed)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StateFile:
    """One training's latest state on disk. ``fingerprint`` says which training may resume from it: a file
    saved by another (a study of the same name elsewhere, other settings) is not this one's."""

    path: Path
    fingerprint: str = ""

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (with the fingerprint) whole or not at all: a kill in the middle leaves the previous
        epoch's file. A full disk raises OSError (ENOSPC), as any file write does (``torch.save`` to a file
        would hide the errno)."""
        import torch

        buffer = io.BytesIO()
        torch.save({**state, "fingerprint": self.fingerprint}, buffer)
        path = self.path
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        for attempt in range(3):  # another process may remove the emptied folder between mkdir and open
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(partial, "wb") as file:
                    file.write(buffer.getbuffer())
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except OSError:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(path)

    def load(self) -> dict[str, Any] | None:
        """The state if this training saved it; None when there is none, or it belongs to another training or
        cannot be read: such a file is removed."""
        import torch

        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # cut short by a lost machine, or not ours
            state = None
        if state is None or state.get("fingerprint") != self.fingerprint:
            self.path.unlink(missing_ok=True)
            return None
        return state

    def discard(self) -> None:
        """Remove the file once its training has finished, and the folders it leaves empty (the study's, then
        hpo-state/)."""
        path = self.path
        path.unlink(missing_ok=True)
        for partial in path.parent.glob(f"{path.stem}.*.tmp") if path.parent.is_dir() else ():
            partial.unlink(missing_ok=True)  # left by a process killed while writing
        for folder in (path.parent, path.parent.parent):
            if folder == path.parent or folder.name == STATE_FOLDER:
                with contextlib.suppress(OSError):  # not empty: other trials are running
                    folder.rmdir()

    def kept_epoch(self) -> int:
        """The last epoch the file holds; 0 when there is none or it cannot be read."""
        return _kept_epoch(self.path)

    def adopt_if_newer(self, candidate: Path) -> None:
        """Put ``candidate`` (a state downloaded from a tracking server) here if it holds a later epoch."""
        if _kept_epoch(candidate) > self.kept_epoch():
            candidate.replace(self.path)
        else:
            candidate.unlink(missing_ok=True)


def _kept_epoch(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["trainer"]["epoch"])
    except Exception:
        return 0


def trial_state(study_name: str, line: int, stamp: str = "") -> StateFile:
    """Where the trial ``line`` (the first trial of a line of retries: they share its file) keeps its state."""
    return StateFile(state_folder() / study_name / f"trial-{line}.pt", stamp)


def retrain_state(study_name: str, trial_number: int, epochs: int, seed: int, stamp: str = "") -> StateFile:
    """Where the retrain of ``trial_number`` for ``epochs`` with ``seed`` keeps its state."""
    return StateFile(state_folder() / study_name / f"retrain-trial-{trial_number}-{epochs}ep-seed{seed}.pt", stamp)
