"""The first ``hpo run`` in an empty folder, stopped with Ctrl-C at any moment, loses nothing: the rerun
finishes the study.

The first seconds import torch and MLflow and create both stores (MLflow's schema in dozens of migrations,
Optuna's in a few statements); a Ctrl-C among them once left an ``mlflow.db`` that every later command refused,
and one inside a migration's table copy came out as a crash (alembic cleaned up on the broken connection).
The Ctrl-C lands at named steps, whatever the machine's speed: the run's own SQL statements send it (through
SQLAlchemy's public ``before_cursor_execute`` event), so each test hits the same step on a slow CI machine as
here. A timed moment covers the imports before the first statement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import hpo, write_study

SHORT_STUDY = {"name": "first", "seed": 3, "data": "digits", "model": {"name": "digits_cnn", "width": 4},
               "budget": {"trials": 2, "epochs": 1, "retrain": {"epochs": 1}},
               "search": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}}

# `python -c CUT PREFIX N STUDY`: hpo run STUDY, with a Ctrl-C sent to itself at its Nth SQL statement that
# starts with PREFIX (in either store); the file `cut` says it was sent.
CUT = """
import os, signal, sys
import sqlalchemy.event
from sqlalchemy.engine import Engine
prefix, wanted, seen = sys.argv[1], int(sys.argv[2]), []
def cut(conn, cursor, statement, *rest):
    if statement.lstrip().startswith(prefix):
        seen.append(statement)
        if len(seen) == wanted:
            open("cut", "w").close()
            os.kill(os.getpid(), signal.SIGINT)
sqlalchemy.event.listen(Engine, "before_cursor_execute", cut)
from hpo.cli import main
sys.exit(main(["run", sys.argv[3]]))
"""

# The step: (the statement's first words, which one). Optuna's schema and MLflow's first migration are built
# by the same code as the migrations below (hpo/stores/creation.py): not repeated, each case costs two runs.
STEPS = {
    "a migration's table copy": ("INSERT INTO _alembic_tmp_", 1),
    "a late migration": ("UPDATE alembic_version", 33),
    "the parent run": ("INSERT INTO runs", 1),
    "the first trial": ("INSERT INTO trials", 1),
    "the retrain's run": ("INSERT INTO runs", 4),
}
FAST = {"a migration's table copy", "the first trial"}


def _env():
    return {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}


def _rerun_finishes(tmp_path, study_file):
    again = hpo("run", str(study_file), cwd=tmp_path)
    assert "next: hpo promote first" in again.stdout
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("first").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert not list(tmp_path.glob(".*.creating-*")), "a creation cut short was left behind"


@pytest.mark.parametrize("step", [pytest.param(s, marks=() if s in FAST else pytest.mark.slow) for s in STEPS])
def test_ctrl_c_at_any_step_of_a_first_run_loses_nothing(tmp_path, step):
    study_file = write_study(tmp_path, SHORT_STUDY)
    prefix, which = STEPS[step]
    first = subprocess.run([sys.executable, "-c", CUT, prefix, str(which), str(study_file)], cwd=tmp_path,
                           env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert (tmp_path / "cut").exists(), f"the run never reached {step} ({prefix!r} #{which})"
    assert first.returncode == 130, first.stderr
    assert first.stderr.strip().splitlines()[-1] == \
        "hpo run: interrupted (SIGINT); nothing is left RUNNING; rerun the same command to resume", first.stderr
    assert "Traceback" not in first.stderr, first.stderr
    _rerun_finishes(tmp_path, study_file)


@pytest.mark.slow
def test_ctrl_c_during_the_imports_loses_nothing(tmp_path):
    study_file = write_study(tmp_path, SHORT_STUDY)
    first = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=tmp_path, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # torch and sklearn are being imported: no statement yet
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode in (0, 130, -signal.SIGINT), err  # finished already, stopped, or before the handler
    assert "Traceback" not in err or first.returncode == -signal.SIGINT, err
    _rerun_finishes(tmp_path, study_file)
