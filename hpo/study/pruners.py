"""Optuna pruners by name. Each entry takes the epochs per trial (the max resource), then the study's arguments.

A trial reports its validation metric after every epoch, so "step" and
"resource" below are epochs.
"""

from __future__ import annotations

from hpo.core.lazy import lazy
from hpo.core.registry import Registry
from hpo.study.samplers import at_least

optuna = lazy("optuna")  # the study validator reads this registry without loading Optuna

PRUNERS = Registry("pruner")
RESERVED = ("epochs",)


@PRUNERS.register("median")
def median(epochs, n_startup_trials: int = 5, n_warmup_steps: int = 1, interval_steps: int = 1):
    at_least(0, n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    at_least(1, interval_steps=interval_steps)
    return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps,
                                       interval_steps=interval_steps)


@PRUNERS.register("percentile")
def percentile(epochs, percentile: float = 25.0, n_startup_trials: int = 5, n_warmup_steps: int = 1,
               interval_steps: int = 1):
    at_least(0, n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    at_least(1, interval_steps=interval_steps)
    return optuna.pruners.PercentilePruner(percentile, n_startup_trials=n_startup_trials,
                                           n_warmup_steps=n_warmup_steps, interval_steps=interval_steps)


@PRUNERS.register("successive_halving")
def successive_halving(epochs, min_resource: int = 1, reduction_factor: int = 3, min_early_stopping_rate: int = 0):
    at_least(1, min_resource=min_resource)
    at_least(2, reduction_factor=reduction_factor)  # 1: every rung is the first, and every check divides by log 1
    at_least(0, min_early_stopping_rate=min_early_stopping_rate)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=reduction_factor,
                                                  min_early_stopping_rate=min_early_stopping_rate)


@PRUNERS.register("hyperband")
def hyperband(epochs, min_resource: int = 1, reduction_factor: int = 3):
    at_least(1, min_resource=min_resource)
    at_least(2, reduction_factor=reduction_factor)  # 1: no bracket can be formed; every trial's prune check fails
    return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=epochs,
                                          reduction_factor=reduction_factor)


@PRUNERS.register("none")
def none(epochs):
    return optuna.pruners.NopPruner()
