"""Several objectives: a digits study of val_accuracy against the network's parameters searches a Pareto front
with Optuna's multi-objective sampler; hpo show prints the front, hpo report draws it, hpo retrain and hpo promote
take --trial N for any point of it, and the checkpoint evaluates."""

from __future__ import annotations

import base64
import re

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.study import StudyDirection
from optuna.trial import TrialState

from helpers import hpo, hpo_json, write_study

MULTI = {"name": "front", "seed": 4, "data": {"name": "digits"},
         "model": {"name": "digits_cnn", "width": {"low": 2, "high": 12}},
         "objectives": ["val_accuracy", "params", "flops"],
         "budget": {"trials": 5, "epochs": 2, "retrain": {"epochs": 2}},
         "search": {"lr": {"low": 3e-3, "high": 3e-2, "log": True}},
         "sampler": {"name": "nsga2", "population_size": 3}}


def _network_costs(width: int) -> tuple[float, float]:
    """digits_cnn's parameters and forward FLOPs at ``width``, counted here from the network itself."""
    from torch.utils.flop_counter import FlopCounterMode

    from hpo.models import create_model

    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=(8, 8), width=width).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 8, 8))
    return float(sum(p.numel() for p in model.parameters())), float(counter.get_total_flops())


@pytest.fixture(scope="module")
def front_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("front")
    study_file = write_study(work, MULTI)
    check = hpo("check", str(study_file), cwd=work)
    run = hpo("run", str(study_file), cwd=work)
    study = optuna.load_study(study_name="front", storage=f"sqlite:///{work}/hpo.db")
    return {"dir": work, "check": check, "run": run, "study": study}


def test_a_multi_objective_study_records_each_objective_as_measured(front_run):
    study = front_run["study"]
    assert "Optuna does not prune a study with several objectives" in front_run["check"].stdout
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    assert study.metric_names == ["val_accuracy", "params", "flops"]  # optuna-dashboard names its axes so
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 5 and not study.get_trials(states=(TrialState.PRUNED,))
    client = MlflowClient(f"sqlite:///{front_run['dir']}/mlflow.db")
    for trial in trials:
        params, flops = _network_costs(trial.params["model.width"])
        assert trial.values[1:] == [params, flops]
        assert 0.0 <= trial.values[0] <= 1.0 and not trial.intermediate_values  # Optuna takes no report
        logged = client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics
        assert (logged["params"], logged["flops"], logged["val_accuracy_final"]) == tuple(trial.values[1:] +
                                                                                          trial.values[:1])
    # hpo run retrains the front's best val_accuracy and prints the front
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))
    out = front_run["run"].stdout
    assert f"Pareto front of val_accuracy, params, flops: {len(front)} trials" in out
    assert f"retraining trial {front[0].number} " in out


def test_show_prints_the_front_and_report_draws_it(front_run):
    work, study = front_run["dir"], front_run["study"]
    summary = hpo_json("show", "front", cwd=work)
    assert {p["trial"] for p in summary["pareto_front"]} == {t.number for t in study.best_trials}
    assert summary["objectives"] == ["val_accuracy", "params", "flops"]
    text = hpo("show", "front", "--top", "3", cwd=work).stdout
    assert f"Pareto front ({len(study.best_trials)} trials" in text
    for trial in study.best_trials:
        assert re.search(rf"^  {trial.number}\s+{trial.values[0]:.4f}\s+{trial.values[1]:.0f}\s", text, re.M), text
    assert re.search(r"rank\s+trial\s+state\s+val_accuracy\s+params\s+flops\s+epochs", text), text
    hpo("report", "front", cwd=work)
    markdown = (work / "report-front.md").read_text()
    section = markdown.split("## Pareto front", 1)[1].split("\n## ", 1)[0]
    assert "| trial | val_accuracy | params | flops | hyperparameters |" in section
    picture = re.search(r"!\[[^]]*Pareto front\]\(([^)]+)\)", section).group(1)
    assert (work / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (work / "report-front.html").read_text()
    uri = re.search(r'<section id="pareto">.*?<img src="data:image/png;base64,([^"]+)"', html, re.S).group(1)
    assert base64.b64decode(uri) == (work / picture).read_bytes()


def test_optuna_dashboard_shows_the_front_with_named_objectives(front_run):
    """optuna-dashboard's own API (its WSGI app on the study storage, no server): the study's directions, its
    objectives' names and the same Pareto front as Optuna's."""
    import json
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard
    from optuna.storages import RDBStorage

    app = optuna_dashboard.wsgi(RDBStorage(f"sqlite:///{front_run['dir']}/hpo.db"))

    def get(path: str) -> dict:
        environ, answer = {}, {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        body = b"".join(app(environ, lambda status, headers, exc=None: answer.update(status=status)))
        assert answer["status"] == "200 OK", body[:500]
        return json.loads(body)

    [summary] = get("/api/studies")["study_summaries"]
    assert summary["directions"] == ["maximize", "minimize", "minimize"]
    detail = get(f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["val_accuracy", "params", "flops"]
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in front_run["study"].best_trials)


@pytest.mark.slow  # a retrain, a promotion
def test_retrain_and_promote_take_any_point_of_the_front(front_run):
    work, study = front_run["dir"], front_run["study"]
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))
    point = front[-1]  # the cheapest: not the one hpo run retrained, unless the front is one trial
    retrain = hpo("retrain", "front", "--trial", str(point.number), cwd=work)
    assert f"retraining trial {point.number} " in retrain.stdout
    assert f"next: hpo promote front --trial {point.number}" in retrain.stdout
    promote = hpo("promote", "front", "--trial", str(point.number), "--output", "point.pt", cwd=work)
    run_id = re.search(r"from MLflow run (\w+)", promote.stdout).group(1)
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    assert client.get_run(run_id).data.tags["hpo.retrain_of_trial"] == str(point.number)
    checkpoint = torch.load(work / "point.pt", weights_only=True)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(t.numel() for k, t in checkpoint["state_dict"].items() if not k.endswith(buffers)) == point.values[1]
    evaluated = hpo_json("evaluate", "point.pt", cwd=work)
    assert evaluated["accuracy"] == pytest.approx(evaluated["logged_test_accuracy"])


def test_costs_are_counted_from_the_network():
    from hpo.study.objectives import measure_costs

    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    costs = measure_costs(network, ("params", "flops", "latency_ms"), 1, (8, 8), torch.device("cpu"))
    assert costs["params"] == 64 * 10 + 10
    assert costs["flops"] == 2 * 64 * 10  # one multiply-add per weight, counted as two operations
    assert costs["latency_ms"] > 0 and network.training  # measured in eval mode, handed back as it came


@pytest.mark.slow  # a copy of the stores
def test_a_study_is_not_resumed_under_other_costs(front_run, tmp_path):
    """Same directions, other costs: the stored values would mean other things. Refused in one line, the stores
    untouched."""
    from test_bad_input import assert_refused, store_state

    from helpers import copy_study_folder

    folder = copy_study_folder(front_run["dir"], tmp_path / "copy")
    study_file = write_study(folder, MULTI)
    before = store_state(folder)
    result = hpo("run", str(study_file), "--set", "objectives=[val_accuracy, flops, params]", cwd=folder,
                 check=False)
    assert_refused(result, "objectives: study 'front' in sqlite:///", "was created with val_accuracy, params, "
                                                                      "flops, the file says val_accuracy, flops, "
                                                                      "params")
    assert store_state(folder) == before
