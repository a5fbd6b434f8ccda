"""The search space: parsing, conditional momentum, and every sampler and pruner on a real Optuna study."""

from __future__ import annotations

import copy

import optuna
import pytest

from hpo.core.errors import SpecError
from hpo.spec.space import Choice, FloatRange, IntRange, parse_search
from hpo.spec.study_file import parse_study
from hpo.study.pruners import PRUNERS
from hpo.study.samplers import SAMPLERS
from hpo.study.sampling import points_left
from hpo.train.hyperparams import Hyperparams

from helpers import TINY_STUDY

SOURCE = "test.yaml"


def spec_with(**changes):
    raw = copy.deepcopy(TINY_STUDY)
    raw["enqueue"] = []
    raw.update(changes)
    return parse_study(raw, SOURCE)


def test_parse_types_and_defaults():
    space = parse_search({"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": [32, 64],
                          "weight_decay": {"low": 0.0, "high": 0.01, "step": 0.005}, "label_smoothing": 0.1}, SOURCE)
    assert space.params["lr"] == FloatRange(1e-4, 1e-1, log=True)
    assert space.params["batch_size"] == Choice((32, 64))
    assert space.params["weight_decay"] == FloatRange(0.0, 0.01, step=0.005)
    assert space.params["label_smoothing"].value == 0.1
    assert space.params["optimizer"].value == Hyperparams.optimizer
    assert space.searched == ["lr", "batch_size", "weight_decay"]
    assert parse_search({"batch_size": {"low": 16, "high": 256, "log": True}}, SOURCE).params["batch_size"] == \
        IntRange(16, 256, log=True)


@pytest.mark.parametrize("raw, field", [
    ({"lr": {"low": 1e-3}}, "search.lr.high"),
    ({"lr": {"low": 1e-3, "high": 1e-2, "scale": "log"}}, "search.lr.scale"),
    ({"optimizer": {"low": 1, "high": 2}}, "search.optimizer"),
    ({"batch_size": {"choices": []}}, "search.batch_size.choices"),
    ({"batch_size": [32, 32]}, "search.batch_size.choices"),
    ({"lr": {"low": 1e-3, "high": 1e-2, "log": "yes"}}, "search.lr.log"),
    ({"lr": {"low": 1e-3, "high": 1e-2, "log": True, "step": 1e-3}}, "search.lr.step"),
    ({"batch_size": {"low": 8, "high": 64, "step": 0.5}}, "search.batch_size.step"),
    ({"lr": True}, "search.lr"),
    ({"lr": float("nan")}, "search.lr"),
    ([1, 2], "search"),
])
def test_parse_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as err:
        parse_search(raw, SOURCE)
    assert err.value.field == field
    assert str(err.value).startswith(f"{SOURCE}: {field}: ")


def test_momentum_is_sampled_only_for_optimizers_that_use_it():
    space = spec_with().search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        hp = space.suggest(trial)
        assert ("momentum" in trial.params) == (hp.optimizer in ("sgd", "rmsprop"))
        if hp.optimizer == "adam":
            assert hp.momentum == Hyperparams.momentum
        seen.add(hp.optimizer)
        study.tell(trial, 0.5)
    assert seen == {"adam", "sgd"}


def test_resolve_fills_fixed_and_unsampled_values():
    space = spec_with(search={"lr": {"low": 0.001, "high": 0.1}, "label_smoothing": 0.1,
                              "optimizer": ["adam", "sgd"], "momentum": {"low": 0.5, "high": 0.9}}).search
    hp = space.resolve({"lr": 0.01, "optimizer": "adam"})
    assert hp == Hyperparams(lr=0.01, optimizer="adam", label_smoothing=0.1)


@pytest.mark.parametrize("scaling, factor", [("none", lambda b: 1.0), ("linear", lambda b: b / 256),
                                             ("sqrt", lambda b: (b / 256) ** 0.5)])
