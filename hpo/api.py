"""The Python API: every ``hpo`` command's work as a function that takes plain values and returns plain values.

The command line (``hpo/cli.py``) parses its arguments, calls one of these and prints what it returns; a
notebook or a script calls them directly::

    from hpo import api

    spec = api.check("studies/digits.yaml", ["budget.trials=5"])
    code = api.run(api.RunRequest("studies/digits.yaml", api.Stores(), ("budget.trials=5",)))
    summary, lines = api.show("digits")

Each function judges its input first and refuses bad input with :class:`hpo.core.errors.UserError` (one
line) before it touches a store; torch, Optuna and MLflow are imported inside the functions, after that
judgement, so a refusal is instant.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from hpo.core.errors import UserError
from hpo.search.context import RunRequest, Stores, check_stores, store_flags

__all__ = ["RunRequest", "Stores", "check", "run", "show", "report", "retrain", "promote", "evaluate", "predict",
           "lr_find", "bench", "bench_storage", "bench_startup", "dashboard", "study_name", "check_device",
           "check_gpus", "check_alias", "check_run_id", "next_promote", "explain", "crashed", "RunResult", "run_file",
           "Loaded", "load", "promote_study"]

PrintLine = Callable[[str], None]


# --- for notebooks and scripts: hpo.run, hpo.load, hpo.promote ---------------------------------------------

def _say_nothing(line: str) -> None:
    pass


def _overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> tuple[str, ...]:
    """``{"budget.trials": 10}`` (or ``["budget.trials=10"]``, as ``--set`` takes them) as --set strings."""
    if overrides is None:
        return ()
    if isinstance(overrides, Mapping):
        return tuple(f"{key}={_as_yaml(value)}" for key, value in overrides.items())
    return tuple(overrides)


def _as_yaml(value: Any) -> str:
    """A value as ``--set`` would be given it: a string as typed where YAML reads it back as that string
    (``adamm``, not ``"adamm"``: an error's text then equals the CLI's), anything else as JSON (which is YAML)."""
    import json

    import yaml

    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


@dataclass(frozen=True)
class RunResult:
    """What :func:`hpo.run` found: the Optuna study, its best trial, and the retrains recorded with it."""

    study: Any  # optuna.Study, in the storage it ran in
    best_trial: Any  # optuna.trial.FrozenTrial
    best_params: dict
    best_value: float
    retrains: list  # one dict per retrain run (trial, epochs, seed, test_accuracy, test_loss, run_id, ...)

    @property
    def test_accuracy(self) -> float | None:
        """The latest retrain's test accuracy (None without a retrain)."""
        return self.retrains[-1].get("test_accuracy") if self.retrains else None


def run_file(study_file: str, overrides: Mapping[str, Any] | Iterable[str] | None = None, *,
             storage: str | None = None, tracking_uri: str | None = None, tracking: bool = True,
             device: str | None = None, retrain: bool = True, progress: bool = False,
             threads: int | None = None) -> RunResult:
    """``hpo.run``: ``hpo run STUDY_FILE`` as a function. Raises :class:`hpo.SpecError` (or
    :class:`hpo.UserError`) with the one line the command line prints; prints nothing unless ``progress``.
    ``threads``: torch's CPU threads in this process (``--threads``; by default chosen, hpo/train/threads.py)."""
    from hpo.core.errors import WorkFailed
    from hpo.spec.study_file import load_study
    from hpo.stores.urls import storage_url
    from hpo.study.record import StudyRecord

    stores = Stores(storage, tracking_uri, tracking_off=not tracking)
    request = RunRequest(str(study_file), stores, _overrides(overrides), device=device, retrain=retrain,
                         invocation="hpo.run", quiet=not progress, threads=threads)
    spec = load_study(request.study_file, request.overrides)
    if run_spec(spec, request, print_line=print if progress else _say_nothing) != 0:
        raise WorkFailed(f"hpo.run({study_file!r}) ended without reaching its budget")
    import optuna

    from hpo.study.objectives import best_trial, score

    name = spec.name
    study = optuna.load_study(study_name=name, storage=storage_url(storage))
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise WorkFailed(f"study {name!r} has no COMPLETE trial (hpo show {name} says how its trials ended)")
    best = best_trial(study)  # of a multi-objective study: the best on its metric (hpo/study/objectives.py)
    return RunResult(study, best, dict(best.params), score(best), StudyRecord(study).retrain_results)


