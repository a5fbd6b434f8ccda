"""Warm starts: a new study begins with the best of what an older one found.

``warm_start: {study: NAME, storage: URL, top: K}`` in a study file: the other study's COMPLETE trials, best
first (in its own direction), are judged against this study's space as enqueued recipes are; the first ``top``
that lie in it are enqueued when this study is created, after the file's own ``enqueue:`` recipes (so a
recipe stays trial 0, the baseline of ``hpo retrain --seeds``). A trial whose params this space cannot take
(a value outside a range, an optimizer no longer offered) is dropped, with the reason; ``hpo check`` lists
what is carried over and what is dropped. The other study is only read. Values of this space that the other
study never searched are sampled as for any trial.

The sampler also learns from the other study: where the two studies have the same objectives, its COMPLETE
trials that lie in this space, with a value for every parameter this space would sample for them (the best
``HISTORY_MOST``), are kept on this study when it is created (``warm_start_history``, with this space's
distributions), and every trial's TPE or GP sampler sees them before this study's own trials
(``hpo/study/history.py``), as if Optuna's ``add_trials`` had added them, without making them trials of
this study: they are not in its budget, leaderboard, plots or retrain (TPE's start-up trials count them).
Random, QMC and grid sampling ignore history, and NSGA-II/III breed from their own generations only.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpo.core.errors import SpecError, UserError

from hpo.study.history import HISTORY_MOST, HISTORY_SAMPLERS


@dataclass(frozen=True)
class CarriedOver:
    """What a warm start takes from the other study."""

    source: str  # "study NAME in URL"
    carried: tuple[tuple[int, float, dict], ...]  # (its trial number, value, params), best first
    dropped: tuple[tuple[int, str], ...]  # (its trial number, why), among those better than the last carried
    history: tuple[dict, ...] = ()  # for the sampler: {trial, params, distributions (JSON), values}, best first
    no_history: str = ""  # why the sampler gets none, where it gets none

    def lines(self) -> list[str]:
        """``hpo check``'s account of it."""
        lines = [f"warm start from {self.source}: {len(self.carried)} trial(s) carried over"]
        lines += [f"  carried: trial {n} ({value:.4g}) {params}" for n, value, params in self.carried]
        lines += [f"  dropped: trial {n}: {why}" for n, why in self.dropped]
        lines.append(f"  sampler history: {len(self.history)} COMPLETE trial(s) of the other study that lie in "
                     f"this space, seen by every trial's sampler" if self.history else
                     f"  sampler history: none ({self.no_history or 'no COMPLETE trial lies in this space'})")
        return lines


def carried_over(spec, storage_url: str) -> CarriedOver:
    """The other study's best trials that lie in ``spec``'s space (``storage_url``: this study's storage, used
    when the warm start names none). Raises UserError when the other study cannot be read."""
    from optuna.trial import TrialState

    from hpo.core.masking import masked
    from hpo.stores.urls import check_storage_exists, check_storage_url
    from hpo.study.objectives import maximizes, objective_names, score
    from hpo.study.record import StudyRecord
    from hpo.study.storage import load_existing_study, open_storage

    warm = spec.warm_start
    url = warm.storage or storage_url
    try:
        check_storage_url(url, "warm_start.storage")
        check_storage_exists(url)
        other = load_existing_study(warm.study, open_storage(url, must_exist=True))
    except UserError as err:
        raise UserError(f"{spec.source}: warm_start: {err}") from None
    done = [t for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    scaling = (StudyRecord(other).spec or {}).get("lr_scaling", "none")
    sign = -1 if maximizes(other) else 1  # on the other study's metric (its first objective)
    done.sort(key=lambda t: (sign * score(t), t.number))
    theirs = [f"{n} ({d.name.lower()})" for n, d in zip(objective_names(other), other.directions)]
    ours = [f"{n} ({d})" for n, d in zip(spec.objectives, spec.directions)]
    why_not = (f"its objectives, {', '.join(theirs)}, are not this study's, {', '.join(ours)}" if theirs != ours
               else f"the {spec.sampler.name} sampler learns nothing from a history; "
                    f"{' and '.join(HISTORY_SAMPLERS)} do" if spec.sampler.name not in HISTORY_SAMPLERS else "")

    def fitted(trial) -> tuple[dict | None, str]:
        """(the trial's params as a recipe of this study, "") or (None, why they do not fit)."""
        if scaling != spec.search.lr_scaling and "lr" in trial.params:
            return None, f"its lr is under lr_scaling {scaling}, this study's under {spec.search.lr_scaling}"
        try:
            return spec.check_recipe(dict(trial.params), f"trial {trial.number}"), ""
        except SpecError as err:
            return None, str(err)[len(f"{spec.source}: "):]

    carried, dropped, history = [], [], []
    for trial in done:  # best first, each judged once for both
        wants_history = not why_not and len(history) < HISTORY_MOST
        if len(carried) == warm.top and not wants_history:
            break
        params, why = fitted(trial)
        if len(carried) < warm.top:
            if params is None:
                dropped.append((trial.number, why))
            else:
                carried.append((trial.number, score(trial), params))
        if wants_history and params is not None:
            kept = _as_this_study(spec, params)
            if kept is not None:
                history.append({"trial": trial.number, **kept, "values": list(trial.values)})
    return CarriedOver(f"study {warm.study!r} in {masked(url)}", tuple(carried), tuple(dropped), tuple(history),
                       no_history=why_not)


def _as_this_study(spec, params: dict) -> dict | None:
    """``params`` with this study's distributions (as JSON): what its own trial with those values would hold;
    None when this space would sample a parameter the other trial has no value for (a sampler given such a
    trial would model a smaller space: Optuna's intersection search space drops what a trial lacks)."""
    import optuna
    from optuna.distributions import distribution_to_json

    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))  # in memory: this space's
    probe.enqueue_trial(params)  # suggest calls, answered with ``params``
    trial = probe.ask()
    spec.search.suggest(trial)
    spec.model.chosen(trial)
    if any(name not in params for name in trial.params):
        return None
    return {"params": dict(trial.params),
            "distributions": {name: distribution_to_json(d) for name, d in trial.distributions.items()}}
