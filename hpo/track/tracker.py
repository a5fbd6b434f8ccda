"""MLflow tracking: one experiment per study, one parent run per ``hpo run``, one nested run per trial.

We talk to MLflow through ``MlflowClient`` with explicit run ids rather than
the fluent ``mlflow.start_run`` stack, so nesting never depends on which run
happens to be active (and several workers can log at once). Optuna's own
MLflowCallback logs flat runs after the fact and cannot tell a pruned trial
from a finished one; here a run's tags and status follow the trial:

    trial state   hpo.state tag   MLflow status                                run name
    COMPLETE      COMPLETE        FINISHED                                     trial-N
    PRUNED        PRUNED          KILLED                                       trial-N pruned
    FAILED        FAILED          FAILED (KILLED if interrupted by the user)   trial-N FAILED

Each trial carries its run id as the user attribute ``mlflow_run_id``, and
its run's URL as ``mlflow_run_url`` and as a link in its optuna-dashboard
note (``hpo/track/dashboard.py``).

What else users see of a study here:

    each trial run    ``curves.png`` and, when pruned, ``hpo.prune_reason`` and ``hpo.pruned_at_epoch``
    the parent run    ``best_value`` and ``best_trial`` after each trial (step = finished trials), and
                      ``trials.csv`` (every trial, one row each) at the end of the search
    a retrain run     ``curves.png``, ``confusion_matrix.png``, ``per_class_accuracy.png``, ``study.yaml`` and the
                      final checkpoint (``model/checkpoint.pt``)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from hpo.stores.urls import bound_mlflow_requests

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints "View run ... at: URL" for a tracking server, password and all, between our own lines.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
bound_mlflow_requests()

import mlflow  # noqa: E402
import optuna  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hpo.core.errors import UserError, WorkFailed  # noqa: E402
from hpo.core.masking import masked  # noqa: E402
from hpo.stores.creation import build_mlflow_schema, created_whole  # noqa: E402
from hpo.stores.locks import store_lock  # noqa: E402
from hpo.stores.processes import ProcessId  # noqa: E402
from hpo.stores.retry import StoreUnwritable, first_line, retried  # noqa: E402
from hpo.stores.urls import (  # noqa: E402
    absolute_sqlite,
    artifact_root,
    check_tracking_uri,
    is_relative_location,
    relative_artifact_location,
    sqlite_path,
    sqlite_tables,
    tracking_uri,
)
from hpo.study.record import TrialRecord  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)
# It logs each database error with its traceback before raising it; hpo reports it in one line (hpo/stores/retry.py).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
logging.getLogger("alembic").setLevel(logging.WARNING)

# MLflow 3's UI opens an experiment in the view its tag mlflow.experimentKind names ("genai_development" or
# "custom_model_development"; without the tag it guesses, and shows the GenAI view for a run-only experiment).
# The tag's key and values are in mlflow/server/js (the experiment-kind selector sets the same tag).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
CHECKPOINT_ARTIFACT = "model/checkpoint.pt"  # where a retrain run keeps its final checkpoint
STATE_ARTIFACT = "hpo-state"  # where a trial's run on a tracking server keeps its latest training state
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local SQLite store (docs/views.md)


def mlflow_ui(tracking_uri: str) -> str:
    """The web address of the MLflow UI for ``tracking_uri``: a tracking server is its own UI; a local store is
    read by `mlflow ui` ($HPO_MLFLOW_UI, default http://127.0.0.1:5000). Any password is left out."""
    if tracking_uri.startswith(("http:", "https:")):
        parts = urlsplit(tracking_uri)
        return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                           parts.path, "", "")).rstrip("/")
    return (os.environ.get("HPO_MLFLOW_UI") or DEFAULT_MLFLOW_UI).rstrip("/")


# MLflow 3.17's UI takes its side (GenAI or model training) from this query parameter, else from the browser's
# last choice (GenAI at first), not from the experiment's mlflow.experimentKind tag: every link hpo writes says
# model training, so a run opens under "Runs" with its metrics, not under "Evaluations" (checked in Chromium).
TRAINING_VIEW = "?workflowType=machine_learning"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}{TRAINING_VIEW}"


def _millis() -> int:
    return int(time.time() * 1000)


