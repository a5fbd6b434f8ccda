"""Several machines on one study: a real PostgreSQL for the study, a real MLflow server backed by PostgreSQL.

Each "machine" is an `hpo run` in a folder of its own, with a temp folder and a state folder of its own,
so no file lock is shared: the exact budget can only come from the database's advisory lock. The
commands are docs/scaling.md's. Where PostgreSQL is not installed the tests skip with the
reason; `.ci/run` installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest

from helpers import TINY_STUDY, free_port, start_mlflow_server, stop_mlflow_server, write_study

pytestmark = pytest.mark.slow  # a PostgreSQL server, an MLflow server and several hpo run at once


def postgres_binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgreSQL(str):
    """The server's base URL (``postgresql+psycopg://hpo@127.0.0.1:PORT``), which can restart it."""

    def __new__(cls, url: str, restart_command: list[str]):
        server = super().__new__(cls, url)
        server.restart_command = restart_command
        return server

    def restart(self) -> None:  # (no pipes: the new server would hold them open)
        subprocess.run(self.restart_command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A PostgreSQL server on 127.0.0.1 with the databases ``studies`` and ``mlflow``; yields its base URL."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="hpo-postgres-"))  # not under pytest's folder: the postgres user reads it
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a postgres user to start PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run([*as_user, initdb, "-D", str(root / "data"), "-A", "trust", "-U", "hpo"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=hpo dbname=postgres", autocommit=True) as db:
            for name in ("studies", "mlflow"):
                db.execute(f"create database {name}")
        yield PostgreSQL(f"postgresql+psycopg://hpo@127.0.0.1:{port}",
                         [*as_user, pg_ctl, "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-m", "fast",
                          "restart"])
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(root / "data"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    """``mlflow server`` backed by PostgreSQL, serving artifacts: docs/scaling.md's command."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = start_mlflow_server(root, port, backend_store_uri=f"{postgres}/mlflow")
    yield f"http://127.0.0.1:{port}"
    stop_mlflow_server(server)


def test_three_machines_share_one_exact_budget(postgres, tracking_server, tmp_path):
    budget = 9
    study = dict(TINY_STUDY, name="scaled", budget={"trials": budget, "epochs": 2, "retrain": {"epochs": 1}})
    machines = []
    for index in range(3):
        work = tmp_path / f"machine-{index}"
        (work / "tmp").mkdir(parents=True)
        study_file = write_study(work, study)
        env = {k: v for k, v in os.environ.items() if k not in ("HPO_ARTIFACTS",)}
        env.update(HPO_STORAGE=f"{postgres}/studies", MLFLOW_TRACKING_URI=tracking_server, TMPDIR=str(work / "tmp"),
                   HPO_STATE=str(work / "hpo-state"), PYTHONUNBUFFERED="1")
        machines.append(subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=work, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [machine.communicate(timeout=900)[0] for machine in machines]
    assert [m.returncode for m in machines] == [0, 0, 0], "\n\n".join(outputs)
    assert all("Traceback" not in out for out in outputs)

    trials = optuna.load_study(study_name="scaled", storage=f"{postgres}/studies").trials
    finished = [t for t in trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == budget and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert len({t.number for t in trials}) == len(trials)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("scaled").experiment_id], max_results=1000)
    roles = Counter(r.data.tags.get("hpo.role") for r in runs)
    per_trial = Counter(r.data.tags["hpo.trial"] for r in runs if r.data.tags.get("hpo.role") == "trial")
    assert roles["study"] == 3 and roles["retrain"] == 1, roles  # one parent per machine, one retrain in all
    assert sorted(per_trial) == sorted(str(t.number) for t in trials) and set(per_trial.values()) == {1}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = {r.info.run_id for r in runs if r.data.tags.get("hpo.role") == "study"}
    assert all(r.data.tags.get("mlflow.parentRunId") in parents for r in runs if r.data.tags.get("hpo.role") == "trial")
    worked = [sum(line.startswith("trial ") for line in out.splitlines()) for out in outputs]
    assert sum(worked) == len(trials), worked  # each trial run by one machine
    retrain = next(r for r in runs if r.data.tags.get("hpo.role") == "retrain")
    assert retrain.info.artifact_uri.startswith("mlflow-artifacts:"), retrain.info.artifact_uri  # on the server
    assert not any(Path(tmp_path).glob("machine-*/mlartifacts"))


def test_a_database_restarted_under_a_running_study_is_waited_for(postgres, tmp_path):
    """PostgreSQL restarts (every connection dropped) while a trial trains: the study waits and goes on."""
    study = dict(TINY_STUDY, name="restarted", budget={"trials": 6, "epochs": 3, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    env.update(HPO_STORAGE=f"{postgres}/studies", PYTHONUNBUFFERED="1")
    run = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith("trial    1 "):
            postgres.restart()
    run.wait(timeout=600)
    output = "".join(lines)
    assert run.returncode == 0 and "Traceback" not in output, output
    trials = optuna.load_study(study_name="restarted", storage=f"{postgres}/studies").trials
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 6
    assert not [t for t in trials if t.state.name == "RUNNING"]


def test_a_trial_killed_on_one_machine_resumes_on_another(postgres, tracking_server, tmp_path):
    """Machine A is SIGKILLed inside trial 0 once the tracking server holds its state after an epoch; machine B,
    with a state folder of its own, retries it from that state (downloaded from A's run), not from epoch 0."""
    import time

    from mlflow.tracking import MlflowClient

    study = dict(TINY_STUDY, name="moved", model={"name": "digits_cnn", "width": 32}, enqueue=TINY_STUDY["enqueue"][:1],
                 budget={"trials": 2, "epochs": 6, "retrain": {"epochs": 1}}, pruner={"name": "none"})
    client = MlflowClient(tracking_server)

    def machine(name):
        work = tmp_path / name
        (work / "tmp").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in ("HPO_ARTIFACTS", "MLFLOW_TRACKING_URI")}
        env.update(HPO_STORAGE=f"{postgres}/studies", TMPDIR=str(work / "tmp"), HPO_STATE=str(work / "hpo-state"))
        return subprocess.Popen([sys.executable, "-m", "hpo", "run", str(write_study(work, study)), "--no-retrain",
                                 "--tracking-uri", tracking_server],  # (not in the environment: as a user may)
                                cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kept_on_server() -> bool:
        experiment = client.get_experiment_by_name("moved")
        runs = client.search_runs([experiment.experiment_id], "tags.`hpo.trial` = '0'") if experiment else []
        return bool(runs) and any(f.path == "hpo-state/trial-0.pt"
                                  for f in client.list_artifacts(runs[0].info.run_id, "hpo-state"))

    a = machine("a")
    deadline = time.time() + 300
    while not kept_on_server() and a.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    a.kill()
    a.wait()
    storage = f"{postgres}/studies"
    assert optuna.load_study(study_name="moved", storage=storage).trials[0].state.name == "RUNNING", \
        "machine A was to be killed inside trial 0"
    import torch

    [dead_run] = client.search_runs([client.get_experiment_by_name("moved").experiment_id], "tags.`hpo.trial` = '0'")
    kept = torch.load(client.download_artifacts(dead_run.info.run_id, "hpo-state/trial-0.pt", str(tmp_path)),
                      weights_only=True)["trainer"]["epoch"]

    b = machine("b")
    out = b.communicate(timeout=600)[0]
    assert b.returncode == 0 and "Traceback" not in out, out
    trials = optuna.load_study(study_name="moved", storage=storage).trials
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert retry.state.name == "COMPLETE" and retry.user_attrs["resumed_after_epoch"] == kept >= 1, (kept, out)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    runs = client.search_runs([client.get_experiment_by_name("moved").experiment_id], "tags.`hpo.role` = 'trial'")
    assert all(not client.list_artifacts(r.info.run_id, "hpo-state") for r in runs), "the copies go with the line"
    assert not (tmp_path / "b" / "hpo-state").exists()
