"""A failing trial is recorded as FAILED, in Optuna and in MLflow, and the study goes on."""

from __future__ import annotations

import optuna
import torch.nn as nn
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.cli import main
from hpo.models import MODELS, register_model

from helpers import TINY_STUDY, write_study

constructions = {"count": 0}


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def forward(self, x):
        raise RuntimeError("boom in forward")


if "flaky_for_tests" not in MODELS:
    @register_model("flaky_for_tests")
    def flaky_for_tests(num_classes, in_channels, image_size):
        """Every other model built raises in forward: a real runtime failure inside some trials."""
        constructions["count"] += 1
        if constructions["count"] % 2 == 1:
            return Boom()
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))

    @register_model("broken_for_tests")
    def broken_for_tests(num_classes, in_channels, image_size):
        return Boom()


def test_failed_trials_do_not_stop_the_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for var in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    study = dict(TINY_STUDY, name="flaky", model={"name": "flaky_for_tests"}, enqueue=[],
                 budget={"trials": 4, "epochs": 2}, pruner="none")
    study_file = write_study(tmp_path, study)

    assert main(["run", str(study_file), "--no-retrain"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" in out and "failed: RuntimeError: boom in forward" in out

    stored = optuna.load_study(study_name="flaky", storage="sqlite:///hpo.db")
    states = [t.state for t in stored.trials]
    assert states.count(TrialState.COMPLETE) == 4  # the budget counts finished trials, so failures are retried
    assert states.count(TrialState.FAIL) >= 1 and TrialState.RUNNING not in states

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    experiment = client.get_experiment_by_name("flaky")
    failed = client.search_runs([experiment.experiment_id], "tags.`hpo.state` = 'FAILED'")
    assert len(failed) == states.count(TrialState.FAIL)
    for run in failed:
        assert run.info.status == "FAILED"
        assert run.info.run_name == f"trial-{run.data.tags['hpo.trial']} FAILED"  # a crash, not a pruned trial
        assert "boom in forward" in run.data.tags["hpo.error"]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["error.txt"]


def test_failing_every_trial_stops_with_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for var in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    study = dict(TINY_STUDY, name="allfail", model={"name": "broken_for_tests"}, enqueue=[],
                 budget={"trials": 10, "epochs": 1}, pruner="none")
    assert main(["run", str(write_study(tmp_path, study))]) == 1
    err = capsys.readouterr().err
    assert "3 trials in a row failed" in err and "boom in forward" in err
    assert len(err.strip().splitlines()) == 1
    stored = optuna.load_study(study_name="allfail", storage="sqlite:///hpo.db")
    assert [t.state for t in stored.trials] == [TrialState.FAIL] * 3


def test_runs_of_trials_whose_worker_died_are_closed(tmp_path):
    """A trial failed by Optuna (its worker stopped) whose run still shows RUNNING: reconcile ends the run."""
    from hpo.track.tracker import Tracker

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="orphans")
    tracker = Tracker("orphans", f"sqlite:///{tmp_path}/m.db", str(tmp_path / "art"))
    trial = study.ask()
    run = tracker.client.create_run(tracker.experiment_id, tags={"hpo.role": "trial", "hpo.trial": "0"})
    trial.set_user_attr("mlflow_run_id", run.info.run_id)
    study.tell(trial, state=TrialState.FAIL)  # what Optuna does to a trial whose heartbeat stopped
    assert len(tracker.reconcile(study)) == 1
    closed = tracker.client.get_run(run.info.run_id)
    assert closed.info.status == "FAILED" and closed.data.tags["hpo.state"] == "FAILED"
    assert tracker.reconcile(study) == []
