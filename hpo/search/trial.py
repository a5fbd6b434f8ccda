"""One trial, step by step: its hyperparameters and seed, its training inside its MLflow run, and its verdict.

    1. hyperparameters: the study's space, sampled for this trial (``SearchSpace.suggest``)
    2. seed: a retry keeps its line's; the others are numbered as in a study without retries
    3. state file: a retry goes on from the one its line kept (fetched from another machine when that one
       kept a later epoch); any other trial starts from nothing
    4. training (``hpo.train.training.Training``), inside the trial's MLflow run: after each epoch the metric
       is reported to Optuna, and the pruner or a divergence stops the trial (PRUNED, with the reason)
    5. what users see of it (curves, notes, the best so far), then Optuna's verdict and the run's status
       together; the state file goes with the finished trial

Optuna hears a trial's end before its MLflow run is closed, so a process killed in between leaves a finished
trial and a RUNNING run, which the next ``hpo run`` ends with the trial's status (``Tracker.reconcile``). A
trial that fails is FAILED and the study goes on; one whose store fails stops the study.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.core.interrupts import signals_deferred
from hpo.search.context import Context
from hpo.spec.model_space import model_params
from hpo.stores.retry import StoreUnavailable, StoreUnwritable
from hpo.study.claims import fail_running
from hpo.study.objectives import measure_costs
from hpo.study.record import StudyRecord, TrialRecord, stored
from hpo.study.retries import dead_line
from hpo.study.sampling import proposal_index
from hpo.track import dashboard
from hpo.track.best_effort import best_effort
from hpo.track.pictures import CURVES, draw_later, save_curves
from hpo.train.device import release_memory
from hpo.train.divergence import Diverged, at_chance
from hpo.train.hyperparams import Hyperparams
from hpo.train.state import StateFile, fingerprint, trial_state
from hpo.train.training import Training


def run_trial(ctx: Context, study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """Train one trial inside its MLflow run and tell Optuna how it ended (before the run closes)."""
    record = TrialRecord(trial)
    hp = ctx.spec.search.suggest(trial)
    ctx = ctx.with_model(ctx.spec.model.chosen(trial))  # where the model is searched too
    seed = _training_seed(ctx, study, record)
    dead = stored("", dead_line, study, trial)  # the trials this one retries, the latest first
    dead_runs = [TrialRecord(t).mlflow_run_id for t in dead if TrialRecord(t).mlflow_run_id]
    state = _state_file(ctx, study, record, hp, seed, dead, dead_runs)
    frozen = None
    try:
        if ctx.spec.search.lr_scaling != "none":
            record.set_effective_lr(hp.lr)
        with ctx.tracker.trial_run(trial.number, {**ctx.spec.search.recorded(hp), **model_params(trial.params)},
                                   seed, ctx.parent_run_id) as run:
            _link(ctx, record, run)
            try:
                values, verdict = _train(ctx, record, hp, seed, run, state), TrialState.COMPLETE
            except optuna.TrialPruned:
                values, verdict = None, TrialState.PRUNED
            except BaseException as err:  # a crash, or Ctrl-C / SIGTERM: failed in Optuna at once
                with contextlib.suppress(Exception):  # a store that fails: the error on its way out stays the one
                    frozen = fail_running(study, trial, err)
                if frozen is not None and not TrialRecord(frozen).died:
                    _forget(ctx, state, [run.run_id, *dead_runs])  # its own failure: no retry will want its state
                raise  # the run records the traceback in error.txt
            _show_end(ctx, study, trial, verdict, values[0] if values else None, run)  # Optuna takes no artifact
            frozen = _tell(study, trial, verdict, values, run)  # after the tell
            _forget(ctx, state, [run.run_id, *dead_runs])
    except (StoreUnwritable, StoreUnavailable):  # no trial can be recorded: stop the study
        raise
    except Exception as err:  # recorded above; the study goes on
        if frozen is None:  # failed before training started (e.g. the tracking store)
            frozen = fail_running(study, trial, err)
    if frozen.state == TrialState.FAIL:  # its error (and the frames holding its tensors) is gone now: on a GPU,
        release_memory(ctx.device)  # the freed blocks go back to the driver, for the workers sharing it
    return frozen


def _training_seed(ctx: Context, study: optuna.Study, record: TrialRecord) -> int:
    """A retry keeps its line's seed; the others are numbered as in a study without retries (proposal_index)."""
    seed = record.seed
    if seed is None:
        seed = ctx.spec.trial_seed(stored("", proposal_index, study, record.trial))
    record.set_seed(seed)
    return seed


