"""``hpo bench --storage``: what the study storage costs per trial, with 1, 4 and 8 workers, in a young study
and in one that already holds 1,000 trials.

Each worker is a process doing what a worker of ``hpo run`` does to the storage for one trial, around an
objective that costs nothing: claim a trial under the study's lock (``hpo.study.claims.claim_trial``: dead
trials, retries, the budget), beat its heartbeat, sample three parameters, record its seed, report
``EPOCHS`` values with their pruning checks, tell the result, and print the progress line
(``hpo.search.loop.ProgressPrinter``: counts and the best trial). A study is first filled with ``at``
finished trials (the 10th or the 1,000th trial), then timed for ``TIMED`` more.

Printed per storage and worker count: the time a worker spends per trial (the median, in ms), and the
ratio of that time at the 1,000th trial to the 10th (it should stay near 1: the per-trial cost must not
grow with the trials already there). The reference, measured in the same run, is the same trial done
with plain ``study.ask``/``study.tell`` on Optuna's in-memory storage, in one process.
"""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hpo.core.errors import WorkFailed
from hpo.core.masking import masked
from hpo.study import record

EPOCHS = 3  # reports (and pruning checks) per trial
TIMED = 48  # trials timed per measurement, shared by the workers (divisible by 1, 4 and 8)
AT = (10, 1000)  # trials already in the study when timing starts
WORKERS = (1, 4, 8)
WORKER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Storage:
    """A storage to measure: ``url(folder)`` gives its URL inside a scratch folder."""

    label: str
    url: Callable[[Path], str]
    sqlite_mode: str = "wal"  # for SQLite: hpo.study.storage.SQLITE_MODES


def local_storages() -> list[Storage]:
    """SQLite in each journal mode: hpo's (write-ahead log), with every commit synced, and Optuna's default."""
    def url(folder: Path) -> str:
        return f"sqlite:///{folder}/hpo.db"

    return [Storage("sqlite, rollback journal", url, "rollback"), Storage("sqlite, WAL, full sync", url, "wal-full"),
            Storage("sqlite, WAL (hpo's)", url, "wal")]


def _space(trial) -> dict:
    return {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"])}


def _objective(params: dict, epoch: int) -> float:
    return 1.0 - abs(params["lr"] - 0.01) - 0.01 * epoch


def _train(trial) -> float:
    """What a trial of ``hpo run`` writes to the storage while it trains, around an objective that costs
    nothing: its parameters, its seed, each epoch's report and pruning check. Returns its value."""
    params = _space(trial)
    kept = record.TrialRecord(trial)
    kept.set_seed(trial.number)
    for epoch in range(1, EPOCHS + 1):
        kept.set_epochs(epoch)
        kept.report(_objective(params, epoch), epoch)
        kept.should_prune()
    return _objective(params, EPOCHS)


class _Spec:  # what ProgressPrinter reads of a study spec
    metric, costs = "val_accuracy", ()

    def __init__(self, trials: int):
        self.budget = type("Budget", (), {"trials": trials, "epochs": EPOCHS})()


def _fill(url: str, sqlite_mode: str, name: str, count: int) -> None:
    """A study holding ``count`` finished trials, as a worker would have left them."""
    import optuna

    from hpo.study.storage import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(url, sqlite_journal=sqlite_mode), direction="maximize",
                                pruner=optuna.pruners.NopPruner())
    study.set_metric_names(["val_accuracy"])
    trials = []
    for number in range(count):
        params = {"lr": float(10 ** (-4 + 3 * ((number * 7919) % 1000) / 1000)),
                  "batch_size": [32, 64, 128][number % 3], "optimizer": ["adam", "sgd"][number % 2]}
        trials.append(optuna.trial.create_trial(
            params=params, distributions={
                "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                "batch_size": optuna.distributions.CategoricalDistribution([32, 64, 128]),
                "optimizer": optuna.distributions.CategoricalDistribution(["adam", "sgd"])},
            value=_objective(params, EPOCHS), intermediate_values={e: _objective(params, e) for e in range(1, EPOCHS + 1)},
            user_attrs={record.SEED: number, record.EPOCHS: EPOCHS}))
    study.add_trials(trials)


