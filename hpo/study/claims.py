"""Claiming trials: however many processes share a study, together they finish exactly its budget.

Trials are claimed under a lock (:func:`claim_trial`); a trial left RUNNING by a process that no longer
exists is failed at once when this machine started it (:func:`fail_dead_trials`), and after the heartbeat
grace period when another machine did (:func:`heartbeat`).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.core.interrupts import signals_deferred
from hpo.core.masking import masked
from hpo.stores.processes import ProcessId
from hpo.stores.retry import StoreUnavailable, StoreUnwritable, first_line
from hpo.study.record import StudyRecord, TrialRecord, stored, url_of
from hpo.study.retries import retry_dead_trials
from hpo.study.sampling import points_left
from hpo.study.storage import FINISHED, HEARTBEAT_S, study_lock

CLAIM_S = 30  # a claim takes well under a second: a trial without its process after this was orphaned


def _older_than(trial: FrozenTrial, seconds: float) -> bool:
    started = trial.datetime_start
    return started is not None and (datetime.datetime.now() - started).total_seconds() > seconds


# What to do with a trial whose process is gone: (state, value) to tell, e.g. the result its MLflow run
# logged before the process died, or None to fail it.
Recover = Callable[[FrozenTrial], "tuple[TrialState, float | None] | None"]


def fail_dead_trials(study: optuna.Study, recover: Recover | None = None) -> list[str]:
    """Finish the RUNNING trials whose process on this machine no longer exists: with the result their run
    logged (``recover``), else FAILED. Returns a console line for each."""
    lines = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = TrialRecord(trial).process
        if owner is not None and owner.is_gone():
            who = f"process {owner.pid}, which no longer exists"
        elif owner is None and _older_than(trial, CLAIM_S):  # killed (SIGKILL) between creating and naming it
            who = "a process killed while it claimed the trial"
        else:
            continue
        outcome = recover(trial) if recover else None
        state, values = outcome if outcome else (TrialState.FAIL, None)
        if state == TrialState.FAIL:  # to be retried (hpo/study/retries.py)
            StudyRecord(study).mark_dead(trial, "its process ended before the trial")
        try:
            study.tell(trial.number, values if state == TrialState.COMPLETE else None,
                       state=None if state == TrialState.COMPLETE else state, skip_if_finished=True)
        except ValueError:  # another process finished it a moment ago
            continue
        what = f"recorded as {state.name} with the result its MLflow run logged" if outcome else "marked FAIL"
        lines.append(f"trial {trial.number} was left RUNNING by {who}: {what}")
    return lines


@dataclass(frozen=True)
class Claim:
    trial: optuna.Trial | None  # None: nothing more to start
    reason: str = ""  # why not: "budget", "grid"
    notes: tuple[str, ...] = ()  # lines about dead trials failed on the way


def claim_trial(study: optuna.Study, budget: int, recover: Recover | None = None, retries: int = 0) -> Claim:
    """A new trial, unless finished + running trials already reach the budget or the grid has no point left;
    a retry of a trial that died comes first (``retries`` per trial at most, hpo/study/retries.py).

    Counting and asking happen under one lock, so the processes sharing the storage never start more
    trials than the budget needs (Optuna's MaxTrialsCallback stops only after the fact)."""
    with study_lock(url_of(study), study.study_name):
        notes = tuple(fail_dead_trials(study, recover))
        optuna.storages.fail_stale_trials(study)  # another machine's trials, after the heartbeat grace
        notes += tuple(retry_dead_trials(study, retries))
        taken = len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))
        if taken >= budget:
            return Claim(None, "budget", notes)
        if points_left(study.sampler, study) == 0:
            return Claim(None, "grid", notes)
        trial = None
        try:
            with signals_deferred():  # a trial must not exist without the process that runs it
                trial = study.ask()
                TrialRecord(trial).set_process(ProcessId.current())
        except BaseException as err:  # a signal held during the claim arrives here
            if trial is not None:
                fail_running(study, trial, err)
            raise
        return Claim(trial, "", notes)


def fail_running(study: optuna.Study, trial: optuna.Trial, err: BaseException) -> FrozenTrial:
    """Fail ``trial`` with ``err`` as its reason (for the progress line and the dashboard) if it is still
    RUNNING; returns the trial as it now stands."""
    if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
        # Ctrl-C, SIGTERM, a store; a broken pipe: the parent that read this worker's output is gone
        died = isinstance(err, (KeyboardInterrupt, StoreUnwritable, StoreUnavailable, BrokenPipeError))
        TrialRecord(trial).set_failure(masked(first_line(err)), died)
        return stored(f"failing trial {trial.number}", study.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
    return study._storage.get_trial(trial._trial_id)


@contextlib.contextmanager
def heartbeat(storage, trial: optuna.Trial):
    """Record the trial's heartbeat while it runs, so a trial of a worker on another machine that died is
    failed after the grace period, not left RUNNING."""
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is harmless; the trial's own writes report failures
                storage.record_heartbeat(trial._trial_id)

    with contextlib.suppress(Exception):
        storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