def _state_file(ctx: Context, study: optuna.Study, record: TrialRecord, hp: Hyperparams, seed: int,
                dead: list[FrozenTrial], dead_runs: list[str]) -> StateFile:
    """The file the trial's line keeps its state in; its fingerprint (the study, parameters, seed and epochs)
    keeps a retry from going on from another training's state."""
    stamp = fingerprint(StudyRecord(study).identity, hp.as_dict(), seed, ctx.spec.budget.epochs)
    state = trial_state(ctx.spec.name, record.line, stamp)
    if not record.is_retry:
        state.discard()  # whatever an older study of this name left there
    elif dead and state.kept_epoch() < TrialRecord(dead[0]).epochs:
        fetched = state.path.with_suffix(".fetched")  # it died on another machine, whose run kept its state
        if ctx.tracker.fetch_state(dead_runs, state.path.name, fetched):
            state.adopt_if_newer(fetched)
    return state


def _link(ctx: Context, record: TrialRecord, run) -> None:
    """The trial's MLflow run, named in the trial and linked from its optuna-dashboard note."""
    if run.run_id:
        record.set_mlflow_run(run.run_id)
        with best_effort("linking the trial to its MLflow run in optuna-dashboard"):
            dashboard.link_run(record.trial, ctx.tracker.run_url(run.run_id))


def _train(ctx: Context, record: TrialRecord, hp: Hyperparams, seed: int, run, state: StateFile) -> list[float]:
    """The trial's training: reports its metric after every epoch; raises TrialPruned to stop early. Returns
    its value of each objective: the metric, then the costs of a multi-objective study (which Optuna neither
    takes reports from nor prunes: hpo/study/objectives.py).

    A retry of a trial that died reports again what that trial had reported (one history for the pruner, one
    curve in MLflow) and trains only the epochs still to go."""
    spec, number = ctx.spec, record.number
    training = Training(ctx.build_model, ctx.splits.train, hp, spec.budget.epochs, ctx.setup(seed), state,
                        val=ctx.splits.val, num_classes=ctx.splits.num_classes)
    reported: dict[int, float] = dict(training.kept.get("reported", {}))
    if record.retry_of is not None:
        _resumed(ctx, record, run, training, reported)
    value = reported[max(reported)] if reported else math.nan
    result = None
    with ctx.progress.trial(number, spec.budget.epochs, spec.metric) as shown:  # a bar, lines or nothing
        try:
            for result in training.epochs(run, on_step=shown.on_step):
                value = getattr(result, spec.metric)
                shown.epoch(result, value)
                record.set_epochs(result.epoch)
                if not spec.multi_objective:
                    record.report(value, result.epoch)
                reported[result.epoch] = value
                # A trial that trained its whole budget is COMPLETE: stopping it would save nothing.
                if result.epoch < spec.budget.epochs and not spec.multi_objective and record.should_prune():
                    _stop(record, run, f"pruned by the {spec.pruner.name} pruner after epoch {result.epoch}")
                training.keep(reported=reported)
        except Diverged as diverged:
            shown.epoch(diverged.result, getattr(diverged.result, spec.metric))
            record.set_epochs(diverged.result.epoch)
            _stop(record, run, diverged.reason)
    if result is not None and at_chance(result, ctx.splits.num_classes):  # learned nothing, yet not diverged
        reason = (f"validation accuracy {result.val_accuracy:.4f} after its whole budget is at chance "
                  f"(1/{ctx.splits.num_classes}): it learned nothing")
        record.set_at_chance(reason)
        run.set_tags({"hpo.at_chance": reason})
        ctx.print_line(f"  trial {number}: {reason}")
    run.log_metrics({spec.metric + "_final": value})
    if not spec.multi_objective:
        return [value]
    costs = measure_costs(training.model, spec.costs, ctx.splits.channels, ctx.splits.image_size, ctx.device)
    run.log_metrics(costs)
    return [value, *(costs[name] for name in spec.costs)]


