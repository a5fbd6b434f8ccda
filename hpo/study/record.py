"""The study's record: every attribute hpo keeps on an Optuna study and its trials, read and written here only.

Optuna keeps the trials, their parameters, reported values and states. What hpo adds is kept as Optuna user
attributes, so optuna-dashboard, ``optuna.load_study`` and ``hpo show`` all see it. Their keys are spelled in
this module alone, and every write goes through the study storage's retry policy here, once
(``hpo/stores/retry.py``), so the code that records something says what it records, not how.

Study attributes (:class:`StudyRecord`):
    uid                   an id given at creation; training state files are checked against it
    spec                  the validated study file, so ``hpo retrain NAME`` needs no file
    study_file            where the latest ``hpo run`` read it (an absolute path)
    metric                the metric's name (optuna-dashboard labels its axes with it)
    mlflow_experiment_id  the study's MLflow experiment
    retries               [dead trial, its retry] pairs, in the order they were enqueued (hpo/study/retries.py)
    retries_used_up       dead trials whose line has had its ``budget.retries``
    retrain_results       the finished retrains, oldest first (``RetrainResult.as_record``)
    seed_verdict          the latest seed comparison (``hpo.retrain.verdict.judge``)
    warm_start_history    a warm start's trials of the other study, for the sampler (hpo/study/warm_start.py)

Trial attributes (:class:`TrialRecord`):
    trial_seed            the training seed (init, batch order, augmentation); a retry keeps its line's
    epochs                epochs trained so far
    prune_reason          why the trial was stopped: the pruner, or a divergence
    warm_start_of         "STUDY#N": an enqueued trial repeating trial N of another study (hpo/study/warm_start.py)
    lr_effective          the learning rate it trained with, under the study's lr_scaling (its lr param is per 256)
    at_chance             a COMPLETE trial whose last validation accuracy is at chance (hpo/train/divergence.py)
    fail_reason, died     why it failed; ``died``: its process ended (Ctrl-C, a kill, a store), so it is retried
    retry_of, resumes_trial, attempt, resumed_after_epoch
                          a retry: the trial it replaces, the first trial of its line (whose state file it goes
                          on from), which retry it is, and the epoch it went on after
    mlflow_run_id, mlflow_run_url
                          its MLflow run
    hpo.host, hpo.pid, hpo.pid_started
                          the process running it (``hpo/stores/processes.py``)
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.stores.processes import ProcessId
from hpo.stores.retry import retried
from hpo.stores.urls import normalized

STORAGE = "the study storage"  # how a failing write names the store

UID, SPEC, STUDY_FILE, METRIC, EXPERIMENT = "uid", "spec", "study_file", "metric", "mlflow_experiment_id"
WARM_HISTORY = "warm_start_history"
RETRIES, RETRIES_USED_UP, RETRAINS, VERDICT = "retries", "retries_used_up", "retrain_results", "seed_verdict"

SEED, EPOCHS, PRUNE_REASON, FAIL_REASON, DIED = "trial_seed", "epochs", "prune_reason", "fail_reason", "died"
AT_CHANCE, EFFECTIVE_LR, WARM_START_OF = "at_chance", "lr_effective", "warm_start_of"
RETRY_OF, RESUMES, ATTEMPT, RESUMED_AFTER = "retry_of", "resumes_trial", "attempt", "resumed_after_epoch"
RUN_ID, RUN_URL = "mlflow_run_id", "mlflow_run_url"


def url_of(study: optuna.Study) -> str:
    """The storage URL of an open study (Optuna wraps an RDB storage in a cache that hides it)."""
    storage = study._storage
    return getattr(storage, "url", None) or storage._backend.url


def stored(what: str, call, *args, **kwargs) -> Any:
    """``call(*args, **kwargs)`` against the study storage, retried while it fails in a passing way."""
    return retried(f"{STORAGE} ({what})" if what else STORAGE, call, *args, **kwargs)


class StudyRecord:
    """What hpo keeps on a study (see the module's table)."""

    def __init__(self, study: optuna.Study):
        self.study = study

    # --- reads ---

    def _attrs(self) -> dict:
        # Through the storage: a sampler may be handed Hyperband's view of one bracket, which has no user_attrs.
        return stored("", self.study._storage.get_study_user_attrs, self.study._study_id)

    @property
    def identity(self) -> str:
        """What tells this study from another of the same name (elsewhere, or deleted and made again): its uid,
        else (a study made before the uid) its storage URL and row id."""
        return self._attrs().get(UID) or f"{normalized(url_of(self.study))}#{self.study._study_id}"

    @property
    def spec(self) -> dict | None:
        return self._attrs().get(SPEC)

    @property
    def metric(self) -> str:
        return self._attrs().get(METRIC, "value")

    @property
    def experiment_id(self) -> str | None:
        return self._attrs().get(EXPERIMENT)

    @property
    def warm_history(self) -> list[dict]:
        return self._attrs().get(WARM_HISTORY, [])

    @property
    def retries(self) -> list[tuple[int, int]] | None:
        """The (dead trial, retry) pairs, or None for a study made before they were listed."""
        pairs = self._attrs().get(RETRIES)
        return None if pairs is None else [tuple(pair) for pair in pairs]

    @property
    def retries_used_up(self) -> set[int]:
        return set(self._attrs().get(RETRIES_USED_UP, []))

    @property
    def retrain_results(self) -> list[dict]:
        return list(self._attrs().get(RETRAINS, []))

    @property
    def study_file(self) -> str | None:
        return self._attrs().get(STUDY_FILE)

    @property
    def seed_verdict(self) -> dict | None:
        return self._attrs().get(VERDICT)

    # --- writes ---

    def _set(self, key: str, value: Any) -> None:
        stored("", self.study.set_user_attr, key, value)

    def created(self, uid: str) -> None:
        """A new study: its uid and an empty list of retries."""
        self._set(UID, uid)
        self._set(RETRIES, [])

    def describe_run(self, spec: dict, metric: str, experiment_id: str | None, study_file: str | None = None) -> None:
        """The study file (its content and path) and metric of the latest ``hpo run``, and its MLflow experiment."""
        self._set(SPEC, spec)
        if study_file is not None:
            self._set(STUDY_FILE, study_file)
        self._set(METRIC, metric)
        if experiment_id is not None:
            self._set(EXPERIMENT, experiment_id)

    def set_warm_history(self, history: list[dict]) -> None:
        self._set(WARM_HISTORY, history)

    def set_retries(self, pairs: list[tuple[int, int]]) -> None:
        self._set(RETRIES, [list(pair) for pair in pairs])

    def set_retries_used_up(self, numbers: set[int]) -> None:
        self._set(RETRIES_USED_UP, sorted(numbers))

    def add_retrain_result(self, result: dict) -> None:
        self._set(RETRAINS, self.retrain_results + [result])

    def set_seed_verdict(self, verdict: dict) -> None:
        self._set(VERDICT, verdict)

    def mark_dead(self, trial: FrozenTrial, reason: str) -> None:
        """Before failing ``trial``, a RUNNING trial of a process that is gone: why, and that it is to be retried."""
        storage = self.study._storage
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
        storage.set_trial_user_attr(trial._trial_id, DIED, True)


class TrialRecord:
    """What hpo keeps on a trial (see the module's table): reads of a live or finished trial, writes to a live
    one (``optuna.Trial``), its reports to Optuna among them."""

    def __init__(self, trial: optuna.Trial | FrozenTrial):
        self.trial = trial

    # --- reads ---

    @property
    def number(self) -> int:
        return self.trial.number

    def _get(self, key: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(key, default)

    @property
    def seed(self) -> int | None:
        return self._get(SEED)

    @property
    def effective_lr(self) -> float | None:
        return self._get(EFFECTIVE_LR)

    @property
    def epochs(self) -> int:
        """Epochs trained: as recorded after each epoch, else (a finished trial of another tool) one per value
        it reported."""
        return int(self._get(EPOCHS, len(getattr(self.trial, "intermediate_values", ()))))

    @property
    def prune_reason(self) -> str | None:
        return self._get(PRUNE_REASON)

    @property
    def fail_reason(self) -> str | None:
        return self._get(FAIL_REASON)

    @property
    def died(self) -> bool:
        """Failed because its process ended (marked by hpo), or failed by Optuna for a silent heartbeat."""
        return self.trial.state == TrialState.FAIL and (self._get(DIED, False) or FAIL_REASON not in
                                                        self.trial.user_attrs)

    @property
    def retry_of(self) -> int | None:
        return self._get(RETRY_OF)

    @property
    def is_retry(self) -> bool:
        return RESUMES in self.trial.user_attrs

    @property
    def line(self) -> int:
        """The first trial of its line of retries (its own number when it is none): whose state file it uses."""
        return self._get(RESUMES, self.trial.number)

    @property
    def attempt(self) -> int:
        return self._get(ATTEMPT, 0)

    @property
    def mlflow_run_id(self) -> str | None:
        return self._get(RUN_ID)

    @property
    def mlflow_run_url(self) -> str | None:
        return self._get(RUN_URL)

    @property
    def process(self) -> ProcessId | None:
        return ProcessId.from_attrs(self.trial.user_attrs)

    def retry_attrs(self) -> dict:
        """The attributes a retry of this dead trial is enqueued with: same seed, same line, the next attempt."""
        return {RETRY_OF: self.number, RESUMES: self.line, ATTEMPT: self.attempt + 1, SEED: self.seed}

    # --- writes ---

    def _set(self, key: str, value: Any, what: str = "") -> None:
        stored(what, self.trial.set_user_attr, key, value)

    def set_process(self, process: ProcessId) -> None:
        for key, value in process.as_attrs().items():
            self.trial.set_user_attr(key, value)  # inside the claim: a failure there fails the claim

    def set_seed(self, seed: int) -> None:
        self._set(SEED, seed)

    def set_epochs(self, epochs: int) -> None:
        self._set(EPOCHS, epochs)

    def set_effective_lr(self, lr: float) -> None:
        self._set(EFFECTIVE_LR, lr)

    def set_prune_reason(self, reason: str) -> None:
        self._set(PRUNE_REASON, reason)

    def set_at_chance(self, reason: str) -> None:
        self._set(AT_CHANCE, reason)

    def set_resumed_after(self, epoch: int) -> None:
        self._set(RESUMED_AFTER, epoch)

    def set_mlflow_run(self, run_id: str) -> None:
        self._set(RUN_ID, run_id)

    def set_mlflow_run_url(self, url: str) -> None:
        self._set(RUN_URL, url)

    def set_failure(self, reason: str, died: bool) -> None:
        what = f"failing trial {self.number}"
        self._set(FAIL_REASON, reason, what)
        if died:  # not the trial's fault (Ctrl-C, SIGTERM, a store): it is retried
            self._set(DIED, True, what)

    def report(self, value: float, epoch: int) -> None:
        stored("", self.trial.report, value, epoch)

    def should_prune(self) -> bool:
        return stored("", self.trial.should_prune)
