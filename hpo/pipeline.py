"""What ``hpo run`` does, top to bottom (and what ``hpo retrain`` and ``hpo lr-find`` do with a study).

    1. read and validate the study file (before any store is touched)
    2. load the data onto the device, checking that the model can be built for it
    3. open the storage and the study, with the study's sampler and pruner
       (the same in this process, in every worker and in every rerun)
    4. set the study's attributes, and end what killed runs left RUNNING
    5. open the parent MLflow run; search here, or through one worker process per device slot
    6. judge the search: budget, timeout or grid reached -> retrain the best trial (unless a finished
       retrain of that trial and budget exists) -> exit 0; otherwise exit 1, the parent run FAILED

A worker (``--gpus``) runs steps 1-3 and the search of step 5 under the parent's MLflow run.

Modules are imported where they are first needed, so a bad study file is refused before torch or
MLflow loads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hpo.errors import SpecError, UserError, WorkFailed

EXIT_OK, EXIT_FAILED = 0, 1
NO_PARENT_RUN = "-"  # --worker-of when tracking is off: a worker nested under no MLflow run


@dataclass(frozen=True)
class Stores:
    """Where a study lives, as given on the command line (None: the environment's or the default)."""

    storage: str | None = None  # Optuna storage URL: $HPO_STORAGE, else sqlite:///hpo.db
    tracking: str | None = None  # MLflow tracking URI: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    artifacts: str | None = None  # where a new MLflow experiment keeps its artifacts
    tracking_off: bool = False  # --no-tracking: nothing goes to MLflow


@dataclass(frozen=True)
class RunRequest:
    """One ``hpo run``, as the command line asked for it."""

    study_file: str
    stores: Stores
    overrides: tuple[str, ...] = ()
    device: str | None = None  # None: the study's
    gpus: str | None = None  # "0,1" or "cpu": one worker process per slot; None: search in this process
    trials_per_gpu: int = 1
    retrain: bool = True
    invocation: str = "hpo run"  # logged with the parent run
    worker_of: str | None = None  # set in a worker: the parent's MLflow run id (or NO_PARENT_RUN)
    worker_threads: int | None = None
    quiet: bool = False  # --quiet: no bars or epoch lines inside trials (hpo.progress)


def run(request: RunRequest, print_line: Callable[[str], None] = print) -> int:
    """Search a study, then retrain its best trial; returns the exit code (see the module's docstring)."""
    from hpo.spec import load_study

    spec = load_study(request.study_file, request.overrides)
    check_stores(request.stores)

    import torch

    from hpo.context import Context
    from hpo.interrupts import interrupts_raise
    from hpo.progress import Progress
    from hpo.study import open_storage, open_study
    from hpo.urls import storage_url
    from hpo.trainer import resolve_device
    from hpo.workers import plan_workers

    with interrupts_raise():  # Ctrl-C and SIGTERM: the running trial FAILED at once, every run ended
        workers = plan_workers(request.gpus, request.trials_per_gpu, torch.cuda.device_count()) \
            if request.gpus else []
        device = resolve_device(workers[0] if workers else request.device or spec.device)
        if request.worker_threads:
            torch.set_num_threads(request.worker_threads)
        splits = load_data(spec, device)
        storage = open_storage(storage_url(request.stores.storage))
        tracker = open_tracker(spec.name, request.stores)
        study = open_study(spec, storage)
        progress = Progress.for_output(request.quiet)  # a worker's output is a pipe: epoch lines, never bars
        if request.worker_of:
            parent = None if request.worker_of == NO_PARENT_RUN else request.worker_of
            end = _search(Context(spec, splits, device, tracker, parent, print_line, progress), study, [], request)
            return EXIT_OK if end.reached else EXIT_FAILED
        return _lead(request, Context(spec, splits, device, tracker, None, print_line, progress), study, workers)


def _lead(request: RunRequest, ctx, study, workers: list[str]) -> int:
    """The process the user started: steps 4-6."""
    from hpo import views
    from hpo.retrain import retrain_best_trial
    from hpo.study import count_finished, counts_by_state, record_study, url_of

    spec, tracker, print_line = ctx.spec, ctx.tracker, ctx.print_line
    record_study(study, spec, tracker.experiment_id)
    _reconcile(ctx, study)
    already = count_finished(study)
    splits = ctx.splits
    print_line(f"study {spec.name!r}: {already} finished trials, budget {spec.budget.trials}; "
               f"{spec.model.name} on {spec.data.name} ({len(splits.train)} train / {len(splits.val)} val / "
               f"{len(splits.test)} test) on {', '.join(workers) if workers else ctx.device}; storage "
               f"{url_of(study)}, MLflow {tracker.uri}")
    largest = spec.search.largest("batch_size")
    if largest > len(splits.train):  # stated, not silent: such a trial takes one batch of everything per epoch
        print_line(f"note: search.batch_size reaches {largest}, more than the {len(splits.train)} training images; "
                   f"a larger batch takes all {len(splits.train)} (one step per epoch)")
    if already >= spec.budget.trials:
        print_line(f"study {spec.name!r} already has {already} finished trials (budget {spec.budget.trials}); "
                   f"raise it with --trials to search more")
    started = time.time()
    with tracker.study_run(spec, request.invocation) as parent:
        ctx = _with_parent(ctx, parent.run_id)
        views.study_started(ctx, study)
        end = _search(ctx, study, workers, request)
        views.search_done(ctx, study, parent)
        _reconcile(ctx, study)  # e.g. a worker that was killed
        summary = counts_by_state(study)
        parent.log_metrics({f"n_{state.lower()}": count for state, count in summary.items()})
        failure = _failure(spec, study, end)
        if failure:  # the parent run ends FAILED with it, as with a diverged retrain below
            raise WorkFailed(failure)
        print_line(f"search done in {time.time() - started:.0f}s ({_said(end)}): {summary}; best "
                   f"{spec.metric} {study.best_value:.4f} (trial {study.best_trial.number})")
        if request.retrain:
            for result in retrain_best_trial(ctx, study, again=False):
                parent.log_metrics({"test_accuracy": result.test.accuracy}, step=result.epochs)
    if request.retrain and not request.stores.tracking_off:
        print_line(f"next: hpo promote {spec.name}" + store_flags(request.stores))
    return EXIT_OK


def _search(ctx, study, workers: list[str], request: RunRequest):
    """Trials until the budget: in this process, or in one worker process per device slot."""
    from hpo.search import SearchEnd, run_search
    from hpo.study import count_finished, url_of
    from hpo.study_sampler import points_left
    from hpo.workers import run_workers

    if not workers:
        return run_search(ctx, study)
    started = time.time()
    worker_args = [request.study_file, *[a for o in request.overrides for a in ("--set", o)],
                   "--worker-of", ctx.parent_run_id or NO_PARENT_RUN]
    worker_args += ["--no-tracking"] if request.stores.tracking_off else []
    worker_args += ["--quiet"] if request.quiet else []
    if request.stores.artifacts:
        worker_args += ["--artifacts", request.stores.artifacts]
    # The store URLs go through the environment: a password on a command line is visible to every user (ps).
    stores_env = {"HPO_STORAGE": url_of(study)}
    if not request.stores.tracking_off:
        stores_env["MLFLOW_TRACKING_URI"] = ctx.tracker.uri
    codes = run_workers(workers, worker_args, env=stores_env, print_line=ctx.print_line)
    for index, code in enumerate(codes):
        if code != 0:
            ctx.print_line(f"worker w{index} ({workers[index]}) exited with "
                           + (f"signal {-code}" if code < 0 else f"code {code}"))
    # The workers' own ends are in their lines; the study says where the search stands.
    timeout = ctx.spec.budget.timeout_s
    if count_finished(study) >= ctx.spec.budget.trials:
        return SearchEnd("budget")
    if points_left(study.sampler, study) == 0:
        return SearchEnd("grid")
    if timeout is not None and time.time() - started >= timeout:
        return SearchEnd("timeout")
    return SearchEnd("workers", f"the workers stopped short of the budget (exit codes {codes})")


def _failure(spec, study, end) -> str:
    """Why this search counts as failed, or "" when it did what was asked."""
    from optuna.trial import TrialState

    from hpo.search import MAX_FAILURES_IN_A_ROW
    from hpo.study import counts_by_state

    if end.reason == "workers":
        return end.last_error
    if end.reason == "failures":
        return (f"{MAX_FAILURES_IN_A_ROW} trials in a row failed ({counts_by_state(study)}); the last error: "
                f"{end.last_error}; each failed run in MLflow has the traceback in error.txt")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return f"no trial of {spec.name!r} completed ({counts_by_state(study)}); nothing to retrain"
    return ""


def _said(end) -> str:
    return {"budget": "budget reached", "timeout": "timeout reached",
            "grid": "every point of the grid has run"}.get(end.reason, end.reason)


def _reconcile(ctx, study) -> None:
    """End what killed processes of this machine left behind: RUNNING trials (with the result their MLflow
    run logged, if it finished), and RUNNING MLflow runs."""
    from hpo.study import fail_dead_trials, study_lock, url_of

    with study_lock(url_of(study), study.study_name):
        lines = fail_dead_trials(study, lambda trial: ctx.tracker.logged_result(trial, ctx.spec.metric))
    for line in lines + ctx.tracker.reconcile(study):
        ctx.print_line(line)


def _with_parent(ctx, run_id):
    import dataclasses
    return dataclasses.replace(ctx, parent_run_id=run_id)


def check_stores(stores: Stores, trains: bool = True) -> None:
    """Refuse store URLs that cannot work, and local stores that cannot be written (read-only, full), before
    any store is created or any data is loaded; when the command ``trains``, also the folders it writes
    artifacts and training state to."""
    from hpo.resume import state_folder
    from hpo.store_failures import check_writable
    from hpo.urls import (artifact_root, check_storage_url, check_tracking_uri, local_path, normalized, sqlite_path,
                          storage_url, tracking_uri)

    storage = storage_url(stores.storage)
    tracking = None if stores.tracking_off else tracking_uri(stores.tracking)
    if tracking and normalized(tracking) == normalized(storage):
        raise UserError(f"the study storage and MLflow are both {tracking}; give each a file of its own "
                        f"(default: sqlite:///hpo.db and sqlite:///mlflow.db)")
    check_storage_url(storage)
    if tracking:
        check_tracking_uri(tracking)
    for url, what in ((storage, "--storage / HPO_STORAGE"), (tracking, "--tracking-uri / MLFLOW_TRACKING_URI")):
        path = local_path(url) if url else None
        if path is not None:
            check_writable(path, what)
    if trains:
        check_writable(state_folder(), "HPO_STATE")  # where running trials keep their training state
    if tracking and trains:  # the folder a new experiment keeps its artifacts in: given, or a new store's
        new_store = sqlite_path(tracking) is not None and not sqlite_path(tracking).exists()
        if stores.artifacts or os.environ.get("HPO_ARTIFACTS") or new_store:
            check_writable(artifact_root(stores.artifacts), "--artifacts / HPO_ARTIFACTS")


def open_tracker(study_name: str, stores: Stores):
    """MLflow's experiment for the study, or the tracker that logs nothing (``--no-tracking``)."""
    if stores.tracking_off:
        from hpo.null_tracker import NullTracker
        return NullTracker()
    from hpo.tracking import Tracker
    from hpo.urls import sqlite_path, storage_url
    return Tracker(study_name, stores.tracking, stores.artifacts,
                   several_machines=sqlite_path(storage_url(stores.storage)) is None)


def retrain_study(study_arg: str, stores: Stores, overrides: tuple[str, ...] = (), device: str | None = None,
                  print_line: Callable[[str], None] = print) -> list:
    """``hpo retrain``: retrain the best trial of a stored study, always (even when a retrain exists)."""
    from hpo.spec import is_study_file, load_study
    from hpo.urls import storage_url

    spec = load_study(study_arg, overrides) if is_study_file(study_arg) else None  # a bad file: refused at once
    check_stores(stores)

    from hpo.context import Context
    from hpo.interrupts import interrupts_raise
    from hpo.retrain import retrain_best_trial
    from hpo.study import load_existing_study, open_storage, resolve_spec
    from hpo.trainer import resolve_device

    storage = open_storage(storage_url(stores.storage), must_exist=True)
    spec = spec or resolve_spec(study_arg, storage, overrides)
    study = load_existing_study(spec.name, storage)
    device = resolve_device(device or spec.device)
    ctx = Context(spec, load_data(spec, device), device, open_tracker(spec.name, stores), None, print_line)
    with interrupts_raise():  # the retrain run ends KILLED, not RUNNING
        return retrain_best_trial(ctx, study)


def lr_find_study(spec, device: str | None, start_lr: float, end_lr: float, steps: int,
                  print_line: Callable[[str], None] = print):
    """``hpo lr-find``: the LR range test on the study's model and training split, with the hyperparameters
    of its first enqueued trial (its recipe) over the fixed values and defaults."""
    from hpo.lr_find import lr_range_test
    from hpo.trainer import resolve_device, seed_everything

    device = resolve_device(device or spec.device)
    splits = load_data(spec)
    hp = spec.search.resolve(spec.enqueue[0] if spec.enqueue else {})
    seed_everything(spec.seed)
    model = spec.model.build(splits)
    print_line(f"LR range test: {spec.model.name} on {spec.data.name}, {hp.optimizer}, batch {hp.batch_size}, "
               f"lr {start_lr:g} -> {end_lr:g} over {steps} steps")
    return lr_range_test(model, splits.train, hp, mean=splits.mean, std=splits.std, device=device,
                         seed=spec.seed, start_lr=start_lr, end_lr=end_lr, steps=steps)


def load_data(spec, device=None):
    """The study's splits (on ``device``), after checking that its model can be built for them."""
    from data.errors import DataError
    from data.splits import load_splits

    d = spec.data
    pretrained = spec.model.args.get("pretrained")
    if pretrained and not Path(pretrained).is_file():
        raise UserError(f"{spec.source}: model.pretrained: no such weights file {pretrained!r}; download the weights "
                        f"once where there is a network and point model.pretrained at the file")
    try:
        splits = load_splits(d.name, d.args, d.val_fraction, d.test_fraction, d.split_seed, d.normalize)
    except DataError as err:  # a data field the loader judged: name the file too
        raise (SpecError(spec.source, err.field, err.message) if err.field else UserError(err.message)) from None
    try:  # a model argument only the constructor can judge (a stem, an image too small) fails here, once
        spec.model.build(splits)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UserError(f"{spec.source}: model: {spec.model.name} cannot be built for {splits.channels}x"
                        f"{splits.image_size[0]}x{splits.image_size[1]} images: {str(err).splitlines()[0]}") from None
    return splits.to(device) if device is not None else splits


def store_flags(stores: Stores) -> str:
    """The store options a follow-up command needs to find the same MLflow store."""
    return f" --tracking-uri {stores.tracking}" if stores.tracking else ""
