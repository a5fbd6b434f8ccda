"""Tracking turned off (``hpo run --no-tracking``): the Tracker interface with nothing behind it.

For machines without MLflow (the GPU machine of our benchmarks carries only
Optuna's small wheels) and for quick searches nobody will promote. Trials
still go to the Optuna storage, so optuna-dashboard and ``hpo show`` see
them; nothing goes to MLflow, so a study run this way has no retrain run to
promote (and a rerun cannot tell that a retrain was already done).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class NullRun:
    run_id = None

    def __init__(self):
        self.epochs: list = []  # the EpochResults, for the optuna-dashboard pictures (hpo/track/dashboard.py)

    def log_metrics(self, metrics, step: int = 0) -> None:
        pass

    def log_epoch(self, result) -> None:
        self.epochs.append(result)

    def set_tags(self, tags) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def end_as_trial(self, trial_state) -> None:
        pass

    def keep_state(self, path) -> None:
        pass


class NullTracker:
    uri = "off (--no-tracking)"
    experiment_id = None

    @contextlib.contextmanager
    def study_run(self, spec, invocation: str) -> Iterator[NullRun]:
        yield NullRun()

    @contextlib.contextmanager
    def trial_run(self, number: int, hyperparams, seed: int, parent_run_id) -> Iterator[NullRun]:
        yield NullRun()

    @contextlib.contextmanager
    def retrain_run(self, trial_number: int, hyperparams, seed: int, epochs: int, parent_run_id,
                    member=None) -> Iterator[NullRun]:
        yield NullRun()

    @contextlib.contextmanager
    def seed_group_run(self, group: str, best: int, baseline, epochs: int, seeds, parent_run_id) -> Iterator[NullRun]:
        yield NullRun()

    def log_checkpoint(self, run, checkpoint: dict, artifact: str = "") -> None:
        pass

    def fetch_state(self, run_ids, name, path) -> bool:
        return False

    def drop_state(self, run_ids) -> None:
        pass

    def reconcile(self, study) -> list[str]:
        return []

    def logged_result(self, trial, objectives):
        return None

    def finished_retrain(self, trial_number: int, epochs: int):
        return None

    def run_url(self, run_id: str) -> None:
        return None
