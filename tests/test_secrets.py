"""A password in a store URL is never shown: not on the console, in MLflow params or tags, in `hpo show`,
in a checkpoint, nor on a worker's command line (``ps``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from hpo.core.masking import masked

from helpers import TINY_STUDY, free_port, hpo, start_mlflow_server, stop_mlflow_server, write_study

SECRET = "s3cr3t-pw"


def test_masked():
    assert masked(f"postgresql+psycopg://u:{SECRET}@db:5432/hpo") == "postgresql+psycopg://u:***@db:5432/hpo"
    assert masked(f"a http://u:p@t:{SECRET}@h:5000/x b") == "a http://u:***@h:5000/x b"  # '@' in the password
    for plain in ("sqlite:///hpo.db", "http://127.0.0.1:5000/path", "postgresql://u@host/db"):
        assert masked(plain) == plain


def all_command_lines() -> str:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            pass
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (it ignores the credentials; the URL still carries them)."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    server = start_mlflow_server(root, port)
    yield f"http://hpo:{SECRET}@127.0.0.1:{port}"
    stop_mlflow_server(server)


@pytest.mark.slow  # an MLflow server
def test_a_password_in_the_tracking_uri_is_never_shown(tracking_server, tmp_path):
    study = dict(TINY_STUDY, name="secret", budget={"trials": 4, "epochs": 2, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "HPO_ARTIFACTS")}
    env.update(MLFLOW_TRACKING_URI=tracking_server, PYTHONUNBUFFERED="1")
    run = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file), "--gpus", "cpu",
                            "--trials-per-gpu", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    command_lines = []
    while run.poll() is None:  # every process's command line while the workers run (what ps shows, unwrapped)
        command_lines.append(all_command_lines())
        time.sleep(0.5)
    out, err = run.communicate()
    assert run.returncode == 0, out + err
    assert any("--worker-of" in lines for lines in command_lines), "no worker was seen running"
    assert SECRET not in "".join(command_lines)
    assert SECRET not in out + err and "hpo:***@127.0.0.1" in out

    promoted = hpo("promote", "secret", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": tracking_server})
    shown = hpo("show", "secret", "--json", cwd=tmp_path)
    assert SECRET not in promoted.stdout + promoted.stderr + shown.stdout
    checkpoint = torch.load(tmp_path / "checkpoints" / "secret-v1.pt", weights_only=True)
    assert SECRET not in json.dumps({k: v for k, v in checkpoint.items() if k != "state_dict"}, default=str)

    client = MlflowClient(tracking_uri=tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("secret").experiment_id], max_results=100)
    assert len(runs) == 1 + 4 + 1  # parent, trials, retrain
    for r in runs:
        assert SECRET not in json.dumps([r.data.params, r.data.tags, r.info.run_name])


def test_a_password_in_the_storage_url_is_never_shown(tmp_path):
    url = f"postgresql://hpo:{SECRET}@127.0.0.1:1/hpo"  # nothing listens there: the error must hide it too
    for args in (("show", "tiny"), ("run", str(write_study(tmp_path, TINY_STUDY)), "--no-tracking")):
        result = hpo(*args, "--storage", url, cwd=tmp_path, check=False)
        assert result.returncode == 2, result.stderr
        assert SECRET not in result.stdout + result.stderr and "hpo:***@127.0.0.1" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