@dataclass(frozen=True)
class Loaded:
    """A final checkpoint, loaded: its network (eval mode, on the CPU) and what it says of itself."""

    path: str
    checkpoint: dict
    model: Any  # torch.nn.Module
    class_names: list

    def predict(self, files: list[str], device: str | None = None) -> list:
        """A class and its probability for each image file, as ``hpo predict`` gives them."""
        return predict(self.path, list(files), device)

    def evaluate(self, device: str | None = None, data_root: str | None = None) -> "Evaluated":
        """The test split's scores, as ``hpo evaluate`` gives them."""
        return evaluate(self.path, device, data_root)


def load(checkpoint: str) -> Loaded:
    """``hpo.load``: a final checkpoint (``hpo promote --output``), checked and with its network built."""
    from hpo.train.checkpoint import load_checkpoint, model_from_checkpoint

    loaded = load_checkpoint(checkpoint)
    return Loaded(str(checkpoint), loaded, model_from_checkpoint(loaded), list(loaded["class_names"]))


def promote_study(study: str, *, run_id: str | None = None, output: str | None = None, alias: str = "champion",
                  tracking_uri: str | None = None, progress: bool = False):
    """``hpo.promote``: ``hpo promote STUDY`` as a function; returns a :class:`hpo.serve.promote.Promotion`."""
    return promote(study, Stores(tracking=tracking_uri), run_id, output, alias,
                   print_line=print if progress else _say_nothing)


# --- judging arguments (for argparse too) ---------------------------------------------------------------------

def check_device(value: str) -> str:
    """A device name a study or ``--device`` may give: auto, cpu, cuda or cuda:N."""
    from hpo.spec.study_file import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(value):
        raise UserError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return value


def check_gpus(value: str) -> str:
    """``--gpus``: GPU numbers like 0,1, or the word cpu."""
    from hpo.search.workers import parse_gpus

    parse_gpus(value)
    return value


# MLflow's rules for a registered model's alias (mlflow/utils/validation.py: _validate_model_alias_name and
# _validate_model_alias_name_reserved): checked before a version is registered, so a refused alias leaves none.
ALIAS = re.compile(r"^[\w\-]{1,255}\Z")
RESERVED_ALIAS = re.compile(r"^([vV]\d+|[lL][aA][tT][eE][sS][tT])\Z")


def check_alias(value: str) -> str:
    """An alias of the Model Registry: letters, digits, ``_`` and ``-``, not ``latest`` nor ``v`` + a number."""
    if not ALIAS.match(value):
        raise UserError(f"--alias: {value!r} is not an alias MLflow takes: 1-255 letters, digits, '_' or '-'")
    if RESERVED_ALIAS.match(value):
        raise UserError(f"--alias: {value!r} is reserved by MLflow (latest, and v followed by a number, name "
                        f"versions); e.g. champion or staging")
    return value


def check_run_id(value: str) -> str:
    """``--run``: a run id (32 hex digits in MLflow's stores; any non-empty word elsewhere)."""
    if not value.strip() or any(c.isspace() for c in value):
        raise UserError(f"--run: {value!r} is not a run id; leave --run out to promote the latest retrain run")
    return value


def study_name(study: str) -> str:
    """STUDY on the command line (a study file or a stored study's name) as the study's name."""
    from hpo.spec.study_file import study_name as name_of

    return name_of(study)


def next_promote(study: str, stores: Stores, trial: int | None = None) -> str:
    """The command that promotes what ``retrain`` made, with the store options it needs."""
    return f"hpo promote {study_name(study)}" + (f" --trial {trial}" if trial is not None else "") + store_flags(stores)


