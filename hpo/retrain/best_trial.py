"""Retrain the study's best trial (or the one ``--trial N`` picks, e.g. a point of a Pareto front), once per budget
in ``budget.retrain.epochs``: alone, or against the baseline over seeds (``budget.retrain.seeds`` above 1,
``hpo/retrain/seeds.py``)."""

from __future__ import annotations

import contextlib

import optuna

from hpo.retrain.retrain import Recipe, RetrainResult, record_retrain, retrain
from hpo.retrain.seeds import compare_seeds
from hpo.search.context import Context
from hpo.stores.locks import store_lock
from hpo.study.objectives import chosen_trial
from hpo.study.record import url_of


def retrain_best_trial(ctx: Context, study: optuna.Study, again: bool = True,
                       trial: int | None = None) -> list[RetrainResult]:
    """Retrain the study's best trial (``trial``: that COMPLETE trial instead) once per budget in
    ``budget.retrain.epochs`` (with ``budget.retrain.seeds`` above 1: a seed comparison against the baseline per
    budget, ``hpo/retrain/seeds.py``).

    With ``again=False`` a budget that already has a finished retrain run of this trial is not trained
    again (a rerun of a finished study); ``hpo retrain`` always trains.

    Example::

        ctx = Context(spec, load_data(spec, device), device, Tracker(spec.name))
        for result in retrain_best_trial(ctx, study):
            print(result.epochs, result.test.accuracy)
    """
    best = chosen_trial(study, trial)
    results = []
    for epochs in ctx.spec.budget.retrain.epochs:
        # Under a lock, so that runs of one study started together retrain once, not once each.
        with store_lock(url_of(study), f"retrain-{ctx.spec.name}") if not again else contextlib.nullcontext():
            if ctx.spec.budget.retrain.seeds > 1:
                results += compare_seeds(ctx, study, best, epochs, again, chosen=trial is not None)
                continue
            done = None if again else ctx.tracker.finished_retrain(best.number, epochs)
            if done is not None:
                ctx.print_line(f"retrain of trial {best.number} ({epochs} epochs) already done: test_accuracy "
                               f"{done.data.metrics.get('test_accuracy', float('nan')):.4f} (MLflow run "
                               f"{done.info.run_id}); `hpo retrain {ctx.spec.name}` trains it again")
                continue
            results.append(retrain(ctx, Recipe.of_trial(ctx.spec, best), epochs))
            record_retrain(ctx, study, results[-1])
    return results
