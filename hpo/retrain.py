"""Retrain the best trial to the full budget, score it once on the test split, log it with its checkpoint.

By default the retrain trains on train+validation and sees no validation
score. With ``budget.retrain.keep_best`` or ``early_stopping`` it trains on
train alone and watches the validation split (never the test split), ending
with the best epoch's weights or stopping when the score stops improving.
``budget.retrain.epochs`` may be a list: one retrain run per budget, side by
side in MLflow (write-up 000's 50 / 100 / 600 epochs).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass

import optuna

from hpo import resume, views
from hpo.checkpoint import make_checkpoint
from hpo.context import Context
from hpo.divergence import divergence
from hpo.hyperparams import Hyperparams
from hpo.errors import UserError, WorkFailed
from hpo.interrupts import raise_if_swallowed
from hpo.leaderboard import RETRAIN_ATTR  # the study's finished retrains, oldest first (RetrainResult.as_record)
from hpo.locks import store_lock
from hpo.store_failures import retried
from hpo.study import url_of
from hpo.trainer import Evaluation, evaluate, fit, seed_everything


@dataclass(frozen=True)
class Recipe:
    """What a retrain trains: a trial's hyperparameters with a training seed."""

    trial_number: int
    params: dict
    seed: int
    found: str  # how the search scored it, for the console: "val_accuracy 0.9931" or "PRUNED"

    @classmethod
    def of_trial(cls, spec, trial: optuna.trial.FrozenTrial, seed: int | None = None) -> "Recipe":
        """``trial``'s hyperparameters with ``seed``, or else with the trial's own seed (a retry's is its first
        trial's)."""
        seed = seed if seed is not None else trial.user_attrs.get("trial_seed", spec.trial_seed(trial.number))
        found = f"{spec.metric} {trial.value:.4f}" if trial.value is not None else trial.state.name
        return cls(trial.number, dict(trial.params), seed, found)


@dataclass(frozen=True)
class SeedMember:
    """A retrain's place in a seed comparison (hpo/seeds.py)."""

    group: str
    role: str  # "best" or "baseline"
    index: int  # which of the group's seeds
    group_run_id: str | None  # the MLflow run the group's retrains nest under