# --- the commands ---------------------------------------------------------------------------------------------

def check(study_file: str, overrides=()):
    """The study file, read and validated (with ``--set`` overrides): a :class:`hpo.spec.study_file.StudySpec`."""
    from hpo.spec.study_file import check_data_root, load_study

    spec = load_study(study_file, list(overrides))
    check_data_root(spec)
    return spec


def warm_start_lines(spec, storage: str | None = None) -> list[str]:
    """What the study's warm start carries over from the other study, and what it drops and why."""
    from hpo.stores.urls import storage_url
    from hpo.study.warm_start import carried_over

    return carried_over(spec, storage_url(storage)).lines()


def run(request: RunRequest, print_line: PrintLine = print) -> int:
    """``hpo run``: search the study, then retrain its best trial (``hpo/pipeline.py``); returns the exit code."""
    from hpo.spec.study_file import load_study

    return run_spec(load_study(request.study_file, request.overrides), request, print_line)


def run_spec(spec, request: RunRequest, print_line: PrintLine = print) -> int:
    """``hpo run`` of a study file already read into ``spec``."""
    from hpo.spec.study_file import check_data_root

    check_data_root(spec)
    check_stores(request.stores)
    from hpo.train.threads import requested_threads

    requested_threads(request.threads)  # a bad HPO_THREADS: refused before torch loads
    from hpo.core.interrupts import imports_uninterrupted

    with imports_uninterrupted():  # a Ctrl-C inside torch's import would abort the process
        from hpo.pipeline import run_study

    return run_study(spec, request, print_line)


def _existing_storage(storage: str | None) -> str:
    """--storage (or its default), refused in one line before Optuna loads unless it holds studies already."""
    from hpo.stores.urls import check_storage_exists, check_storage_url, storage_url

    url = storage_url(storage)
    check_storage_exists(url)
    check_storage_url(url)
    return url


def _stored_study(study: str, url: str):
    """The named study (or a study file's) in the storage at ``url``, opened for reading: never created here."""
    from hpo.study.storage import load_existing_study, open_storage

    return load_existing_study(study_name(study), open_storage(url, must_exist=True))


def _reading_tracking_uri(given: str | None) -> str | None:
    from hpo.stores.urls import check_tracking_uri, existing_tracking_uri

    uri = existing_tracking_uri(given)
    if uri is not None:
        check_tracking_uri(uri)
    return uri


def show(study: str, storage: str | None = None, top: int | None = None,
         tracking_uri: str | None = None) -> tuple[dict, list[str]]:
    """``hpo show``: the study's summary (a dict, what ``--json`` prints) and its text lines; with ``top``, also
    the leaderboard of the ``top`` best trials and the retrain results."""
    url = _existing_storage(storage)
    tracking = _reading_tracking_uri(tracking_uri) if top is not None else None
    stored = _stored_study(study, url)
    from hpo.report.summary import describe, summary_lines

    summary = describe(stored)
    lines = summary_lines(summary)
    if top is not None:
        from hpo.report.leaderboard import leaderboard, leaderboard_lines, retrains

        rows = leaderboard(stored, top)
        results, source = retrains(stored, tracking)
        summary.update(leaderboard=[row.as_dict() for row in rows], retrains=results, retrains_from=source)
        if summary["best_trial"] is not None:
            lines += leaderboard_lines(rows, summary["metric"], results, source)
    return summary, lines


