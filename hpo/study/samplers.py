"""Optuna samplers by name. Each entry takes the search space and the study seed, then the study's arguments.

How a study seeds them (afresh for each trial) is ``hpo/study/sampling.py``.
"""

from __future__ import annotations

from hpo.core.lazy import lazy
from hpo.core.registry import Registry

optuna = lazy("optuna")  # the study validator reads this registry without loading Optuna

SAMPLERS = Registry("sampler")


def at_least(low: int, **values) -> None:
    """Refuse, when the study file is read, an argument whose value Optuna would take and fail on later."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
RESERVED = ("space", "seed")  # filled by hpo from the study, never by the user
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)  # the rest also search several objectives (hpo/study/objectives.py)


@SAMPLERS.register("tpe")
def tpe(space, seed, n_startup_trials: int = 10, multivariate: bool = True, group: bool = True,
        constant_liar: bool = True, n_ei_candidates: int = 24):
    # multivariate + group model lr jointly with the optimizer it belongs to, and handle the
    # conditional momentum; constant_liar keeps parallel workers from sampling the same point.
    at_least(0, n_startup_trials=n_startup_trials)
    at_least(1, n_ei_candidates=n_ei_candidates)  # 0: every trial after the start-up fails
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=multivariate,
                                      group=group, constant_liar=constant_liar, n_ei_candidates=n_ei_candidates)


@SAMPLERS.register("random")
def random(space, seed):
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("grid")
def grid(space, seed):
    """Every combination of the searched values; ranges need a ``step``."""
    from hpo.study.grid import GridSampler  # a subclass of Optuna's: it loads Optuna, which checking a file need not

    return GridSampler(space.grid(), seed=seed)


@SAMPLERS.register("cmaes")
def cmaes(space, seed, n_startup_trials: int = 1, sigma0: float | None = None, restart_strategy: str | None = None,
          popsize: int | None = None, use_separable_cma: bool = False, with_margin: bool = False,
          consider_pruned_trials: bool = False):
    # Categorical parameters (optimizer, scheduler) fall back to random sampling inside CMA-ES.
    at_least(0, n_startup_trials=n_startup_trials)
    at_least(2, popsize=popsize)
    if sigma0 is not None and not sigma0 > 0:
        raise ValueError(f"sigma0 must be a number > 0, got {sigma0!r}")
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials, sigma0=sigma0,
                                        restart_strategy=restart_strategy, popsize=popsize,
                                        use_separable_cma=use_separable_cma, with_margin=with_margin,
                                        consider_pruned_trials=consider_pruned_trials,
                                        warn_independent_sampling=False)


@SAMPLERS.register("gp")
def gp(space, seed, n_startup_trials: int = 10, deterministic_objective: bool = False):
    at_least(0, n_startup_trials=n_startup_trials)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials,
                                     deterministic_objective=deterministic_objective, warn_independent_sampling=False)


@SAMPLERS.register("nsga2")
def nsga2(space, seed, population_size: int = 50, mutation_prob: float | None = None, crossover_prob: float = 0.9,
          swapping_prob: float = 0.5):
    """NSGA-II, the genetic algorithm for several objectives (one works too); its generations are kept in the
    study, so a sampler built afresh for each trial goes on with them."""
    at_least(2, population_size=population_size)
    _probabilities(mutation_prob=mutation_prob, crossover_prob=crossover_prob, swapping_prob=swapping_prob)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size, mutation_prob=mutation_prob,
                                         crossover_prob=crossover_prob, swapping_prob=swapping_prob)


@SAMPLERS.register("nsga3")
def nsga3(space, seed, population_size: int = 50, mutation_prob: float | None = None, crossover_prob: float = 0.9,
          swapping_prob: float = 0.5):
    """NSGA-III: NSGA-II with reference points, for three objectives and more."""
    at_least(2, population_size=population_size)
    _probabilities(mutation_prob=mutation_prob, crossover_prob=crossover_prob, swapping_prob=swapping_prob)
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population_size, mutation_prob=mutation_prob,
                                          crossover_prob=crossover_prob, swapping_prob=swapping_prob)


def _probabilities(**values) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")


@SAMPLERS.register("qmc")
def qmc(space, seed, qmc_type: str = "sobol", scramble: bool = True):
    return optuna.samplers.QMCSampler(seed=seed, qmc_type=qmc_type, scramble=scramble,
                                      warn_independent_sampling=False, warn_asynchronous_seeding=False)
