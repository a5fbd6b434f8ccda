"""Retrain the best trial on train+validation, score it once on the test split, log it with its checkpoint."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

import optuna

from hpo.checkpoint import make_checkpoint
from hpo.errors import UserError
from hpo.study import model_inputs, trial_seed
from hpo.trainer import Evaluation, evaluate, fit, seed_everything
from models import create_model


@dataclass(frozen=True)
class RetrainResult:
    run_id: str
    trial_number: int
    epochs: int
    test: Evaluation


class TrainingDiverged(RuntimeError):
    pass


def best_trial(spec, study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError:
        raise UserError(f"study {spec.name!r} has no COMPLETE trial to retrain; run `hpo run {spec.source}` "
                        f"until at least one trial completes") from None


def retrain_best_trial(spec, study: optuna.Study, splits, tracker, device, parent_run_id: str | None = None,
                       print_line: Callable[[str], None] = print) -> RetrainResult:
    best = best_trial(spec, study)
    hp = spec.search.resolve(best.params)
    seed = trial_seed(spec, best.number)
    epochs = spec.budget.retrain.epochs
    train = splits.train_and_val()
    print_line(f"retraining trial {best.number} ({spec.metric} {best.value:.4f}) on train+val "
               f"({len(train)} images) for {epochs} epochs: {_short(hp.as_dict())}")
    with tracker.retrain_run(best.number, hp.as_dict(), seed, epochs, parent_run_id) as run:
        seed_everything(seed)
        model = create_model(spec.model.name, **model_inputs(splits), **spec.model.args)
        every = max(1, epochs // 10)
        for result in fit(model, train, hp, epochs, mean=splits.mean, std=splits.std, device=device, seed=seed):
            run.log_epoch(result)
            if not math.isfinite(result.train_loss):
                raise TrainingDiverged(f"retrain of trial {best.number} diverged at epoch {result.epoch}")
            if result.epoch % every == 0 or result.epoch == epochs:
                print(f"  epoch {result.epoch:4d}/{epochs}  train_loss {result.train_loss:.4f}  "
                      f"lr {result.lr:.2e}  {result.epoch_time_s:.2f}s", file=sys.stderr)
        test = evaluate(model, splits.test, mean=splits.mean, std=splits.std, device=device)
        metrics = {"test_accuracy": test.accuracy, "test_loss": test.loss, "n_test_images": test.n_images}
        run.log_metrics(metrics)
        tracker.log_checkpoint(run, make_checkpoint(model, spec=spec, splits=splits, hyperparams=hp.as_dict(),
                                                    trial_number=best.number, seed=seed, epochs=epochs,
                                                    metrics=metrics))
    print_line(f"retrain of trial {best.number}: test_accuracy {test.accuracy:.4f} on {test.n_images} held-out "
               f"images (MLflow run {run.run_id})")
    return RetrainResult(run.run_id, best.number, epochs, test)


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
