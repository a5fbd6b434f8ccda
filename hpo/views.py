"""What users see of a study in optuna-dashboard and in MLflow: links, pictures, notes, summary tables.

optuna-dashboard:
    each trial: a note (Markdown, so the link is clickable) with its MLflow run's URL, also kept as the user
    attribute ``mlflow_run_url``; its learning curves as ``curves.png`` in Optuna's artifact store
    (``artifact_folder``: beside an SQLite study file), shown on the trial page.
    the study: a note with the study file, data, model, budget and best trial so far, rewritten when a
    trial becomes the best; each retrain's test result is added when it finishes.
MLflow:
    each trial run: ``curves.png`` and, when pruned, ``hpo.pruned_at_epoch`` (``hpo.prune_reason`` is set where
    the trial is stopped, in ``hpo/search.py``).
    the parent run: ``best_value`` and ``best_trial`` after each trial (step = finished trials), and
    ``trials.csv`` (every trial, one row each) at the end of the search.
    the retrain run: ``curves.png``, ``confusion_matrix.png``, ``per_class_accuracy.png`` and ``study.yaml``.

Everything here is best effort: a picture or a note that cannot be made costs one console line (once per kind
per process), never a trial or a retrain. With ``--no-tracking`` the MLflow parts are skipped and MLflow is not
imported. Optuna refuses attributes and artifacts on a finished trial, so the trial's part runs just before
its result is told.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from hpo.store_failures import retried

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where the README's `mlflow ui` serves a local SQLite store
ARTIFACT_FOLDER = "hpo-artifacts"  # beside the default stores; $HPO_DASHBOARD_ARTIFACTS moves it
CURVES = "curves.png"
FIGURE_SIZE_IN, FIGURE_DPI = (5.0, 3.2), 80  # 400x256 pixels, about 20 kB: cheap next to a trial's epochs

_said: set[str] = set()  # the kinds of failure already reported by this process


@contextlib.contextmanager
def best_effort(what: str, print_line=None) -> Iterator[None]:
    """Run the block; an exception becomes one console line (the first time for ``what``), not a failure.
    That includes a full or read-only store: the trial's own logging or its retrain's checkpoint, which
    need it, stop the study with that store's line."""
    try:
        yield
    except Exception as err:
        if what not in _said:
            _said.add(what)
            from hpo.urls import masked
            line = (f"hpo: {what} failed ({type(err).__name__}: {masked(str(err).splitlines()[0] if str(err) else '')}"
                    f"); the work goes on without it")
            (print_line or (lambda text: print(text, flush=True)))(line)


# ---------------------------------------------------------------------------------------------- where things are

def mlflow_ui(tracking_uri: str) -> str:
    """The web address of the MLflow UI for ``tracking_uri``: a tracking server is its own UI; a local store is
    read by `mlflow ui` ($HPO_MLFLOW_UI, default http://127.0.0.1:5000). Any password is left out."""
    if tracking_uri.startswith(("http:", "https:")):
        parts = urlsplit(tracking_uri)
        return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                           parts.path, "", "")).rstrip("/")
    return (os.environ.get("HPO_MLFLOW_UI") or DEFAULT_MLFLOW_UI).rstrip("/")


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_folder(storage_url: str) -> Path:
    """Where Optuna's artifact store (the dashboard's pictures) keeps files: $HPO_DASHBOARD_ARTIFACTS, else
    ``hpo-artifacts/`` beside an SQLite study file (so ``hpo dashboard --storage`` finds them with it), else
    ./hpo-artifacts (a database server: see the README for several machines)."""
    from hpo.urls import sqlite_path

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


# ----------------------------------------------------------------------------------------------------- a trial

def run_started(trial, tracking_uri: str, experiment_id: str, run_id: str) -> None:
    """The trial's link to its MLflow run, as soon as the run exists: a user attribute and the trial's note."""
    with best_effort("linking the trial to its MLflow run in optuna-dashboard"):
        from optuna_dashboard import save_note

        url = run_url(tracking_uri, experiment_id, run_id)
        retried("the study storage", trial.set_user_attr, "mlflow_run_url", url)
        retried("the study storage", save_note, trial, f"[MLflow run trial-{trial.number}]({url})\n")


