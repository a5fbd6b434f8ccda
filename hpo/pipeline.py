"""What ``hpo run`` does once its study file and stores are judged good (``hpo.api.run``), top to bottom:

    1. load the data onto the device, checking that the model can be built for it
    2. open the storage and the study, with the study's sampler and pruner
       (the same in this process, in every worker and in every rerun)
    3. record the study's attributes, and end what killed runs left RUNNING
    4. open the parent MLflow run; search here, or through one worker process per device slot
    5. judge the search: budget, timeout or grid reached -> retrain the best trial (unless a finished
       retrain of that trial and budget exists) -> exit 0; otherwise exit 1, the parent run FAILED

A worker (``--gpus``) runs steps 1-2 and the search of step 4 under the parent's MLflow run.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch
from optuna.trial import TrialState

from hpo.core.errors import WorkFailed
from hpo.core.interrupts import interrupts_raise
from hpo.retrain.best_trial import retrain_best_trial
from hpo.search.context import NO_PARENT_RUN, Context, RunRequest, load_data, open_tracker, store_flags, study_threads
from hpo.search.loop import MAX_FAILURES_IN_A_ROW, SearchEnd, run_search
from hpo.search.progress import Progress
from hpo.search.workers import plan_workers, run_workers, watch_parent
from hpo.stores.urls import storage_url
from hpo.study.claims import fail_dead_trials
from hpo.study.objectives import best_trial, cost_text, pareto_front, score
from hpo.study.record import url_of
from hpo.study.sampling import points_left
from hpo.study.storage import (count_finished, counts_by_state, open_storage, open_study, record_study, study_exists,
                               study_lock)
from hpo.study.warm_start import carried_over
from hpo.track import dashboard
from hpo.track.best_effort import best_effort
from hpo.train.device import resolve_device
from hpo.train.threads import Threads, apply_threads

EXIT_OK, EXIT_FAILED = 0, 1


def run_study(spec, request: RunRequest, print_line: Callable[[str], None] = print) -> int:
    """Search the study, then retrain its best trial; returns the exit code (see the module's docstring)."""
    with interrupts_raise():  # Ctrl-C and SIGTERM: the running trial FAILED at once, every run ended
        workers = plan_workers(request.gpus, request.trials_per_gpu, torch.cuda.device_count()) \
            if request.gpus else []
        device = resolve_device(workers[0] if workers else request.device or spec.device)
        splits = load_data(spec, device)
        threads = _threads(request, spec, splits, device, workers)
        apply_threads(threads)
        url = storage_url(request.stores.storage)
        warm = None  # read only when this run creates the study: a resumed study needs the other no more
        if spec.warm_start is not None and not request.worker_of and not study_exists(url, spec.name):
            warm = carried_over(spec, url)  # before this storage is opened: a bad warm start writes nothing
        storage = open_storage(url)
        tracker = open_tracker(spec.name, request.stores)
        study = open_study(spec, storage, warm)
        for line in warm.lines() if warm is not None else []:
            print_line(line)
        progress = Progress.for_output(request.quiet)  # a worker's output is a pipe: epoch lines, never bars
        ctx = Context(spec, splits, device, tracker, None, print_line, progress, threads=threads)
        if request.worker_of:
            watch_parent()  # a parent killed outright: this worker's trial is retried, not failed
            parent = None if request.worker_of == NO_PARENT_RUN else request.worker_of
            end = _search(dataclasses.replace(ctx, parent_run_id=parent), study, [], request)
            return EXIT_OK if end.reached else EXIT_FAILED
        return _lead(request, ctx, study, workers)


def _threads(request: RunRequest, spec, splits, device, workers: list[str]) -> Threads:
    """The CPU threads of this process and of each worker (hpo/train/threads.py): a worker takes its lead's."""
    if request.worker_threads:
        return Threads(request.worker_threads, "chosen by the lead process")
    return study_threads(spec, splits, device, request.threads,
                         sum(w == "cpu" for w in workers) if workers else None)


def _lead(request: RunRequest, ctx: Context, study, workers: list[str]) -> int:
    """The process the user started: steps 3-5."""
    spec, tracker, print_line = ctx.spec, ctx.tracker, ctx.print_line
    record_study(study, spec, tracker.experiment_id)
    _reconcile(ctx, study)
    already = count_finished(study)
    splits = ctx.splits
    print_line(f"study {spec.name!r}: {already} finished trials, budget {spec.budget.trials}; "
               f"{spec.model.name} on {spec.data.name} ({len(splits.train)} train / {len(splits.val)} val / "
               f"{len(splits.test)} test) on {', '.join(workers) if workers else ctx.device}; storage "
               f"{url_of(study)}, MLflow {tracker.uri}")
    if ctx.threads is not None:
        print_line(f"{ctx.threads.line()}; the same seed gives the same numbers with the same thread count")
    largest = spec.search.largest("batch_size")
    if largest > len(splits.train):  # stated, not silent: such a trial takes one batch of everything per epoch
        print_line(f"note: search.batch_size reaches {largest}, more than the {len(splits.train)} training images; "
                   f"a larger batch takes all {len(splits.train)} (one step per epoch)")
    if already >= spec.budget.trials:
        print_line(f"study {spec.name!r} already has {already} finished trials (budget {spec.budget.trials}); "
                   f"raise it with --trials to search more")
    started = time.time()
    with tracker.study_run(spec, request.invocation) as parent:
        ctx = dataclasses.replace(ctx, parent_run_id=parent.run_id)
        _note_study(ctx, study)
        end = _search(ctx, study, workers, request)
        _table_of_trials(ctx, study, parent)
        _reconcile(ctx, study)  # e.g. a worker that was killed
        summary = counts_by_state(study)
        parent.log_metrics({f"n_{state.lower()}": count for state, count in summary.items()})
        failure = _failure(spec, study, end)
        if failure:  # the parent run ends FAILED with it, as with a diverged retrain below
            raise WorkFailed(failure)
        best = best_trial(study)
        print_line(f"search done in {time.time() - started:.0f}s ({_said(end)}): {summary}; best "
                   f"{spec.metric} {score(best):.4f} (trial {best.number})")
        if spec.multi_objective:
            _show_front(ctx, study)
        if request.retrain:
            for result in retrain_best_trial(ctx, study, again=False):
                parent.log_metrics({"test_accuracy": result.test.accuracy}, step=result.epochs)
    if request.retrain and not request.stores.tracking_off:
        print_line(f"next: hpo promote {spec.name}" + store_flags(request.stores))
    return EXIT_OK


def _search(ctx: Context, study, workers: list[str], request: RunRequest) -> SearchEnd:
    """Trials until the budget: in this process, or in one worker process per device slot."""
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
    codes = run_workers(workers, worker_args, ctx.threads.count, env=stores_env, print_line=ctx.print_line)
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


def _failure(spec, study, end: SearchEnd) -> str:
    """Why this search counts as failed, or "" when it did what was asked."""
    if end.reason == "workers":
        return end.last_error
    if end.reason == "failures":
        return (f"{MAX_FAILURES_IN_A_ROW} trials in a row failed ({counts_by_state(study)}); the last error: "
                f"{end.last_error}; each failed run in MLflow has the traceback in error.txt")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return f"no trial of {spec.name!r} completed ({counts_by_state(study)}); nothing to retrain"
    return ""


def _said(end: SearchEnd) -> str:
    return {"budget": "budget reached", "timeout": "timeout reached",
            "grid": "every point of the grid has run"}.get(end.reason, end.reason)


def _reconcile(ctx: Context, study) -> None:
    """End what killed processes of this machine left behind: RUNNING trials (with the result their MLflow
    run logged, if it finished), and RUNNING MLflow runs."""
    with study_lock(url_of(study), study.study_name):
        lines = fail_dead_trials(study, lambda trial: ctx.tracker.logged_result(trial, ctx.spec.objectives))
    for line in lines + ctx.tracker.reconcile(study):
        ctx.print_line(line)


def _note_study(ctx: Context, study) -> None:
    """The study's optuna-dashboard note before its first trial of this ``hpo run`` (with the best so far)."""
    with best_effort("writing the study's note in optuna-dashboard", ctx.print_line):
        best = best_trial(study)
        dashboard.write_study_note(ctx.spec, study, (best.number, score(best)) if best is not None else None)


def _show_front(ctx: Context, study) -> None:
    """The Pareto front of a multi-objective study, and how to pick a point of it."""
    spec = ctx.spec
    front = pareto_front(study)
    ctx.print_line(f"Pareto front of {', '.join(spec.objectives)}: {len(front)} trials; `hpo run` retrains "
                   f"trial {front[0].number} (the best {spec.metric}); pick another with `hpo retrain {spec.name} "
                   f"--trial N`, then `hpo promote {spec.name} --trial N`")
    for trial in front:
        ctx.print_line(f"  trial {trial.number:4d}  {spec.metric} {trial.values[0]:.4f}"
                       + cost_text(spec.costs, trial.values[1:]))


def _table_of_trials(ctx: Context, study, parent) -> None:
    """The parent run's table of every trial (``trials.csv``), when MLflow is on."""
    if parent.run_id is None:
        return
    with best_effort("writing trials.csv to the parent run", ctx.print_line):
        table = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs",
                                              "datetime_start", "datetime_complete", "duration"))
        parent.log_text(table.to_csv(index=False), "trials.csv")
