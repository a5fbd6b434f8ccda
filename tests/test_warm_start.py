"""Warm starts through the CLI: a new study's first trials are the other study's best that lie in its space."""

from __future__ import annotations

import optuna
import pytest

from helpers import TINY_STUDY, hpo, write_study
from test_bad_input import assert_refused, store_state

COLD = {**TINY_STUDY, "name": "cold", "budget": {"trials": 5, "epochs": 2, "retrain": {"epochs": 1}}}
# Adam only: the cold study's SGD trials do not lie in this space.
WARM = {**TINY_STUDY, "name": "warm", "enqueue": [], "warm_start": {"study": "cold", "top": 2},
        "search": {"lr": {"low": 1.0e-3, "high": 3.0, "log": True}, "optimizer": "adam", "batch_size": [32, 64]},
        "budget": {"trials": 3, "epochs": 2, "retrain": {"epochs": 1}}}


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    hpo("run", str(write_study(folder, COLD, "cold.yaml")), cwd=folder)
    return folder


def _stored(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/hpo.db")


@pytest.mark.slow
def test_the_first_trials_are_the_other_studys_best_that_fit(cold):
    study_file = write_study(cold, WARM, "warm.yaml")
    done = sorted((t for t in _stored(cold, "cold").trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: -t.value)
    fits = [t for t in done if t.params.get("optimizer") == "adam"][:2]
    dropped = [t for t in done if t.params.get("optimizer") != "adam" and t.value > fits[-1].value]

    checked = hpo("check", str(study_file), cwd=cold).stdout
    assert f"warm start from study 'cold' in sqlite:///hpo.db: {len(fits)} trial(s) carried over" in checked
    for t in fits:
        assert f"carried: trial {t.number} " in checked
    for t in dropped:
        assert f"dropped: trial {t.number}: trial {t.number}.optimizer: must be the fixed value 'adam'" in checked

    run = hpo("run", str(study_file), cwd=cold)
    assert "warm start from study 'cold'" in run.stdout
    warm = _stored(cold, "warm").trials
    for trial, source in zip(warm, fits):
        assert {k: trial.params[k] for k in ("lr", "batch_size")} == \
            {k: source.params[k] for k in ("lr", "batch_size")}
        assert trial.user_attrs["warm_start_of"] == f"cold#{source.number}"
    assert "warm_start_of" not in warm[len(fits)].user_attrs  # then the sampler's own


def test_a_warm_start_from_a_study_that_is_not_there(tiny_run, tmp_path):
    cold = tiny_run["dir"]  # a storage that holds the tiny study, and no study named nowhere
    study_file = write_study(tmp_path, {**WARM, "warm_start": {"study": "nowhere",
                                                                "storage": f"sqlite:///{cold}/hpo.db"}})
    before, stored = store_state(tmp_path), _summaries(cold)
    result = hpo("run", str(study_file), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert f"{study_file}: warm_start: no study named 'nowhere' in sqlite:///{cold}/hpo.db; studies there: tiny" \
        in result.stderr.strip().splitlines()[-1]
    assert store_state(tmp_path) == before and _summaries(cold) == stored  # the other storage is only read


def _summaries(folder) -> list:
    return [(s.study_name, s.n_trials) for s in optuna.get_all_study_summaries(f"sqlite:///{folder}/hpo.db")]


@pytest.mark.parametrize("warm_start, message", [
    ({"study": "cold", "top": 0}, "warm_start.top: must be an integer from 1 to 1,000, got 0"),
    ({"study": "has space"}, "warm_start.study: must be a study name"),
    ({"study": "cold", "from": 3}, "warm_start.from: unknown field; allowed: study, storage, top"),
    ({"top": 3}, "warm_start.study: is required"),
    ([1], "warm_start: must be a mapping (study: NAME, storage: URL, top: K), got [1]"),
    ({"study": "warm"}, "warm_start.study: is this study ('warm'); a warm start begins from another one"),
])
def test_bad_warm_starts_are_one_line(warm_start, message, tmp_path):
    study_file = write_study(tmp_path, {**WARM, "warm_start": warm_start})
    assert_refused(hpo("check", str(study_file), cwd=tmp_path, check=False), str(study_file), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.mark.slow  # a warm study after the cold one
def test_the_sampler_learns_from_the_other_study_as_optuna_add_trials_would(cold):
    """Trial 1 of a warm study (trial 0 carried over) is what Optuna's own TPE proposes in a study given the
    other study's COMPLETE trials that fit (``add_trials``) and trial 0: the history reaches the sampler, with
    this study's distributions, and nothing else differs. None of it becomes a trial of this study."""
    from hpo.study.sampling import sampler_seed
    from hpo.study.samplers import SAMPLERS
    from hpo.spec.study_file import load_study

    warm = {**WARM, "name": "learns", "warm_start": {"study": "cold", "top": 1},
            "sampler": {"name": "tpe", "n_startup_trials": 2}, "budget": {**WARM["budget"], "trials": 2}}
    study_file = write_study(cold, warm, "learns.yaml")
    other = [t for t in _stored(cold, "cold").trials if t.state == optuna.trial.TrialState.COMPLETE
             and t.params.get("optimizer") == "adam"]
    assert other, "the cold study has no COMPLETE adam trial to learn from"
    checked = hpo("check", str(study_file), cwd=cold).stdout
    assert f"sampler history: {len(other)} COMPLETE trial(s) of the other study" in checked
    hpo("run", str(study_file), cwd=cold)
    first, second = _stored(cold, "learns").trials
    assert first.user_attrs["warm_start_of"].startswith("cold#") and "warm_start_of" not in second.user_attrs

    reference = optuna.create_study(direction="maximize",
                                    sampler=SAMPLERS.get("tpe")(space=None, seed=sampler_seed(WARM["seed"], 1),
                                                                n_startup_trials=2))
    other.sort(key=lambda t: (-t.value, t.number))  # as kept: the best first
    reference.add_trials([optuna.trial.create_trial(params={k: t.params[k] for k in first.params},
                                                    distributions=first.distributions, value=t.value)
                          for t in other] + [first])
    proposal = reference.ask()
    load_study(study_file).search.suggest(proposal)
    assert proposal.params == second.params

    # Without the history, the same seed draws a start-up trial at random: the history changed the proposal.
    alone = optuna.create_study(direction="maximize",
                                sampler=SAMPLERS.get("tpe")(space=None, seed=sampler_seed(WARM["seed"], 1),
                                                            n_startup_trials=2))
    alone.add_trials([first])
    guess = alone.ask()
    load_study(study_file).search.suggest(guess)
    assert guess.params != second.params


def test_samplers_that_model_no_history_get_none(cold):
    """NSGA-II indexes its generations by trial number and random sampling ignores history: hpo check says
    why they get none."""
    for sampler in ("nsga2", "random"):
        study_file = write_study(cold, {**WARM, "name": f"no-history-{sampler}", "sampler": {"name": sampler},
                                        "pruner": {"name": "none"}}, f"{sampler}.yaml")
        checked = hpo("check", str(study_file), cwd=cold).stdout
        assert (f"sampler history: none (the {sampler} sampler learns nothing from a history; tpe and gp do)"
                in checked), checked
