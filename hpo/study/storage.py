"""The Optuna storage and the studies in it: opening them, with the study's sampler and pruner.

Every process that works on a study — the ``hpo run`` that starts it, a rerun,
each ``--gpus`` worker — opens it through :func:`open_study`, so all of them
sample and prune the same way. The study file (``hpo/spec/``) is handed in as a
value: this package reads its fields, never its module.
"""

from __future__ import annotations

import atexit
import uuid

import optuna
from optuna.trial import TrialState

from hpo.core.errors import UserError
from hpo.core.masking import masked
from hpo.stores.creation import build_optuna_schema, created_whole
from hpo.stores.locks import store_lock
from hpo.stores.retry import first_line, is_full, is_read_only, unwritable
from hpo.stores.urls import check_storage_exists, check_storage_url, sqlite_path
from hpo.study.record import WARM_START_OF, StudyRecord
from hpo.study.sampling import study_sampler

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what --trials counts: trials that reached a verdict
HEARTBEAT_S = 30  # a trial of another machine whose worker died is marked FAILED after GRACE_S without one
GRACE_S = 120

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
                created_whole(url, build_optuna_schema)  # a Ctrl-C while creating it loses nothing
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


def study_exists(url: str, name: str) -> bool:
    """Whether the storage at ``url`` holds a study named ``name`` (an SQLite file that is not there holds none,
    and is not created)."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return False
    return name in study_names(open_storage(url))


def load_existing_study(name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """A study as stored, for reading (``hpo show``, ``hpo retrain``): Optuna's default sampler."""
    names = study_names(storage)
    if name not in names:
        raise UserError(f"no study named {name!r} in {storage.url}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def open_study(spec, storage: optuna.storages.RDBStorage, warm=None) -> optuna.Study:
    """The study with its sampler and pruner, created (with its enqueued trials and attributes) if new; ``warm``
    (hpo/study/warm_start.py: CarriedOver): another study's best trials, enqueued after the file's recipes.

    The one way every process opens a study it will run trials of."""
    sampler = study_sampler(spec.sampler.name, spec.sampler.args, spec.search, spec.seed)
    with study_lock(storage.url, spec.name):
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage, directions=list(spec.directions),
                                        sampler=sampler, pruner=spec.build_pruner(), load_if_exists=True)
        except ValueError as err:  # e.g. the stored study has the other direction
            raise UserError(f"{spec.source}: cannot resume study {spec.name!r}: {err}") from None
        named = list(study.metric_names or [])  # as the run that created it named them
        if named and named != list(spec.objectives) and max(len(named), len(spec.objectives)) > 1:
            raise UserError(f"{spec.source}: objectives: study {spec.name!r} in {masked(storage.url)} was created "
                            f"with {', '.join(named)}, the file says {', '.join(spec.objectives)} (its values would "
                            f"mean other things); use another name")
        stored_directions = tuple(d.name.lower() for d in study.directions)
        if stored_directions != spec.directions:
            field = "direction" if len(stored_directions) == len(spec.directions) == 1 else "objectives"
            raise UserError(f"{spec.source}: {field}: study {spec.name!r} in {storage.url} was created to "
                            f"{', '.join(stored_directions)}, the file says {', '.join(spec.directions)}; "
                            f"use another name")
        stored_scaling = (StudyRecord(study).spec or {}).get("lr_scaling", "none")
        if study.trials and stored_scaling != spec.search.lr_scaling:  # its trials' lr params mean another rate
            raise UserError(f"{spec.source}: lr_scaling: study {spec.name!r} in {masked(storage.url)} ran with "
                            f"lr_scaling {stored_scaling}, the file says {spec.search.lr_scaling}; use another name")
        if not study.trials:
            StudyRecord(study).created(uuid.uuid4().hex)
            for params in spec.enqueue:  # e.g. a write-up's own recipe as trial 0
                study.enqueue_trial(params, skip_if_exists=True)
            if warm is not None and warm.history:  # for the sampler (hpo/study/warm_start.py)
                StudyRecord(study).set_warm_history(list(warm.history))
            for number, _, params in warm.carried if warm is not None else ():
                study.enqueue_trial(params, user_attrs={WARM_START_OF: f"{spec.warm_start.study}#{number}"},
                                    skip_if_exists=True)
    return study


def record_study(study: optuna.Study, spec, experiment_id: str | None) -> None:
    """What the latest ``hpo run`` says of the study: its spec, its metric and its MLflow experiment."""
    StudyRecord(study).describe_run(dict(spec.raw), spec.metric, experiment_id, spec.file)
    if study.metric_names != list(spec.objectives):
        study.set_metric_names(list(spec.objectives))




def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def counts_by_state(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
