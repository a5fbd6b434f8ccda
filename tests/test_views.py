"""Where users look (hpo/track/dashboard.py, hpo/track/tracker.py): what optuna-dashboard and MLflow show of the tiny study's real run."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import free_port

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mlflow_client(tiny_run):
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['dir']}/mlflow.db")
    return client, client.get_experiment_by_name("tiny")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_dashboard_links_each_trial_to_its_run_and_shows_its_curves(tiny_run, mlflow_client):
    """Through the dashboard's own HTTP API: each trial's note links its MLflow run, its curves are an artifact
    the dashboard serves as a PNG, and the study's note has the budget, the best trial and the retrain."""
    _, experiment = mlflow_client
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--port", str(port)], cwd=tiny_run["dir"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                summaries = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.time() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        study_id = summaries[0]["study_id"]
        detail = json.loads(_get(f"{base}/api/studies/{study_id}"))
        finished = [t for t in detail["trials"] if t["state"] in ("Complete", "Pruned")]
        assert {t["state"] for t in finished} == {"Complete", "Pruned"}
        for trial in finished:
            run_id = next(a["value"] for a in trial["user_attrs"] if a["key"] == "mlflow_run_id")
            url = (f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run_id}"
                   f"?workflowType=machine_learning")  # MLflow's model-training side, not GenAI's
            assert f"]({url})" in trial["note"]["body"], trial["note"]  # a Markdown link: clickable
            assert {"key": "mlflow_run_url", "value": url} in trial["user_attrs"]
            [curves] = trial["artifacts"]
            assert curves["filename"] == "curves.png" and curves["mimetype"] == "image/png"
            image = _get(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{curves['artifact_id']}")
            assert image.startswith(PNG) and len(image) > 2000
        note = detail["note"]["body"]
        best = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_run['dir']}/hpo.db").best_trial
        assert str(tiny_run["study_file"]) in note and "digits_cnn (width=8)" in note and "6 trials" in note
        assert f"best so far: val_accuracy {best.value:.4f}, trial {best.number}" in note
        assert f"retrain of trial {best.number} (4/4 epochs, seed " in note and "test_accuracy" in note
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_shows_model_training_view_pruning_and_summaries(tiny_run, mlflow_client, monkeypatch):
    monkeypatch.chdir(tiny_run["dir"])  # MLflow finds the artifacts from the store's folder (README)
    client, experiment = mlflow_client
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_role = {role: [r for r in runs if r.data.tags.get("hpo.role") == role] for role in ("study", "trial", "retrain")}
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_run['dir']}/hpo.db")

    pruned = [r for r in by_role["trial"] if r.data.tags["hpo.state"] == "PRUNED"]
    complete = [r for r in by_role["trial"] if r.data.tags["hpo.state"] == "COMPLETE"]
    assert pruned and complete
    for run in pruned:  # told apart from a crash (tests/test_failures.py: "trial-N FAILED") by its name
        assert run.info.status == "KILLED" and run.info.run_name == f"trial-{run.data.tags['hpo.trial']} pruned"
        trial = study.trials[int(run.data.tags["hpo.trial"])]
        assert run.data.tags["hpo.pruned_at_epoch"] == str(trial.user_attrs["epochs"])
        assert run.data.tags["hpo.prune_reason"]
    for run in complete:
        assert run.info.run_name == f"trial-{run.data.tags['hpo.trial']}"
    for run in pruned + complete:
        assert "curves.png" in [a.path for a in client.list_artifacts(run.info.run_id)]

    [parent] = by_role["study"]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.metrics["best_trial"] == study.best_trial.number
    history = client.get_metric_history(parent.info.run_id, "best_value")
    assert [m.step for m in history] == list(range(1, len(study.trials) + 1))  # after each trial
    table = client.download_artifacts(parent.info.run_id, "trials.csv", str(tiny_run["dir"] / "downloaded"))
    rows = list(csv.DictReader(io.StringIO(open(table).read())))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert {r["state"] for r in rows} == {TrialState.COMPLETE.name, TrialState.PRUNED.name}
    assert "params_lr" in rows[0] and "user_attrs_mlflow_run_url" in rows[0]

    retrain = min(by_role["retrain"], key=lambda r: r.info.start_time)  # hpo run's (other tests retrain again)
    names = {a.path for a in client.list_artifacts(retrain.info.run_id)}
    assert {"curves.png", "confusion_matrix.png", "per_class_accuracy.png", "study.yaml"} <= names
    folder = client.download_artifacts(retrain.info.run_id, "confusion_matrix.png", str(tiny_run["dir"] / "dl2"))
    assert open(folder, "rb").read(8) == PNG


def test_run_url_is_the_tracking_server_or_mlflow_ui(monkeypatch):
    from hpo.track.tracker import run_url

    monkeypatch.delenv("HPO_MLFLOW_UI", raising=False)
    view = "?workflowType=machine_learning"
    assert run_url("sqlite:///mlflow.db", "1", "abc") == f"http://127.0.0.1:5000/#/experiments/1/runs/abc{view}"
    assert run_url("http://hpo:secret@mlflow.lab:5000/", "2", "r") == \
        f"http://mlflow.lab:5000/#/experiments/2/runs/r{view}"
    monkeypatch.setenv("HPO_MLFLOW_UI", "http://10.0.0.5:5001/")
    assert run_url("sqlite:////data/mlflow.db", "3", "r") == f"http://10.0.0.5:5001/#/experiments/3/runs/r{view}"