def _resumed(ctx: Context, record: TrialRecord, run, training: Training, reported: dict[int, float]) -> None:
    """A retry: the values its line reported again, and which trial it replaces from which epoch."""
    if not training.resumed_after:
        ctx.print_line(f"  trial {record.number}: no kept state of trial {record.retry_of} to go on from (none "
                       f"kept, or not this training's); it starts from epoch 0")
    for epoch, value in sorted(reported.items()):
        if not ctx.spec.multi_objective:  # Optuna takes no report of a multi-objective trial
            record.report(value, epoch)
        run.log_metrics({ctx.spec.metric: value}, step=epoch)
    run.set_tags({"hpo.retry_of": record.retry_of, "hpo.resumes_trial": record.line,
                  **({"hpo.resumed_after_epoch": training.resumed_after} if training.resumed_after else {})})
    if training.resumed_after:
        record.set_resumed_after(training.resumed_after)


def _stop(record: TrialRecord, run, reason: str):
    record.set_prune_reason(reason)
    run.set_tags({"hpo.prune_reason": reason})
    raise optuna.TrialPruned(reason)


def _show_end(ctx: Context, study: optuna.Study, trial: optuna.Trial, verdict: TrialState, value, run) -> None:
    """What users see of a trial that ended COMPLETE or PRUNED: its curves on its dashboard page and its MLflow
    run, its pruning epoch, the study's note and the parent run's best so far (each best effort)."""
    tracked, say = run.run_id is not None, ctx.print_line
    if verdict == TrialState.PRUNED and tracked:
        with best_effort("tagging the pruned run", say):
            run.set_tags({"hpo.pruned_at_epoch": TrialRecord(trial).epochs})
    if run.epochs:
        with best_effort("drawing a trial's learning curves", say):
            picture = dashboard.TrialPicture(study, trial, CURVES)
            epochs, title = list(run.epochs), f"trial {trial.number} ({verdict.name.lower()})"

            def draw():  # on the pictures thread, while the next trial runs
                with best_effort("drawing a trial's learning curves", say), \
                        tempfile.TemporaryDirectory(prefix="hpo-curves-") as tmp:
                    path = save_curves(epochs, ctx.spec.metric, title, Path(tmp) / CURVES)
                    picture.write(path)
                    if tracked:
                        run.log_artifact_after_end(path)
            draw_later(draw)
    best = None
    with best_effort("writing the study's note in optuna-dashboard", say):
        best = dashboard.best_so_far(ctx.spec.direction, study, trial, verdict, value)
        if best is not None and best[0] == trial.number:  # only what changes it: fewer writes with many workers
            dashboard.write_study_note(ctx.spec, study, best, run_url=ctx.tracker.run_url)
    if best is not None and ctx.parent_run_id and tracked:
        with best_effort("logging the best trial so far to the parent run", say):
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                           for t in study.get_trials(deepcopy=False)) + 1  # with this trial, not yet told
            ctx.tracker.log_best_so_far(ctx.parent_run_id, best, finished)


def _tell(study: optuna.Study, trial: optuna.Trial, verdict: TrialState, values, run) -> FrozenTrial:
    """Optuna's verdict and the run's status, together (a signal waits until both are set)."""
    with signals_deferred():
        frozen = stored(f"trial {trial.number}'s result", study.tell, trial,
                        values if verdict == TrialState.COMPLETE else None, state=verdict,
                        skip_if_finished=True)  # a retry after a lost reply to a stored tell
        run.end_as_trial(verdict)  # a pruned run has its hpo.prune_reason tag already (_stop)
    return frozen


def _forget(ctx: Context, state: StateFile, run_ids: list[str]) -> None:
    """The finished line's training state, here and on the tracking server."""
    state.discard()
    ctx.tracker.drop_state(run_ids)
