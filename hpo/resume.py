"""Trials resume, not restart: each trial keeps its latest training state, and a retry goes on from it.

After every epoch a trial writes its state (``hpo.trainer.fit``'s ``keep_state``: weights, optimizer,
schedule, EMA and SWA averages, random number generators) and the values it reported to Optuna to
``STATE_FOLDER/<study>/trial-<N>.pt``, replacing the epoch before; the file goes when the trial
finishes. A trial whose process died (Ctrl-C, SIGTERM, SIGKILL, a lost machine) is FAILED with the
user attribute ``died``; the next claim enqueues a retry with the same parameters and the same
training seed (``budget.retries`` times at most), which reports again what the dead trial had
reported (so the pruner sees one history), then trains only the missing epochs. The retry's result
is the one an uninterrupted trial gives (tests/test_resume.py). A retrain keeps its state the same
way (``retrain-trial-<N>-<E>ep-seed<S>.pt``, with its early-stopping bookkeeping) and a rerun resumes it.

With a tracking server (several machines), a trial's run also keeps a copy of its state file in its
artifacts (``hpo-state/``, ``RunLog.keep_state``), so a retry on another machine downloads it and goes on
from it too; the copies go when the trial's line finishes. The retrain's state stays on its machine.

Trial user attributes: ``trial_seed`` (the training seed, kept by retries), ``resumes_trial`` (the
trial whose state file a retry goes on from: the first of its line), ``retry_of`` (the trial it
replaces), ``attempt`` (1 for the first retry). The study's user attribute ``retries`` lists them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

STATE_FOLDER = "hpo-state"  # beside the default stores; $HPO_STATE moves it


def state_file(study_name: str, trial: optuna.Trial | FrozenTrial) -> Path:
    """Where ``trial``'s line keeps its latest state (a retry shares its first trial's file)."""
    return _folder(study_name) / f"trial-{trial.user_attrs.get('resumes_trial', trial.number)}.pt"


def state_folder() -> Path:
    """Where the state files go: $HPO_STATE, else ./hpo-state."""
    return Path(os.environ.get("HPO_STATE") or STATE_FOLDER)


def _folder(study_name: str) -> Path:
    return state_folder() / study_name


def retrain_state_file(study_name: str, trial_number: int, epochs: int, seed: int) -> Path:
    """Where the retrain of ``trial_number`` for ``epochs`` with ``seed`` keeps its latest state."""
    return _folder(study_name) / f"retrain-trial-{trial_number}-{epochs}ep-seed{seed}.pt"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` whole or not at all: a kill in the middle leaves the previous epoch's file. A full disk
    raises OSError (ENOSPC), as any file write does (``torch.save`` to a file would hide the errno)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
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


def load(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The state at ``path`` if it was saved by training with this ``fingerprint``; None when there is none,
    or it belongs to other training (a study of the same name elsewhere, other settings) or cannot be read:
    such a file is removed."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # cut short by a lost machine, or not ours
        state = None
    if state is None or state.get("fingerprint") != fingerprint:
        path.unlink(missing_ok=True)
        return None
    return state


def fingerprint(*parts: Any) -> str:
    """What a state must have been saved by to be resumed: the study's id in its storage, the parameters, the
    seed, the epochs (their ``repr``, hashed)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def discard(path: Path) -> None:
    """Remove a finished trial's state file, and the folders it leaves empty (the study's, then hpo-state/)."""
    path.unlink(missing_ok=True)
    for partial in path.parent.glob(f"{path.stem}.*.tmp") if path.parent.is_dir() else ():
        partial.unlink(missing_ok=True)  # left by a process killed while writing
    for folder in (path.parent, path.parent.parent):
        if folder == path.parent or folder.name == STATE_FOLDER:
            with contextlib.suppress(OSError):  # not empty: other trials are running
                folder.rmdir()


