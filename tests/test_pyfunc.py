"""The registered model as MLflow users take it: ``mlflow.pyfunc.load_model`` and ``mlflow models serve``, on the
tiny study's champion, against ``hpo predict`` on the same image files."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import copy_study_folder, hpo, mlflow_models_serve

N_IMAGES = 6


@pytest.fixture(scope="module")
def champion(tiny_run, tmp_path_factory):
    """The tiny study's retrain run promoted by id (``--run``), image files of digits, and what ``hpo predict``
    says about them with the checkpoint that promote wrote."""
    from PIL import Image
    from sklearn.datasets import load_digits

    work = tiny_run["dir"]
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    retrain = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'retrain'",
                                 order_by=["attributes.start_time ASC"])[0]
    files_dir = tmp_path_factory.mktemp("pyfunc")
    checkpoint = files_dir / "champion.pt"
    hpo("promote", "tiny", "--run", retrain.info.run_id, "--output", str(checkpoint), cwd=work)
    version = client.get_model_version_by_alias("tiny", "champion")
    assert version.run_id == retrain.info.run_id

    digits = load_digits()
    files = []
    for i in range(N_IMAGES):  # 8x8 like the data set, and one larger image that is resized as hpo predict does
        pixels = (digits.images[i] * 255 / 16).round().astype(np.uint8)
        image = Image.fromarray(pixels).resize((24, 24)) if i == N_IMAGES - 1 else Image.fromarray(pixels)
        path = files_dir / f"digit{i}.png"
        image.save(path)
        files.append(str(path))
    predicted = [json.loads(line) for line in
                 hpo("predict", str(checkpoint), *files, "--json", cwd=work).stdout.splitlines()]
    return {"dir": work, "files": files, "predicted": predicted}


def image_frame(files) -> pd.DataFrame:
    return pd.DataFrame({"image": [open(f, "rb").read() for f in files]})


def assert_same_as_hpo_predict(rows: list[dict], predicted: list[dict]) -> None:
    assert [r["class"] for r in rows] == [p["class"] for p in predicted]
    assert [r["probability"] for r in rows] == pytest.approx([p["probability"] for p in predicted], abs=1e-6)
    for row in rows:
        assert list(row["probabilities"]) == [str(i) for i in range(10)]
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["probabilities"][row["class"]] == row["probability"]


def test_pyfunc_load_model_predicts_as_hpo_predict(champion, monkeypatch):
    import mlflow

    monkeypatch.chdir(champion["dir"])  # the artifact locations are relative to the store's folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{champion['dir']}/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    out = model.predict(image_frame(champion["files"]))
    assert_same_as_hpo_predict(out.to_dict("records"), champion["predicted"])


# Where MLflow keeps a location, table by table (the Model Registry's versions keep two).
LOCATIONS = {"experiments": "artifact_location", "runs": "artifact_uri", "logged_models": "artifact_location",
             "model_versions": "storage_location"}


def test_a_copied_study_folder_loads_and_promotes_from_its_own_files(champion, tmp_path, monkeypatch):
    """The study's folder copied elsewhere, as a user takes it to another machine: its MLflow store names no path
    of the original folder, and in the copy the registered model loads and predicts, and promote works."""
    import contextlib
    import sqlite3

    import mlflow

    original = champion["dir"]
    copy = copy_study_folder(original, tmp_path / "copied")

    def select(db, table: str, columns: str = "*") -> list:
        ours = " where name != 'Default'" if table == "experiments" else ""  # MLflow's own, which hpo never uses
        return db.execute(f"select {columns} from {table}{ours}").fetchall()

    with contextlib.closing(sqlite3.connect(copy / "mlflow.db")) as db:
        rows = {table: select(db, table) for table in LOCATIONS}
        locations = [row[0] for table, column in LOCATIONS.items() for row in select(db, table, column)]
    assert all(rows.values()), rows  # an experiment, runs, logged models and versions to look at
    assert not [row for table in rows.values() for row in table if str(original) in repr(row)]
    assert all(location == "mlartifacts" or location.startswith("mlartifacts/") for location in locations), locations

    monkeypatch.chdir(copy)  # what docs/stores.md says: work from the study's folder
    # (its absolute path: MLflow keeps one store per URI for the process, and sqlite:///mlflow.db may be another's)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy}/mlflow.db")
    client = MlflowClient()
    version = client.get_model_version_by_alias("tiny", "champion")
    assert (copy / client.get_model_version_download_uri("tiny", version.version) / "MLmodel").is_file()
    out = mlflow.pyfunc.load_model("models:/tiny@champion").predict(image_frame(champion["files"]))
    assert_same_as_hpo_predict(out.to_dict("records"), champion["predicted"])

    hpo("promote", "tiny", "--output", str(tmp_path / "again.pt"), cwd=copy)
    promoted = client.get_model_version_by_alias("tiny", "champion")
    assert int(promoted.version) == int(version.version) + 1
    new_model = client.get_model_version_download_uri("tiny", promoted.version)
    assert new_model.startswith("mlartifacts/models/") and (copy / new_model / "MLmodel").is_file()
    assert not (original / new_model).exists()  # written into the copy, not beside the original


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.mark.slow  # mlflow models serve
def test_mlflow_models_serve_answers_images_over_http(champion, tmp_path):
    with mlflow_models_serve("models:/tiny@champion", champion["dir"], tmp_path / "serve.log") as port:
        # The request format of docs/retrain-and-serve.md: a dataframe_split with one column of base64 image files.
        images = [[base64.b64encode(open(f, "rb").read()).decode()] for f in champion["files"]]
        status, answer = post(port, {"dataframe_split": {"columns": ["image"], "data": images}})
        assert status == 200, answer
        assert_same_as_hpo_predict(answer["predictions"], champion["predicted"])

        status, answer = post(port, {"dataframe_split": {"columns": ["image"],
                                                         "data": [[base64.b64encode(b"not an image").decode()]]}})
        assert status == 400 and "image of row 0: cannot be read as an image" in answer["message"]


def test_promote_refuses_a_run_that_is_not_a_retrain(champion):
    client = MlflowClient(tracking_uri=f"sqlite:///{champion['dir']}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    trial = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'trial'")[0]
    result = hpo("promote", "tiny", "--run", trial.info.run_id, cwd=champion["dir"], check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--run {trial.info.run_id}: not a finished retrain run of study 'tiny'" in lines[0]
    retrains = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'retrain'")
    assert all(r.info.run_id in lines[0] for r in retrains if r.info.status == "FINISHED")


@pytest.mark.slow  # several hpo promote, stopped at chosen moments
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_a_promote_stopped_at_any_moment_leaves_all_of_it_or_nothing(tiny_run, tmp_path, how):
    """Ctrl-C or a kill at moments spread over ``hpo promote``: afterwards (and after the next promote's clean-up,
    for a kill) either the new version exists with the alias on it and its checkpoint written, or there is no
    new version, the alias is where it was and no file; the next promote then works."""
    import signal

    import optuna  # noqa: F401  (the study's storage is copied with the folder)

    work = copy_study_folder(tiny_run["dir"], tmp_path / "study")
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")

    def state():
        versions = {v.version: v for v in client.search_model_versions("name = 'tiny'")}
        champion = client.get_model_version_by_alias("tiny", "champion").version
        return versions, champion

    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    for moment in (2.0, 3.5, 5.0):
        before, champion_before = state()
        output = work / f"out-{how}-{moment}.pt"
        process = subprocess.Popen([sys.executable, "-m", "hpo", "promote", "tiny", "--output", str(output)], cwd=work,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(moment)
        process.send_signal(getattr(signal, how))
        _, err = process.communicate(timeout=120)
        if how == "SIGKILL":  # the next promote's first step undoes what the killed one left, even when it then
            # refuses its own input (a run id of no run)
            refused = hpo("promote", "tiny", "--run", "0" * 32, cwd=work, check=False)
            assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        else:
            assert "Traceback" not in err, err
            assert process.returncode in (0, 130, -signal.SIGINT), err  # -2: before hpo started, or after it ended
        after, champion_after = state()
        new = set(after) - set(before)
        if new:  # all of it
            [version] = new
            assert champion_after == version and output.is_file(), (process.returncode, err)
            assert after[version].tags["hpo.promotion"] == "done"
        else:  # or nothing: the alias back where it was, no file
            assert process.returncode != 0 and champion_after == champion_before and not output.exists(), err
        assert not list(work.glob(".*.partial"))
    hpo("promote", "tiny", cwd=work)  # and the store takes the next promotion
