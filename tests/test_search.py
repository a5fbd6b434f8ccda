"""A correct search: reruns, parallel processes, workers, grids and interrupts keep the study's sampler, seeds
and budget. Everything runs the real ``hpo`` CLI in subprocesses on digits."""

from __future__ import annotations

import pytest

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import hpo, write_study

# Every trial is random start-up sampling (n_startup_trials > budget), and nothing is pruned: what a trial
# proposes may depend only on the study seed and its number.
RANDOM_START = {
    "name": "startup",
    "seed": 11,
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": 16, "depth": 1},
    "budget": {"trials": 9, "epochs": 1, "retrain": {"epochs": 1}},
    "search": {"lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}, "optimizer": ["adam", "sgd"],
               "batch_size": [32, 64, 128]},
    "sampler": {"name": "tpe", "n_startup_trials": 20},
    "pruner": "none",
}


def stored(directory, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{directory}/hpo.db")


def proposals(directory, name) -> dict[int, tuple]:
    return {t.number: tuple(sorted(t.params.items())) for t in stored(directory, name).trials}


def env_without_stores() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def start(*args, cwd, new_session=False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpo", *args], cwd=cwd, env=env_without_stores(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=new_session)


def running_mlflow_runs(directory) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{directory}/mlflow.db")
    return [r for e in client.search_experiments() for r in
            client.search_runs([e.experiment_id], "attributes.status = 'RUNNING'")]


@pytest.mark.slow  # several hpo processes, signals and kills
def test_resumed_and_parallel_runs_propose_what_one_run_proposes(tmp_path):
    one, pieces, together = (tmp_path / n for n in ("one", "pieces", "together"))
    for d in (one, pieces, together):
        d.mkdir()
    study_file = write_study(tmp_path, RANDOM_START)

    hpo("run", str(study_file), "--no-retrain", "--no-tracking", cwd=one)
    for trials in (3, 6, 9):
        hpo("run", str(study_file), "--trials", str(trials), "--no-retrain", "--no-tracking", cwd=pieces)
    # Three first runs at once in an empty folder (with MLflow): all finish, sharing the budget.
    runs = [start("run", str(study_file), "--no-retrain", cwd=together) for _ in range(3)]
    outputs = [p.communicate(timeout=600)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0], "\n---\n".join(outputs)
    assert not any("next: hpo promote" in out for out in outputs)  # --no-retrain: nothing to promote
    assert not any("Warning" in out for out in outputs)  # no library warning on a normal run's console

    expected = proposals(one, "startup")
    assert len(expected) == 9 and len(set(expected.values())) == 9, "random start-up proposed a point twice"
    assert proposals(pieces, "startup") == expected
    assert proposals(together, "startup") == expected
    states = [t.state for t in stored(together, "startup").trials]
    assert states == [TrialState.COMPLETE] * 9
    assert not running_mlflow_runs(together)
    assert stored(one, "startup").metric_names == ["val_accuracy"]  # optuna-dashboard's axis label


@pytest.mark.slow  # several hpo processes, signals and kills
def test_workers_use_the_study_sampler_and_pruner(tmp_path):
    """pruner none and a seeded random sampler, in --gpus workers: nothing pruned, the same proposals by trial
    number as one process with the same study."""
    study = dict(RANDOM_START, name="workers", budget={"trials": 6, "epochs": 2, "retrain": {"epochs": 1}},
                 sampler={"name": "random"}, pruner={"name": "median", "n_startup_trials": 0, "n_warmup_steps": 0},
                 enqueue=[{"lr": 0.001, "optimizer": "sgd", "batch_size": 128}])  # a slow recipe median would prune
    study_file = write_study(tmp_path, study)
    overrides = ["--set", "pruner={name: none}", "--no-retrain", "--no-tracking"]
    alone, parallel = tmp_path / "alone", tmp_path / "parallel"
    alone.mkdir(), parallel.mkdir()
    hpo("run", str(study_file), *overrides, cwd=alone)
    out = hpo("run", str(study_file), *overrides, "--gpus", "cpu", "--trials-per-gpu", "2", cwd=parallel).stdout
    assert "[w0 cpu] trial" in out and "[w1 cpu] trial" in out
    assert "PRUNED" not in out
    assert [t.state for t in stored(parallel, "workers").trials] == [TrialState.COMPLETE] * 6
    assert proposals(parallel, "workers") == proposals(alone, "workers")


GRID = {
    "name": "grid4",
    "seed": 3,
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": 16, "depth": 1},
    "budget": {"trials": 4, "epochs": 1, "retrain": {"epochs": 1}},
    "search": {"optimizer": ["adam", "sgd"], "batch_size": [64, 128], "lr": 0.01},
    "sampler": "grid",
    "pruner": "none",
}


@pytest.mark.slow  # three hpo run of one study
def test_grid_studies_end_cleanly_and_a_finished_study_is_not_retrained_again(tmp_path):
    exact = write_study(tmp_path, GRID, "exact.yaml")
    first = hpo("run", str(exact), cwd=tmp_path)
    assert "budget reached" in first.stdout and "retrain of trial" in first.stdout
    assert "next: hpo promote grid4" in first.stdout

    again = hpo("run", str(exact), cwd=tmp_path)  # the budget is met and the retrain exists
    assert "already done" in again.stdout and "retraining trial" not in again.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("grid4")
    assert len(client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'retrain'")) == 1
    parents = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'study'")
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert all(p.info.run_name.startswith("grid4-study 20") for p in parents)  # named with their start time

    larger = write_study(tmp_path, dict(GRID, name="grid6", budget=dict(GRID["budget"], trials=6)), "larger.yaml")
    out = hpo("run", str(larger), "--no-tracking", cwd=tmp_path).stdout
    assert "every point of the grid has run" in out and "retrain of trial" in out
    assert "next: hpo promote" not in out  # nothing to promote without MLflow
    trials = stored(tmp_path, "grid6").trials
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4


SLOW = {
    "name": "slow",
    "seed": 5,
    "data": {"name": "digits"},
    "model": {"name": "digits_cnn", "width": 16},
    "budget": {"trials": 3, "epochs": 6, "retrain": {"epochs": 1}},
    "search": {"lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "batch_size": 16},
    "sampler": {"name": "random"},
    "pruner": "none",
}


def wait_for_running_trial(directory, after: int = 0, timeout: float = 300) -> None:
    """Until a trial numbered >= ``after`` is RUNNING and has trained an epoch: mid-trial."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with sqlite3.connect(directory / "hpo.db") as db:
                row = db.execute("select count(*) from trials t join trial_user_attributes a on "
                                 "a.trial_id = t.trial_id where t.state = 'RUNNING' and t.number >= ? and "
                                 "a.key = 'epochs'", (after,)).fetchone()
            if row and row[0]:
                return
        except sqlite3.OperationalError:  # not created yet, or busy
            pass
        time.sleep(0.2)
    raise AssertionError("no trial started training in time")


def assert_nothing_left_running(directory, name) -> list:
    trials = stored(directory, name).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert not running_mlflow_runs(directory)
    return trials


@pytest.mark.slow  # several hpo processes, signals and kills
def test_sigint_and_sigterm_fail_the_trial_at_once_and_a_rerun_finishes_the_budget(tmp_path):
    study_file = write_study(tmp_path, SLOW)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        done_before = len(stored(tmp_path, "slow").trials) if (tmp_path / "hpo.db").exists() else 0
        process = start("run", str(study_file), cwd=tmp_path)
        wait_for_running_trial(tmp_path, after=done_before)
        process.send_signal(sig)
        out = process.communicate(timeout=120)[0]
        assert process.returncode == code, out
        assert "Traceback" not in out and f"interrupted ({sig.name})" in out
        trials = assert_nothing_left_running(tmp_path, "slow")  # at once: no heartbeat grace to wait for
        assert trials[-1].state == TrialState.FAIL and sig.name in trials[-1].user_attrs["fail_reason"]
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
        parent = client.search_runs([client.get_experiment_by_name("slow").experiment_id],
                                    "tags.`hpo.role` = 'study'", order_by=["attributes.start_time DESC"])[0]
        assert parent.info.status == "KILLED"
    last = hpo("run", str(study_file), cwd=tmp_path)
    assert last.returncode == 0
    trials = assert_nothing_left_running(tmp_path, "slow")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3


@pytest.mark.slow  # several hpo processes, signals and kills
def test_a_killed_worker_trial_is_failed_at_once_by_the_rerun(tmp_path):
    study_file = write_study(tmp_path, dict(SLOW, name="killed", budget=dict(SLOW["budget"], trials=4)))
    process = start("run", str(study_file), "--gpus", "cpu", "--trials-per-gpu", "2", cwd=tmp_path,
                    new_session=True)
    wait_for_running_trial(tmp_path)
    os.killpg(process.pid, signal.SIGKILL)  # the parent and both workers, as a lost machine would
    process.communicate(timeout=60)
    left = [t for t in stored(tmp_path, "killed").trials if t.state == TrialState.RUNNING]
    assert left, "the kill left no trial RUNNING: nothing to test"

    started = time.time()
    out = hpo("run", str(study_file), "--no-retrain", cwd=tmp_path).stdout
    for trial in left:  # (a trial whose claim the kill cut short has no process yet: failed after CLAIM_S)
        who = f"process {trial.user_attrs['hpo.pid']}" if "hpo.pid" in trial.user_attrs else "a process killed"
        assert f"trial {trial.number} was left RUNNING by {who}" in out
    assert "which no longer exists: marked FAIL" in out
    parent_line = next(line for line in out.splitlines() if line.startswith("MLflow run killed-study"))
    assert "no longer exists): ended FAILED" in parent_line
    trials = assert_nothing_left_running(tmp_path, "killed")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4
    assert {t.number for t in trials if t.state == TrialState.FAIL} == {t.number for t in left}
    failed_at = [t.datetime_complete.timestamp() for t in trials if t.state == TrialState.FAIL]
    assert max(failed_at) - started < 60, "failed at once, not after the 120 s heartbeat grace"


@pytest.mark.slow  # a process killed between MLflow and Optuna
def test_a_trial_whose_run_finished_before_optuna_heard_keeps_its_result(tmp_path):
    """A process that trained a trial, closed its MLflow run as finished and died before telling Optuna: the
    rerun records the trial with the result the run logged instead of throwing it away."""
    import socket

    study_file = write_study(tmp_path, dict(RANDOM_START, name="recover", budget={"trials": 1, "epochs": 1}))
    hpo("run", str(study_file), "--no-retrain", cwd=tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {"hpo.host": socket.gethostname(), "hpo.pid": dead.stdout.strip(), "hpo.pid_started": ""}

    study = stored(tmp_path, "recover")
    trial = study.ask()
    trial.suggest_float("lr", 1.0e-3, 1.0e-1, log=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.get_experiment_by_name("recover").experiment_id,
                            tags={"hpo.role": "trial", "hpo.trial": str(trial.number), "hpo.state": "COMPLETE",
                                  **owner})
    client.log_metric(run.info.run_id, "val_accuracy_final", 0.4321)
    client.set_terminated(run.info.run_id, "FINISHED")
    for key, value in {**owner, "mlflow_run_id": run.info.run_id}.items():
        trial.set_user_attr(key, value)

    out = hpo("run", str(study_file), "--trials", "2", "--no-retrain", cwd=tmp_path).stdout
    assert (f"trial 1 was left RUNNING by process {owner['hpo.pid']}, which no longer exists: recorded as "
            f"COMPLETE with the result its MLflow run logged") in out
    trials = stored(tmp_path, "recover").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]  # the budget: no third
    assert trials[1].value == 0.4321


def test_a_signal_while_a_trial_is_claimed_fails_that_trial(tmp_path):
    """Ctrl-C between Optuna creating a trial and the trial naming its process would leave a RUNNING trial no
    rerun could tell was dead (and every later run waiting for it): the signal waits, then fails the trial."""
    from hpo.core.interrupts import Interrupted, interrupts_raise
    from hpo.spec.study_file import load_study
    from hpo.study.claims import claim_trial
    from hpo.study.storage import open_storage, open_study

    spec = load_study(write_study(tmp_path, RANDOM_START))
    study = open_study(spec, open_storage(f"sqlite:///{tmp_path}/hpo.db"))
    ask = study.ask

    def ask_then_interrupt(*args, **kwargs):
        trial = ask(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the claim
        return trial

    study.ask = ask_then_interrupt
    with interrupts_raise():
        try:
            claim_trial(study, budget=9)
        except Interrupted:
            pass
        else:
            raise AssertionError("the signal was lost")
    [trial] = stored(tmp_path, "startup").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["hpo.pid"] == str(os.getpid())

    # The signal was this command's: a later command in the same process (the Python API, a notebook) that
    # fails on bad input says so, not "interrupted".
    from hpo.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [1]\n")
    assert main(["check", str(bad)]) == 2