def report(study: str, output: str | None = None, top: int = 5, storage: str | None = None,
           tracking_uri: str | None = None, print_line: PrintLine = print) -> tuple[Path, Path]:
    """``hpo report``: one self-contained HTML page about the study and its Markdown twin; returns their paths."""
    from hpo.stores.outputs import check_output

    url = _existing_storage(storage)
    tracking = _reading_tracking_uri(tracking_uri)
    name = study_name(study)
    page = Path(output or f"report-{name}.html")
    if page.is_dir():
        raise UserError(f"--output: {page} is a folder; name the HTML file, e.g. {page / f'report-{name}.html'}")
    check_output(page, "--output", "report")
    check_output(page.with_suffix(".md"), "--output (its Markdown twin)", "report")
    pictures = page.with_name(f"{page.stem}-pictures")
    if pictures.exists() and not pictures.is_dir():
        raise UserError(f"--output: the Markdown report's pictures go to {pictures}/, which is a file; "
                        f"remove it or name another --output")
    stored = _stored_study(study, url)
    from hpo.report.page import write_report

    print_line(f"report on study {name!r}:")
    return write_report(stored, page, tracking, top, print_line=print_line)


def retrain(study: str, stores: Stores, overrides=(), device: str | None = None, print_line: PrintLine = print,
            trial: int | None = None, threads: int | None = None):
    """``hpo retrain``: retrain the best trial of a stored study (``trial``: that COMPLETE trial, e.g. a point of
    a Pareto front), always (even when a retrain exists); returns the
    :class:`hpo.retrain.retrain.RetrainResult` of each retrain."""
    from hpo.spec.study_file import (anchor_paths, apply_overrides, is_study_file, load_study, parse_study,
                                     user_code_named)

    spec = load_study(study, list(overrides)) if is_study_file(study) else None  # a bad file: refused at once
    check_stores(stores)
    from hpo.train.threads import requested_threads

    requested_threads(threads)  # a bad HPO_THREADS: refused before torch loads
    from hpo.core.interrupts import imports_uninterrupted, interrupts_raise

    with imports_uninterrupted():  # a Ctrl-C inside torch's import would abort the process
        from hpo.retrain.best_trial import retrain_best_trial
    from hpo.search.context import Context, load_data, open_tracker
    from hpo.stores.urls import storage_url
    from hpo.study.record import StudyRecord
    from hpo.study.storage import load_existing_study, open_storage
    from hpo.train.device import resolve_device

    storage = open_storage(storage_url(stores.storage), must_exist=True)
    if spec is None:  # a study's name: the spec its storage kept when it was run
        raw = StudyRecord(load_existing_study(study, storage)).spec
        if raw is None:
            raise UserError(f"study {study!r} was not created by hpo run; pass its study file instead")
        raw = anchor_paths(apply_overrides(raw, overrides), Path.cwd())  # a --set path: from where it was typed
        spec = parse_study(raw, f"study {study!r} in {storage.url}", import_user_code=False)
        named = user_code_named(spec)
        if named:  # imported only where the user names it: a study file, not a store
            raise UserError(f"study {study!r} trains code of the user's ({', '.join(named)}), which hpo imports "
                            f"only from a study file; run hpo retrain STUDY_FILE")
    stored = load_existing_study(spec.name, storage)
    if trial is not None:
        from hpo.study.objectives import chosen_trial

        chosen_trial(stored, trial)  # refused before the data is read and the tracking store opened
    torch_device = resolve_device(device or spec.device)
    from hpo.search.context import study_threads
    from hpo.train.threads import apply_threads

    splits = load_data(spec, torch_device)
    chosen = study_threads(spec, splits, torch_device, threads)
    apply_threads(chosen)
    print_line(chosen.line())
    ctx = Context(spec, splits, torch_device, open_tracker(spec.name, stores), None, print_line, threads=chosen)
    for line in ctx.tracker.reconcile(stored):  # e.g. an earlier hpo retrain that was killed
        print_line(line)
    with interrupts_raise():  # the retrain run ends KILLED, not RUNNING
        return retrain_best_trial(ctx, stored, trial=trial)


