"""The seed comparison (hpo/retrain/seeds.py): ``hpo retrain STUDY --seeds N`` retrains the best trial and the baseline
with the same seeds, and its verdict is checked against a hand computation on what MLflow logged."""

from __future__ import annotations

import copy
import html
import math
import re
import statistics

import optuna
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from hpo.retrain.verdict import judge, median_member, welch_interval

from helpers import TINY_STUDY, hpo, write_study

# The tiny study with a poor recipe as its baseline (trial 0: plain SGD at a small lr), so the best is another
# trial and the comparison has two arms.
SEEDS_STUDY = copy.deepcopy(TINY_STUDY)
SEEDS_STUDY["name"] = "seeds"
SEEDS_STUDY["budget"] = {"trials": 5, "epochs": 3, "retrain": {"epochs": 3}}
SEEDS_STUDY["enqueue"] = [{"lr": 0.002, "optimizer": "sgd", "momentum": 0.0, "batch_size": 64}] + \
    TINY_STUDY["enqueue"][:2]
N_SEEDS = 3


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    work = tmp_path_factory.mktemp("seeds")
    study_file = write_study(work, SEEDS_STUDY)
    hpo("run", str(study_file), "--no-retrain", "--quiet", cwd=work)
    retrain = hpo("retrain", "seeds", "--seeds", str(N_SEEDS), cwd=work)
    study = optuna.load_study(study_name="seeds", storage=f"sqlite:///{work}/hpo.db")
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("seeds")
    return {"dir": work, "study_file": study_file, "out": retrain.stdout, "study": study, "client": client,
            "experiment": experiment}


def _runs(client, experiment, query: str):
    return client.search_runs([experiment.experiment_id], query, max_results=100)


