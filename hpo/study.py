"""The Optuna study: storage, the objective that trains one trial, and the search loop.

Data path: spec -> ``SearchSpace.suggest`` (trial params) -> ``trainer.fit``
(one epoch at a time) -> ``trial.report`` / ``should_prune`` -> MLflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from hpo.errors import UserError
from hpo.trainer import fit, seed_everything

DEFAULT_STORAGE = "sqlite:///hpo.db"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what --trials counts: trials that reached a verdict
HEARTBEAT_S = 30  # a trial whose worker died is marked FAILED after GRACE_S without a heartbeat
GRACE_S = 120

optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own line per trial


def storage_url(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE


def open_storage(url: str, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so a killed run's trials do not stay RUNNING forever."""
    if must_exist and url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise UserError(f"no study storage at {url} ({path} does not exist); pass --storage or set HPO_STORAGE")
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as err:
        raise UserError(f"cannot open study storage {url!r}: {str(err).splitlines()[0]}") from None


def load_existing_study(name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise UserError(f"no study named {name!r} in {storage.url}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def create_or_resume(spec, storage: optuna.storages.RDBStorage) -> optuna.Study:
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    sampler=spec.build_sampler(), pruner=spec.build_pruner(), load_if_exists=True)
    except ValueError as err:  # e.g. the stored study has the other direction
        raise UserError(f"{spec.source}: cannot resume study {spec.name!r}: {err}") from None
    if study.direction.name.lower() != spec.direction:
        raise UserError(f"{spec.source}: direction: study {spec.name!r} in {storage.url} was created to "
                        f"{study.direction.name.lower()}, the file says {spec.direction}; use another name")
    if not study.trials:
        for params in spec.enqueue:  # e.g. a write-up's own recipe as trial 0
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr("metric", spec.metric)
    return study


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def make_objective(spec, splits, tracker, device, parent_run_id: str | None) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        try:
            return train_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as err:  # kept with the trial for the progress line and the dashboard
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}".splitlines()[0][:300])
            raise

    def train_trial(trial: optuna.Trial) -> float:
        hp = spec.search.suggest(trial)
        seed = spec.trial_seed(trial.number)
        with tracker.trial_run(trial, hp.as_dict(), seed, parent_run_id) as run:
            seed_everything(seed)
            model = spec.model.build(splits)
            value = math.nan
            for result in fit(model, splits.train, hp, spec.budget.epochs, mean=splits.mean, std=splits.std,
                              device=device, seed=seed, val=splits.val, compile_mode=spec.compile):
                run.log_epoch(result)
                trial.set_user_attr("epochs", result.epoch)
                if not all(math.isfinite(v) for v in (result.train_loss, result.val_loss)):
                    _stop(trial, run, f"non-finite loss at epoch {result.epoch} (diverged)")
                value = getattr(result, spec.metric)
                trial.report(value, result.epoch)
                if trial.should_prune():
                    _stop(trial, run, f"pruned by the {spec.pruner.name} pruner after epoch {result.epoch}")
            run.log_metrics({spec.metric + "_final": value})
            return value

    return objective


def _stop(trial: optuna.Trial, run, reason: str):
    trial.set_user_attr("prune_reason", reason)
    run.set_tags({"hpo.prune_reason": reason})
    raise optuna.TrialPruned(reason)


@dataclass
class ProgressPrinter:
    """One line per finished trial: number, state, value, best so far, time."""

    spec: object
    started: float
    print: Callable[[str], None] = print

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        metric = self.spec.metric
        if trial.state == TrialState.COMPLETE:
            detail = f"{metric} {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
            epochs = trial.user_attrs.get("epochs", "?")
            value = f"{metric} {last:.4f} " if last is not None and math.isfinite(last) else ""
            detail = f"{value}at epoch {epochs}/{self.spec.budget.epochs}"
        else:
            detail = "failed: " + trial.user_attrs.get("fail_reason", "see its MLflow run's error.txt")
        try:
            best = f"best {study.best_value:.4f} (#{study.best_trial.number})"
        except ValueError:
            best = "best -"
        duration = trial.duration.total_seconds() if trial.duration else 0.0
        done = count_finished(study)
        self.print(f"trial {trial.number:4d}  {trial.state.name:8s}  {detail:34s}  {best:22s}  "
                   f"{duration:6.1f}s  [{done}/{self.spec.budget.trials} done, {time.time() - self.started:.0f}s]")


MAX_FAILURES_IN_A_ROW = 3  # then the cause is likely not the hyperparameters: stop and say so


def lock_path(storage_url: str, study_name: str) -> Path:
    """The file that serialises claiming trials among the workers of one machine (in the temp folder)."""
    if storage_url.startswith("sqlite:///"):  # the same database however its path is spelled
        storage_url = "sqlite:///" + str(Path(storage_url[len("sqlite:///"):]).resolve())
    digest = hashlib.sha256(f"{storage_url}\0{study_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"hpo-{study_name}-{digest}.lock"


@contextlib.contextmanager
def claim_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_trial(study: optuna.Study, budget: int, lock: Path) -> optuna.Trial | None:
    """A new trial, unless finished + running trials already reach the budget.

    Counting and asking happen under one lock, so workers sharing the storage never start more
    trials than the budget needs (Optuna's MaxTrialsCallback stops only after the fact)."""
    with claim_lock(lock):
        optuna.storages.fail_stale_trials(study)  # trials of a worker that died stop counting as running
        taken = len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))
        return study.ask() if taken < budget else None


@contextlib.contextmanager
def heartbeat(storage, trial: optuna.Trial):
    """Record the trial's heartbeat while it runs, so a killed worker's trial is failed later, not left RUNNING."""
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_search(spec, study: optuna.Study, storage: optuna.storages.RDBStorage, splits, tracker, device,
               parent_run_id: str | None, print_line: Callable[[str], None] = print) -> bool:
    """Run trials until ``spec.budget.trials`` have finished (COMPLETE or PRUNED) in total, or the timeout.

    Several workers may run this on one storage at once (``--gpus``); together they finish exactly the
    budget. A failed trial is recorded as FAILED and the search goes on; it does not count towards the
    budget. Returns False if ``MAX_FAILURES_IN_A_ROW`` trials of this worker failed one after another.
    """
    if count_finished(study) >= spec.budget.trials:
        print_line(f"study {spec.name!r} already has {count_finished(study)} finished trials "
                   f"(budget {spec.budget.trials}); raise it with --trials to search more")
        return True
    lock = lock_path(storage.url, spec.name)
    objective = make_objective(spec, splits, tracker, device, parent_run_id)
    progress = ProgressPrinter(spec, time.time(), print_line)
    failures_in_a_row = 0
    started = time.time()
    while failures_in_a_row < MAX_FAILURES_IN_A_ROW:
        if spec.budget.timeout_s is not None and time.time() - started > spec.budget.timeout_s:
            break
        trial = claim_trial(study, spec.budget.trials, lock)
        if trial is None:
            break
        with heartbeat(storage, trial):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            except Exception:  # recorded with the trial and its MLflow run; the study goes on
                frozen = study.tell(trial, state=TrialState.FAIL)
            else:
                frozen = study.tell(trial, value)
        failures_in_a_row = failures_in_a_row + 1 if frozen.state == TrialState.FAIL else 0
        progress(study, frozen)
    return failures_in_a_row < MAX_FAILURES_IN_A_ROW
