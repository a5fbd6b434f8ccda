"""Retrain budgets side by side, keep-best, early stopping, periodic checkpoints, and `hpo lr-find`, via the CLI."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from helpers import TINY_STUDY, hpo, write_study


def test_retrain_budgets_checkpoints_and_keep_best(tmp_path, monkeypatch):
    study = dict(TINY_STUDY, name="budgets", enqueue=[TINY_STUDY["enqueue"][0]],
                 budget={"trials": 1, "epochs": 2,
                         "retrain": {"epochs": [2, 4], "checkpoint_every": 2, "keep_best": True,
                                     "early_stopping": 1}})
    result = hpo("run", str(write_study(tmp_path, study)), cwd=tmp_path)
    assert "on train (1149 images) for 2 epochs" in result.stdout  # keep_best watches val, so train only
    monkeypatch.chdir(tmp_path)  # MLflow finds the artifacts from the store's folder (docs/stores.md)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("budgets")
    runs = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'retrain'")
    assert sorted(r.data.tags["hpo.epochs"] for r in runs) == ["2", "4"]
    for run in runs:
        trained = int(run.data.metrics["epochs_trained"])
        assert 1 <= trained <= int(run.data.tags["hpo.epochs"])
        saved = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        assert saved == [f"checkpoints/epoch-{e:04d}.pt" for e in range(2, trained + 1, 2)]
        assert run.data.metrics["test_top5"] >= run.data.metrics["test_accuracy"]
    parent = client.search_runs([experiment.experiment_id], "tags.`hpo.role` = 'study'")[0]
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "test_accuracy")] == [2, 4]


def test_lr_find_prints_a_suggestion_and_saves_the_plot(tmp_path):
    study_file = write_study(tmp_path, TINY_STUDY)
    out = hpo("lr-find", str(study_file), "--steps", "40", "--start", "1e-5", "--end", "10", "--json",
              cwd=tmp_path).stdout
    report = json.loads(out)
    assert 1e-5 <= report["suggested_lr"] <= 10 and report["steps"] >= 3
    plot = tmp_path / "lr-find-tiny.png"
    assert report["plot"] == "lr-find-tiny.png" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "hpo.db").exists(), "the range test writes no study"


def test_pretrained_missing_file_is_a_one_line_error(tmp_path):
    study = dict(TINY_STUDY, name="pre", model={"name": "digits_cnn", "pretrained": "nowhere.pth"})
    result = hpo("run", str(write_study(tmp_path, study)), cwd=tmp_path, check=False)
    assert result.returncode == 2 and f"model.pretrained: no such weights file '{tmp_path / 'nowhere.pth'}'" \
        in result.stderr  # relative to the study file's folder
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
