"""lr_scaling through the CLI: the study's lr is per 256 images; MLflow, the leaderboard and the checkpoint record
the rate each trial trained with."""

from __future__ import annotations

import pytest
import torch

from helpers import TINY_STUDY, hpo, hpo_json, write_study


@pytest.mark.slow
def test_the_effective_rate_is_recorded_everywhere(tmp_path):
    import mlflow
    import optuna

    study = {**TINY_STUDY, "name": "scaled", "lr_scaling": "linear", "enqueue": [],
             "search": {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": [32, 64]},
             "budget": {"trials": 3, "epochs": 1, "retrain": {"epochs": 1}}}
    study_file = write_study(tmp_path, study)
    hpo("run", str(study_file), cwd=tmp_path)
    trials = {t.number: t for t in optuna.load_study(study_name="scaled", storage=f"sqlite:///{tmp_path}/hpo.db").trials}
    effective = {n: t.params["lr"] * t.params["batch_size"] / 256 for n, t in trials.items()}

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("scaled").experiment_id], max_results=50)
    for run in runs:
        role, params = run.data.tags.get("hpo.role"), run.data.params
        number = run.data.tags.get("hpo.trial") if role == "trial" else run.data.tags.get("hpo.retrain_of_trial")
        if number is not None:
            assert float(params["lr"]) == pytest.approx(effective[int(number)]), (role, params)
            assert float(params["lr_per_256"]) == pytest.approx(trials[int(number)].params["lr"])
            assert params["lr_scaling"] == "linear"

    board = hpo_json("show", "scaled", "--top", "3", cwd=tmp_path)["leaderboard"]
    assert {row["trial"]: row["params"]["lr_effective"] for row in board} == pytest.approx(
        {row["trial"]: effective[row["trial"]] for row in board})
    hpo("promote", "scaled", "--output", "final.pt", cwd=tmp_path)
    checkpoint = torch.load(tmp_path / "final.pt", weights_only=True)
    number = checkpoint["study"]["trial"]
    assert checkpoint["hyperparams"]["lr"] == pytest.approx(effective[number])
    assert checkpoint["hyperparams"]["lr_per_256"] == pytest.approx(trials[number].params["lr"])

    # The stored trials' lr params are per 256 images: resuming under another rule is refused, storage unchanged.
    before = optuna.load_study(study_name="scaled", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    changed = write_study(tmp_path, {**study, "lr_scaling": "sqrt"}, "sqrt.yaml")
    refused = hpo("run", str(changed), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith(
        "lr_scaling: study 'scaled' in sqlite:///hpo.db ran with lr_scaling linear, the file says sqrt; use another "
        "name"), refused.stderr
    after = optuna.load_study(study_name="scaled", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert [(t.number, t.state, t.params) for t in after] == [(t.number, t.state, t.params) for t in before]