def _worker(url: str, sqlite_mode: str, name: str, budget: int, seed: int, start, results) -> None:
    """One worker: trials until the study's budget is reached; puts the seconds each trial took."""
    import optuna

    from hpo.search.loop import ProgressPrinter
    from hpo.study.claims import claim_trial, heartbeat
    from hpo.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url, sqlite_journal=sqlite_mode)
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed),
                              pruner=optuna.pruners.NopPruner())
    progress = ProgressPrinter(_Spec(budget), time.time(), print=lambda line: None)
    times = []
    start.wait()  # every worker has imported and opened the study: time the trials only
    while True:
        started = time.perf_counter()
        claim = claim_trial(study, budget, retries=2)
        if claim.trial is None:
            break
        trial = claim.trial
        with heartbeat(storage, trial):
            value = _train(trial)
        frozen = study.tell(trial, value)
        progress(study, frozen)
        times.append(time.perf_counter() - started)
    results.put(times)


def measure(url: str, sqlite_mode: str, name: str, at: int, workers: int, timed: int = TIMED) -> float:
    """Median seconds per trial, as each of ``workers`` processes sees it, over ``timed`` trials in a study
    of ``at`` trials."""
    _fill(url, sqlite_mode, name, at)
    context = multiprocessing.get_context("spawn")
    results, start = context.Queue(), context.Barrier(workers)
    processes = [context.Process(target=_worker, args=(url, sqlite_mode, name, at + timed, seed, start, results))
                 for seed in range(workers)]
    for process in processes:
        process.start()
    try:
        times = [t for _ in processes for t in results.get(timeout=WORKER_TIMEOUT_S)]
    except queue.Empty:
        codes = [process.exitcode for process in processes]
        raise WorkFailed(f"hpo bench --storage: a worker on {masked(url)} gave no result in {WORKER_TIMEOUT_S} s "
                         f"(exit codes {codes}); is the database reachable?") from None
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    return statistics.median(times)


def reference(timed: int = TIMED) -> float:
    """Median seconds per trial of the same trial on Optuna's in-memory storage: plain ask and tell."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    times = []
    for _ in range(timed * 4):
        started = time.perf_counter()
        trial = study.ask()
        study.tell(trial, _train(trial))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def storage_overhead(storages: list[Storage], print_line=print, workers_counts: tuple[int, ...] = WORKERS,
                     at_sizes: tuple[int, int] = AT, timed: int = TIMED) -> dict:
    """Measure every storage at every worker count and study size; print a table, return the numbers."""
    ref = reference(timed)
    print_line(f"storage overhead per trial (median ms a worker spends on one trial of a trivial objective; "
               f"{timed} trials timed per cell)")
    print_line(f"  reference: plain ask/tell on Optuna's in-memory storage, one process: {ref * 1e3:.2f} ms")
    young, old = (f"at {n}th" for n in at_sizes)
    print_line(f"  {'storage':24s} {'workers':>7s} {young:>9s} {old:>10s} {'growth':>8s} {'vs reference':>13s}")
    numbers: dict = {"reference_ms": ref * 1e3, "storages": {}}
    for storage in storages:
        for workers in workers_counts:
            cell = {}
            for at in at_sizes:
                with tempfile.TemporaryDirectory(prefix="hpo-bench-storage-") as folder:
                    name = f"bench-storage-{at}-{workers}-{time.time_ns()}"
                    url = storage.url(Path(folder))
                    try:
                        cell[at] = measure(url, storage.sqlite_mode, name, at, workers, timed)
                    finally:
                        _delete(url, name)
            numbers["storages"].setdefault(storage.label, {})[workers] = {str(at): s * 1e3 for at, s in cell.items()}
            print_line(f"  {storage.label:24s} {workers:7d} {cell[at_sizes[0]] * 1e3:7.2f}ms {cell[at_sizes[1]] * 1e3:8.2f}ms "
                       f"{cell[at_sizes[1]] / cell[at_sizes[0]]:7.2f}x {cell[at_sizes[1]] / ref:12.1f}x")
    return numbers


def _delete(url: str, name: str) -> None:
    """Remove a benchmark study (a PostgreSQL database outlives the scratch folder)."""
    import contextlib

    import optuna

    with contextlib.suppress(Exception):
        optuna.delete_study(study_name=name, storage=url)
