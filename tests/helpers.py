"""What the tests share: run the real ``hpo`` CLI in a subprocess, write small study files, start servers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# A study small enough for a test (seconds on 2 cores) that still prunes for certain: trials 0-2 are good
# enqueued recipes that finish, trial 3 (lr 3.0 with plain SGD) is hopeless and the median pruner stops it.
TINY_STUDY = {
    "name": "tiny",
    "seed": 7,
    "data": {"name": "digits"},
    "model": {"name": "digits_cnn", "width": 8},
    "budget": {"trials": 6, "epochs": 3, "retrain": {"epochs": 4}},
    "search": {
        "lr": {"low": 1.0e-3, "high": 3.0, "log": True},
        "optimizer": ["adam", "sgd"],
        "momentum": {"low": 0.0, "high": 0.9},
        "batch_size": [32, 64],
    },
    "sampler": {"name": "tpe", "n_startup_trials": 4},
    "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0},
    "enqueue": [
        {"lr": 0.01, "optimizer": "adam", "batch_size": 32},
        {"lr": 0.003, "optimizer": "adam", "batch_size": 32},
        {"lr": 0.05, "optimizer": "sgd", "momentum": 0.9, "batch_size": 32},
        {"lr": 3.0, "optimizer": "sgd", "momentum": 0.0, "batch_size": 64},
    ],
}


def write_study(directory: Path, study: dict, name: str = "study.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def hpo(*args: str, cwd: Path, check: bool = True, timeout: float = 600,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``hpo ARGS`` as a user would, with the stores in ``cwd`` (and ``env`` added to the environment)."""
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    env.update(extra, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"hpo {' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout}\n"
                             f"--- stderr\n{result.stderr}")
    return result


def hpo_json(*args: str, cwd: Path) -> dict:
    return json.loads(hpo(*args, "--json", cwd=cwd).stdout)


def copy_study_folder(source: Path, target: Path) -> Path:
    """A study's folder copied as a user takes it elsewhere: the databases through SQLite's backup (hpo.db may
    have a -wal file beside it), the MLflow artifacts as files. Returns ``target``."""
    import contextlib
    import shutil
    import sqlite3

    target.mkdir(parents=True, exist_ok=True)
    for name in ("hpo.db", "mlflow.db"):
        with contextlib.closing(sqlite3.connect(source / name)) as db, \
                contextlib.closing(sqlite3.connect(target / name)) as copy:
            db.backup(copy)
    shutil.copytree(source / "mlartifacts", target / "mlartifacts")
    return target


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(root: Path, port: int, backend_store_uri: str | None = None) -> subprocess.Popen:
    """A real ``mlflow server`` on 127.0.0.1:``port`` serving artifacts from ``root`` (its own process group,
    for :func:`stop_mlflow_server`); returns once it answers."""
    import time
    import urllib.request

    backend = backend_store_uri or f"sqlite:///{root}/server.db"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", backend, "--artifacts-destination", str(root / "artifacts"),
                               "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                stop_mlflow_server(server)
                pytest.fail("the MLflow server did not start")
            time.sleep(0.3)


@contextlib.contextmanager
def mlflow_models_serve(model_uri: str, store_dir: Path, log_path: Path, timeout: float = 120):
    """``mlflow models serve -m MODEL_URI`` on a free port, run from the store's folder (the artifact locations
    are relative to it), logging to a file (not a pipe: a server that logs much never blocks on it); yields the
    port once /ping answers, and stops the server after."""
    import time
    import urllib.request

    port = free_port()
    with open(log_path, "wb") as log:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store_dir}/mlflow.db"}
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
                                   "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                                  cwd=store_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.time() > deadline:
                        pytest.fail(f"mlflow models serve did not answer /ping:\n{log_path.read_text()[-2000:]}")
                    time.sleep(0.5)
            yield port
        finally:
            stop_mlflow_server(server)


def stop_mlflow_server(server: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
    except ProcessLookupError:
        pass
    server.wait(timeout=30)