def promote(study: str, stores: Stores, run_id: str | None = None, output: str | None = None,
            alias: str = "champion", print_line: PrintLine = print, trial: int | None = None):
    """``hpo promote``: register a retrain run (``run_id``, else the latest, of ``trial`` where given) in the
    MLflow Model Registry and write the final checkpoint; returns a :class:`hpo.serve.promote.Promotion`."""
    if run_id is not None and trial is not None:
        raise UserError("--run and --trial: give one of them (--trial N promotes the latest retrain of trial N)")
    from hpo.stores.outputs import check_output
    from hpo.stores.retry import check_writable

    check_alias(alias)
    if run_id is not None:
        check_run_id(run_id)
    name = study_name(study)
    check_stores(stores, trains=False)  # it reads the retrain's artifacts; the checkpoint goes to --output
    if output:
        check_output(output, "--output", "checkpoint")
    else:
        check_writable(Path("checkpoints"), "--output")
    from hpo.core.interrupts import imports_uninterrupted, interrupts_raise

    with imports_uninterrupted():  # a Ctrl-C inside torch's import would abort the process
        from hpo.serve.promote import promote as register
        from hpo.track.tracker import Tracker

    with interrupts_raise():  # a Ctrl-C undoes the promotion, or waits for its last steps
        return register(Tracker(name, stores.tracking, stores.artifacts, create=False), output, alias, run_id,
                        print_line, trial)


@dataclass(frozen=True)
class Evaluated:
    """``hpo evaluate``'s answer: the checkpoint's test scores, and the accuracy logged when it was made."""

    checkpoint: str
    data: str
    accuracy: float
    top5: float | None
    loss: float
    n_images: int
    logged_test_accuracy: float | None
    f1_macro: float | None = None  # scikit-learn's macro F1 and balanced accuracy
    balanced_accuracy: float | None = None


def evaluate(checkpoint: str, device: str | None = None, data_root: str | None = None) -> Evaluated:
    """``hpo evaluate``: the checkpoint's accuracy on the test split of the data set it was trained on."""
    from hpo.serve.inference import evaluate_checkpoint
    from hpo.train.checkpoint import load_checkpoint
    from hpo.train.device import resolve_device

    loaded = load_checkpoint(checkpoint)
    result = evaluate_checkpoint(loaded, resolve_device(device or "auto"), data_root)
    return Evaluated(checkpoint, loaded["data"]["name"], result.accuracy, result.top5, result.loss, result.n_images,
                     loaded["metrics"].get("test_accuracy"), result.f1_macro, result.balanced_accuracy)


def predict(checkpoint: str, files: list[str], device: str | None = None) -> list:
    """``hpo predict``: a class and its probability for each image file (:class:`hpo.serve.inference.Prediction`)."""
    from hpo.serve.inference import predict_files
    from hpo.train.checkpoint import load_checkpoint
    from hpo.train.device import resolve_device

    return predict_files(load_checkpoint(checkpoint), files, resolve_device(device or "auto"))


def lr_find(study_file: str, overrides=(), device: str | None = None, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, output: str | None = None, print_line: PrintLine = print):
    """``hpo lr-find``: the LR range test on the study's model and training split, with the hyperparameters of
    its first enqueued trial (its recipe) over the fixed values and defaults; returns (result, plot path)."""
    from hpo.stores.outputs import check_output

    if not 0 < start < end:
        raise UserError(f"--start and --end: need 0 < start < end, got {start:g} and {end:g}")
    if steps < 3:
        raise UserError(f"--steps: need at least 3, got {steps}")
    spec = check(study_file, overrides)
    plot = check_output(output or f"lr-find-{spec.name}.png", "--output", "plot")
    from hpo.search.context import load_data
    from hpo.train.device import resolve_device, seed_everything
    from hpo.train.lr_find import lr_range_test, save_plot
    from hpo.train.trainer import Setup

    torch_device = resolve_device(device or spec.device)
    splits = load_data(spec)
    recipe = spec.enqueue[0] if spec.enqueue else {}
    hp = spec.search.resolve(recipe)
    from hpo.spec.model_space import model_params

    chosen = spec.model.of_params(model_params(recipe))  # a searched model: the recipe's, else the first one
    seed_everything(spec.seed)
    model = chosen.build(splits)
    print_line(f"LR range test: {chosen.name} on {spec.data.name}, {hp.optimizer}, batch {hp.batch_size}, "
               f"lr {start:g} -> {end:g} over {steps} steps")
    if spec.search.lr_scaling != "none":
        print_line(f"  the rates are at batch {hp.batch_size} x accumulation {hp.accumulation}; under lr_scaling "
                   f"{spec.search.lr_scaling}, search.lr is per 256 images: divide by {spec.search.lr_factor(hp):.4g}")
    result = lr_range_test(model, splits.train, hp, Setup(torch_device, splits.mean, splits.std, spec.seed),
                           start_lr=start, end_lr=end, steps=steps)
    return result, save_plot(result, plot, f"LR range test: {spec.name}")