def test_lr_scaling_makes_lr_the_rate_per_256_images(scaling, factor):
    spec = spec_with(search={"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": [16, 64, 512]},
                     lr_scaling=scaling)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        hp = spec.search.suggest(trial)
        assert hp.lr == pytest.approx(trial.params["lr"] * factor(hp.batch_size))
        assert spec.search.resolve(trial.params) == hp  # the retrain trains with the same rate
        recorded = spec.search.scaling_params(hp)
        assert recorded == ({} if scaling == "none" else
                            {"lr_scaling": scaling, "lr_per_256": pytest.approx(trial.params["lr"])})
        study.tell(trial, 0.5)


def test_lr_scaling_counts_the_images_of_one_optimizer_step():
    spec = spec_with(search={"lr": 0.1, "batch_size": 64, "accumulation": 2, "hflip": [0.0, 0.5]}, lr_scaling="linear")
    assert spec.search.resolve({"hflip": 0.5}).lr == pytest.approx(0.1 * 64 * 2 / 256)


def test_lr_scaling_is_one_of_three():
    with pytest.raises(SpecError, match="lr_scaling: must be one of none, linear, sqrt, got 'cubic'"):
        spec_with(lr_scaling="cubic")


def objective_for(spec):
    def objective(trial):
        hp = spec.search.suggest(trial)
        for step in range(1, 4):  # a cheap stand-in for training; the pruner sees real reports
            value = hp.lr * step
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value
    return objective


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_builds_and_samples_the_space(sampler):
    search = {"lr": {"low": 0.001, "high": 0.1, "step": 0.001}, "optimizer": ["adam", "sgd"],
              "momentum": {"low": 0.5, "high": 0.9, "step": 0.1}, "batch_size": [32, 64]}
    spec = spec_with(sampler=sampler, search=search)
    study = optuna.create_study(sampler=spec.build_sampler(), pruner=spec.build_pruner(), direction="maximize")
    study.optimize(objective_for(spec), n_trials=6)
    assert len(study.trials) == 6
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)


def every_other_trial_hopeless(spec):
    """Odd-numbered trials report a tenth of the even ones' value at every step, whatever they sample."""
    def objective(trial):
        spec.search.suggest(trial)
        quality = 1.0 if trial.number % 2 == 0 else 0.1
        for step in range(1, spec.budget.epochs + 1):
            trial.report(quality * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return quality * spec.budget.epochs
    return objective


@pytest.mark.parametrize("pruner", PRUNERS.names())
def test_every_pruner_builds_and_prunes_or_not(pruner):
    """Each pruner, with its defaults, stops some of the hopeless trials and none of the good ones."""
    spec = spec_with(pruner=pruner)
    # A named study: hyperband assigns trials to brackets by hashing the study's name with the trial number.
    study = optuna.create_study(study_name="pruners", sampler=spec.build_sampler(), pruner=spec.build_pruner(),
                                direction="maximize")
    study.optimize(every_other_trial_hopeless(spec), n_trials=12)
    pruned = [t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if pruner == "none":
        assert pruned == []
    else:
        assert pruned and all(number % 2 == 1 for number in pruned), pruned
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials if t.number % 2 == 0)


def test_same_seed_same_params():
    def params(seed):
        spec = spec_with(seed=seed, enqueue=[])
        study = optuna.create_study(sampler=spec.build_sampler(), direction="maximize")
        study.optimize(objective_for(spec), n_trials=8)
        return [t.params for t in study.trials]
    assert params(3) == params(3)
    assert params(3) != params(4)


def test_grid_sampler_visits_every_combination():
    spec = spec_with(sampler="grid", enqueue=[], search={"optimizer": ["adam", "sgd"], "batch_size": [32, 64],
                                                         "lr": {"low": 0.01, "high": 0.03, "step": 0.01}})
    assert spec.search.grid() == {"lr": [0.01, 0.02, 0.03], "batch_size": [32, 64], "optimizer": ["adam", "sgd"]}
    sampler = spec.build_sampler()
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: spec.search.suggest(t).lr, n_trials=11)
    assert points_left(sampler, study) == 1
    study.optimize(lambda t: spec.search.suggest(t).lr, n_trials=1)
    visited = {(t.params["lr"], t.params["batch_size"], t.params["optimizer"]) for t in study.trials}
    assert len(visited) == 12, "each combination once"
    assert points_left(sampler, study) == 0  # where hpo's search loop stops
