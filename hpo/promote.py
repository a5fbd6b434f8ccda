"""Promote: register a retrain run in the MLflow Model Registry and export the final checkpoint.

The run is the one given (``hpo promote --run RUN_ID``) or else the study's latest finished retrain run (the
newest by start time, whatever its budget). What is registered is the pyfunc of ``hpo.pyfunc_model``: it
loads with ``mlflow.pyfunc.load_model("models:/STUDY@champion")`` and serves with ``mlflow models serve``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpo.checkpoint import load_checkpoint, save_checkpoint
from hpo.pyfunc_model import log_classifier
from hpo.urls import masked

DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: int
    alias: str
    run_id: str
    checkpoint: Path
    test_accuracy: float


def default_output(study_name: str, version: int) -> Path:
    return Path("checkpoints") / f"{study_name}-v{version}.pt"


def promote(tracker, output: str | Path | None = None, alias: str = DEFAULT_ALIAS,
            run_id: str | None = None) -> Promotion:
    run = tracker.chosen_retrain_run(run_id) if run_id else tracker.latest_retrain_run()
    with tempfile.TemporaryDirectory() as tmp:  # load it first: never register a version we cannot export
        checkpoint_file = tracker.download_checkpoint(run.info.run_id, tmp)
        checkpoint = load_checkpoint(checkpoint_file)
        model_id = log_classifier(tracker.uri, tracker.experiment_id, run.info.run_id, checkpoint_file, checkpoint)
    version = int(tracker.register(run, tracker.study_name, alias, model_id).version)
    checkpoint["registry"] = {"name": tracker.study_name, "version": version, "alias": alias,
                              "run_id": run.info.run_id, "model_id": model_id, "tracking_uri": masked(tracker.uri)}
    path = save_checkpoint(checkpoint, output or default_output(tracker.study_name, version))
    return Promotion(tracker.study_name, version, alias, run.info.run_id, path,
                     checkpoint["metrics"]["test_accuracy"])
