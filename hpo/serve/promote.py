"""Promote: register a retrain run in the MLflow Model Registry and export the final checkpoint.

The run is the one given (``hpo promote --run RUN_ID``) or else the study's latest finished retrain run (the
newest by start time, whatever its budget; ``--trial N``: of trial N, e.g. a point of a Pareto front); of a
seed comparison, its run of that trial with the median test accuracy (:func:`default_run`). What is registered is the pyfunc of ``hpo/serve/pyfunc.py``: it
loads with ``mlflow.pyfunc.load_model("models:/STUDY@champion")`` and serves with ``mlflow models serve``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpo.core.interrupts import signals_deferred
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


@contextlib.contextmanager
def best_effort_undo(what: str):
    """Undo what can be undone; a store that fails now too is said in a line, and the first error stands."""
    try:
        yield
    except Exception as err:
        print(f"warning: {what} failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              f"the next hpo promote removes it", file=sys.stderr)


def default_output(study_name: str, version: int) -> Path:
    return Path("checkpoints") / f"{study_name}-v{version}.pt"


def promote(tracker, output: str | Path | None = None, alias: str = DEFAULT_ALIAS,
            run_id: str | None = None, print_line=print, trial: int | None = None) -> Promotion:
    """Register the run's model with ``alias`` and write its checkpoint: all of it, or nothing.

    The version is registered tagged ``hpo.promotion: pending`` (with the alias, the version the alias is on
    and the checkpoint's path); the checkpoint is written beside its path under a temporary name; then, with
    Ctrl-C held back, the file is renamed into place, the alias moved and the tags set to ``done``. A failure
    or Ctrl-C before that undoes what was made; a process killed before that leaves the pending tag, and the
    next ``hpo promote`` undoes what it left (``Tracker.undo_dead_promotions``), printing a line each."""
    for line in tracker.undo_dead_promotions(tracker.study_name):
        print_line(line)
    run, because = (tracker.chosen_retrain_run(run_id), "") if run_id else default_run(tracker, trial)
    name, model_id, version, finished = tracker.study_name, None, None, False
    try:
        with tempfile.TemporaryDirectory() as tmp:  # load it first: never register a version we cannot export
            checkpoint_file = tracker.download_checkpoint(run.info.run_id, tmp)
            checkpoint = load_checkpoint(checkpoint_file)
            model_id = log_classifier(tracker.mlflow_uri, tracker.experiment_id, run.info.run_id, checkpoint_file,
                                      checkpoint, tags=tracker.promotion_tags())
        previous = tracker.alias_version(name, alias)
        version = tracker.register_pending(run, name, model_id, alias, previous)
        path = Path(output or default_output(name, int(version)))
        tracker.note_output(name, version, path)
        checkpoint["registry"] = {"name": name, "version": int(version), "alias": alias, "run_id": run.info.run_id,
                                  "model_id": model_id, "tracking_uri": masked(tracker.uri)}
        partial = path.with_name(f".{path.name}.partial")
        save_checkpoint(checkpoint, partial)
        with signals_deferred():  # the last steps, and nothing cut between them
            os.replace(partial, path)
            tracker.finish_promotion(name, version, model_id, alias)
            finished = True
    except BaseException:
        if not finished:  # a Ctrl-C held back until the end is raised after a whole promotion: nothing to undo
            with best_effort_undo(f"undoing the promotion of version {version} of {name!r}"):
                tracker.undo_promotion(name, version, model_id)
        raise
    return Promotion(name, int(version), alias, run.info.run_id, path, checkpoint["metrics"]["test_accuracy"],
                     because)


def default_run(tracker, trial: int | None = None) -> tuple[object, str]:
    """The run promoted when none is named, and why (a console line, or ""): the study's latest finished retrain
    run (``trial``: of that trial); when it belongs to a seed comparison, that comparison's run of the best
    trial (of ``trial``) with the median test accuracy (promoting a comparison's luckiest or unluckiest seed by
    accident would misstate what the recipe gives)."""
    latest = tracker.latest_retrain_run(trial)
    group = latest.data.tags.get("hpo.seed_group")
    if not group:
        return latest, ""
    role = "best" if trial is None else latest.data.tags.get("hpo.seed_role", "best")
    members = tracker.seed_group_members(group, role)
    scores = [(m.info.run_id, m.data.metrics.get("test_accuracy", float("nan"))) for m in members]
    chosen = next(m for m in members if m.info.run_id == median_member(scores))
    values = ", ".join(f"{score:.4f}" for _, score in sorted(scores, key=lambda s: s[1]))
    return chosen, (f"seed comparison {group}: promoting the median of the {role} trial's {len(members)} seeds "
                    f"({values}); name another with --run RUN_ID")
