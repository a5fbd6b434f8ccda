"""What optuna-dashboard shows of a study besides Optuna's own plots: links, pictures and the study's note.

    each trial   a note (Markdown, so the link is clickable) with its MLflow run's URL, also kept as the user
                 attribute ``mlflow_run_url``; its learning curves as ``curves.png`` in Optuna's artifact store
                 (``artifact_folder``: beside an SQLite study file), shown on the trial page
    the study    a note with the study file, data, model, budget, the best trial so far, every finished retrain's
                 test result and the latest seed comparison's verdict: rebuilt whole from the study's attributes
                 (``hpo/study/record.py``) whenever one of them changes, so no rewrite loses another's part

Optuna refuses attributes and artifacts on a finished trial, so a trial's part is written just before its
result is told (``hpo/search/trial.py``). Callers make these in ``best_effort`` blocks
(``hpo/track/best_effort.py``): a note that cannot be written never costs a trial.
"""

from __future__ import annotations

import os
from pathlib import Path

from optuna.trial import TrialState

from hpo.stores.urls import sqlite_path
from hpo.study.record import StudyRecord, TrialRecord, stored, url_of

ARTIFACT_FOLDER = "hpo-artifacts"  # beside the default stores; $HPO_DASHBOARD_ARTIFACTS moves it


def artifact_folder(storage_url: str) -> Path:
    """Where Optuna's artifact store (the dashboard's pictures) keeps files: $HPO_DASHBOARD_ARTIFACTS, else
    ``hpo-artifacts/`` beside an SQLite study file (so ``hpo dashboard --storage`` finds them with it), else
    ./hpo-artifacts (a database server: see docs/scaling.md for several machines)."""
    given = os.environ.get("HPO_DASHBOARD_ARTIFACTS")
    study_file = sqlite_path(storage_url)
    if given:
        return Path(given).resolve()
    return (study_file.parent if study_file is not None else Path()).resolve() / ARTIFACT_FOLDER


def artifact_store(storage_url: str, create: bool = True):
    """Optuna's file-system artifact store in ``artifact_folder(storage_url)``; None when it does not exist
    and ``create`` is False (``hpo dashboard`` creates nothing)."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = artifact_folder(storage_url)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder) if folder.is_dir() else None


def link_run(trial, url: str) -> None:
    """The trial's link to its MLflow run: a user attribute and the trial's note.

    The note is the running trial's first, so it is written as ``optuna_dashboard.save_note`` writes a first
    note (version 1, one piece), without that function's two reads of every study system attribute: each
    trial's note adds some, so those reads grew with the study (60 ms each at 1,000 trials,
    docs/benchmarks.md). A note too long for one piece goes through ``save_note``."""
    from optuna_dashboard import save_note
    from optuna_dashboard._note import SYSTEM_ATTR_MAX_LENGTH, note_str_key_prefix, note_ver_key

    TrialRecord(trial).set_mlflow_run_url(url)
    body = f"[MLflow run trial-{trial.number}]({url})\n"
    if len(body) > SYSTEM_ATTR_MAX_LENGTH:
        stored("", save_note, trial, body)
        return
    storage, study_id = trial.storage, trial.study._study_id
    stored("", storage.set_study_system_attr, study_id, f"{note_str_key_prefix(trial._trial_id)}0", body)
    stored("", storage.set_study_system_attr, study_id, note_ver_key(trial._trial_id), 1)


class TrialPicture:
    """A picture's place on a trial's page, made before the trial's result is told (Optuna takes no artifact
    after), its file stored later (``store``), as ``optuna.artifacts.upload_artifact`` stores one: the page
    lists it at once and shows it once the file is there."""

    def __init__(self, study, trial, filename: str):
        import json
        import uuid

        from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

        self.store, self.artifact_id = artifact_store(url_of(study)), str(uuid.uuid4())
        meta = {"artifact_id": self.artifact_id, "filename": filename, "mimetype": "image/png", "encoding": None}
        stored("", trial.storage.set_trial_system_attr, trial._trial_id, ARTIFACTS_ATTR_PREFIX + self.artifact_id,
               json.dumps(meta))

    def write(self, path: Path) -> None:
        def write_once():  # a retry reads the file from its start again
            with open(path, "rb") as file:
                self.store.write(self.artifact_id, file)

        stored("", write_once)


def best_so_far(direction: str, study, trial, state, value) -> tuple[int, float] | None:
    """(number, value) of the best COMPLETE trial, counting ``trial`` about to be told."""
    done = [(t.number, t.values[0]) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values]  # the first objective: the study's metric
    if state == TrialState.COMPLETE and value is not None:
        done.append((trial.number, value))
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda pair: pair[1])


def write_study_note(spec, study, best: tuple[int, float] | None = None, run_url=None) -> None:
    """The study's note, rebuilt whole from the study's attributes (the dashboard keeps one note per study).

    ``best`` is the best trial so far as (number, value), counting a trial about to be told; by default the
    best COMPLETE trial in the study. ``run_url(run_id)`` links each retrain to its MLflow run, where given."""
    from optuna_dashboard import save_note

    def args(values) -> str:
        return f" ({', '.join(f'{k}={v}' for k, v in values.items())})" if values else ""

    budget = spec.budget
    best = best if best is not None else best_so_far(spec.direction, study, None, None, None)
    record = StudyRecord(study)
    lines = [f"## {spec.name}", "",
             f"- study file: `{spec.file or record.study_file}`" if spec.file or record.study_file
             else f"- study: {spec.source}",
             f"- data: {spec.data.name}{args(spec.data.args)}",
             f"- model: {spec.model.name}{args(spec.model.args)}",
             f"- budget: {budget.trials} trials of up to {budget.epochs} epochs; retrain "
             f"{', '.join(map(str, budget.retrain.epochs))} epochs"
             + (f"; timeout {budget.timeout_s:g} s" if budget.timeout_s is not None else ""),
             f"- sampler {spec.sampler.name}, pruner {spec.pruner.name}, seed {spec.seed}"]
    if best is not None:
        number, value = best
        url = _trial_url(study, number)
        lines.append(f"- best so far: {spec.metric} {value:.4f}, trial {number}"
                     + (f" ([MLflow run]({url}))" if url else ""))
    else:
        lines.append("- best so far: none (no trial completed yet)")
    for result in record.retrain_results:
        url = run_url(result["run_id"]) if run_url and result.get("run_id") else None
        lines.append(f"- retrain of trial {result['trial']} ({result['epochs_trained']}/{result['epochs']} epochs, "
                     f"seed {result['seed']}): test_accuracy {result['test_accuracy']:.4f} on "
                     f"{result['n_test_images']} held-out images" + (f" ([MLflow run]({url}))" if url else ""))
    verdict = record.seed_verdict
    if verdict:
        lines.append(f"- seed comparison: {verdict['sentence']}")
    stored("", save_note, study, "\n".join(lines) + "\n")


def _trial_url(study, number: int) -> str | None:
    """The trial's MLflow run, or None (not linked, or not readable now: the note goes without it)."""
    try:
        return TrialRecord(study.get_trials(deepcopy=False)[number]).mlflow_run_url
    except Exception:
        return None