def test_verdict_matches_a_hand_computed_welch_interval_on_the_logged_values(compared):
    client, experiment, study = compared["client"], compared["experiment"], compared["study"]
    [group_run] = _runs(client, experiment, "tags.`hpo.role` = 'seed_group'")
    group = group_run.data.tags["hpo.seed_group"]
    members = _runs(client, experiment, f"tags.`hpo.seed_group` = '{group}' and tags.`hpo.role` = 'retrain'")
    assert len(members) == 2 * N_SEEDS
    values, seeds = {"best": [], "baseline": []}, {"best": set(), "baseline": set()}
    for run in members:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == group_run.info.run_id  # grouped under the comparison's run
        values[run.data.tags["hpo.seed_role"]].append(run.data.metrics["test_accuracy"])
        seeds[run.data.tags["hpo.seed_role"]].add(run.data.params["seed"])
    assert seeds["best"] == seeds["baseline"] and len(seeds["best"]) == N_SEEDS  # the same fresh seeds for both
    best_trials = {r.data.tags["hpo.retrain_of_trial"] for r in members if r.data.tags["hpo.seed_role"] == "best"}
    assert best_trials == {str(study.best_trial.number)} and study.best_trial.number != 0

    # Welch by hand: the difference of the means, its standard error and the Welch-Satterthwaite degrees of freedom.
    a, b = values["best"], values["baseline"]
    se2_a, se2_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (se2_a + se2_b) ** 2 / (se2_a ** 2 / (len(a) - 1) + se2_b ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(se2_a + se2_b)
    diff = sum(a) / len(a) - sum(b) / len(b)

    verdict = study.user_attrs["seed_verdict"]  # what the study keeps, for hpo show and hpo report
    assert verdict["group"] == group and verdict["baseline"]["trial"] == 0
    assert sorted(verdict["best"]["values"]) == pytest.approx(sorted(a))
    assert verdict["difference"]["mean"] == pytest.approx(diff)
    assert verdict["difference"]["low"] == pytest.approx(diff - half)
    assert verdict["difference"]["high"] == pytest.approx(diff + half)
    assert group_run.data.metrics["difference_low"] == pytest.approx(diff - half)
    assert group_run.data.tags["hpo.verdict"] == verdict["sentence"]

    out = compared["out"]
    assert f"  difference {diff * 100:.1f} points, 95% Welch t interval {(diff - half) * 100:.1f} to " \
           f"{(diff + half) * 100:.1f}" in out
    assert f"  best     trial {study.best_trial.number:<4d} {statistics.fmean(a):.4f} ± {statistics.stdev(a):.4f}" in out
    assert out.splitlines()[-2] == verdict["sentence"]  # the plain sentence, then the next command
    assert len(study.user_attrs["retrain_results"]) == 2 * N_SEEDS


def test_promote_takes_the_median_seed_of_the_best_arm(compared):
    client, experiment = compared["client"], compared["experiment"]
    promoted = hpo("promote", "seeds", cwd=compared["dir"]).stdout
    best = _runs(client, experiment, "tags.`hpo.seed_role` = 'best'")
    ranked = sorted(best, key=lambda run: run.data.metrics["test_accuracy"])
    median = ranked[(len(ranked) - 1) // 2].info.run_id
    assert "promoting the median of the best trial's 3 seeds" in promoted
    assert f"from MLflow run {median}" in promoted


def test_a_rerun_of_the_study_file_with_the_same_seeds_does_not_train_again(compared):
    again = hpo("run", str(compared["study_file"]), "--set", f"budget.retrain.seeds={N_SEEDS}", cwd=compared["dir"])
    assert "seed comparison of trial" in again.stdout and "already done" in again.stdout
    assert "retraining trial" not in again.stdout


def test_show_and_the_report_carry_the_verdict(compared):
    """hpo show and hpo report read the comparison from the study: its sentence, a row per arm, a picture of the
    seeds' values, and every retrain of the comparison."""
    verdict = compared["study"].user_attrs["seed_verdict"]
    shown = hpo("show", "seeds", cwd=compared["dir"]).stdout
    assert f"seed comparison: {verdict['sentence']}" in shown
    hpo("report", "seeds", cwd=compared["dir"])
    page = (compared["dir"] / "report-seeds.html").read_text()
    seeds = re.search(r'<section id="seeds">(.*?)</section>', page, re.S).group(1)
    assert html.escape(verdict["sentence"]) in seeds and "data:image/png;base64," in seeds
    for role in ("best", "baseline"):
        assert f"{verdict[role]['mean']:.4f}" in seeds
    retrains = re.search(r'<section id="retrains">(.*?)</section>', page, re.S).group(1)
    assert all(run_id in retrains for arm in ("best", "baseline") for run_id in verdict[arm]["run_ids"])
    assert verdict["sentence"] in (compared["dir"] / "report-seeds.md").read_text()


@pytest.mark.parametrize("best, baseline, words", [
    ([0.97, 0.975, 0.972], [0.95, 0.952, 0.949], "the best (trial 3) beats the baseline (trial 0) by 2.2 ± "),
    ([0.95, 0.952, 0.949], [0.97, 0.975, 0.972], "the baseline (trial 0) beats the best (trial 3) by 2.2 ± "),
    ([0.97, 0.95, 0.96], [0.96, 0.97, 0.95], "the best (trial 3) is not distinguishable from the baseline"),
    ([0.96, 0.96], [0.95, 0.95], "the best (trial 3) beats the baseline (trial 0) by 1.0 ± 0.0 points"),
])
def test_the_sentence_says_who_wins_or_that_nobody_can_tell(best, baseline, words):
    verdict = judge((3, best), (0, baseline), epochs=4, seeds=list(range(len(best))))
    assert verdict["sentence"].startswith(words), verdict["sentence"]


def test_no_baseline_and_too_few_seeds():
    verdict = judge((3, [0.9, 0.92]), None, epochs=4, seeds=[1, 2])
    assert verdict["difference"] is None and verdict["sentence"].startswith("no baseline to compare")
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_interval([0.9], [0.8, 0.7])
    assert median_member([("a", 0.9), ("b", 0.7), ("c", 0.8), ("d", 1.0)]) == "c"  # the lower middle of four


def test_the_study_note_keeps_every_retrain_and_the_verdict_when_a_new_best_appears(compared):
    """optuna-dashboard keeps one note per study: rewritten for a new best trial, it still has every retrain's
    result and the latest seed verdict, because it is rebuilt from the study's attributes."""
    from optuna_dashboard import get_note

    from hpo.spec.study_file import load_study
    from hpo.track import dashboard

    study = optuna.load_study(study_name="seeds", storage=f"sqlite:///{compared['dir']}/hpo.db")
    sentence = study.user_attrs["seed_verdict"]["sentence"]
    for note in (get_note(study), None):
        if note is None:  # what a later trial that becomes the best does (hpo/search/trial.py)
            dashboard.write_study_note(load_study(compared["study_file"]), study, (99, 0.999))
            note = get_note(study)
            assert "- best so far: val_accuracy 0.9990, trial 99" in note
        assert note.count("- retrain of trial ") == 2 * N_SEEDS, note
        assert f"- seed comparison: {sentence}" in note


def test_a_trial_chosen_with_trial_is_not_called_the_best():
    """hpo retrain --trial N --seeds K compares trial N, which need not be the search's best (a point of a
    Pareto front): the verdict says "the chosen"."""
    from hpo.retrain.verdict import judge

    worse = judge(best=(3, [0.90, 0.91, 0.92]), baseline=(0, [0.97, 0.975, 0.98]), epochs=4, seeds=[1, 2, 3],
                  label="the chosen")
    assert worse["sentence"].startswith("the baseline (trial 0) beats the chosen (trial 3) by ")
    assert worse["sentence"].endswith(": trial 3 does not hold up")
    assert judge(best=(3, [0.97, 0.975, 0.98]), baseline=(0, [0.90, 0.91, 0.92]), epochs=4, seeds=[1, 2, 3],
                 label="the chosen")["sentence"].startswith("the chosen (trial 3) beats the baseline (trial 0)")
