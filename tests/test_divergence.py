"""Divergence: a non-finite loss, a loss far past the first epoch's or chance's, accuracy stuck at chance."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
from mlflow.tracking import MlflowClient

from hpo.train.divergence import divergence

from helpers import hpo, write_study


def epoch(n, train_loss, val_loss=1.0, val_accuracy=0.5):
    return SimpleNamespace(epoch=n, train_loss=train_loss, val_loss=val_loss, val_accuracy=val_accuracy)


def test_signs_of_divergence():
    assert divergence(epoch(1, 2.0), 2.0, 10) is None
    assert "non-finite loss at epoch 3" in divergence(epoch(3, math.nan), 2.0, 10)
    assert "non-finite" in divergence(epoch(2, 1.0, val_loss=math.inf), 2.0, 10)
    assert "training loss 8.594e+05 at epoch 1" in divergence(epoch(1, 859413.0), 859413.0, 10)  # past 100 ln 10
    assert divergence(epoch(4, 199.0), 2.0, 10) is None and "over 100x" in divergence(epoch(4, 201.0), 2.0, 10)
    stuck = epoch(3, 2.4, val_accuracy=0.1)
    assert "at chance (1/10)" in divergence(stuck, 2.3, 10)
    assert divergence(stuck, 2.3, 10, warmup_epochs=2) is None  # still warming up
    assert divergence(epoch(3, 1.0, val_accuracy=0.1), 2.3, 10) is None  # the loss falls: just slow
    # a falling loss at chance is not stopped (a slow start looks the same); the trial is flagged at its end
    assert divergence(epoch(3, 2.81, val_accuracy=0.1007), 3.20, 10) is None
    assert "at chance (1/10)" in divergence(epoch(3, 2.4, val_accuracy=0.1007), 2.3, 10)  # within the margin
    assert divergence(epoch(1, 2.5, val_accuracy=0.1), 2.5, 10) is None  # too early to judge: flagged at the end


def test_a_huge_finite_loss_stops_the_trial_as_diverged(tmp_path):
    study = {"name": "boom", "data": "digits", "model": {"name": "digits_cnn", "width": 8},
             "budget": {"trials": 1, "epochs": 3},
             "search": {"lr": [1.0e+30], "optimizer": "sgd", "momentum": 0.9},  # overflows float32 on any CPU
             "pruner": "none"}
    result = hpo("run", str(write_study(tmp_path, study)), "--no-tracking", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "no trial of 'boom' completed" in result.stderr  # nothing to retrain
    [trial] = optuna.load_study(study_name="boom", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["prune_reason"].startswith("diverged: ")


def test_a_trial_at_chance_after_its_whole_budget_is_flagged(tmp_path):
    """Two classes of the very same image: no network can beat chance on any CPU. A one-epoch budget is too
    short to stop as diverged, so the trial is COMPLETE and flagged, on the trial, its run and the console."""
    from PIL import Image

    for name in ("left", "right"):
        (tmp_path / "same" / name).mkdir(parents=True)
        for n in range(20):
            Image.new("L", (8, 8), 128).save(tmp_path / "same" / name / f"{n}.png")
    study = {"name": "same", "data": {"name": "folder", "root": "same", "test_fraction": 0.25},
             "model": {"name": "digits_cnn", "width": 4}, "budget": {"trials": 1, "epochs": 1},
             "search": {"lr": [0.01]}, "pruner": "none"}
    result = hpo("run", str(write_study(tmp_path, study)), "--no-retrain", cwd=tmp_path)
    [trial] = optuna.load_study(study_name="same", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value <= 0.6
    assert trial.user_attrs["at_chance"].endswith("is at chance (1/2): it learned nothing")
    assert f"trial 0: {trial.user_attrs['at_chance']}" in result.stdout + result.stderr
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["hpo.at_chance"] == trial.user_attrs["at_chance"]
