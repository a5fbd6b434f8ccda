"""Metrics beyond accuracy and loss: top-5, macro F1 and balanced accuracy, as scikit-learn defines them, searched
on (the pruner sees them), logged per epoch and reported on the test split by the retrain and ``hpo evaluate``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, f1_score

from datagen import write_image_folder
from helpers import TINY_STUDY, hpo, write_study
from hpo.train.trainer import class_balanced_scores
from test_bad_input import store_state


@st.composite
def predictions(draw):
    classes = draw(st.integers(2, 12))
    n = draw(st.integers(1, 60))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    predicted = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    return classes, labels, predicted


@settings(max_examples=300, deadline=None)
@given(predictions())
def test_f1_and_balanced_accuracy_are_scikit_learns(case):
    classes, labels, predicted = case
    f1, balanced = class_balanced_scores(torch.tensor(predicted), torch.tensor(labels), classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        assert f1 == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0), abs=1e-12)
        assert balanced == pytest.approx(balanced_accuracy_score(labels, predicted), abs=1e-12)


def test_a_slightly_wrong_average_fails_the_comparison():
    """The comparison above can fail: a micro F1 (= accuracy) differs from the macro one on unbalanced classes."""
    labels, predicted = [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 1]
    f1, _ = class_balanced_scores(torch.tensor(predicted), torch.tensor(labels), 3)
    assert f1 != pytest.approx(f1_score(labels, predicted, average="micro"))


def _mlflow_runs(folder, name):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return client, client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=100)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["val_f1_macro", "val_top5"])
def test_a_study_searches_prunes_and_retrains_on_its_metric(metric, tmp_path):
    import optuna

    study = {**TINY_STUDY, "name": f"on_{metric}", "metric": metric,
             "budget": {"trials": 4, "epochs": 3, "retrain": {"epochs": 2}}}
    run = hpo("run", str(write_study(tmp_path, study)), cwd=tmp_path)
    assert "retrain of trial" in run.stdout and metric.replace("val_", "test_") in run.stdout, run.stdout
    trials = optuna.load_study(study_name=study["name"], storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)  # the hopeless recipe, on this metric
    client, runs = _mlflow_runs(tmp_path, study["name"])
    by_number = {r.data.tags.get("hpo.trial"): r for r in runs if r.data.tags.get("hpo.role") == "trial"}
    for trial in trials:  # what the pruner saw is what MLflow logged for each epoch
        history = client.get_metric_history(by_number[str(trial.number)].info.run_id, metric)
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
    retrained = next(r for r in runs if r.data.tags.get("hpo.role") == "retrain")
    test_metric = metric.replace("val_", "test_")
    logged = retrained.data.metrics[test_metric]
    hpo("promote", study["name"], "--output", "final.pt", cwd=tmp_path)
    evaluated = json.loads(hpo("evaluate", "final.pt", "--json", cwd=tmp_path).stdout)
    assert evaluated[test_metric.removeprefix("test_")] == pytest.approx(logged)


def test_top5_of_a_data_set_of_three_classes_is_refused(tmp_path):
    write_image_folder(tmp_path / "pics", ["a", "b", "c"], 6, sizes=((16, 16),))
    study = {**TINY_STUDY, "metric": "val_top5", "data": {"name": "folder", "root": "pics"}}
    study_file = write_study(tmp_path, study)
    before = store_state(tmp_path)
    result = hpo("run", str(study_file), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert result.stderr.strip().splitlines()[-1] == (  # after the lines saying how the images are read
        f"hpo run: error: {study_file}: metric: val_top5 needs more than 5 classes; folder has 3: choose val_accuracy, "
        f"val_f1_macro, ...")
    assert store_state(tmp_path) == before
