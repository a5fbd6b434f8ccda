"""The search loop: claim a trial, train it epoch by epoch, tell Optuna, log to MLflow; until the budget.

Data path: ``SearchSpace.suggest`` (trial params) -> ``trainer.fit`` (one
epoch at a time) -> ``trial.report`` / ``should_prune`` -> MLflow. Optuna
hears a trial's end before its MLflow run is closed, so a process killed in
between leaves a finished trial and a RUNNING run, which the next
``hpo run`` ends with the trial's status (``Tracker.reconcile``).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import resume, views
from hpo.context import Context
from hpo.divergence import divergence
from hpo.interrupts import raise_if_swallowed, signals_deferred
from hpo.progress import study_status
from hpo.store_failures import StoreUnavailable, StoreUnwritable, retried
from hpo.study import claim_trial, count_finished, fail_running, heartbeat
from hpo.study_sampler import proposal_index
from hpo.trainer import fit, release_memory, seed_everything

MAX_FAILURES_IN_A_ROW = 3  # then the cause is likely not the hyperparameters: stop and say so
WAIT_S = 1.0  # how often a process with nothing to claim looks again while others run the last trials


@dataclass(frozen=True)
class SearchEnd:
    """Why a search stopped: ``budget``, ``grid`` (every grid point run) or ``timeout``, as asked; or it gave up:
    ``failures`` (trials failing in a row) or ``workers`` (worker processes ended short of the budget)."""

    reason: str
    last_error: str = ""

    @property
    def reached(self) -> bool:
        return self.reason in ("budget", "grid", "timeout")


def run_search(ctx: Context, study: optuna.Study) -> SearchEnd:
    """Run trials until ``budget.trials`` have finished (COMPLETE or PRUNED) in total, the timeout, or
    the end of a grid.

    Several processes may run this on one storage at once (``--gpus``); together they finish exactly
    the budget. A failed trial is recorded as FAILED and the search goes on; it does not count towards
    the budget. Ctrl-C or SIGTERM (``hpo.interrupts``) fails the running trial at once and propagates.

    Example (what ``hpo run`` does, minus the MLflow parent run and the retrain)::

        spec = load_study("studies/digits.yaml")
        device = torch.device("cpu")
        study = open_study(spec, open_storage("sqlite:///hpo.db"))
        run_search(Context(spec, load_data(spec, device), device, NullTracker()), study)
    """
    spec, print_line = ctx.spec, ctx.print_line
    progress = ProgressPrinter(spec, time.time(), print_line)
    failures_in_a_row, last_error, waiting = 0, "", False
    started = time.time()

    def recover(trial: FrozenTrial):
        return ctx.tracker.logged_result(trial, spec.metric)

    while failures_in_a_row < MAX_FAILURES_IN_A_ROW:
        raise_if_swallowed()
        if spec.budget.timeout_s is not None and time.time() - started > spec.budget.timeout_s:
            return SearchEnd("timeout")
        claim = retried("the study storage (claiming a trial)", claim_trial, study, spec.budget.trials, recover,
                        spec.budget.retries)
        for line in claim.notes:
            print_line(line)
        if claim.trial is None:
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if running and count_finished(study) < spec.budget.trials:  # they may fail and need replacing,
                if not waiting:  # and the best trial is not known before they end
                    print_line(f"waiting for {running} trial(s) that other processes are running")
                waiting = True
                time.sleep(WAIT_S)
                continue
            return SearchEnd(claim.reason)
        waiting = False
        try:
            with heartbeat(study._storage, claim.trial):
                frozen = run_trial(ctx, study, claim.trial)
        except BaseException as err:  # Ctrl-C or SIGTERM outside the training, or a store that cannot be written
            with contextlib.suppress(Exception):  # a store that fails: the next hpo run fails the trial instead
                fail_running(study, claim.trial, err)
            raise
        if frozen.state == TrialState.FAIL:
            failures_in_a_row += 1
            last_error = frozen.user_attrs.get("fail_reason", "?")
        else:
            failures_in_a_row = 0
        retried("the study storage", progress, study, frozen)
    return SearchEnd("failures", last_error)


def run_trial(ctx: Context, study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """Train one trial inside its MLflow run and tell Optuna how it ended (before the run closes)."""
    spec = ctx.spec
    hp = spec.search.suggest(trial)
    # A retry keeps its line's seed; the others are numbered as in a study without retries (proposal_index).
    seed = trial.user_attrs.get("trial_seed")
    if seed is None:
        seed = spec.trial_seed(retried("the study storage", proposal_index, study, trial))
    retried("the study storage", trial.set_user_attr, "trial_seed", seed)
    state_file = resume.state_file(spec.name, trial)
    stamp = resume.fingerprint(retried("the study storage", resume.study_identity, study), hp.as_dict(), seed,
                               spec.budget.epochs)
    dead = retried("the study storage", resume.dead_line, study, trial)
    dead_runs = [t.user_attrs["mlflow_run_id"] for t in dead if "mlflow_run_id" in t.user_attrs]
    if "resumes_trial" not in trial.user_attrs:
        resume.discard(state_file)  # whatever an older study of this name left there
    elif dead and resume.kept_epoch(state_file) < dead[0].user_attrs.get("epochs", 0):
        fetched = state_file.with_suffix(".fetched")  # it died on another machine, whose run kept its state
        if ctx.tracker.fetch_state(dead_runs, state_file.name, fetched):
            resume.adopt_if_newer(state_file, fetched)
    frozen = None
    try:
        with ctx.tracker.trial_run(trial, hp.as_dict(), seed, ctx.parent_run_id) as run:
            try:
                value, state = train_trial(ctx, trial, hp, seed, run, state_file, stamp), TrialState.COMPLETE
            except optuna.TrialPruned:
                value, state = None, TrialState.PRUNED
            except BaseException as err:  # a crash, or Ctrl-C / SIGTERM: failed in Optuna at once
                with contextlib.suppress(Exception):  # a store that fails: the error on its way out stays the one
                    frozen = fail_running(study, trial, err)
                if frozen is not None and not frozen.user_attrs.get("died"):
                    resume.discard(state_file)  # the trial's own failure: no retry will want its state
                    ctx.tracker.drop_state([run.run_id, *dead_runs])
                raise  # the run records the traceback in error.txt
            views.trial_ending(ctx, study, trial, state, value, run)  # before tell: Optuna takes no artifact after
            with signals_deferred():  # Optuna's verdict and the run's status must agree
                frozen = retried(f"the study storage (trial {trial.number}'s result)", study.tell, trial,
                                 value if state == TrialState.COMPLETE else None, state=state,
                                 skip_if_finished=True)  # a retry after a lost reply to a stored tell
                run.end_as_trial(state)  # a pruned run has its hpo.prune_reason tag already (_stop)
            resume.discard(state_file)
            ctx.tracker.drop_state([run.run_id, *dead_runs])
    except (StoreUnwritable, StoreUnavailable):  # no trial can be recorded: stop the study
        raise
    except Exception as err:  # recorded above; the study goes on
        if frozen is None:  # failed before training started (e.g. the tracking store)
            frozen = fail_running(study, trial, err)
    if frozen.state == TrialState.FAIL:  # its error (and the frames holding its tensors) is gone now: on a GPU,
        release_memory(ctx.device)  # the freed blocks go back to the driver, for the workers sharing it
    return frozen


def train_trial(ctx: Context, trial: optuna.Trial, hp, seed: int, run, state_file, stamp: str) -> float:
    """The trial's training: reports its metric after every epoch; raises TrialPruned to stop early.

    After each epoch the training state is written to ``state_file``; a retry of a trial that died reads
    it, reports again what that trial had reported, and trains only the epochs still to go. ``stamp`` (the
    study, parameters, seed and epochs) keeps a retry from going on from another training's state."""
    spec, splits = ctx.spec, ctx.splits
    saved = resume.load(state_file, stamp) if "resumes_trial" in trial.user_attrs else None
    if saved is None and "retry_of" in trial.user_attrs:
        ctx.print_line(f"  trial {trial.number}: no kept state of trial {trial.user_attrs['retry_of']} to go on "
                       f"from (none kept, or not this training's); it starts from epoch 0")
    reported: dict[int, float] = dict(saved["reported"]) if saved else {}
    first_loss = saved["first_loss"] if saved else None
    for epoch, value in sorted(reported.items()):  # one history for the pruner, one curve in MLflow
        retried("the study storage", trial.report, value, epoch)
        run.log_metrics({spec.metric: value}, step=epoch)
    if "retry_of" in trial.user_attrs:  # the run says which trial it replaces, and from which epoch it went on
        run.set_tags({"hpo.retry_of": trial.user_attrs["retry_of"],
                      "hpo.resumes_trial": trial.user_attrs["resumes_trial"],
                      **({"hpo.resumed_after_epoch": saved["trainer"]["epoch"]} if saved else {})})
    if saved:
        retried("the study storage", trial.set_user_attr, "resumed_after_epoch", saved["trainer"]["epoch"])
    seed_everything(seed)
    model = spec.model.build(splits)
    value = reported[max(reported)] if reported else math.nan
    latest: dict = {}
    with ctx.progress.trial(trial.number, spec.budget.epochs, spec.metric) as shown:  # a bar, lines or nothing
        for result in fit(model, splits.train, hp, spec.budget.epochs, mean=splits.mean, std=splits.std,
                          device=ctx.device, seed=seed, val=splits.val, compile_mode=spec.compile,
                          keep_state=latest.update, resume=saved["trainer"] if saved else None,
                          on_step=shown.on_step):
            raise_if_swallowed()
            run.log_epoch(result)
            shown.epoch(result, getattr(result, spec.metric))
            retried("the study storage", trial.set_user_attr, "epochs", result.epoch)
            first_loss = result.train_loss if first_loss is None else first_loss
            reason = divergence(result, first_loss, splits.num_classes, hp.warmup_epochs)
            if reason:
                _stop(trial, run, reason)
            value = getattr(result, spec.metric)
            retried("the study storage", trial.report, value, result.epoch)
            reported[result.epoch] = value
            if retried("the study storage", trial.should_prune):
                _stop(trial, run, f"pruned by the {spec.pruner.name} pruner after epoch {result.epoch}")
            retried(f"the trial's state file ({state_file})", resume.save, state_file,
                    {"trainer": dict(latest), "reported": reported, "first_loss": first_loss, "fingerprint": stamp})
            run.keep_state(state_file)  # on a tracking server, for a retry on another machine
    run.log_metrics({spec.metric + "_final": value})
    return value


