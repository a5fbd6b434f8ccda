"""The whole life of a study through the CLI, in subprocesses, on real digits, Optuna, MLflow and torch."""

from __future__ import annotations

import pytest

import json
import sqlite3

import numpy as np
import optuna
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import TINY_STUDY, hpo, hpo_json, write_study


def stored_study(directory, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{directory}/hpo.db")


def mlflow_client(directory):
    return MlflowClient(tracking_uri=f"sqlite:///{directory}/mlflow.db")


def test_run_finishes_every_trial_and_prunes(tiny_run):
    study = stored_study(tiny_run["dir"])
    states = [t.state for t in study.trials]
    assert len(states) == TINY_STUDY["budget"]["trials"]
    assert TrialState.RUNNING not in states
    assert states[3] == TrialState.PRUNED, "the hopeless enqueued trial must be pruned"
    assert study.trials[3].user_attrs["prune_reason"].startswith(("pruned by the median pruner", "diverged"))
    assert study.best_value > 0.8
    out = tiny_run["run"].stdout
    assert "trial    3  PRUNED" in out and "retrain of trial" in out
    # The retrain line lists the hyperparameters that apply: momentum only with SGD, nothing left at its default.
    line = next(line for line in out.splitlines() if line.startswith("retraining trial"))
    shown = dict(part.split("=") for part in line.split(": ", 1)[1].split(", "))
    assert ("momentum" in shown) == (shown["optimizer"] in ("sgd", "rmsprop"))
    assert set(shown) <= {"lr", "optimizer", "momentum", "batch_size"}


def test_mlflow_has_parent_nested_trials_and_retrain(tiny_run, monkeypatch):
    monkeypatch.chdir(tiny_run["dir"])  # MLflow finds the artifacts from the store's folder (docs/stores.md)
    client = mlflow_client(tiny_run["dir"])
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent_id = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    assert len(children) == TINY_STUDY["budget"]["trials"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in children)

    study = stored_study(tiny_run["dir"])
    by_id = {r.info.run_id: r for r in children}
    for trial in study.trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["hpo.trial"] == str(trial.number)
        expected = {"COMPLETE": ("COMPLETE", "FINISHED"), "PRUNED": ("PRUNED", "KILLED")}[trial.state.name]
        assert (run.data.tags["hpo.state"], run.info.status) == expected
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == sorted(trial.intermediate_values)
        assert {"train_loss", "val_loss", "lr", "epoch_time_s"} <= set(run.data.metrics)
        assert run.data.params["lr"] == str(trial.params["lr"])

    retrains = [r for r in runs if r.data.tags.get("hpo.role") == "retrain"
                and r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(retrains) == 1
    retrain = retrains[0]
    assert retrain.data.tags["hpo.retrain_of_trial"] == str(study.best_trial.number)
    assert 0.0 < retrain.data.metrics["test_accuracy"] <= 1.0
    assert [a.path for a in client.list_artifacts(retrain.info.run_id, "model")] == ["model/checkpoint.pt"]


def test_promote_registers_champion_and_checkpoint_evaluates_as_logged(tiny_run):
    work = tiny_run["dir"]
    assert "alias 'champion'" in tiny_run["promote"].stdout
    client = mlflow_client(work)
    version = client.get_model_version("tiny", "1")
    retrain_run = client.get_run(version.run_id)
    assert retrain_run.data.tags["hpo.role"] == "retrain"

    checkpoint_path = work / "checkpoints" / "tiny-v1.pt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["registry"]["version"] == version.version
    assert checkpoint["class_names"] == [str(i) for i in range(10)]
    assert checkpoint["model"]["name"] == "digits_cnn"

    report = hpo_json("evaluate", str(checkpoint_path), cwd=work)
    assert report["n_images"] == 360
    assert report["accuracy"] == retrain_run.data.metrics["test_accuracy"]


def test_promote_output_path_and_new_version(tiny_run, tmp_path):
    work = tiny_run["dir"]
    out = tmp_path / "best.pt"
    result = hpo("promote", "tiny", "--output", str(out), cwd=work)
    assert out.is_file() and str(out) in result.stdout
    checkpoint = torch.load(out, weights_only=True)
    client = mlflow_client(work)
    assert client.get_model_version_by_alias("tiny", "champion").version == checkpoint["registry"]["version"]
    assert int(checkpoint["registry"]["version"]) >= 2


def test_predict_prints_a_class_per_image(tiny_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = []
    for i in range(8):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).round().astype(np.uint8)).save(path)
        files.append(str(path))
    checkpoint = next((tiny_run["dir"] / "checkpoints").glob("tiny-v*.pt"))
    out = hpo("predict", str(checkpoint), *files, "--json", cwd=tiny_run["dir"]).stdout.splitlines()
    predictions = [json.loads(line) for line in out]
    assert [p["file"] for p in predictions] == files
    assert all(p["class"] in [str(i) for i in range(10)] and 0 < p["probability"] <= 1 for p in predictions)
    correct = sum(p["class"] == str(digits.target[i]) for i, p in enumerate(predictions))
    assert correct >= 6  # the tiny model still reads most digits right


def test_predict_keeps_one_line_per_image_whatever_the_class_names(tiny_run, tmp_path):
    """Class names with a tab, a newline or a backslash cannot add a field or a line to hpo predict's output."""
    import torch
    from PIL import Image

    checkpoint = torch.load(next((tiny_run["dir"] / "checkpoints").glob("tiny-v*.pt")), weights_only=True)
    checkpoint["class_names"] = [f"class\t{i}\nnext line \\ {i}" for i in range(10)]
    torch.save(checkpoint, tmp_path / "odd-names.pt")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    out = hpo("predict", str(tmp_path / "odd-names.pt"), str(tmp_path / "a.png"), cwd=tmp_path).stdout
    [line] = out.splitlines()
    file, label, probability = line.split("\t")
    assert file == str(tmp_path / "a.png") and float(probability) > 0
    assert label.startswith("class\\t") and "\\nnext line \\\\ " in label  # escaped, readable back
    [record] = [json.loads(row) for row in hpo("predict", str(tmp_path / "odd-names.pt"), str(tmp_path / "a.png"),
                                                "--json", cwd=tmp_path).stdout.splitlines()]
    assert record["class"] in checkpoint["class_names"]  # JSON carries the name as it is


def test_a_trial_that_trains_its_whole_budget_is_complete(tmp_path):
    """The pruner is not asked after the last epoch: a trial that trained every epoch of its budget is COMPLETE
    (ranked among the finished, its MLflow run FINISHED), even when it ends worse than the median."""
    study = {"name": "full", "seed": 3, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 8},
             "budget": {"trials": 3, "epochs": 1},
             "search": {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
             "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
             "enqueue": [{"lr": 0.01}, {"lr": 0.0001}, {"lr": 0.00011}]}  # the 2nd and 3rd end below the 1st
    hpo("run", str(write_study(tmp_path, study)), "--no-tracking", "--no-retrain", cwd=tmp_path)
    trials = optuna.load_study(study_name="full", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert trials[1].value < trials[0].value  # the median pruner would have stopped it at its one epoch


def test_show_reports_best_and_counts(tiny_run):
    report = hpo_json("show", "tiny", cwd=tiny_run["dir"])
    study = stored_study(tiny_run["dir"])
    assert report["best_value"] == study.best_value
    assert report["best_params"] == study.best_params
    counts = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    assert report["n_trials_by_state"] == counts and sum(counts.values()) == 6
    assert hpo_json("show", str(tiny_run["study_file"]), cwd=tiny_run["dir"])["best_value"] == study.best_value


def test_retrain_alone_by_study_name(tiny_run):
    work = tiny_run["dir"]
    result = hpo("retrain", "tiny", "--epochs", "2", cwd=work)
    assert "for 2 epochs" in result.stdout
    client = mlflow_client(work)
    experiment = client.get_experiment_by_name("tiny")
    retrains = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'retrain'")
    assert any(r.data.tags["hpo.epochs"] == "2" and r.info.status == "FINISHED" for r in retrains)


@pytest.mark.slow  # several hpo run
def test_resume_counts_trials_in_total(tmp_path):
    study = dict(TINY_STUDY, name="resume", enqueue=[], budget={"trials": 3, "epochs": 1, "retrain": {"epochs": 1}})
    study_file = write_study(tmp_path, study)
    hpo("run", str(study_file), "--no-retrain", cwd=tmp_path)
    hpo("run", str(study_file), "--no-retrain", "--trials", "5", cwd=tmp_path)
    assert len(stored_study(tmp_path, "resume").trials) == 5
    again = hpo("run", str(study_file), "--no-retrain", "--trials", "5", cwd=tmp_path)
    assert "already has 5 finished trials" in again.stdout
    assert len(stored_study(tmp_path, "resume").trials) == 5
    client = mlflow_client(tmp_path)
    experiment = client.get_experiment_by_name("resume")
    parents = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'study'")
    assert len(parents) == 3  # one parent run per invocation


def test_same_seed_gives_same_trial_params(tmp_path, tiny_run):
    again = tmp_path / "again"
    again.mkdir()
    study_file = write_study(again, TINY_STUDY)
    hpo("run", str(study_file), "--no-retrain", cwd=again)
    first = [t.params for t in stored_study(tiny_run["dir"]).trials]
    second = [t.params for t in stored_study(again).trials]
    assert first == second


@pytest.mark.slow  # several hpo run
def test_stores_default_to_current_directory_and_env_overrides(tmp_path):
    """No option: the stores are made in the current directory. HPO_STORAGE, MLFLOW_TRACKING_URI and
    HPO_ARTIFACTS move them; --storage, --tracking-uri and --artifacts beat the environment."""
    study_file = write_study(tmp_path, dict(TINY_STUDY, name="envs", enqueue=[],
                                            budget={"trials": 1, "epochs": 1}))
    plain, by_env, by_flags, env_target, flag_target = (tmp_path / n for n in
                                                         ("plain", "by_env", "by_flags", "env", "flags"))
    for d in (plain, by_env, by_flags, env_target, flag_target):
        d.mkdir()

    def env_for(target):
        return {"HPO_STORAGE": f"sqlite:///{target}/s.db", "MLFLOW_TRACKING_URI": f"sqlite:///{target}/m.db",
                "HPO_ARTIFACTS": str(target / "art")}

    hpo("run", str(study_file), "--no-retrain", cwd=plain)
    assert {p.name for p in plain.iterdir()} == {"hpo.db", "mlflow.db", "mlartifacts", "hpo-artifacts"}

    hpo("run", str(study_file), "--no-retrain", cwd=by_env, env=env_for(env_target))
    assert list(by_env.iterdir()) == []
    assert {p.name for p in env_target.iterdir()} == {"s.db", "m.db", "art", "hpo-artifacts"}  # beside s.db

    other_env = tmp_path / "unused"
    hpo("run", str(study_file), "--no-retrain", "--storage", f"sqlite:///{flag_target}/s.db",
        "--tracking-uri", f"sqlite:///{flag_target}/m.db", "--artifacts", str(flag_target / "art"), cwd=by_flags,
        env=env_for(other_env))
    assert {p.name for p in flag_target.iterdir()} == {"s.db", "m.db", "art", "hpo-artifacts"}
    assert list(by_flags.iterdir()) == [] and not other_env.exists()
    for target in (plain / "hpo.db", env_target / "s.db", flag_target / "s.db"):
        with sqlite3.connect(target) as db:
            assert db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone() == (1,)


def test_two_studies_run_from_python_in_two_folders_keep_their_own_stores(tmp_path, monkeypatch):
    """``hpo.api.run`` in one folder, then in another, in one process (a notebook): each folder's mlflow.db
    holds its own study's runs. MLflow keeps one engine per URL string, so the default relative
    ``sqlite:///mlflow.db`` went on writing into the first folder."""
    from hpo import api

    for var in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    study_file = write_study(tmp_path, dict(TINY_STUDY, enqueue=[], budget={"trials": 1, "epochs": 1,
                                                                             "retrain": {"epochs": 1}}))
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        assert api.run(api.RunRequest(str(study_file), api.Stores(), (f"name={name}",)),
                       print_line=lambda line: None) == 0
    for name in ("first", "second"):
        client = MlflowClient(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        assert sorted(e.name for e in client.search_experiments()) == ["Default", name]
        [experiment] = [e for e in client.search_experiments() if e.name == name]
        assert len(client.search_runs([experiment.experiment_id])) == 3  # the study, its trial, the retrain
