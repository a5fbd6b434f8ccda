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
from dataclasses import dataclass

import optuna

from hpo import resume, views
from hpo.checkpoint import make_checkpoint
from hpo.context import Context
from hpo.divergence import divergence
from hpo.hyperparams import Hyperparams
from hpo.errors import UserError, WorkFailed
from hpo.interrupts import raise_if_swallowed
from hpo.locks import store_lock
from hpo.store_failures import retried
from hpo.study import url_of
from hpo.trainer import Evaluation, evaluate, fit, seed_everything


@dataclass(frozen=True)
class RetrainResult:
    run_id: str
    trial_number: int
    epochs: int  # the budget
    epochs_trained: int  # fewer when early stopping stopped it
    test: Evaluation


class TrainingDiverged(WorkFailed):
    pass


def best_trial(spec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError:
        raise UserError(f"study {spec.name!r} has no COMPLETE trial to retrain; run `hpo run {spec.source}` "
                        f"until at least one trial completes") from None


def retrain_best_trial(ctx: Context, study: optuna.Study, again: bool = True) -> list[RetrainResult]:
    """Retrain the study's best trial once per budget in ``budget.retrain.epochs``.

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
            done = None if again else ctx.tracker.finished_retrain(best.number, epochs)
            if done is not None:
                ctx.print_line(f"retrain of trial {best.number} ({epochs} epochs) already done: test_accuracy "
                               f"{done.data.metrics.get('test_accuracy', float('nan')):.4f} (MLflow run "
                               f"{done.info.run_id}); `hpo retrain {ctx.spec.name}` trains it again")
                continue
            results.append(retrain(ctx, best, epochs))
            views.retrain_noted(ctx, study, results[-1])
    return results


def retrain(ctx: Context, best: optuna.trial.FrozenTrial, epochs: int) -> RetrainResult:
    """Train ``best``'s hyperparameters for ``epochs`` from a fresh model, test once, log the checkpoint."""
    spec, splits, device, tracker, print_line = ctx.spec, ctx.splits, ctx.device, ctx.tracker, ctx.print_line
    settings = spec.budget.retrain
    hp = spec.search.resolve(best.params)
    seed = best.user_attrs.get("trial_seed", spec.trial_seed(best.number))  # a retry's is its first trial's
    train, val = (splits.train, splits.val) if settings.monitors_validation else (splits.train_and_val(), None)
    print_line(f"retraining trial {best.number} ({spec.metric} {best.value:.4f}) on "
               f"{'train' if val is not None else 'train+val'} ({len(train)} images) for {epochs} epochs: "
               f"{_short(applicable(spec.search, hp.as_dict()))}")
    state_file = resume.retrain_state_file(spec.name, best.number, epochs)
    stamp = resume.fingerprint(spec.name, hp.as_dict(), seed, epochs, spec.model, spec.data, settings)
    saved = resume.load(state_file, stamp)  # None for a retrain of other settings under the same name
    with tracker.retrain_run(best.number, hp.as_dict(), seed, epochs, ctx.parent_run_id) as run:
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
                raise TrainingDiverged(f"retrain of trial {best.number}: {reason}; lower the learning rate or "
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
        views.retrain_done(ctx, run, model, best.number, epochs, test)
        tracker.log_checkpoint(run, make_checkpoint(model, spec=spec, splits=splits, hyperparams=hp.as_dict(),
                                                    trial_number=best.number, seed=seed, epochs=trained,
                                                    metrics=metrics))
    resume.discard(state_file)
    print_line(f"retrain of trial {best.number} ({epochs} epochs): test_accuracy {test.accuracy:.4f} on "
               f"{test.n_images} held-out images" + (f" (MLflow run {run.run_id})" if run.run_id else ""))
    return RetrainResult(run.run_id, best.number, epochs, trained, test)


def applicable(space, params: dict) -> dict:
    """The hyperparameters worth showing: searched or set by the study, and taking part in training (momentum
    only for SGD and RMSprop, swa_lr only with SWA, ...)."""
    searched = set(space.searched)
    return {name: value for name, value in params.items() if space.applies(name, params)
            and (name in searched or value != getattr(Hyperparams, name))}


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