class RunLog:
    """Logging into one MLflow run.

    A logging call that fails in a passing way is retried (``hpo/stores/retry.py``); a full or read-only
    store raises StoreUnwritable, which stops the study. Any other failure stops the logging to this run,
    not its trial: the trial trains on and its result goes to Optuna, a console line says what happened,
    and the run is tagged ``hpo.logging_error`` when it is ended."""

    def __init__(self, client: MlflowClient, run_id: str | None, name: str = "run", lost: str | None = None):
        self.client, self.run_id, self.name = client, run_id, name  # run_id None: MLflow could not create it
        self.ended_as: tuple[str, str] | None = None  # (hpo.state, status) when the block must not decide
        self.lost = lost  # why logging to this run stopped
        self.shares_state = False  # keep_state uploads: set by the Tracker of a tracking server
        self.epochs: list = []  # the EpochResults logged, for the learning curves (hpo/track/pictures.py)
        self.names_outcome = False  # a trial's run: its name says PRUNED or FAILED (see OUTCOME_IN_NAME)
        self.lost_before_end: str | None = None  # why its logging had stopped when the run was ended

    @classmethod
    def create(cls, client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, str]) -> "RunLog":
        """A new run; when MLflow does not answer (other than full or read-only), a RunLog that logs nothing, so
        the trial still trains and its result still goes to Optuna."""
        try:
            run = retried(f"MLflow (creating run {name})", client.create_run, experiment_id, run_name=name, tags=tags)
        except StoreUnwritable:
            raise
        except Exception as err:
            log = cls(client, None, name, lost=f"creating the run failed: {masked(first_line(err))}")
            log._say(log.lost)
            return log
        return cls(client, run.info.run_id, name)

    def _say(self, what: str) -> None:
        print(f"hpo: MLflow run {self.name}{f' ({self.run_id[:8]})' if self.run_id else ''}: {what}; its logging "
              f"stops, the training goes on", file=sys.stderr, flush=True)

    def end_as_trial(self, trial_state) -> None:
        """End a trial's run as its trial ended in Optuna (see RUN_STATUS), however the run's block ends."""
        self.ended_as = RUN_STATUS[trial_state]

    def _log(self, what: str, call, *args, **kwargs) -> None:
        if self.lost:
            return
        try:
            retried(f"MLflow ({what} for {self.name})", call, *args, **kwargs)
        except StoreUnwritable:
            raise
        except Exception as err:
            self.lost = f"{what} failed: {masked(first_line(err))}"
            self._say(self.lost)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        now = _millis()
        self._log("logging metrics", self.client.log_batch, self.run_id, metrics=[
            Metric(key, float(value), now, step) for key, value in metrics.items() if value is not None])

    def log_epoch(self, result) -> None:
        """Per-epoch metrics of a :class:`hpo.train.trainer.EpochResult`, at step = epoch."""
        self.epochs.append(result)
        self.log_metrics({"train_loss": result.train_loss, "val_loss": result.val_loss,
                          "val_accuracy": result.val_accuracy, "val_top5": result.val_top5,
                          "val_f1_macro": result.val_f1_macro, "val_balanced_accuracy": result.val_balanced_accuracy,
                          "lr": result.lr,
                          "epoch_time_s": result.epoch_time_s}, step=result.epoch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._log("logging params", self.client.log_batch, self.run_id,
                  params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._log("setting tags", self.client.log_batch, self.run_id,
                  tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._log(f"writing {Path(path).name}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_artifact_after_end(self, path: str | Path) -> None:
        """An artifact for a run that may have ended already (a trial's curves, drawn while the next trial runs):
        nothing where the run's logging had stopped; a failure raises, for the caller's best effort to say,
        since the run's own logging is over and its tags are written."""
        if self.run_id is None or self.lost or self.lost_before_end:
            return
        retried(f"MLflow (writing {Path(path).name} for {self.name})", self.client.log_artifact, self.run_id,
                str(path))

    def keep_state(self, path: Path) -> None:
        """On a tracking server, a copy of the training's latest state file (hpo/train/state.py) in the run's
        artifacts (``STATE_ARTIFACT/``), where a retry on another machine finds it (``Tracker.fetch_state``).
        An upload that fails stops these uploads only, not the run's logging."""
        if not self.shares_state or self.lost or self.run_id is None:
            return
        try:
            retried(f"MLflow (keeping the training state of {self.name})", self.client.log_artifact, self.run_id,
                    str(path), STATE_ARTIFACT)
        except StoreUnwritable:
            raise
        except Exception as err:
            self.shares_state = False
            print(f"hpo: MLflow run {self.name} ({self.run_id[:8]}): its training state could not be kept on the "
                  f"tracking server ({masked(first_line(err))}); a retry on another machine would start over",
                  file=sys.stderr, flush=True)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._log(f"writing {artifact_file}", self.client.log_text, self.run_id, text, artifact_file)

    def end(self, state: str, status: str, error: BaseException | None) -> None:
        """Tag and end the run; best effort, as it runs while another error may be on its way out: a run
        that cannot be ended now is ended by the next ``hpo run`` (``Tracker.reconcile``)."""
        if self.run_id is None:
            return
        tags = {"hpo.state": state}
        if state == "FAILED" and error is not None:
            tags["hpo.error"] = masked(f"{type(error).__name__}: {error}")[:500]
        lost, self.lost = self.lost, None  # MLflow may answer again: say in the run what went missing
        self.lost_before_end = lost
        if lost:
            tags["hpo.logging_error"] = lost
        try:
            self.set_tags(tags)
            if self.names_outcome and state in OUTCOME_IN_NAME:
                self._log("renaming", self.client.update_run, self.run_id, name=OUTCOME_IN_NAME[state](self.name))
            if state == "FAILED" and error is not None:
                with contextlib.suppress(StoreUnwritable):  # a full artifact store: the run is still ended
                    self.log_text(masked("".join(traceback.format_exception(error))), "error.txt")
            retried(f"MLflow (ending {self.name})", self.client.set_terminated, self.run_id, status)
        except StoreUnwritable:  # the command stops with one line that says so; the next hpo run ends the run
            if error is None:
                raise
        except Exception as err:
            print(f"hpo: MLflow run {self.name} ({self.run_id[:8]}) could not be ended {status} "
                  f"({masked(first_line(err))}); the next hpo run of this study ends it", file=sys.stderr, flush=True)


def outcome(error: BaseException | None) -> tuple[str, str]:
    """(hpo.state tag, MLflow run status) for how a run's block ended."""
    if error is None:
        return "COMPLETE", "FINISHED"
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C or SIGTERM (hpo/core/interrupts.py)
        return "FAILED", "KILLED"
    return "FAILED", "FAILED"


# A pruned trial's run ends KILLED, a crashed one FAILED, and MLflow 3's runs table draws both as a red cross;
# the run's name is the first column of that table, so it says which (``trial-7 pruned``). The statuses stay:
# MLflow has no status for "stopped early on purpose", and a rerun reads KILLED + hpo.state (logged_result).
OUTCOME_IN_NAME = {"PRUNED": lambda name: f"{name} pruned", "FAILED": lambda name: f"{name} FAILED"}

# The MLflow status a trial's run ends with, for each Optuna state (see the table at the top).
RUN_STATUS = {TrialState.COMPLETE: ("COMPLETE", "FINISHED"), TrialState.PRUNED: ("PRUNED", "KILLED"),
              TrialState.FAIL: ("FAILED", "FAILED")}


PROMOTION = "hpo.promotion"  # "pending" on a version and its logged model until the promotion is whole
PROMOTION_ALIAS, PROMOTION_PREVIOUS, PROMOTION_OUTPUT = "hpo.promotion.alias", "hpo.promotion.previous", \
    "hpo.promotion.output"  # on a pending version: what undoing it puts back or removes


def _gone(tags) -> bool:
    owner = ProcessId.from_attrs(tags)
    return owner is not None and owner.is_gone()


class Tracker:
    """The MLflow experiment of one study."""

    def __init__(self, study_name: str, uri: str | None = None, artifacts: str | None = None,
                 create: bool = True, several_machines: bool = False):
        """``create=False``: only an existing experiment (``hpo promote``), and nothing is written otherwise.
        ``several_machines``: the study's storage is a database server, so another machine may retry a trial."""
        self.study_name = study_name
        self.uri = tracking_uri(uri)  # as the user gave it, for messages and links
        check_tracking_uri(self.uri)
        self.mlflow_uri = absolute_sqlite(self.uri)  # what MLflow is given (hpo/stores/urls.py)
        if not create and sqlite_tables(self.uri) is None and sqlite_path(self.uri) is not None:
            raise UserError(f"no MLflow store at {self.uri}; run `hpo run STUDY_FILE` first, or pass --tracking-uri")
        # Under a lock: first runs started together would race to create MLflow's schema and the experiment.
        with store_lock(self.uri, "mlflow"):
            if create:  # a Ctrl-C while MLflow builds its schema loses nothing (hpo/stores/creation.py)
                created_whole(self.uri, build_mlflow_schema)
            self.client = retried(f"MLflow ({masked(self.uri)})", MlflowClient, tracking_uri=self.mlflow_uri)
            experiment = retried(f"MLflow ({masked(self.uri)})", self.client.get_experiment_by_name, study_name)
            if experiment is None and not create:
                names = [e.name for e in self.client.search_experiments() if e.name != "Default"]
                raise UserError(f"no MLflow experiment named {study_name!r} in {self.uri}; experiments there: "
                                f"{', '.join(names) or 'none'}")
            if experiment is None:
                experiment = self._create_experiment(study_name, artifacts)
            self._check_relative_artifacts(experiment.artifact_location)
            self.experiment_id = experiment.experiment_id
            if create and not EXPERIMENT_KIND.keys() <= experiment.tags.keys():  # made by an older hpo
                retried(f"MLflow ({masked(self.uri)})", self.client.set_experiment_tag, self.experiment_id,
                        *next(iter(EXPERIMENT_KIND.items())))
        # A tracking server is what every machine reaches: trials keep their training state there too.
        self.shares_state = several_machines and self.uri.startswith(("http:", "https:"))

    def _create_experiment(self, study_name: str, artifacts: str | None):
        """The study's new experiment; on a tracking server, another machine may create it at the same moment
        (the lock above is this machine's), and then that one is it."""
        from mlflow.exceptions import MlflowException

        served = self.uri.startswith(("http:", "https:")) and not (artifacts or os.environ.get("HPO_ARTIFACTS"))
        location = None if served else artifact_root(artifacts).as_uri()
        try:  # a tracking server keeps artifacts where every machine reaches them, unless told otherwise
            retried(f"MLflow ({masked(self.uri)})", self.client.create_experiment, study_name,
                    artifact_location=location, tags={"hpo.study": study_name, **EXPERIMENT_KIND})
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        experiment = retried(f"MLflow ({masked(self.uri)})", self.client.get_experiment_by_name, study_name)
        if experiment is None:
            raise WorkFailed(f"MLflow ({masked(self.uri)}) did not create the experiment {study_name!r}")
        relative = None if served else relative_artifact_location(self.uri, artifact_root(artifacts))
        if relative is not None and experiment.artifact_location == location:
            experiment = self._relocate(experiment, relative)
        return experiment

    def _relocate(self, experiment, relative: str):
        """The new experiment with its artifact location rewritten to ``relative`` (hpo.stores.urls.
        relative_artifact_location) in the SQLite store, under the store's lock.

        MLflow's SQL store makes every local location absolute when it creates an experiment
        (resolve_uri_if_local), and a store copied or moved elsewhere would no longer find its files. Set
        afterwards, the relative location is kept, and MLflow derives the others from it: a run's artifact_uri
        (``mlartifacts/RUN_ID/artifacts``), a logged model's (``mlartifacts/models/MODEL_ID/artifacts``) and
        so a registered version's storage location; all resolve against the current directory, as the store's
        own ``sqlite:///mlflow.db`` does. Checked with MLflow 3.17: logging, ``load_model("models:/NAME@alias")``
        and ``mlflow models serve`` (tests/test_pyfunc.py), and mlflow ui's artifact lists and downloads for
        runs, logged models and model versions."""
        import sqlite3

        def rewrite() -> bool:
            with contextlib.closing(sqlite3.connect(sqlite_path(self.uri), timeout=30)) as db, db:
                if not db.execute("select 1 from sqlite_master where name = 'experiments'").fetchone():
                    return False
                db.execute("update experiments set artifact_location = ? where experiment_id = ?",
                           (relative, int(experiment.experiment_id)))
                return True

        # MLflow keeps one store per tracking URI for the life of a process: a process that already opened
        # ``sqlite:///mlflow.db`` in another directory (a test runner, a notebook) writes there, not here.
        # The file here then has no tables, and the experiment keeps MLflow's absolute location.
        if not retried(f"MLflow ({masked(self.uri)})", rewrite):
            return experiment
        return retried(f"MLflow ({masked(self.uri)})", self.client.get_experiment, experiment.experiment_id)

    def _check_relative_artifacts(self, location: str) -> None:
        """Refuse a store whose artifacts are relative to its folder (``_relocate``) from another directory:
        MLflow would read and write them under this one."""
        path = sqlite_path(self.uri)
        if path is not None and is_relative_location(location) and path.resolve().parent != Path.cwd().resolve():
            raise UserError(f"{self.uri}: the experiment {self.study_name!r} keeps its artifacts in {location}/ "
                            f"beside {path.name}, which MLflow finds from the current directory; run hpo in "
                            f"{path.resolve().parent}")

    @contextlib.contextmanager
    def _run(self, name: str, tags: Mapping[str, Any], params: Mapping[str, Any] | None = None,
             parent_run_id: str | None = None) -> Iterator[RunLog]:
        tags = {"hpo.study": self.study_name, **tags, **ProcessId.current().as_attrs()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        log = RunLog.create(self.client, self.experiment_id, name, {k: str(v) for k, v in tags.items()})
        error: BaseException | None = None
        try:
            if params:
                log.log_params(params)
            yield log
        except BaseException as err:
            error = err
            raise
        finally:
            log.end(*(log.ended_as or outcome(error)), error)

    @contextlib.contextmanager
    def study_run(self, spec, invocation: str) -> Iterator[RunLog]:
        """The parent run of one ``hpo run``: the study file, the space, and every trial nested under it."""
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._run(f"{spec.name}-study {started}", {"hpo.role": "study", "hpo.invocation": masked(invocation)},
                       params={"seed": spec.seed, "metric": spec.metric, "direction": spec.direction,
                               "model": spec.model.name, "data": spec.data.name, "sampler": spec.sampler.name,
                               "pruner": spec.pruner.name, "searched": ",".join(spec.search.searched),
                               "trials": spec.budget.trials, "epochs": spec.budget.epochs}) as run:
            import yaml
            run.log_text(yaml.safe_dump(dict(spec.raw), sort_keys=False), "study.yaml")
            yield run

    @contextlib.contextmanager
    def trial_run(self, number: int, hyperparams: Mapping[str, Any], seed: int,
                  parent_run_id: str | None) -> Iterator[RunLog]:
        with self._run(f"trial-{number}", {"hpo.role": "trial", "hpo.trial": number},
                       params={**hyperparams, "seed": seed}, parent_run_id=parent_run_id) as run:
            run.names_outcome = True
            run.shares_state = self.shares_state  # a trial's state, for its retry on another machine
            yield run

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        return run_url(self.uri, self.experiment_id, run_id)

    def log_best_so_far(self, parent_run_id: str, best: tuple[int, float], finished: int) -> None:
        """The best trial so far, on the parent run at step ``finished`` (trials finished)."""
        now = _millis()
        self.client.log_batch(parent_run_id, metrics=[Metric("best_value", float(best[1]), now, finished),
                                                      Metric("best_trial", float(best[0]), now, finished)])

    @contextlib.contextmanager
    def retrain_run(self, trial_number: int, hyperparams: Mapping[str, Any], seed: int, epochs: int,
                    parent_run_id: str | None, member=None) -> Iterator[RunLog]:
        """A retrain run; ``member`` (a :class:`hpo.retrain.retrain.SeedMember`) when it is one of a seed comparison's,
        nested under the comparison's run."""
        tags = {"hpo.role": "retrain", "hpo.retrain_of_trial": trial_number, "hpo.epochs": epochs}
        name = f"retrain-trial-{trial_number}-{epochs}ep"
        if member is not None:
            tags.update({"hpo.seed_group": member.group, "hpo.seed_role": member.role, "hpo.seed_index": member.index})
            name, parent_run_id = f"{name}-seed{member.index}", member.group_run_id or parent_run_id
        with self._run(name, tags, params={**hyperparams, "seed": seed, "epochs": epochs},
                       parent_run_id=parent_run_id) as run:
            yield run

    @contextlib.contextmanager
    def seed_group_run(self, group: str, best: int, baseline: int | None, epochs: int, seeds: list[int],
                       parent_run_id: str | None) -> Iterator[RunLog]:
        """The run a seed comparison's retrain runs nest under; it ends with the verdict (``hpo/retrain/seeds.py``)."""
        versus = f"-vs-{baseline}" if baseline is not None else ""
        with self._run(f"seeds-trial-{best}{versus}-{epochs}ep", {"hpo.role": "seed_group", "hpo.seed_group": group},
                       params={"best_trial": best, "baseline_trial": baseline, "epochs": epochs,
                               "seeds": ",".join(map(str, seeds))}, parent_run_id=parent_run_id) as run:
            yield run

    def seed_group_members(self, group: str, role: str = "best") -> list:
        """The finished retrain runs of one arm of a seed comparison."""
        return self.runs("retrain", f"attributes.status = 'FINISHED' and tags.`hpo.seed_group` = '{group}' and "
                                    f"tags.`hpo.seed_role` = '{role}'")

    def fetch_state(self, run_ids: list[str], name: str, path: Path) -> bool:
        """The training state file ``name`` that the first of ``run_ids`` to have kept one kept
        (``RunLog.keep_state``), downloaded to ``path``; False when none of them did (or not on a tracking
        server)."""
        if not self.shares_state:
            return False
        for run_id in run_ids:
            with tempfile.TemporaryDirectory(prefix="hpo-state-") as scratch:
                try:
                    got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{STATE_ARTIFACT}/{name}",
                                                              dst_path=scratch, tracking_uri=self.mlflow_uri)
                except Exception:  # no such artifact, or the server is away: the retry starts over
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(got, path)
                return True
        return False

    def drop_state(self, run_ids: list[str]) -> None:
        """Remove the kept training states of ``run_ids``: their trial line has finished. Best effort."""
        if not self.shares_state:
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        for run_id in run_ids:
            with contextlib.suppress(Exception):  # nothing kept, or the server is away: a file left behind
                get_artifact_repository(self.client.get_run(run_id).info.artifact_uri,
                                        tracking_uri=self.mlflow_uri).delete_artifacts(STATE_ARTIFACT)

    def log_checkpoint(self, run: RunLog, checkpoint: dict, artifact: str = CHECKPOINT_ARTIFACT) -> None:
        import torch
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact).name
            torch.save(checkpoint, path)
            run.log_artifact(path, str(Path(artifact).parent))
        if run.lost or not run.run_id:  # a retrain run without its checkpoint must not end FINISHED
            raise WorkFailed(f"MLflow did not take the checkpoint of {run.name} ({run.lost or 'it has no run'}); "
                             f"run `hpo retrain {self.study_name}` again once MLflow answers")

    def reconcile(self, study: optuna.Study) -> list[str]:
        """End the runs that killed processes left RUNNING: a trial's run with the status its trial has in
        Optuna, a parent or retrain run FAILED. A trial's run gets the status its own process would give it,
        so ending one whose process is alive and about to close it changes nothing. Returns a line each."""
        trials = {str(t.number): t for t in study.get_trials(deepcopy=False)}
        lines = []
        for run in self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
            tags = run.data.tags
            owner = ProcessId.from_attrs(tags)
            gone = owner is not None and owner.is_gone()
            trial = trials.get(tags.get("hpo.trial", "")) if tags.get("hpo.role") == "trial" else None
            if trial is not None and trial.state.is_finished():
                (state, status), why = RUN_STATUS[trial.state], f"its trial had ended {trial.state.name}"
            elif gone:
                state, status, why = "FAILED", "FAILED", f"its process ({owner.pid}) no longer exists"
            else:
                continue
            log = RunLog(self.client, run.info.run_id)
            log.set_tags({"hpo.state": state, **({"hpo.error": f"{why}; ended by a later hpo command"}
                                                 if state == "FAILED" else {})})
            if trial is not None and state in OUTCOME_IN_NAME:
                self.client.update_run(run.info.run_id, name=OUTCOME_IN_NAME[state](run.info.run_name))
            self.client.set_terminated(run.info.run_id, status)
            lines.append(f"MLflow run {run.info.run_name} ({run.info.run_id[:8]}) was left RUNNING ({why}): "
                         f"ended {status}")
        return lines

    def logged_result(self, trial, objectives):
        """(state, values) of a trial whose run finished although its process died before telling Optuna,
        from what the run logged (the metric's final value, then each cost); None when the run did not finish."""
        run_id = TrialRecord(trial).mlflow_run_id
        if not run_id:
            return None
        run = self.client.get_run(run_id)
        metric, *costs = objectives
        final = [run.data.metrics.get(f"{metric}_final"), *(run.data.metrics.get(cost) for cost in costs)]
        if run.info.status == "FINISHED" and run.data.tags.get("hpo.state") == "COMPLETE" and None not in final:
            return TrialState.COMPLETE, final
        if run.info.status == "KILLED" and run.data.tags.get("hpo.state") == "PRUNED":
            return TrialState.PRUNED, None
        return None

    def finished_retrain(self, trial_number: int, epochs: int):
        """The latest finished retrain run of this trial with this budget, or None."""
        runs = self.runs("retrain", f"attributes.status = 'FINISHED' and tags.`hpo.retrain_of_trial` = "
                                    f"'{trial_number}' and tags.`hpo.epochs` = '{epochs}'")
        return runs[0] if runs else None

    def runs(self, role: str, extra_filter: str = "") -> list:
        query = f"tags.`hpo.role` = '{role}'" + (f" and {extra_filter}" if extra_filter else "")
        return list(self.client.search_runs([self.experiment_id], query, order_by=["attributes.start_time DESC"],
                                            max_results=1000))

    def latest_retrain_run(self, trial: int | None = None):
        """The newest finished retrain run of the study (``trial``: of that trial)."""
        of_trial = f" and tags.`hpo.retrain_of_trial` = '{int(trial)}'" if trial is not None else ""
        runs = self.runs("retrain", "attributes.status = 'FINISHED'" + of_trial)
        if not runs:
            what = f"of trial {trial} " if trial is not None else ""
            raise UserError(f"study {self.study_name!r} has no finished retrain run {what}in {self.uri}; run "
                            f"`hpo retrain {self.study_name}{f' --trial {trial}' if trial is not None else ''}`"
                            + (" (or `hpo run STUDY_FILE`)" if trial is None else
                               " (of a COMPLETE trial: hpo show --top lists them)") + " first")
        return runs[0]

    def download_checkpoint(self, run_id: str, directory: str | Path) -> Path:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT,
                                                        dst_path=str(directory), tracking_uri=self.mlflow_uri))

    def chosen_retrain_run(self, run_id: str):
        """The finished retrain run ``run_id`` of this study (``hpo promote --run``); any other run is a one-line
        error that names the ones allowed."""
        from mlflow.exceptions import MlflowException
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            run = None
        if (run is not None and run.info.experiment_id == self.experiment_id and run.info.status == "FINISHED"
                and run.data.tags.get("hpo.role") == "retrain"):
            return run
        allowed = [f"{r.info.run_id} ({r.info.run_name})" for r in self.runs("retrain", "attributes.status = 'FINISHED'")]
        raise UserError(f"--run {run_id}: not a finished retrain run of study {self.study_name!r}; its finished "
                        f"retrain runs, newest first: {', '.join(allowed[:10]) or 'none'}"
                        f"{f' and {len(allowed) - 10} more' if len(allowed) > 10 else ''}")

    # --- the Model Registry (hpo/serve/promote.py: a promotion is whole or undone) ---

    def promotion_tags(self) -> dict[str, str]:
        """The tags of what a promotion under way by this process makes (its logged model, its version)."""
        return {PROMOTION: "pending", **ProcessId.current().as_attrs()}

    def register_pending(self, run, model_name: str, model_id: str, alias: str, previous: str | None) -> str:
        """A new Model Registry version from the logged model ``model_id`` (the pyfunc of ``run``'s checkpoint,
        ``hpo/serve/pyfunc.py``), tagged as a promotion under way by this process, with what undoing it needs:
        the alias it will move and the version that alias is on now (``note_output``: the file it writes)."""
        from mlflow.exceptions import MlflowException
        created = False
        try:
            self.client.get_registered_model(model_name)
        except MlflowException:
            self.client.create_registered_model(model_name, tags={"hpo.study": self.study_name})
            created = True
        try:
            version = self.client.create_model_version(
                model_name, source=f"models:/{model_id}", run_id=run.info.run_id, model_id=model_id,
                tags={"hpo.retrain_of_trial": run.data.tags.get("hpo.retrain_of_trial", ""), **self.promotion_tags(),
                      PROMOTION_ALIAS: alias, PROMOTION_PREVIOUS: previous or ""})
        except BaseException:
            if created:
                self.client.delete_registered_model(model_name)
            raise
        return version.version

    def note_output(self, model_name: str, version: str, path: Path) -> None:
        """The checkpoint file a pending version's promotion is about to write (undoing it removes the file)."""
        self.client.set_model_version_tag(model_name, version, PROMOTION_OUTPUT, str(path.resolve()))

    def alias_version(self, model_name: str, alias: str) -> str | None:
        """The version ``alias`` points at now, or None."""
        from mlflow.exceptions import MlflowException
        try:
            return self.client.get_model_version_by_alias(model_name, alias).version
        except MlflowException:
            return None

    def finish_promotion(self, model_name: str, version: str, model_id: str, alias: str) -> None:
        """The logged model first: a version that is done never has a logged model still marked pending."""
        self.client.set_logged_model_tags(model_id, {PROMOTION: "done"})
        self.client.set_registered_model_alias(model_name, alias, version)
        self.client.set_model_version_tag(model_name, version, PROMOTION, "done")

    def undo_promotion(self, model_name: str, version: str | None, model_id: str | None) -> None:
        """Remove what a promotion that did not finish made: its checkpoint file (one written since the version
        was registered: a file it was to replace stays), the alias it may have moved (back to the version it
        was on), its version, the registered model when nothing else is left in it, and its logged model."""
        if version is not None:
            registered = self.client.get_model_version(model_name, version)
            tags = registered.tags
            alias, previous = tags.get(PROMOTION_ALIAS), tags.get(PROMOTION_PREVIOUS)
            output = Path(tags[PROMOTION_OUTPUT]) if tags.get(PROMOTION_OUTPUT) else None
            if output is not None:
                output.with_name(f".{output.name}.partial").unlink(missing_ok=True)
                if output.is_file() and output.stat().st_mtime * 1000 >= registered.creation_timestamp:
                    output.unlink()
            if alias and self.alias_version(model_name, alias) == version:
                if previous and self._version_exists(model_name, previous):
                    self.client.set_registered_model_alias(model_name, alias, previous)
                else:
                    self.client.delete_registered_model_alias(model_name, alias)
            self.client.delete_model_version(model_name, version)
            if not self.client.search_model_versions(f"name = '{model_name}'"):
                self.client.delete_registered_model(model_name)
        if model_id is not None:
            self.client.delete_logged_model(model_id)

    def _version_exists(self, model_name: str, version: str) -> bool:
        from mlflow.exceptions import MlflowException
        try:
            self.client.get_model_version(model_name, version)
            return True
        except MlflowException:
            return False

    def undo_dead_promotions(self, model_name: str) -> list[str]:
        """Undo the promotions that killed processes of this machine left half done (a version still tagged
        pending, a logged model no finished version uses); a line each."""
        from mlflow.exceptions import MlflowException
        try:
            versions = self.client.search_model_versions(f"name = '{model_name}'")
        except MlflowException:
            versions = []
        lines, kept = [], {v.model_id for v in versions if v.tags.get(PROMOTION) != "pending"}
        for version in versions:
            if version.tags.get(PROMOTION) == "pending" and _gone(version.tags):
                self.undo_promotion(model_name, version.version, None)
                lines.append(f"version {version.version} of {model_name!r} was left half promoted by a process "
                             f"that no longer exists: removed, with its checkpoint file and alias")
        for logged in self.client.search_logged_models([self.experiment_id]):
            if logged.tags.get(PROMOTION) == "pending" and _gone(logged.tags) and logged.model_id not in kept:
                self.client.delete_logged_model(logged.model_id)
        return lines
