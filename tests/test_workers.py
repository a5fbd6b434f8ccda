"""Several workers on one storage: planning, and exactly the requested trials (CPU standing in for GPUs)."""

from __future__ import annotations

import os

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.core.errors import UserError
from hpo.search.workers import plan_workers

from helpers import REPO, TINY_STUDY, hpo, write_study


def test_plan_workers():
    assert plan_workers("0,1", 2, cuda_devices=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert plan_workers("1", 1, cuda_devices=2) == ["cuda:1"]
    assert plan_workers("cpu", 3, cuda_devices=0) == ["cpu", "cpu", "cpu"]
    for gpus, per_gpu, message in [("0,0", 1, "distinct"), ("x", 1, "expected GPU numbers"), ("0", 0, ">= 1"),
                                   ("2", 1, "GPU 2 is not present; torch sees 2")]:
        with pytest.raises(UserError, match=message):
            plan_workers(gpus, per_gpu, cuda_devices=2)


@pytest.mark.slow  # worker processes
def test_workers_share_one_study_and_finish_exactly_the_budget(tmp_path):
    study = dict(TINY_STUDY, name="parallel", budget={"trials": 7, "epochs": 2, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    out = hpo("run", str(study_file), "--gpus", "cpu", "--trials-per-gpu", "3", cwd=tmp_path).stdout
    assert "[w0 cpu] trial" in out and "[w2 cpu] trial" in out and "retrain of trial" in out

    stored = optuna.load_study(study_name="parallel", storage=f"sqlite:///{tmp_path}/hpo.db")
    states = [t.state for t in stored.trials]
    assert len(states) == 7 and TrialState.RUNNING not in states and TrialState.FAIL not in states
    assert [t.number for t in stored.trials[:4]] == [0, 1, 2, 3]
    recipe = [stored.trials[i].params for i in range(4)]
    assert all(p in recipe for p in TINY_STUDY["enqueue"]), "every enqueued trial ran once"

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("parallel")
    parent = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'study'")
    assert len(parent) == 1
    children = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'trial'")
    assert len(children) == 7
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in stored.trials}

    hpo("run", str(study_file), "--gpus", "cpu", "--trials-per-gpu", "2", "--trials", "9", "--no-retrain",
        cwd=tmp_path)
    stored = optuna.load_study(study_name="parallel", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert len(stored.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 9
    assert len(stored.trials) == 9


@pytest.mark.slow  # worker processes
def test_workers_without_mlflow(tmp_path):
    """--no-tracking (a GPU machine that carries only Optuna): MLflow is not even importable, the workers
    still finish exactly the budget in the storage, and the retrain still reports its test accuracy."""
    blocker = tmp_path / "no_mlflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mlflow', 'optuna_dashboard'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n")
    study = dict(TINY_STUDY, name="offline", budget={"trials": 5, "epochs": 2, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    out = hpo("run", str(study_file), "--gpus", "cpu", "--trials-per-gpu", "2", "--no-tracking", cwd=tmp_path,
              env={"PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}).stdout
    assert "MLflow off (--no-tracking)" in out and "test_accuracy" in out and "MLflow run" not in out
    stored = optuna.load_study(study_name="offline", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert len(stored.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 5 == len(stored.trials)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow  # worker processes
def test_four_workers_finish_160_trials_on_the_default_local_storage(tmp_path):
    """4 workers x 40 trials each on the default storage (SQLite in WAL mode, hpo.study.storage.SQLITE_JOURNAL):
    every trial number once, exactly the budget, one MLflow child run per trial, nothing left RUNNING."""
    study = dict(TINY_STUDY, name="many", model={"name": "digits_cnn", "width": 4}, enqueue=[],
                 budget={"trials": 160, "epochs": 1, "retrain": {"epochs": 1}},
                 sampler={"name": "random"}, pruner={"name": "none"})
    study_file = write_study(tmp_path, study)
    out = hpo("run", str(study_file), "--gpus", "cpu", "--trials-per-gpu", "4", "--no-retrain", cwd=tmp_path).stdout
    assert all(f"[w{w} cpu] trial" in out for w in range(4)), "every worker ran trials"

    import sqlite3

    with sqlite3.connect(tmp_path / "hpo.db") as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    stored = optuna.load_study(study_name="many", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert len(stored.trials) == 160 and all(t.state == TrialState.COMPLETE for t in stored.trials)
    assert len({t.user_attrs["trial_seed"] for t in stored.trials}) == 160, "no trial was run twice"

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("many")
    children = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'trial'", max_results=1000)
    assert len(children) == 160 and all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.info.run_id for r in children) == sorted(t.user_attrs["mlflow_run_id"] for t in stored.trials)
    assert len({t.user_attrs["hpo.pid"] for t in stored.trials}) == 4


@pytest.mark.slow  # worker processes, a parent killed outright
def test_workers_of_a_killed_parent_leave_their_trials_to_be_retried(tmp_path):
    """SIGKILL to the parent ``hpo run`` (the OOM killer, a preemption) while both workers train enqueued
    recipes: each worker notices, fails its trial as died (never on the broken pipe of its output) and exits;
    the rerun retries them and every enqueued recipe ends with a finished trial."""
    import signal
    import subprocess
    import sys
    import time

    recipes = [{"lr": lr, "optimizer": "adam", "batch_size": 32} for lr in (0.01, 0.003, 0.02, 0.005)]
    study = dict(TINY_STUDY, name="orphans", enqueue=recipes, pruner={"name": "none"},
                 budget={"trials": 4, "epochs": 30, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    parent = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file), "--gpus", "cpu",
                               "--trials-per-gpu", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    training = set()
    for line in parent.stdout:  # killed once both workers are inside a trial
        if " epoch " in line and line.startswith("[w"):
            training.add(line[:3])
        if len(training) == 2:
            parent.send_signal(signal.SIGKILL)
            break
    assert parent.wait() == -9
    storage = f"sqlite:///{tmp_path}/hpo.db"
    deadline = time.time() + 60
    while [t for t in optuna.load_study(study_name="orphans", storage=storage).trials
           if t.state == TrialState.RUNNING]:
        assert time.time() < deadline, "a worker did not notice its parent was gone"
        time.sleep(0.5)
    failed = [t for t in optuna.load_study(study_name="orphans", storage=storage).trials
              if t.state == TrialState.FAIL]
    assert len(failed) == 2 and all(t.user_attrs["died"] for t in failed), [t.user_attrs for t in failed]
    assert not [t for t in failed if "BrokenPipe" in t.user_attrs["fail_reason"]]

    hpo("run", str(study_file), "--set", "budget.epochs=2", "--no-retrain", cwd=tmp_path)
    finished = [t.params for t in optuna.load_study(study_name="orphans", storage=storage).trials
                if t.state == TrialState.COMPLETE]
    assert all(recipe in finished for recipe in recipes), finished
