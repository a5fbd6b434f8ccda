"""The seed comparison: the best trial and the baseline retrained with the same fresh seeds, then judged.

``hpo retrain STUDY --seeds N`` (or ``budget.retrain.seeds: N``) retrains the best trial and the baseline
(trial 0, the study's first enqueued recipe) with the same N seeds on the same budget, seed by seed, so that a
stopped comparison has both arms so far. The verdict (``hpo/retrain/verdict.py``) is printed, kept in the
study (``StudyRecord.seed_verdict``, for hpo show and hpo report), added to its optuna-dashboard note and
logged on the comparison's MLflow run, under which the retrain runs nest.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import optuna

from hpo.retrain import verdict as judging
from hpo.retrain.retrain import Recipe, RetrainResult, SeedMember, record_retrain, retrain
from hpo.search.context import Context
from hpo.study.record import StudyRecord
from hpo.track import dashboard
from hpo.track.best_effort import best_effort


def compare_seeds(ctx: Context, study: optuna.Study, best: optuna.trial.FrozenTrial, epochs: int,
                  again: bool = True, chosen: bool = False) -> list[RetrainResult]:
    """Retrain the best trial (``chosen``: a trial picked with ``--trial``, named so in the verdict) and the
    baseline with the same ``budget.retrain.seeds`` seeds and judge them (with ``again=False``, not when the
    study holds this comparison's verdict already)."""
    spec, record = ctx.spec, StudyRecord(study)
    seeds = judging.group_seeds(spec.seed, spec.budget.retrain.seeds)
    baseline = _baseline(spec, study)
    baseline = None if baseline is not None and baseline.trial_number == best.number else baseline
    kept = record.seed_verdict
    if not again and kept and (kept["best"]["trial"], kept["epochs"], kept["seeds"]) == (best.number, epochs, seeds):
        ctx.print_line(f"seed comparison of trial {best.number} ({epochs} epochs, {len(seeds)} seeds) already done: "
                       f"{kept['sentence']}; `hpo retrain {spec.name}` trains it again")
        return []
    arms = {"best": Recipe.of_trial(spec, best), **({"baseline": baseline} if baseline is not None else {})}
    no_baseline = f"the {'chosen' if chosen else 'best'} trial is trial 0, the study's recipe" if spec.enqueue else \
        "the study enqueues no recipe: add one under enqueue:"
    group = uuid.uuid4().hex[:8]
    results: dict[str, list[RetrainResult]] = {role: [] for role in arms}
    with ctx.tracker.seed_group_run(group, best.number, baseline.trial_number if baseline else None, epochs, seeds,
                                    ctx.parent_run_id) as group_run:
        for index, seed in enumerate(seeds):  # seed by seed, so that a stopped comparison has both arms so far
            for role, recipe in arms.items():
                ctx.print_line(f"seed {index + 1}/{len(seeds)}, {role}:")
                member = SeedMember(group, role, index, group_run.run_id)
                result = retrain(ctx, dataclasses.replace(recipe, seed=seed), epochs, member)
                record_retrain(ctx, study, result)
                results[role].append(result)
        verdict = judging.judge(
            (best.number, [r.test.accuracy for r in results["best"]]),
            (baseline.trial_number, [r.test.accuracy for r in results["baseline"]]) if baseline else None,
            epochs, seeds, group=group, run_ids={role: [r.run_id for r in rs] for role, rs in results.items()},
            no_baseline=no_baseline, label="the chosen" if chosen else "the best")
        _log_verdict(group_run, verdict)
    record.set_seed_verdict(verdict)
    for line in judging.describe(verdict):
        ctx.print_line(line)
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        dashboard.write_study_note(ctx.spec, study, run_url=ctx.tracker.run_url)
    return results["best"] + results.get("baseline", [])


def _baseline(spec, study: optuna.Study) -> Recipe | None:
    """Trial 0 when the study enqueued a recipe (it is the first enqueued trial), with the recipe's values
    where the trial never suggested them (it failed, or never ran)."""
    if not spec.enqueue:
        return None
    trial = study.get_trials(deepcopy=False)[0]
    return dataclasses.replace(Recipe.of_trial(spec, trial), params={**spec.enqueue[0], **trial.params})


def _log_verdict(run, verdict: dict) -> None:
    metrics = {"best_mean": verdict["best"]["mean"], "best_std": verdict["best"]["std"]}
    if verdict["baseline"] is not None:
        metrics.update(baseline_mean=verdict["baseline"]["mean"], baseline_std=verdict["baseline"]["std"],
                       difference=verdict["difference"]["mean"], difference_low=verdict["difference"]["low"],
                       difference_high=verdict["difference"]["high"])
    run.log_metrics(metrics)
    run.set_tags({"hpo.verdict": verdict["sentence"]})
    run.log_text(json.dumps(verdict, indent=2), "verdict.json")
