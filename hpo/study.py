"""The Optuna study: its storage, opening it with the study's sampler and pruner, and claiming trials.

Every process that works on a study — the ``hpo run`` that starts it, a rerun,
each ``--gpus`` worker — opens it through :func:`open_study`, so all of them
sample and prune the same way. Trials are claimed under a lock, so however
many processes share the storage, together they finish exactly the budget;
a trial left RUNNING by a process that no longer exists is failed at once
when this machine started it (:func:`fail_dead_trials`), and after the
heartbeat grace period when another machine did.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UserError
from hpo.interrupts import signals_deferred
from hpo.locks import store_lock
from hpo.processes import ProcessId
from hpo.resume import RETRIES_ATTR, retry_dead_trials
from hpo.seeds import VERDICT_ATTR
from hpo.store_failures import (StoreUnavailable, StoreUnwritable, first_line, is_full, is_read_only, retried,
                                 unwritable)
from hpo.urls import check_storage_exists, check_storage_url, masked, sqlite_path
from hpo.study_sampler import points_left, study_sampler

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what --trials counts: trials that reached a verdict
HEARTBEAT_S = 30  # a trial of another machine whose worker died is marked FAILED after GRACE_S without one
GRACE_S = 120
CLAIM_S = 30  # a claim takes well under a second: a trial without its process after this was orphaned

# An SQLite study file is written by every worker of this machine: in write-ahead-log mode readers do not wait
# for the writer, and a commit is synced at checkpoints rather than each time (a killed process loses nothing;
# a power cut may lose the last commits, never the file). Measured against the rollback journal: hpo bench --storage.
SQLITE_MODES = {"wal": ("wal", "normal"), "wal-full": ("wal", "full"), "rollback": ("delete", "full")}
SQLITE_JOURNAL = "wal"
SQLITE_BUSY_S = 30  # how long a connection waits for another's write lock before "database is locked"

optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own line per trial


def study_lock(url: str, study_name: str):
    """Serialises creating the study and claiming its trials among this machine's processes."""
    return store_lock(url, f"study:{study_name}")


def url_of(study: optuna.Study) -> str:
    """The storage URL of an open study (Optuna wraps an RDB storage in a cache that hides it)."""
    storage = study._storage
    return getattr(storage, "url", None) or storage._backend.url


# --- storage and study -----------------------------------------------------------------------------


def open_storage(url: str, must_exist: bool = False, sqlite_journal: str = SQLITE_JOURNAL) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so a trial of a worker that died does not stay RUNNING forever.

    An SQLite file is switched to ``sqlite_journal`` mode (write-ahead logging: see SQLITE_JOURNAL).
    Creating the tables is done under a lock: two first runs in an empty folder would otherwise race
    to create the SQLite schema, and all but one crash."""
    if must_exist:
        check_storage_exists(url)
    check_storage_url(url)
    try:
        with store_lock(url, "schema"):
            if not must_exist:  # a command that runs trials; reading (show, dashboard) leaves the file as it is
                _set_sqlite_journal(url, sqlite_journal)
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_S}} if sqlite_path(url) else {})
            _sync_sqlite(storage, sqlite_journal)
            return storage
    except Exception as err:
        if is_full(err) or is_read_only(err):
            raise unwritable(f"the study storage ({masked(url)})", err) from None
        raise UserError(f"cannot open study storage {masked(url)!r}: {first_line(err)}") from None


def _set_sqlite_journal(url: str, mode: str) -> None:
    """Switch an SQLite file to ``mode``'s journal (a property of the file: every later connection uses it)."""
    import sqlite3

    path = sqlite_path(url)
    if path is None or str(path) == ":memory:":
        return
    journal = SQLITE_MODES[mode][0]
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_S)
    try:
        if connection.execute("pragma journal_mode").fetchone()[0] != journal:
            connection.execute(f"pragma journal_mode={journal}")
    finally:
        connection.close()


def _sync_sqlite(storage: optuna.storages.RDBStorage, mode: str) -> None:
    """Every later connection of ``storage`` syncs to disk as ``mode`` says (a per-connection setting)."""
    if sqlite_path(storage.url) is None:
        return
    import sqlalchemy

    synchronous = SQLITE_MODES[mode][1]
    sqlalchemy.event.listen(storage.engine, "connect",
                            lambda connection, _record: connection.execute(f"pragma synchronous={synchronous}"))
    storage.engine.dispose()  # the connections opened so far (the schema's) did not have it
    atexit.register(storage.engine.dispose)  # the last connection closed folds the log back: no -wal, -shm left


