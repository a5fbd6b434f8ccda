"""The sampler a study runs with, and the grid's end.

Optuna seeds a sampler once per process, so every process (a rerun, a worker) replays the same random
draws: a study resumed in three pieces proposed 4 distinct configurations out of 9. hpo builds the
sampler afresh for each trial, seeded by (study seed, trial number), so a proposal depends only on the
study seed, the trial's number and the finished history, whichever process asks.
"""

from __future__ import annotations

import optuna

from hpo.study.grid import GridSampler
from hpo.study.retries import retries
from hpo.study.samplers import SAMPLERS
from hpo.study.history import HISTORY_SAMPLERS, StudyWithHistory, history_trials

# Their seed fixes one sequence for the whole study (the grid's order, the QMC scramble): reseeding them per
# trial would break it, and their trials differ without it.
SEEDED_ONCE = ("grid", "qmc")


def sampler_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial's sampler: well mixed, so neighbouring trials draw unrelated values."""
    import numpy as np

    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


def proposal_index(study, trial) -> int:
    """The trial's number less the retries before it (hpo/study/retries.py): a retry repeats a dead trial's
    parameters, so the trials after it draw what they would have drawn in a study that never died."""
    return trial.number - sum(1 for _, retry in retries(study) if retry < trial.number)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Delegates each trial to a sampler built for it with ``build(sampler_seed(seed, proposal_index))``; under a
    warm start, that sampler sees the other study's kept trials too (hpo/study/history.py)."""

    def __init__(self, build, seed: int, learns_from_history: bool = False):
        self._build, self._seed = build, seed
        self._by_trial: dict[int, optuna.samplers.BaseSampler] = {}
        self._history: list | None = None if learns_from_history else []  # read once from the study

    def _seen(self, study):
        """The study as the sampler reads it: with a warm start's history, where it has one."""
        if self._history is None:
            self._history = history_trials(study)
        return StudyWithHistory(study, self._history) if self._history else study

    def _for(self, study, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._by_trial:
            self._by_trial[trial.number] = self._build(sampler_seed(self._seed, proposal_index(study, trial)))
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._for(study, trial).infer_relative_search_space(self._seen(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(study, trial).sample_relative(self._seen(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(study, trial).sample_independent(self._seen(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(study, trial).after_trial(study, trial, state, values)
        self._by_trial.pop(trial.number, None)

    def reseed_rng(self) -> None:  # the seeds are the point: never replace them with random ones
        pass


def study_sampler(name: str, args, space, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler a study runs with, in the process that starts it and in every worker and rerun."""
    build = SAMPLERS.get(name)
    if name in SEEDED_ONCE:
        return build(space=space, seed=seed, **args)
    return TrialSeededSampler(lambda trial_seed: build(space=space, seed=trial_seed, **args), seed,
                              learns_from_history=name in HISTORY_SAMPLERS)  # and no other is given one


def points_left(sampler, study) -> int | None:
    """Grid points neither finished nor being run (None for samplers that never run out)."""
    if not isinstance(sampler, GridSampler):
        return None
    taken = {t.system_attrs["grid_id"] for t in study.get_trials(deepcopy=False)  # failed points count, as
             if "grid_id" in t.system_attrs and t.state != optuna.trial.TrialState.WAITING}  # for Optuna
    return sampler.size - len(taken)


