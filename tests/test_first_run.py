"""The first ``hpo run`` in an empty folder, stopped with Ctrl-C at any moment, loses nothing: the rerun
finishes the study.

The first seconds create both stores (MLflow's schema in dozens of migrations, Optuna's in a few
statements); a Ctrl-C among them once left an ``mlflow.db`` that every later command refused. Twenty moments
spread over the first 10 s cover the imports, both schemas, the experiment, the trials and the retrain of a
study that takes about as long.
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
MOMENTS = [0.25 + 0.5 * i for i in range(20)]  # seconds after the start
FAST = {1.25, 2.25, 3.25}  # within the stores' creation on the machines measured: in the fast lane


@pytest.mark.parametrize("moment", [pytest.param(m, marks=() if m in FAST else pytest.mark.slow) for m in MOMENTS])
def test_ctrl_c_in_the_first_seconds_of_a_first_run_loses_nothing(tmp_path, moment):
    study_file = write_study(tmp_path, SHORT_STUDY)
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    first = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file)], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(moment)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode in (0, 130, -signal.SIGINT), err  # finished already, stopped, or before the handler
    assert "Traceback" not in err or first.returncode == -signal.SIGINT, err

    again = hpo("run", str(study_file), cwd=tmp_path)
    assert "next: hpo promote first" in again.stdout
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("first").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert not list(tmp_path.glob(".*.creating-*")), "a creation cut short was left behind"