@dataclass(frozen=True)
class RetrainResult:
    run_id: str
    trial_number: int
    epochs: int  # the budget
    epochs_trained: int  # fewer when early stopping stopped it
    test: Evaluation
    seed: int = 0
    member: SeedMember | None = None

    def as_record(self) -> dict:
        """What the study keeps of it (user attribute ``retrain_results``; hpo show and hpo report read it)."""
        import datetime

        return {"trial": self.trial_number, "epochs": self.epochs, "epochs_trained": self.epochs_trained,
                "seed": self.seed, "test_accuracy": self.test.accuracy, "test_loss": self.test.loss,
                "n_test_images": self.test.n_images, "run_id": self.run_id,
                "group": self.member.group if self.member else None, "role": self.member.role if self.member else None,
                "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


class TrainingDiverged(WorkFailed):
    pass


def best_trial(spec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError:
        raise UserError(f"study {spec.name!r} has no COMPLETE trial to retrain; run `hpo run {spec.source}` "
                        f"until at least one trial completes") from None


def retrain_best_trial(ctx: Context, study: optuna.Study, again: bool = True) -> list[RetrainResult]:
    """Retrain the study's best trial once per budget in ``budget.retrain.epochs`` (with ``budget.retrain.seeds``
    above 1: a seed comparison against the baseline per budget, :func:`compare_seeds`).

    With ``again=False`` a budget that already has a finished retrain run of this trial is not trained
    again (a rerun of a finished study); ``hpo retrain`` always trains.

    Example::

        ctx = Context(spec, load_data(spec, device), device, Tracker(spec.name))
        for result in retrain_best_trial(ctx, study):
            print(result.epochs, result.test.accuracy)
    """
    best = best_trial(ctx.spec, study)
    results = []
    for epochs in ctx.spec.budget.retrain.epochs:
        # Under a lock, so that runs of one study started together retrain once, not once each.
        with store_lock(url_of(study), f"retrain-{ctx.spec.name}") if not again else contextlib.nullcontext():
            if ctx.spec.budget.retrain.seeds > 1:
                results += compare_seeds(ctx, study, best, epochs, again)
                continue
            done = None if again else ctx.tracker.finished_retrain(best.number, epochs)
            if done is not None:
                ctx.print_line(f"retrain of trial {best.number} ({epochs} epochs) already done: test_accuracy "
                               f"{done.data.metrics.get('test_accuracy', float('nan')):.4f} (MLflow run "
                               f"{done.info.run_id}); `hpo retrain {ctx.spec.name}` trains it again")
                continue
            results.append(retrain(ctx, Recipe.of_trial(ctx.spec, best), epochs))
            _record(ctx, study, results[-1])
    return results


def compare_seeds(ctx: Context, study: optuna.Study, best: optuna.trial.FrozenTrial, epochs: int,
                  again: bool = True) -> list[RetrainResult]:
    """Retrain the best trial and the baseline (trial 0, the first enqueued recipe) with the same
    ``budget.retrain.seeds`` seeds, then judge the difference (hpo/seeds.py); the verdict is printed, kept in the
    study (user attribute ``seed_verdict``) and logged on the comparison's MLflow run."""
    import uuid

    from hpo import seeds as seed_stats

    spec = ctx.spec
    seeds = seed_stats.group_seeds(spec.seed, spec.budget.retrain.seeds)
    baseline = _baseline(spec, study)
    baseline = None if baseline is not None and baseline.trial_number == best.number else baseline
    kept = study.user_attrs.get(seed_stats.VERDICT_ATTR)
    if not again and kept and (kept["best"]["trial"], kept["epochs"], kept["seeds"]) == (best.number, epochs, seeds):
        ctx.print_line(f"seed comparison of trial {best.number} ({epochs} epochs, {len(seeds)} seeds) already done: "
                       f"{kept['sentence']}; `hpo retrain {spec.name}` trains it again")
        return []
    arms = {"best": Recipe.of_trial(spec, best), **({"baseline": baseline} if baseline is not None else {})}
    no_baseline = "the best trial is trial 0, the study's recipe" if spec.enqueue else \
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
                _record(ctx, study, result)
                results[role].append(result)
        verdict = seed_stats.judge(
            (best.number, [r.test.accuracy for r in results["best"]]),
            (baseline.trial_number, [r.test.accuracy for r in results["baseline"]]) if baseline else None,
            epochs, seeds, group=group, run_ids={role: [r.run_id for r in rs] for role, rs in results.items()},
            no_baseline=no_baseline)
        _log_verdict(group_run, verdict)
    retried("the study storage", study.set_user_attr, seed_stats.VERDICT_ATTR, verdict)
    for line in seed_stats.describe(verdict):
        ctx.print_line(line)
    views.verdict_noted(ctx, study, verdict)
    return results["best"] + results.get("baseline", [])


def _baseline(spec, study: optuna.Study) -> Recipe | None:
    """Trial 0 when the study enqueued a recipe (it is the first enqueued trial), with the recipe's values
    where the trial never suggested them (it failed, or never ran)."""
    if not spec.enqueue:
        return None
    trial = study.get_trials(deepcopy=False)[0]
    return dataclasses.replace(Recipe.of_trial(spec, trial), params={**spec.enqueue[0], **trial.params})


def _log_verdict(run, verdict: dict) -> None:
    import json

    metrics = {"best_mean": verdict["best"]["mean"], "best_std": verdict["best"]["std"]}
    if verdict["baseline"] is not None:
        metrics.update(baseline_mean=verdict["baseline"]["mean"], baseline_std=verdict["baseline"]["std"],
                       difference=verdict["difference"]["mean"], difference_low=verdict["difference"]["low"],
                       difference_high=verdict["difference"]["high"])
    run.log_metrics(metrics)
    run.set_tags({"hpo.verdict": verdict["sentence"]})
    run.log_text(json.dumps(verdict, indent=2), "verdict.json")


def _record(ctx: Context, study: optuna.Study, result: RetrainResult) -> None:
    """The finished retrain in the study itself (so hpo show and hpo report have it without MLflow) and in its
    optuna-dashboard note."""
    kept = list(study.user_attrs.get(RETRAIN_ATTR, []))
    retried("the study storage", study.set_user_attr, RETRAIN_ATTR, kept + [result.as_record()])
    views.retrain_noted(ctx, study, result)


def retrain(ctx: Context, recipe: Recipe, epochs: int, member: SeedMember | None = None) -> RetrainResult:
    """Train ``recipe`` for ``epochs`` from a fresh model, test once, log the checkpoint."""
    spec, splits, device, tracker, print_line = ctx.spec, ctx.splits, ctx.device, ctx.tracker, ctx.print_line
    settings = spec.budget.retrain
    hp = spec.search.resolve(recipe.params)
    seed, number = recipe.seed, recipe.trial_number
    train, val = (splits.train, splits.val) if settings.monitors_validation else (splits.train_and_val(), None)
    print_line(f"retraining trial {number} ({recipe.found}) with seed {seed} on "
               f"{'train' if val is not None else 'train+val'} ({len(train)} images) for {epochs} epochs: "
               f"{_short(applicable(spec.search, hp.as_dict()))}")
    state_file = resume.retrain_state_file(spec.name, number, epochs, seed)
    stamp = resume.fingerprint(spec.name, hp.as_dict(), seed, epochs, spec.model, spec.data, settings)
    saved = resume.load(state_file, stamp)  # None for a retrain of other settings under the same name
    with tracker.retrain_run(number, hp.as_dict(), seed, epochs, ctx.parent_run_id, member) as run:
        seed_everything(seed)
        model = spec.model.build(splits)
        best_score, best_state, since_best, trained, first_loss = None, None, 0, 0, None
        if saved is not None:  # a killed retrain of the same settings: go on after its last epoch
            best_score, best_state, since_best, first_loss = (saved["best_score"], saved["best_state"],
                                                              saved["since_best"], saved["first_loss"])
            trained = saved["trainer"]["epoch"]
            run.set_tags({"hpo.resumed_after_epoch": trained})
            print_line(f"  resuming after epoch {trained}, from {state_file}")
        every = max(1, epochs // 10)
        latest: dict = {}
        stopped = saved is not None and settings.early_stopping and since_best >= settings.early_stopping
        if stopped:  # killed after its early stop was decided: the training is over
            model.load_state_dict(saved["trainer"]["model"])
        for result in () if stopped else fit(
                model, train, hp, epochs, mean=splits.mean, std=splits.std, device=device, seed=seed, val=val,
                compile_mode=spec.compile, keep_state=latest.update, resume=saved["trainer"] if saved else None):
            raise_if_swallowed()
            run.log_epoch(result)
            trained = result.epoch
            first_loss = result.train_loss if first_loss is None else first_loss
            reason = divergence(result, first_loss, splits.num_classes, hp.warmup_epochs)
            if reason:
                raise TrainingDiverged(f"retrain of trial {number}: {reason}; lower the learning rate or "
                                       f"retrain another trial")
            if settings.checkpoint_every and result.epoch % settings.checkpoint_every == 0:
                tracker.log_checkpoint(run, {"epoch": result.epoch, "state_dict": model.state_dict()},
                                       f"checkpoints/epoch-{result.epoch:04d}.pt")
            if result.epoch % every == 0 or result.epoch == epochs:
                ctx.progress.line(f"  epoch {result.epoch:4d}/{epochs}  train_loss {result.train_loss:.4f}  "
                                  f"lr {result.lr:.2e}  {result.epoch_time_s:.2f}s")
            if val is not None:
                score = getattr(result, spec.metric)
                if best_score is None or (score > best_score if spec.direction == "maximize" else score < best_score):
                    best_score, best_state, since_best = score, copy.deepcopy(model.state_dict()), 0
                else:
                    since_best += 1
            retried(f"the retrain's state file ({state_file})", resume.save, state_file,
                    {"trainer": dict(latest), "fingerprint": stamp, "first_loss": first_loss,
                     "best_score": best_score, "best_state": best_state, "since_best": since_best})
            if settings.early_stopping and since_best >= settings.early_stopping:
                print_line(f"  early stop after epoch {result.epoch}: no better {spec.metric} for "
                           f"{since_best} epochs")
                break
        if settings.keep_best and best_state is not None:
            model.load_state_dict(best_state)
        test = evaluate(model, splits.test, mean=splits.mean, std=splits.std, device=device)
        metrics = {"test_accuracy": test.accuracy, "test_loss": test.loss, "n_test_images": test.n_images,
                   "epochs_trained": trained}
        if test.top5 is not None:
            metrics["test_top5"] = test.top5
        run.log_metrics(metrics)
        views.retrain_done(ctx, run, model, number, epochs, test)
        tracker.log_checkpoint(run, make_checkpoint(model, spec=spec, splits=splits, hyperparams=hp.as_dict(),
                                                    trial_number=number, seed=seed, epochs=trained,
                                                    metrics=metrics))
    resume.discard(state_file)
    print_line(f"retrain of trial {number} ({epochs} epochs): test_accuracy {test.accuracy:.4f} on "
               f"{test.n_images} held-out images" + (f" (MLflow run {run.run_id})" if run.run_id else ""))
    return RetrainResult(run.run_id, number, epochs, trained, test, seed, member)


def applicable(space, params: dict) -> dict:
    """The hyperparameters worth showing: searched or set by the study, and taking part in training (momentum
    only for SGD and RMSprop, swa_lr only with SWA, ...)."""
    searched = set(space.searched)
    return {name: value for name, value in params.items() if space.applies(name, params)
            and (name in searched or value != getattr(Hyperparams, name))}


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