def trial_ending(ctx, study, trial, state, value, run) -> None:
    """Everything users see of a trial that finished COMPLETE or PRUNED, just before Optuna is told (Optuna
    refuses artifacts and attributes on a finished trial): its curves in the artifact store and its MLflow
    run, its pruning epoch, the study's note and the parent run's best so far."""
    from optuna.trial import TrialState

    tracked = run.run_id is not None
    if state == TrialState.PRUNED and tracked:
        with best_effort("tagging the pruned run", ctx.print_line):
            run.set_tags({"hpo.pruned_at_epoch": trial.user_attrs.get("epochs", 0)})
    if run.epochs:
        with best_effort("drawing a trial's learning curves", ctx.print_line), \
                tempfile.TemporaryDirectory(prefix="hpo-views-") as tmp:
            path = Path(tmp) / CURVES
            save_curves(run.epochs, ctx.spec.metric, f"trial {trial.number} ({state.name.lower()})", path)
            from optuna.artifacts import upload_artifact

            from hpo.study import url_of
            retried("the study storage", upload_artifact, artifact_store=artifact_store(url_of(study)),
                    file_path=str(path), study_or_trial=trial)
            if tracked:
                run.log_artifact(path)
    best = None
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        best = _best_so_far(ctx.spec, study, trial, state, value)
        if best is not None and best[0] == trial.number:  # only what changes it: fewer writes with many workers
            save_study_note(ctx.spec, study, best)
    if best is not None and ctx.parent_run_id and tracked:
        with best_effort("logging the best trial so far to the parent run", ctx.print_line):
            from mlflow.entities import Metric
            import time
            finished = sum(t.state.is_finished() and t.state != TrialState.FAIL
                           for t in study.get_trials(deepcopy=False)) + 1  # with this trial, not yet told
            now = int(time.time() * 1000)
            ctx.tracker.client.log_batch(ctx.parent_run_id, metrics=[
                Metric("best_value", float(best[1]), now, finished),
                Metric("best_trial", float(best[0]), now, finished)])


def _best_so_far(spec, study, trial, state, value) -> tuple[int, float] | None:
    """(number, value) of the best COMPLETE trial, counting ``trial`` about to be told."""
    from optuna.trial import TrialState

    done = [(t.number, t.value) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if state == TrialState.COMPLETE and value is not None:
        done.append((trial.number, value))
    if not done:
        return None
    pick = max if spec.direction == "maximize" else min
    return pick(done, key=lambda pair: pair[1])


# ------------------------------------------------------------------------------------------------- the study

def save_study_note(spec, study, best: tuple[int, float] | None, extra: list[str] = ()) -> None:
    """The study's note in optuna-dashboard (rewritten whole: the dashboard keeps one note per study)."""
    from optuna_dashboard import save_note

    def args(values) -> str:
        return f" ({', '.join(f'{k}={v}' for k, v in values.items())})" if values else ""

    budget = spec.budget
    lines = [f"## {spec.name}", "",
             f"- study file: `{Path(spec.source).resolve()}`",
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
    retried("the study storage", save_note, study, "\n".join([*lines, *extra]) + "\n")


def _trial_url(study, number: int) -> str | None:
    with contextlib.suppress(Exception):
        return study.get_trials(deepcopy=False)[number].user_attrs.get("mlflow_run_url")
    return None


def study_started(ctx, study) -> None:
    """The study's note before its first trial of this ``hpo run`` (and the best of earlier runs)."""
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        best = None
        with contextlib.suppress(ValueError):
            best = (study.best_trial.number, study.best_value)
        save_study_note(ctx.spec, study, best)


def search_done(ctx, study, parent) -> None:
    """The parent run's table of every trial (``trials.csv``), when MLflow is on."""
    if parent.run_id is None:
        return
    with best_effort("writing trials.csv to the parent run", ctx.print_line):
        table = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs",
                                              "datetime_start", "datetime_complete", "duration"))
        parent.log_text(table.to_csv(index=False), "trials.csv")


# ----------------------------------------------------------------------------------------------- the retrain

def retrain_done(ctx, run, model, best_number: int, epochs: int, test) -> None:
    """The retrain run's pictures (curves, confusion matrix, per-class accuracy) and study file."""
    if run.run_id is None:
        return
    with best_effort("drawing the retrain's pictures", ctx.print_line), \
            tempfile.TemporaryDirectory(prefix="hpo-views-") as tmp:
        import yaml
        run.log_text(yaml.safe_dump(dict(ctx.spec.raw), sort_keys=False), "study.yaml")
        if run.epochs:
            save_curves(run.epochs, ctx.spec.metric, f"retrain of trial {best_number} ({epochs} epochs)",
                        Path(tmp) / CURVES)
            run.log_artifact(Path(tmp) / CURVES)
        labels, predicted = _predictions(ctx, model)
        for path in save_test_pictures(labels, predicted, ctx.splits.class_names, Path(tmp)):
            run.log_artifact(path)