def _stop(trial: optuna.Trial, run, reason: str):
    retried("the study storage", trial.set_user_attr, "prune_reason", reason)
    run.set_tags({"hpo.prune_reason": reason})
    raise optuna.TrialPruned(reason)


@dataclass
class ProgressPrinter:
    """One line per finished trial: number, state, value, best so far, time, and the study's status
    (``hpo.progress.study_status``: done by state, elapsed, ETA)."""

    spec: object
    started: float
    print: Callable[[str], None] = print

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        metric = self.spec.metric
        if trial.state == TrialState.COMPLETE:
            detail = f"{metric} {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
            epochs = trial.user_attrs.get("epochs", "?")
            value = f"{metric} {last:.4f} " if last is not None and math.isfinite(last) else ""
            detail = f"{value}at epoch {epochs}/{self.spec.budget.epochs}"
        else:
            detail = "failed: " + trial.user_attrs.get("fail_reason", "see its MLflow run's error.txt")
        try:
            best_trial = study.best_trial
            best = f"best {best_trial.value:.4f} (#{best_trial.number})"
        except ValueError:
            best = "best -"
        duration = trial.duration.total_seconds() if trial.duration else 0.0
        status = study_status(study.get_trials(deepcopy=False), self.spec.budget.trials, time.time() - self.started)
        self.print(f"trial {trial.number:4d}  {trial.state.name:8s}  {detail:34s}  {best:22s}  {duration:6.1f}s  "
                   + status)
