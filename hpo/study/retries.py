"""Trials whose process died are retried: the same parameters and training seed, going on from the last epoch.

A trial whose process died (Ctrl-C, SIGTERM, SIGKILL, a lost machine) is FAILED and marked ``died``; the
next claim (``hpo/study/claims.py``) enqueues a retry with the same parameters and the same training seed,
``budget.retries`` times at most per line. The retry goes on from the state file its line kept
(``hpo/train/state.py``), so its result is the one an uninterrupted trial gives (tests/test_resume.py).
The study lists its retries (``StudyRecord.retries``), so neither a claim nor a trial's seed reads every
trial of the study to find them.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.core.interrupts import signals_deferred
from hpo.study.record import StudyRecord, TrialRecord
from hpo.train.state import trial_state


def dead_line(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> list[FrozenTrial]:
    """The dead trials a retry replaces, the latest first (the trial it retries, that one's, ...)."""
    storage, line, number = study._storage, [], TrialRecord(trial).retry_of
    while number is not None:
        dead = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
        line.append(dead)
        number = TrialRecord(dead).retry_of
    return line


def retries(study: optuna.Study) -> list[tuple[int, int]]:
    """The study's retries as (dead trial, retry) numbers (a study from before the list: read from its trials)."""
    pairs = StudyRecord(study).retries
    if pairs is None:
        storage = study._storage
        return [(TrialRecord(t).retry_of, t.number) for t in storage.get_all_trials(study._study_id, deepcopy=False)
                if TrialRecord(t).retry_of is not None]
    return pairs


def retry_dead_trials(study: optuna.Study, retries_allowed: int) -> list[str]:
    """Enqueue a retry of every trial that died and has none yet, up to ``retries_allowed`` per line; a
    console line each. Called under the study's claim lock."""
    record = StudyRecord(study)
    pairs = retries(study)
    # A retry enqueued by a claim cut short before it listed it (a kill, a store that failed): listed now.
    listed = {retry for _, retry in pairs}
    pending = [(TrialRecord(t).retry_of, t.number)
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
               if TrialRecord(t).retry_of is not None and t.number not in listed]
    if pending or record.retries is None:
        pairs += pending
        record.set_retries(pairs)
    retried_already = {dead for dead, _ in pairs}
    given_up = record.retries_used_up
    lines = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        dead = TrialRecord(trial)
        if not dead.died or trial.number in retried_already | given_up or dead.seed is None:
            continue  # (a trial that died before training started has no seed and nothing to go on from)
        if dead.attempt + 1 > retries_allowed:
            given_up.add(trial.number)
            record.set_retries_used_up(given_up)  # said once
            trial_state(study.study_name, dead.line).discard()
            lines.append(f"trial {trial.number} died and has had its {retries_allowed} retries (budget.retries)")
            continue
        with signals_deferred():  # enqueued and listed together
            study.enqueue_trial(trial.params, user_attrs=dead.retry_attrs())
            retry = max(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                        if TrialRecord(t).retry_of == trial.number)
            pairs.append((trial.number, retry))
            record.set_retries(pairs)
        lines.append(f"trial {trial.number} died: a retry goes on from its last finished epoch")
    return lines