def died(trial: FrozenTrial) -> bool:
    """Failed because its process ended (marked by hpo), or failed by Optuna for a silent heartbeat."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and (trial.user_attrs.get("died", False)
                                                or "fail_reason" not in trial.user_attrs)


def dead_line(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> list[FrozenTrial]:
    """The dead trials a retry replaces, the latest first (the trial it retries, that one's, ...)."""
    storage, line, number = study._storage, [], trial.user_attrs.get("retry_of")
    while number is not None:
        dead = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
        line.append(dead)
        number = dead.user_attrs.get("retry_of")
    return line


RETRIES_ATTR = "retries"  # study user attribute: [dead trial, its retry] pairs, in the order they were enqueued


def retries(study: optuna.Study) -> list[tuple[int, int]]:
    """The study's retries as (dead trial, retry) numbers: a study attribute, so neither a claim nor a trial's
    seed reads every trial of the study to find them (a study from before the attribute: read from its trials)."""
    # Through the storage: a sampler may be handed Hyperband's view of one bracket, which has no user_attrs and
    # whose get_trials holds that bracket's trials only.
    storage, study_id = study._storage, study._study_id
    pairs = storage.get_study_user_attrs(study_id).get(RETRIES_ATTR)
    if pairs is None:
        return [(t.user_attrs["retry_of"], t.number) for t in storage.get_all_trials(study_id, deepcopy=False)
                if "retry_of" in t.user_attrs]
    return [tuple(pair) for pair in pairs]


def retry_dead_trials(study: optuna.Study, retries_allowed: int) -> list[str]:
    """Enqueue a retry of every trial that died and has none yet, up to ``retries_allowed`` per line; a
    console line each. Called under the study's claim lock."""
    from optuna.trial import TrialState

    from hpo.interrupts import signals_deferred

    pairs = retries(study)
    # A retry enqueued by a claim cut short before it listed it (a kill, a store that failed): listed now.
    listed = {retry for _, retry in pairs}
    pending = [(t.user_attrs["retry_of"], t.number) for t in study.get_trials(
        deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        if "retry_of" in t.user_attrs and t.number not in listed]
    if pending or RETRIES_ATTR not in study.user_attrs:
        pairs += pending
        study.set_user_attr(RETRIES_ATTR, [list(pair) for pair in pairs])
    retried_already = {dead for dead, _ in pairs}
    given_up = set(study.user_attrs.get("retries_used_up", []))
    lines = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if not died(trial) or trial.number in retried_already | given_up or "trial_seed" not in trial.user_attrs:
            continue  # (a trial that died before training started has no seed and nothing to go on from)
        attempt = trial.user_attrs.get("attempt", 0) + 1
        if attempt > retries_allowed:
            given_up.add(trial.number)
            study.set_user_attr("retries_used_up", sorted(given_up))  # said once
            discard(state_file(study.study_name, trial))
            lines.append(f"trial {trial.number} died and has had its {retries_allowed} retries (budget.retries)")
            continue
        root = trial.user_attrs.get("resumes_trial", trial.number)
        with signals_deferred():  # enqueued and listed together
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "resumes_trial": root,
                                                          "attempt": attempt, "trial_seed": trial.user_attrs["trial_seed"]})
            retry = max(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                        if t.user_attrs.get("retry_of") == trial.number)
            pairs.append((trial.number, retry))
            study.set_user_attr(RETRIES_ATTR, [list(pair) for pair in pairs])
        lines.append(f"trial {trial.number} died: a retry goes on from its last finished epoch")
    return lines


def kept_epoch(path: Path) -> int:
    """The last epoch the state file at ``path`` holds; 0 when there is none or it cannot be read."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["trainer"]["epoch"])
    except Exception:
        return 0


def adopt_if_newer(path: Path, candidate: Path) -> None:
    """Put ``candidate`` (a state downloaded from a tracking server) at ``path`` if it holds a later epoch."""
    if kept_epoch(candidate) > kept_epoch(path):
        candidate.replace(path)
    else:
        candidate.unlink(missing_ok=True)


def study_identity(study: optuna.Study) -> str:
    """What tells this study from another of the same name (elsewhere, or deleted and made again): the id it
    was given at creation (``hpo.study.open_study``), else its storage URL and row id."""
    from hpo.study import url_of
    from hpo.urls import normalized

    return study.user_attrs.get("uid") or f"{normalized(url_of(study))}#{study._study_id}"
