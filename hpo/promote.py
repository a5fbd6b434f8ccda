"""Promote: register the latest retrain run in the MLflow Model Registry and export the final checkpoint."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpo.checkpoint import load_checkpoint, save_checkpoint
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


def promote(tracker, output: str | Path | None = None, alias: str = DEFAULT_ALIAS) -> Promotion:
    run = tracker.latest_retrain_run()
    with tempfile.TemporaryDirectory() as tmp:  # load it first: never register a version we cannot export
        checkpoint = load_checkpoint(tracker.download_checkpoint(run.info.run_id, tmp))
    version = int(tracker.register(run, tracker.study_name, alias).version)
    checkpoint["registry"] = {"name": tracker.study_name, "version": version, "alias": alias,
                              "run_id": run.info.run_id, "tracking_uri": masked(tracker.uri)}
    path = save_checkpoint(checkpoint, output or default_output(tracker.study_name, version))
    return Promotion(tracker.study_name, version, alias, run.info.run_id, path,
                     checkpoint["metrics"]["test_accuracy"])
