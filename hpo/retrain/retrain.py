"""Retrain the best trial to the full budget, score it once on the test split, log it with its checkpoint.

By default the retrain trains on train+validation and sees no validation
score. With ``budget.retrain.keep_best`` or ``early_stopping`` it trains on
train alone and watches the validation split (never the test split), ending
with the best epoch's weights or stopping when the score stops improving.
``budget.retrain.epochs`` may be a list: one retrain run per budget, side by
side in MLflow (write-up 000's 50 / 100 / 600 epochs). A retrain killed on
its way resumes from its last epoch when it is run again (``hpo/train/training.py``).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna

from hpo.core.errors import WorkFailed
from hpo.search.context import Context
from hpo.spec.model_space import model_params
from hpo.study.objectives import score
from hpo.study.record import StudyRecord, TrialRecord
from hpo.track import dashboard
from hpo.track.best_effort import best_effort
from hpo.track.pictures import CURVES, save_curves, save_test_pictures
from hpo.train.checkpoint import make_checkpoint
from hpo.train.divergence import Diverged
from hpo.train.hyperparams import Hyperparams
from hpo.train.state import fingerprint, retrain_state
from hpo.train.trainer import Evaluation, evaluate, logits_of
from hpo.train.training import Training


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
        own = TrialRecord(trial).seed
        seed = seed if seed is not None else own if own is not None else spec.trial_seed(trial.number)
        found = f"{spec.metric} {score(trial):.4f}" if score(trial) is not None else trial.state.name
        return cls(trial.number, dict(trial.params), seed, found)


@dataclass(frozen=True)
class SeedMember:
    """A retrain's place in a seed comparison (hpo/retrain/seeds.py)."""

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
        """What the study keeps of it (``StudyRecord.retrain_results``; hpo show and hpo report read it)."""
        import datetime

        return {"trial": self.trial_number, "epochs": self.epochs, "epochs_trained": self.epochs_trained,
                "seed": self.seed, **self.test.scores("test"), "n_test_images": self.test.n_images,
                "run_id": self.run_id,
                "group": self.member.group if self.member else None, "role": self.member.role if self.member else None,
                "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


class TrainingDiverged(WorkFailed):
    pass


def record_retrain(ctx: Context, study: optuna.Study, result: RetrainResult) -> None:
    """The finished retrain in the study itself (so hpo show and hpo report have it without MLflow) and in its
    optuna-dashboard note."""
    StudyRecord(study).add_retrain_result(result.as_record())
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        dashboard.write_study_note(ctx.spec, study, run_url=ctx.tracker.run_url)


def retrain(ctx: Context, recipe: Recipe, epochs: int, member: SeedMember | None = None) -> RetrainResult:
    """Train ``recipe`` for ``epochs`` from a fresh model, test once, log the checkpoint."""
    ctx = ctx.with_model(ctx.spec.model.of_params(recipe.params))  # where the model is searched too
    spec, splits, print_line = ctx.spec, ctx.splits, ctx.print_line
    settings = spec.budget.retrain
    hp = spec.search.resolve(recipe.params)
    seed, number = recipe.seed, recipe.trial_number
    train, val = (splits.train, splits.val) if settings.monitors_validation else (splits.train_and_val(), None)
    print_line(f"retraining trial {number} ({recipe.found}) with seed {seed} on "
               f"{'train' if val is not None else 'train+val'} ({len(train)} images) for {epochs} epochs: "
               f"{_short({**applicable(spec.search, hp.as_dict()), **model_params(recipe.params)})}")
    stamp = fingerprint(spec.name, hp.as_dict(), seed, epochs, spec.model, spec.data, settings)
    state = retrain_state(spec.name, number, epochs, seed, stamp)
    recorded = spec.search.recorded(hp)
    with ctx.tracker.retrain_run(number, {**recorded, **model_params(recipe.params)}, seed, epochs,
                                 ctx.parent_run_id, member) as run:
        training = Training(ctx.build_model, train, hp, epochs, ctx.setup(seed), state, val=val,
                            num_classes=splits.num_classes)
        if training.resumed_after:  # a killed retrain of the same settings: it goes on after its last epoch
            run.set_tags({"hpo.resumed_after_epoch": training.resumed_after})
            print_line(f"  resuming after epoch {training.resumed_after}, from {state.path}")
        model, trained = _train(ctx, training, run, number, epochs)
        test = evaluate(model, splits.test, ctx.setup(seed))
        metrics = {**test.scores("test"), "n_test_images": test.n_images, "epochs_trained": trained}
        run.log_metrics(metrics)
        _show(ctx, run, model, number, epochs)
        ctx.tracker.log_checkpoint(run, make_checkpoint(model, spec=spec, splits=splits,
                                                        hyperparams=recorded,
                                                        trial_number=number, seed=seed, epochs=trained,
                                                        metrics=metrics))
    state.discard()
    chosen = spec.metric.replace("val_", "test_")
    also = f" ({chosen} {metrics[chosen]:.4f})" if chosen not in ("test_accuracy", "test_loss") else ""
    print_line(f"retrain of trial {number} ({epochs} epochs): test_accuracy {test.accuracy:.4f}{also} on "
               f"{test.n_images} held-out images" + (f" (MLflow run {run.run_id})" if run.run_id else ""))
    return RetrainResult(run.run_id, number, epochs, trained, test, seed, member)


def _train(ctx: Context, training: Training, run, number: int, epochs: int):
    """The retrain's epochs, with its checkpoints, console lines, best epoch and early stop; returns the model
    to test (the best epoch's with ``keep_best``) and the epochs it trained."""
    spec, settings = ctx.spec, ctx.spec.budget.retrain
    best_score, best_state = training.kept.get("best_score"), training.kept.get("best_state")
    since_best, trained = training.kept.get("since_best", 0), training.resumed_after
    every = max(1, epochs // 10)
    try:
        for result in training.epochs(run):
            trained = result.epoch
            if settings.checkpoint_every and result.epoch % settings.checkpoint_every == 0:
                ctx.tracker.log_checkpoint(run, {"epoch": result.epoch, "state_dict": training.model.state_dict()},
                                           f"checkpoints/epoch-{result.epoch:04d}.pt")
            if result.epoch % every == 0 or result.epoch == epochs:
                ctx.progress.line(f"  epoch {result.epoch:4d}/{epochs}  train_loss {result.train_loss:.4f}  "
                                  f"lr {result.lr:.2e}  {result.epoch_time_s:.2f}s")
            if training.val is not None:
                score = getattr(result, spec.metric)
                if best_score is None or (score > best_score if spec.direction == "maximize" else score < best_score):
                    best_score, best_state, since_best = score, copy.deepcopy(training.model.state_dict()), 0
                else:
                    since_best += 1
            training.keep(best_score=best_score, best_state=best_state, since_best=since_best)
            if settings.early_stopping and since_best >= settings.early_stopping:
                training.stop()  # after this epoch's state is saved
    except Diverged as diverged:
        raise TrainingDiverged(f"retrain of trial {number}: {diverged.reason}; lower the learning rate or "
                               f"retrain another trial") from None
    if settings.early_stopping and since_best >= settings.early_stopping and trained > training.resumed_after:
        ctx.print_line(f"  early stop after epoch {trained}: no better {spec.metric} for {since_best} epochs")
    model = training.model
    if settings.keep_best and best_state is not None:
        model.load_state_dict(best_state)
    return model, trained


def _show(ctx: Context, run, model, number: int, epochs: int) -> None:
    """The retrain run's pictures (curves, confusion matrix, per-class accuracy) and study file."""
    if run.run_id is None:
        return
    with best_effort("drawing the retrain's pictures", ctx.print_line), \
            tempfile.TemporaryDirectory(prefix="hpo-pictures-") as tmp:
        import yaml

        from hpo.data.batches import evaluation_batches

        run.log_text(yaml.safe_dump(dict(ctx.spec.raw), sort_keys=False), "study.yaml")
        if run.epochs:
            run.log_artifact(save_curves(run.epochs, ctx.spec.metric, f"retrain of trial {number} ({epochs} epochs)",
                                         Path(tmp) / CURVES))
        test = ctx.splits.test.to(ctx.device)  # one more pass of inference than evaluate's, for the predictions
        logits = logits_of(model, (images for images, _ in evaluation_batches(test)), ctx.setup(0))
        predicted = logits.argmax(dim=1).cpu().numpy()
        for path in save_test_pictures(test.labels.cpu().numpy(), predicted, ctx.splits.class_names, Path(tmp)):
            run.log_artifact(path)


def applicable(space, params: dict) -> dict:
    """The hyperparameters worth showing: searched or set by the study, and taking part in training (momentum
    only for SGD and RMSprop, swa_lr only with SWA, ...)."""
    searched = set(space.searched)
    return {name: value for name, value in params.items() if space.applies(name, params)
            and (name in searched or value != getattr(Hyperparams, name))}


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