# hpo bench's sizes where the command line gives none: a GPU run, and one that ends in minutes on 2 cores.
BENCH_DEFAULTS = {"cuda": {"model": "resnet18", "batch_size": 256, "steps": 30, "packed": 4, "study_trials": 12,
                           "study_epochs": 6},
                  "cpu": {"model": "simple_cnn", "batch_size": 64, "steps": 8, "packed": 2, "study_trials": 6,
                          "study_epochs": 2}}


def bench(device: str | None = None, model: str | None = None, stem: str = "cifar", image_size: int = 32,
          channels: int = 3, batch_size: int | None = None, steps: int | None = None, packed: int | None = None,
          study_trials: int | None = None, study_epochs: int | None = None, folder: str | None = None,
          print_line: PrintLine | None = print, repeats: int = 5) -> dict:
    """``hpo bench``: the trainer against a plain PyTorch loop and the device's ceiling, packed workers, and a
    short study with and without pruning (``hpo/bench/training.py``); the numbers as a dict."""
    from hpo.models import MODELS

    if model is not None and model not in MODELS:
        raise UserError(f"--model: unknown model {model!r}; allowed: {', '.join(MODELS.names())}")
    if folder and not Path(folder).is_dir():
        raise UserError(f"--folder: {folder} is not a folder; point it at an image folder")
    from hpo.bench.training import BenchConfig, run_bench
    from hpo.train.device import resolve_device

    torch_device = resolve_device(device or "auto")
    given = {"model": model, "batch_size": batch_size, "steps": steps, "packed": packed,
             "study_trials": study_trials, "study_epochs": study_epochs}
    sizes = {k: v if v is not None else BENCH_DEFAULTS["cuda" if torch_device.type == "cuda" else "cpu"][k]
             for k, v in given.items()}
    model_args = (("stem", stem),) if sizes["model"].startswith("resnet") else ()
    config = BenchConfig(str(torch_device), sizes["model"], model_args, image_size, channels, 10,
                         sizes["batch_size"], sizes["steps"], sizes["packed"], sizes["study_trials"],
                         sizes["study_epochs"], folder, repeats)
    return run_bench(config, print_line=print_line or (lambda line: None))


def bench_storage(postgres: str | None = None, print_line: PrintLine = print) -> dict:
    """``hpo bench --storage``: what the study storage costs per trial (``hpo/bench/storage.py``)."""
    from hpo.bench.storage import Storage, local_storages, storage_overhead

    storages = local_storages() + ([Storage("postgresql", lambda folder: postgres)] if postgres else [])
    numbers = storage_overhead(storages, print_line=print_line)
    if not postgres:
        print_line("  postgresql: not measured (pass --postgres URL)")
    return numbers