def study_names(storage: optuna.storages.RDBStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def load_existing_study(name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """A study as stored, for reading (``hpo show``, ``hpo retrain``): Optuna's default sampler."""
    names = study_names(storage)
    if name not in names:
        raise UserError(f"no study named {name!r} in {storage.url}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def open_study(spec, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The study with its sampler and pruner, created (with its enqueued trials and attributes) if new.

    The one way every process opens a study it will run trials of."""
    sampler = study_sampler(spec.sampler.name, spec.sampler.args, spec.search, spec.seed)
    with study_lock(storage.url, spec.name):
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                        sampler=sampler, pruner=spec.build_pruner(), load_if_exists=True)
        except ValueError as err:  # e.g. the stored study has the other direction
            raise UserError(f"{spec.source}: cannot resume study {spec.name!r}: {err}") from None
        if study.direction.name.lower() != spec.direction:
            raise UserError(f"{spec.source}: direction: study {spec.name!r} in {storage.url} was created to "
                            f"{study.direction.name.lower()}, the file says {spec.direction}; use another name")
        if not study.trials:
            study.set_user_attr("uid", uuid.uuid4().hex)  # what a state file is checked against (hpo/resume.py)
            study.set_user_attr(RETRIES_ATTR, [])
            for params in spec.enqueue:  # e.g. a write-up's own recipe as trial 0
                study.enqueue_trial(params, skip_if_exists=True)
    return study


def record_study(study: optuna.Study, spec, experiment_id: str | None) -> None:
    """The study's attributes, set in this one place: its spec (so ``hpo retrain NAME`` needs no file), the
    metric's name (optuna-dashboard labels its axes with it) and its MLflow experiment."""
    study.set_user_attr("spec", dict(spec.raw))
    study.set_user_attr("metric", spec.metric)
    if experiment_id is not None:
        study.set_user_attr("mlflow_experiment_id", experiment_id)
    if study.metric_names != [spec.metric]:
        study.set_metric_names([spec.metric])


def _older_than(trial: FrozenTrial, seconds: float) -> bool:
    import datetime

    started = trial.datetime_start
    return started is not None and (datetime.datetime.now() - started).total_seconds() > seconds


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def counts_by_state(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def describe(study: optuna.Study) -> dict:
    """What ``hpo show`` prints: counts by state and the best trial (``--json`` prints this as it is)."""
    try:
        best = study.best_trial
    except ValueError:
        best = None
    return {
        "study": study.study_name, "storage": masked(url_of(study)), "direction": study.direction.name.lower(),
        "metric": study.user_attrs.get("metric", "value"), "n_trials": len(study.trials),
        "n_trials_by_state": counts_by_state(study),
        "best_trial": best.number if best else None, "best_value": best.value if best else None,
        "best_params": best.params if best else None,
        "best_mlflow_run_id": best.user_attrs.get("mlflow_run_id") if best else None,
        "seed_verdict": study.user_attrs.get(VERDICT_ATTR),  # the latest hpo retrain --seeds (hpo/seeds.py)
    }


# --- naming a study on the command line ------------------------------------------------------------


def resolve_spec(study_arg: str, storage, overrides=()):
    """A study file, or the spec the storage kept when the named study was run."""
    from hpo.spec import apply_overrides, is_study_file, load_study, parse_study

    if is_study_file(study_arg):
        return load_study(study_arg, overrides)
    study = load_existing_study(study_arg, storage)
    raw = study.user_attrs.get("spec")
    if raw is None:
        raise UserError(f"study {study_arg!r} was not created by hpo run; pass its study file instead")
    return parse_study(apply_overrides(raw, overrides), f"study {study_arg!r} in {storage.url}")


# --- claiming trials -------------------------------------------------------------------------------

# What to do with a trial whose process is gone: (state, value) to tell, e.g. the result its MLflow run
# logged before the process died, or None to fail it.
Recover = Callable[[FrozenTrial], "tuple[TrialState, float | None] | None"]


def fail_dead_trials(study: optuna.Study, recover: Recover | None = None) -> list[str]:
    """Finish the RUNNING trials whose process on this machine no longer exists: with the result their run
    logged (``recover``), else FAILED. Returns a console line for each."""
    lines = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = ProcessId.from_attrs(trial.user_attrs)
        if owner is not None and owner.is_gone():
            who = f"process {owner.pid}, which no longer exists"
        elif owner is None and _older_than(trial, CLAIM_S):  # killed (SIGKILL) between creating and naming it
            who = "a process killed while it claimed the trial"
        else:
            continue
        outcome = recover(trial) if recover else None
        state, value = outcome if outcome else (TrialState.FAIL, None)
        if state == TrialState.FAIL:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "its process ended before the trial")
            study._storage.set_trial_user_attr(trial._trial_id, "died", True)  # to be retried (hpo/resume.py)
        try:
            study.tell(trial.number, value if state == TrialState.COMPLETE else None,
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
    a retry of a trial that died comes first (``retries`` per trial at most, hpo/resume.py).

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
                for key, value in ProcessId.current().as_attrs().items():
                    trial.set_user_attr(key, value)
        except BaseException as err:  # a signal held during the claim arrives here
            if trial is not None:
                fail_running(study, trial, err)
            raise
        return Claim(trial, "", notes)


def fail_running(study: optuna.Study, trial: optuna.Trial, err: BaseException) -> FrozenTrial:
    """Fail ``trial`` with ``err`` as its reason (for the progress line and the dashboard) if it is still
    RUNNING; returns the trial as it now stands."""
    if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
        what = f"the study storage (failing trial {trial.number})"
        retried(what, trial.set_user_attr, "fail_reason", masked(first_line(err)))
        if isinstance(err, (KeyboardInterrupt, StoreUnwritable, StoreUnavailable)):  # not the trial's fault:
            retried(what, trial.set_user_attr, "died", True)  # Ctrl-C, SIGTERM, a store: retried (hpo/resume.py)
        return retried(what, study.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
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
