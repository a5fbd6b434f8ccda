"""What a sampler sees of a warm start's history: the other study's kept trials before this study's own.

A warm start (``hpo/study/warm_start.py``) keeps the other study's fitting trials on this study when it is
created (the study attribute ``warm_start_history``); :class:`StudyWithHistory` shows them to the samplers that
model a history, first, as Optuna's ``add_trials`` would have added them, without making them trials of this
study (``hpo/study/sampling.py`` hands it to each trial's sampler).
"""

from __future__ import annotations

HISTORY_MOST = 100  # the other study's best trials handed to the sampler: a study attribute, kept small
# The samplers that model a study's history. NSGA-II/III index their generations by trial number (a history
# in front would shift them), and random, QMC and grid sampling ignore history.
HISTORY_SAMPLERS = ("tpe", "gp")


def history_trials(study) -> list:
    """The other study's trials kept for this study's sampler (``warm_start_history``), as Optuna trials."""
    from optuna.distributions import json_to_distribution
    from optuna.trial import create_trial

    from hpo.study.record import StudyRecord

    return [create_trial(params=kept["params"], values=kept["values"],
                         distributions={n: json_to_distribution(d) for n, d in kept["distributions"].items()})
            for kept in StudyRecord(study).warm_history]


class StudyWithHistory:
    """The study as a sampler sees it under a warm start: the other study's kept trials, then its own. Only
    reads go through it (a sampler's ``after_trial`` gets the study itself)."""

    def __init__(self, study, history: list):
        self._study, self._history = study, history

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _with_history(self, own: list, states) -> list:
        return [t for t in self._history if states is None or t.state in states] + own

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        return self._with_history(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache),
                                  states)

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self._with_history(self._study.get_trials(deepcopy=deepcopy, states=states), states)

    @property
    def trials(self) -> list:
        return self.get_trials()