def bench_search(study_file: str, seeds: int = 5, tolerance: float = 0.005, output: str | None = None,
                 print_line: PrintLine = print) -> dict:
    """``hpo bench --search STUDY``: the study under each search strategy and seed, the epochs and time each
    spends to reach the best value found (``hpo/bench/search.py``); the numbers as a dict."""
    import math

    from hpo.stores.outputs import check_output

    spec = check(study_file)
    if spec.multi_objective:
        raise UserError(f"{study_file}: objectives: --search measures a study of one objective; this one has "
                        f"{len(spec.objectives)}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise UserError(f"--tolerance: must be a number >= 0 (in the metric's units), got {tolerance}")
    if output:
        check_output(output, "--output", "plot")
    from hpo.bench.search import bench_search as measure

    return measure(study_file, seeds, tolerance, output, print_line=print_line)


def bench_startup(print_line: PrintLine = print) -> dict:
    """``hpo bench --startup``: how long ``hpo`` takes to answer, timed in fresh processes."""
    from hpo.bench.startup import startup_times

    return startup_times(print_line=print_line)


def dashboard(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080,
              print_line: PrintLine = print) -> None:
    """``hpo dashboard``: optuna-dashboard on the study storage (and the trials' pictures), until Ctrl-C."""
    url = _existing_storage(storage)
    from hpo.study.storage import open_storage

    opened = open_storage(url, must_exist=True)
    with socket.socket() as probe:  # optuna-dashboard's own error for a taken port is a 32-line traceback
        try:
            probe.bind((host, port))
        except OSError as err:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); pick another with "
                            f"--port") from None
    import optuna_dashboard

    from hpo.core.masking import masked
    from hpo.track.dashboard import artifact_folder, artifact_store

    store = artifact_store(url, create=False)  # the trials' pictures, where hpo run put them
    print_line(f"optuna-dashboard on {masked(opened.url)}: http://{host}:{port}  (Ctrl-C to stop)")
    if store is None:
        print_line(f"no trial pictures: {artifact_folder(url)} does not exist (set HPO_DASHBOARD_ARTIFACTS to "
                   f"where hpo run kept them)")
    optuna_dashboard.run_server(opened, host=host, port=port, artifact_store=store)


# --- how a command failed --------------------------------------------------------------------------------------

EXIT_USAGE, EXIT_FAILED = 2, 1


def explain(err: BaseException) -> tuple[str, str, int] | None:
    """(kind, one line, exit code) for a failure a user should read as a sentence: bad input ("error", 2) or
    work that could not be done ("failed", 1); None for a bug, whose traceback is worth more."""
    import sys

    from hpo.core.errors import WorkFailed

    if isinstance(err, UserError):
        return "error", str(err), EXIT_USAGE
    if isinstance(err, WorkFailed):
        return "failed", str(err), EXIT_FAILED
    data_errors = sys.modules.get("hpo.data.errors")  # loaded with any loader; importing it here would load torch
    if data_errors is not None and isinstance(err, data_errors.DataError):  # outside a study file (--data-root)
        return "error", f"{err.field}: {err.message}" if err.field else err.message, EXIT_USAGE
    if data_errors is not None and isinstance(err, data_errors.DataFailed):  # a DataLoader worker killed
        return "failed", str(err), EXIT_FAILED
    retry = sys.modules.get("hpo.stores.retry")  # a store that filled up or turned read-only where no call named it
    if retry is not None and isinstance(err, Exception) and (retry.is_full(err) or retry.is_read_only(err)):
        return "failed", str(retry.unwritable("a store", err)), EXIT_FAILED
    return None


def crashed(err: BaseException, command: str) -> tuple[str, str, int]:
    """The last resort for a failure hpo has no sentence for (a bug): its traceback goes to a crash file
    ($HPO_CRASH_DIR, else hpo-crashes/ in the temp folder), and the console gets one line naming it (exit 1).
    The tests fail on any crash file, so this hides nothing."""
    import os
    import tempfile
    import time
    import traceback

    from hpo.core.masking import masked

    folder = Path(os.environ.get("HPO_CRASH_DIR") or Path(tempfile.gettempdir()) / "hpo-crashes")
    text = masked("".join(traceback.format_exception(err)))
    first = (str(err).splitlines() or [""])[0][:200]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"hpo-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        path.write_text(text)
        where = f"the traceback is in {path}"
    except OSError:
        where = "the traceback could not be written: " + text.strip().splitlines()[-1]
    return "crashed", f"{type(err).__name__}: {first}; this is a bug in hpo: {where}", EXIT_FAILED
