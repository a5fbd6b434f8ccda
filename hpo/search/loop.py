"""The search loop: claim a trial, run it (``hpo/search/trial.py``), print its line; until the budget.

Several processes may run it on one storage at once (``--gpus``, several machines): claims happen under a
lock (``hpo/study/claims.py``), so together they finish exactly the budget.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.core.interrupts import raise_if_swallowed
from hpo.search.context import Context
from hpo.search.progress import study_status
from hpo.search.trial import run_trial
from hpo.study.claims import claim_trial, fail_running, heartbeat
from hpo.study.objectives import best_trial, cost_text
from hpo.study.record import TrialRecord, stored
from hpo.study.storage import count_finished
from hpo.track.pictures import wait_for_pictures

MAX_FAILURES_IN_A_ROW = 3  # then the cause is likely not the hyperparameters: stop and say so
WAIT_S = 1.0  # how often a process with nothing to claim looks again while others run the last trials


@dataclass(frozen=True)
class SearchEnd:
    """Why a search stopped: ``budget``, ``grid`` (every grid point run) or ``timeout``, as asked; or it gave up:
    ``failures`` (trials failing in a row) or ``workers`` (worker processes ended short of the budget)."""

    reason: str
    last_error: str = ""

    @property
    def reached(self) -> bool:
        return self.reason in ("budget", "grid", "timeout")


def run_search(ctx: Context, study: optuna.Study) -> SearchEnd:
    """Run trials until ``budget.trials`` have finished (COMPLETE or PRUNED) in total, the timeout, or
    the end of a grid.

    Several processes may run this on one storage at once (``--gpus``); together they finish exactly
    the budget. A failed trial is recorded as FAILED and the search goes on; it does not count towards
    the budget. Ctrl-C or SIGTERM (``hpo/core/interrupts.py``) fails the running trial at once and propagates.

    Example (what ``hpo run`` does, minus the MLflow parent run and the retrain)::

        spec = load_study("studies/digits.yaml")
        device = torch.device("cpu")
        study = open_study(spec, open_storage("sqlite:///hpo.db"))
        run_search(Context(spec, load_data(spec, device), device, NullTracker()), study)
    """
    try:
        return _trials_until_done(ctx, study)
    finally:
        wait_for_pictures()  # the last trials' curves, drawn off their path (hpo/track/pictures.py)


def _trials_until_done(ctx: Context, study: optuna.Study) -> SearchEnd:
    spec, print_line = ctx.spec, ctx.print_line
    progress = ProgressPrinter(spec, time.time(), print_line)
    failures_in_a_row, last_error, waiting = 0, "", False
    started = time.time()

    def recover(trial: FrozenTrial):
        return ctx.tracker.logged_result(trial, spec.objectives)

    while failures_in_a_row < MAX_FAILURES_IN_A_ROW:
        raise_if_swallowed()
        if spec.budget.timeout_s is not None and time.time() - started > spec.budget.timeout_s:
            return SearchEnd("timeout")
        claim = stored("claiming a trial", claim_trial, study, spec.budget.trials, recover, spec.budget.retries)
        for line in claim.notes:
            print_line(line)
        if claim.trial is None:
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if running and count_finished(study) < spec.budget.trials:  # they may fail and need replacing,
                if not waiting:  # and the best trial is not known before they end
                    print_line(f"waiting for {running} trial(s) that other processes are running")
                waiting = True
                time.sleep(WAIT_S)
                continue
            return SearchEnd(claim.reason)
        waiting = False
        try:
            with heartbeat(study._storage, claim.trial):
                frozen = run_trial(ctx, study, claim.trial)
        except BaseException as err:  # Ctrl-C or SIGTERM outside the training, or a store that cannot be written
            with contextlib.suppress(Exception):  # a store that fails: the next hpo run fails the trial instead
                fail_running(study, claim.trial, err)
            raise
        if frozen.state == TrialState.FAIL:
            failures_in_a_row += 1
            last_error = TrialRecord(frozen).fail_reason or "?"
        else:
            failures_in_a_row = 0
        stored("", progress, study, frozen)
    return SearchEnd("failures", last_error)








@dataclass
class ProgressPrinter:
    """One line per finished trial: number, state, value, best so far, time, and the study's status
    (``hpo.search.progress.study_status``: done by state, elapsed, ETA)."""

    spec: object
    started: float
    print: Callable[[str], None] = print

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        metric = self.spec.metric
        if trial.state == TrialState.COMPLETE:
            detail = f"{metric} {trial.values[0]:.4f}" + cost_text(self.spec.costs, trial.values[1:])
        elif trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
            epochs = TrialRecord(trial).epochs
            value = f"{metric} {last:.4f} " if last is not None and math.isfinite(last) else ""
            detail = f"{value}at epoch {epochs}/{self.spec.budget.epochs}"
        else:
            detail = "failed: " + (TrialRecord(trial).fail_reason or "see its MLflow run's error.txt")
        leader = best_trial(study)  # on the metric, also in a multi-objective study
        best = f"best {leader.values[0]:.4f} (#{leader.number})" if leader is not None else "best -"
        duration = trial.duration.total_seconds() if trial.duration else 0.0
        status = study_status(study.get_trials(deepcopy=False), self.spec.budget.trials, time.time() - self.started)
        self.print(f"trial {trial.number:4d}  {trial.state.name:8s}  {detail:34s}  {best:22s}  {duration:6.1f}s  "
                   + status)
