"""Warm starts: a new study begins with the best of what an older one found.

``warm_start: {study: NAME, storage: URL, top: K}`` in a study file: the other study's COMPLETE trials, best
first (in its own direction), are judged against this study's space as enqueued recipes are; the first ``top``
that lie in it are enqueued when this study is created, after the file's own ``enqueue:`` recipes (so a
recipe stays trial 0, the baseline of ``hpo retrain --seeds``). A trial whose params this space cannot take
(a value outside a range, an optimizer no longer offered) is dropped, with the reason; ``hpo check`` lists
what is carried over and what is dropped. The other study is only read. Values of this space that the other
study never searched are sampled as for any trial.

Not done (yet): handing the other study's finished trials to the sampler itself (Optuna's ``add_trials``),
which would make them trials of this study: counted in its budget, ranked in its leaderboard and retrained.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpo.core.errors import SpecError, UserError


@dataclass(frozen=True)
class CarriedOver:
    """What a warm start takes from the other study."""

    source: str  # "study NAME in URL"
    carried: tuple[tuple[int, float, dict], ...]  # (its trial number, value, params), best first
    dropped: tuple[tuple[int, str], ...]  # (its trial number, why), among those better than the last carried

    def lines(self) -> list[str]:
        """``hpo check``'s account of it."""
        lines = [f"warm start from {self.source}: {len(self.carried)} trial(s) carried over"]
        lines += [f"  carried: trial {n} ({value:.4g}) {params}" for n, value, params in self.carried]
        lines += [f"  dropped: trial {n}: {why}" for n, why in self.dropped]
        return lines


def carried_over(spec, storage_url: str) -> CarriedOver:
    """The other study's best trials that lie in ``spec``'s space (``storage_url``: this study's storage, used
    when the warm start names none). Raises UserError when the other study cannot be read."""
    from optuna.trial import TrialState

    from hpo.core.masking import masked
    from hpo.stores.urls import check_storage_exists, check_storage_url
    from hpo.study.objectives import maximizes, score
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
    carried, dropped = [], []
    for trial in done:
        if len(carried) == warm.top:
            break
        if scaling != spec.search.lr_scaling and "lr" in trial.params:
            dropped.append((trial.number, f"its lr is under lr_scaling {scaling}, this study's under "
                                          f"{spec.search.lr_scaling}"))
            continue
        try:
            carried.append((trial.number, score(trial), spec.check_recipe(dict(trial.params),
                                                                         f"trial {trial.number}")))
        except SpecError as err:
            dropped.append((trial.number, str(err)[len(f"{spec.source}: "):]))
    return CarriedOver(f"study {warm.study!r} in {masked(url)}", tuple(carried), tuple(dropped))