def retrain_noted(ctx, study, result) -> None:
    """The retrain's test result added to the study's note."""
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        from optuna_dashboard import get_note, save_note

        url = run_url(ctx.tracker.uri, ctx.tracker.experiment_id, result.run_id) if result.run_id else None
        line = (f"- retrain of trial {result.trial_number} ({result.epochs_trained}/{result.epochs} epochs): "
                f"test_accuracy {result.test.accuracy:.4f} on {result.test.n_images} held-out images"
                + (f" ([MLflow run]({url}))" if url else ""))
        retried("the study storage", save_note, study, get_note(study).rstrip("\n") + "\n" + line + "\n")


def verdict_noted(ctx, study, verdict: dict) -> None:
    """A seed comparison's verdict (hpo/seeds.py) added to the study's note."""
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        from optuna_dashboard import get_note, save_note

        retried("the study storage", save_note, study,
                get_note(study).rstrip("\n") + f"\n- seed comparison: {verdict['sentence']}\n")


def _predictions(ctx, model):
    """(labels, predicted classes) on the test split: one more pass of inference than ``evaluate``'s."""
    from hpo.trainer import logits_of
    from data.batches import evaluation_batches

    test = ctx.splits.test.to(ctx.device)
    logits = logits_of(model, (images for images, _ in evaluation_batches(test)), mean=ctx.splits.mean,
                       std=ctx.splits.std, device=ctx.device)
    return test.labels.cpu().numpy(), logits.argmax(dim=1).cpu().numpy()


# -------------------------------------------------------------------------------------------------- pictures

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display on a training machine
    import matplotlib.pyplot as plt
    return plt


def save_curves(epochs, metric: str, title: str, path: Path) -> Path:
    """Training and validation loss (left axis) and ``metric`` (right axis) per epoch, as a PNG."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    x = [e.epoch for e in epochs]
    fig, loss_axis = plt.subplots(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    try:
        loss_axis.plot(x, [e.train_loss for e in epochs], label="train_loss", color="tab:blue", marker="o", markersize=3)
        if any(e.val_loss is not None for e in epochs):
            loss_axis.plot(x, [e.val_loss for e in epochs], label="val_loss", color="tab:orange", marker="o", markersize=3)
        loss_axis.set_xlabel("epoch")
        if len(x) <= 12:
            loss_axis.set_xticks(x)
        else:
            loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_axis.set_ylabel("loss")
        values = [getattr(e, metric, None) for e in epochs]
        if any(v is not None for v in values):
            metric_axis = loss_axis.twinx()
            metric_axis.plot(x, values, label=metric, color="tab:green", marker="o", markersize=3)
            metric_axis.set_ylabel(metric)
            metric_axis.legend(loc="center right", fontsize=7)
        loss_axis.legend(loc="upper right", fontsize=7)
        loss_axis.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def save_test_pictures(labels, predicted, class_names, folder: Path) -> list[Path]:
    """``confusion_matrix.png`` and ``per_class_accuracy.png`` of the test split."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    plt = _pyplot()
    classes = list(range(len(class_names)))
    matrix = confusion_matrix(labels, predicted, labels=classes)
    side = min(12.0, 3.0 + 0.35 * len(classes))  # readable up to a few dozen classes
    fig, axis = plt.subplots(figsize=(side, side), dpi=FIGURE_DPI)
    try:
        ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
            ax=axis, colorbar=False, include_values=len(classes) <= 20, xticks_rotation="vertical")
        axis.set_title("test split: true class (rows) against predicted", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "confusion_matrix.png", format="png")
    finally:
        plt.close(fig)
    totals = matrix.sum(axis=1)
    accuracy = np.divide(np.diag(matrix), totals, out=np.zeros(len(classes)), where=totals > 0)
    fig, axis = plt.subplots(figsize=(max(FIGURE_SIZE_IN[0], 0.3 * len(classes)), FIGURE_SIZE_IN[1]),
                             dpi=FIGURE_DPI)
    try:
        axis.bar([str(c) for c in class_names], accuracy, color="tab:blue")
        axis.set_ylim(0, 1)
        axis.set_ylabel("test accuracy")
        axis.set_title(f"per-class test accuracy (mean {accuracy.mean():.3f})", fontsize=9)
        axis.tick_params(axis="x", labelrotation=90 if len(classes) > 12 else 0, labelsize=7)
        fig.tight_layout()
        fig.savefig(folder / "per_class_accuracy.png", format="png")
    finally:
        plt.close(fig)
    return [folder / "confusion_matrix.png", folder / "per_class_accuracy.png"]
