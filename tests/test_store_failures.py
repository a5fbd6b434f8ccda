"""Failing stores, for real: a read-only folder, a full disk (small tmpfs mounts), an MLflow server that goes away.

Mounting needs root; where it cannot be done the mount tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from test_bad_input import assert_refused, store_state

from helpers import TINY_STUDY, free_port, start_mlflow_server, stop_mlflow_server, write_study


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int):
    """A tmpfs of ``size_kib`` mounted at ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root, and these tests run as another user")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path, leave_bytes: int = 0) -> None:
    """Fill the file system of ``path`` until about ``leave_bytes`` are free (0: until no write succeeds)."""
    handle = os.open(path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for block in (1 << 20, 4096, 512, 1):
            while not leave_bytes or shutil.disk_usage(path).free - block >= leave_bytes:
                try:
                    os.write(handle, b"\0" * block)
                except OSError:  # ENOSPC: on to a smaller block
                    break
    finally:
        os.close(handle)


def hpo_in(work: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    environ.update(env or {}, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=work, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def copy_stores(source: Path, target: Path) -> None:
    for name in ("hpo.db", "mlflow.db"):
        shutil.copy(source / name, target / name)
    shutil.copytree(source / "mlartifacts", target / "mlartifacts")


def test_a_locked_database_is_retried_until_it_is_free(tmp_path):
    """A real SQLite lock held by another connection for a second: the write waits it out (retried)."""
    import sqlite3
    import threading

    from hpo.stores.retry import retried

    db = tmp_path / "locked.db"
    with sqlite3.connect(db) as setup:
        setup.execute("create table t (x)")
    holder = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    holder.execute("begin exclusive")
    threading.Timer(1.0, holder.execute, ["rollback"]).start()
    attempts = []

    def write():
        attempts.append(1)
        with sqlite3.connect(db, timeout=0.05) as connection:
            connection.execute("insert into t values (1)")

    retried("a test database", write)
    assert len(attempts) > 1  # it was locked at first
    with sqlite3.connect(db) as check:
        assert check.execute("select count(*) from t").fetchone() == (1,)
    holder.close()


def test_a_lock_that_outlasts_the_retries_is_one_clear_error(tmp_path, monkeypatch):
    import sqlite3

    from hpo.stores import retry

    monkeypatch.setattr(retry, "DELAYS_S", (0.01, 0.01))
    db = tmp_path / "locked.db"
    with sqlite3.connect(db) as setup:
        setup.execute("create table t (x)")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("begin exclusive")

    def write():
        with sqlite3.connect(db, timeout=0.01) as connection:
            connection.execute("insert into t values (1)")

    with pytest.raises(retry.StoreUnavailable, match="a test database: still failing after 0.02 s of "
                                                     "retries .OperationalError: database is locked"):
        retry.retried("a test database", write)
    holder.close()


def test_only_the_outermost_retry_waits(monkeypatch):
    """A step retried as a whole (a claim, under its lock) whose writes are retried too: a passing failure
    inside goes out to the whole step's retry, which starts it again, instead of waiting inside it."""
    from hpo.stores import retry

    monkeypatch.setattr(retry, "DELAYS_S", (0.01, 0.01, 0.01))
    calls = {"step": 0, "write": 0}

    def write():
        calls["write"] += 1
        if calls["write"] < 3:
            raise OSError("database is locked")
        return "written"

    def step():
        calls["step"] += 1
        return retry.retried("a write", write)

    assert retry.retried("a step", step) == "written"
    assert calls == {"step": 3, "write": 3}


def test_a_full_disk_is_not_retried_and_other_errors_are_raised_as_they_are():
    import errno

    from hpo.stores.retry import StoreUnwritable, retried

    calls = []

    def full():
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreUnwritable, match="its disk is full"):
        retried("a store", full)
    assert len(calls) == 1

    def broken():
        calls.append(1)
        raise KeyError("a bug, not a store")

    with pytest.raises(KeyError):
        retried("a store", broken)
    assert len(calls) == 2


def test_a_read_only_folder_is_refused_in_one_line_and_nothing_is_written_elsewhere(tiny_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study_file = str(tiny_run["study_file"])
    with tmpfs(tmp_path / "ro", 16 * 1024) as folder:
        copy_stores(tiny_run["dir"], folder)
        remount_read_only(folder)
        before = store_state(folder)
        cases = [
            (("run", study_file), "--storage / HPO_STORAGE: cannot write hpo.db"),
            (("run", study_file, "--storage", f"sqlite:///{elsewhere}/hpo.db"),
             "--tracking-uri / MLFLOW_TRACKING_URI: cannot write mlflow.db"),
            (("run", study_file, "--storage", f"sqlite:///{elsewhere}/hpo.db", "--tracking-uri",
              f"sqlite:///{elsewhere}/mlflow.db"), "HPO_STATE: cannot write hpo-state"),
            (("retrain", "tiny"), "--storage / HPO_STORAGE: cannot write hpo.db"),
            (("promote", "tiny"), "--storage / HPO_STORAGE: cannot write hpo.db"),
            (("promote", "tiny", "--storage", f"sqlite:///{elsewhere}/x.db", "--tracking-uri",
              f"sqlite:///{elsewhere}/m.db"), "--output: cannot write checkpoints"),
            (("lr-find", study_file, "--steps", "5"), "--output: cannot write lr-find-tiny.png"),
        ]
        for argv, message in cases:
            result = hpo_in(folder, *argv)
            assert_refused(result, message, "is on a read-only file system")
        result = hpo_in(folder, "run", study_file, "--storage", f"sqlite:///{elsewhere}/hpo.db", "--tracking-uri",
                        f"sqlite:///{elsewhere}/mlflow.db", env={"HPO_STATE": str(elsewhere / "state")})
        assert_refused(result, "--artifacts / HPO_ARTIFACTS: cannot write", "is on a read-only file system")
        assert store_state(folder) == before
    assert list(elsewhere.iterdir()) == []


def test_a_full_disk_is_refused_before_any_work(tiny_run, tmp_path):
    with tmpfs(tmp_path / "full", 8 * 1024) as folder:
        copy_stores(tiny_run["dir"], folder)
        fill(folder, leave_bytes=256 * 1024)
        before = store_state(folder)
        for argv in (("run", str(tiny_run["study_file"])), ("retrain", "tiny"), ("promote", "tiny")):
            assert_refused(hpo_in(folder, *argv), "cannot write hpo.db: its file system has", "KiB free")
        assert store_state(folder) == before


def _is_progress(line: str) -> bool:
    """A progress line on stderr (hpo/search/progress.py): a trial's epoch, or the retrain's."""
    return re.match(r"\s*(trial \d+ )?epoch ", line) is not None


@pytest.mark.slow  # a search, then a rerun
def test_a_disk_that_fills_during_the_search_stops_it_in_one_line_and_a_rerun_finishes(tmp_path):
    study = dict(TINY_STUDY, name="fills", budget={"trials": 5, "epochs": 3, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    with tmpfs(tmp_path / "disk", 16 * 1024) as folder:
        environ = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI")}
        run = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=folder,
                               env={**environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for line in run.stdout:
            if line.startswith("trial "):  # the first trial has finished: now the disk fills up
                fill(folder)
                break
        out, err = run.communicate(timeout=300)
        assert run.returncode == 1, (out, err)
        *progress, last = err.strip().splitlines()
        assert "Traceback" not in err and all(_is_progress(line) for line in progress), err
        assert last.startswith("hpo run: failed: ") and "its disk is full" in last
        assert "run the same command again (hpo run goes on where it stopped)" in err

        (folder / "filler").unlink()  # space freed: the same command goes on
        rerun = hpo_in(folder, "run", str(study_file))
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        study_db = optuna.load_study(study_name="fills", storage=f"sqlite:///{folder}/hpo.db")
        states = [t.state for t in study_db.trials]
        assert optuna.trial.TrialState.RUNNING not in states
        assert sum(s.is_finished() and s != optuna.trial.TrialState.FAIL for s in states) == 5
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        experiment = client.get_experiment_by_name("fills")
        assert client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") == []
        del client, study_db


def test_an_artifact_disk_that_fills_stops_the_retrain_in_one_line_with_every_run_ended(tmp_path):
    """MLflow's database has room, its artifact folder has none left when the retrain writes its checkpoint:
    one line, exit code 1, and every run ended (the trials' with their trials' states)."""
    study = dict(TINY_STUDY, name="art", budget={"trials": 4, "epochs": 2, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    with tmpfs(tmp_path / "artifacts", 4 * 1024) as artifacts:
        environ = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI")}
        run = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file), "--artifacts", str(artifacts)],
                               cwd=tmp_path, env={**environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for line in run.stdout:
            if line.startswith("trial "):  # the parent run's study.yaml is written; now the disk fills up
                fill(artifacts)
                break
        out, err = run.communicate(timeout=300)
    assert run.returncode == 1, (out, err)
    *progress, last = err.strip().splitlines()
    assert "Traceback" not in err and all(_is_progress(line) for line in progress), err
    assert last.startswith("hpo run: failed: MLflow (writing checkpoint.pt for retrain-trial-"), err
    assert "its disk is full" in last
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("art").experiment_id])
    status = {r.info.run_name.split(" ")[0]: r.info.status for r in runs}
    assert "RUNNING" not in status.values(), status
    assert status["art-study"] == "FAILED" and status[next(n for n in status if n.startswith("retrain"))] == "FAILED"
    assert sum(n.startswith("trial-") for n in status) == 4


@pytest.mark.slow  # an MLflow server stopped mid-search
def test_the_tracking_server_going_away_loses_no_trial(tmp_path):
    """MLflow's server stops in the middle of the search and comes back: every trial still reaches Optuna
    with its result, the console says which run lost its logging, and that run says so once MLflow answers."""
    root = tmp_path / "server"
    root.mkdir()
    port = free_port()
    server = start_mlflow_server(root, port)
    uri = f"http://127.0.0.1:{port}"
    study = dict(TINY_STUDY, name="away", budget={"trials": 4, "epochs": 3, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    environ = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "HPO_ARTIFACTS")}
    environ.update(MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1",
                   MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")  # hpo's own retries are what is tested
    run = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=tmp_path, env=environ,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, restarted = [], None
    try:
        for line in run.stdout:
            lines.append(line)
            if line.startswith("trial ") and server is not None and restarted is None:
                stop_mlflow_server(server)  # the next trial's logging finds no server
                server = None
            elif "its logging stops, the training goes on" in line and restarted is None:
                restarted = start_mlflow_server(root, port)  # back while the trial trains on
        run.wait(timeout=600)
    finally:
        for process in (server, restarted):
            if process is not None:
                stop_mlflow_server(process)
    output = "".join(lines)
    assert run.returncode == 0, output
    assert "Traceback" not in output
    study_db = optuna.load_study(study_name="away", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert [t.state.name for t in study_db.trials if t.state.name in ("FAIL", "RUNNING")] == [], output
    assert restarted is not None, output
    lost = [line for line in lines if "its logging stops, the training goes on" in line]
    assert lost and all(line.startswith("hpo: MLflow run trial-") for line in lost), output
    name = lost[0].split()[3].rstrip(":")  # "trial-N"
    server = start_mlflow_server(root, port)
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("away")
        runs = client.search_runs([experiment.experiment_id])
        assert not [r for r in runs if r.info.status == "RUNNING"]
        marked = [r for r in runs if r.info.run_name.split(" ")[0] == name]  # "trial-N pruned" too
        if "creating the run failed" in lost[0]:  # the server was gone before the run was made: there is none
            assert marked == []
        else:  # made before the server went away: once it is back, the run says what went missing
            assert "failed" in marked[0].data.tags["hpo.logging_error"]
    finally:
        stop_mlflow_server(server)
