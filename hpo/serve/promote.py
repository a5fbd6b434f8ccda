"""Promote: register a retrain run in the MLflow Model Registry and export the final checkpoint.

The run is the one given (``hpo promote --run RUN_ID``) or else the study's latest finished retrain run (the
newest by start time, whatever its budget); of a seed comparison, its best-trial run with the median test
accuracy (:func:`default_run`). What is registered is the pyfunc of ``hpo/serve/pyfunc.py``: it
loads with ``mlflow.pyfunc.load_model("models:/STUDY@champion")`` and serves with ``mlflow models serve``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpo.core.masking import masked
from hpo.retrain.verdict import median_member
from hpo.serve.pyfunc import log_classifier
from hpo.train.checkpoint import load_checkpoint, save_checkpoint

DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: int
    alias: str
    run_id: str
    checkpoint: Path
    test_accuracy: float
    chosen_because: str = ""  # why this run, when hpo promote chose it among a seed comparison's


def default_output(study_name: str, version: int) -> Path:
    return Path("checkpoints") / f"{study_name}-v{version}.pt"


def promote(tracker, output: str | Path | None = None, alias: str = DEFAULT_ALIAS,
            run_id: str | None = None) -> Promotion:
    run, because = (tracker.chosen_retrain_run(run_id), "") if run_id else default_run(tracker)
    with tempfile.TemporaryDirectory() as tmp:  # load it first: never register a version we cannot export
        checkpoint_file = tracker.download_checkpoint(run.info.run_id, tmp)
        checkpoint = load_checkpoint(checkpoint_file)
        model_id = log_classifier(tracker.uri, tracker.experiment_id, run.info.run_id, checkpoint_file, checkpoint)
    version = int(tracker.register(run, tracker.study_name, alias, model_id).version)
    checkpoint["registry"] = {"name": tracker.study_name, "version": version, "alias": alias,
                              "run_id": run.info.run_id, "model_id": model_id, "tracking_uri": masked(tracker.uri)}
    path = save_checkpoint(checkpoint, output or default_output(tracker.study_name, version))
    return Promotion(tracker.study_name, version, alias, run.info.run_id, path,
                     checkpoint["metrics"]["test_accuracy"], because)


def default_run(tracker) -> tuple[object, str]:
    """The run promoted when none is named, and why (a console line, or ""): the study's latest finished retrain
    run; when it belongs to a seed comparison, that comparison's best-trial run with the median test accuracy
    (promoting a comparison's luckiest or unluckiest seed by accident would misstate what the recipe gives)."""
    latest = tracker.latest_retrain_run()
    group = latest.data.tags.get("hpo.seed_group")
    if not group:
        return latest, ""
    members = tracker.seed_group_members(group, "best")
    scores = [(m.info.run_id, m.data.metrics.get("test_accuracy", float("nan"))) for m in members]
    chosen = next(m for m in members if m.info.run_id == median_member(scores))
    values = ", ".join(f"{score:.4f}" for _, score in sorted(scores, key=lambda s: s[1]))
    return chosen, (f"seed comparison {group}: promoting the median of the best trial's {len(members)} seeds "
                    f"({values}); name another with --run RUN_ID")
