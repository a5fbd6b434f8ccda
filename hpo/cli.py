"""The ``hpo`` command line: run, check, show, report, retrain, promote, evaluate, predict, dashboard.

Every command parses its input first and fails with one line and exit code 2
before it touches a store. Heavy modules (torch, MLflow) are imported inside
the commands that need them, so ``hpo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hpo
from hpo.errors import UserError, WorkFailed
from hpo.urls import masked

EXIT_USAGE = 2
EXIT_FAILED = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _stores(parser: argparse.ArgumentParser, tracking: bool = True) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage (default: $HPO_STORAGE or sqlite:///hpo.db in this directory)")
    if tracking:
        parser.add_argument("--tracking-uri", metavar="URI",
                            help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        parser.add_argument("--artifacts", metavar="DIR",
                            help="where a new MLflow experiment keeps artifacts (default: $HPO_ARTIFACTS or "
                                 "./mlartifacts)")


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a study-file field, e.g. --set budget.trials=5 (repeatable)")


# --- argument types: a bad value is refused by argparse, in one line, before anything heavy is imported ---

def device_name(value: str) -> str:
    from hpo.spec import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return value


def existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file" if not Path(value).exists() else
                                         f"{value}: not a file")
    return value


def at_least(low: int):
    def whole_number(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {number}")
        return number

    return whole_number


def gpu_list(value: str) -> str:
    from hpo.workers import parse_gpus

    try:
        parse_gpus(value)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--gpus: ")) from None
    return value


def port(value: str) -> int:
    number = at_least(1)(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {number}")
    return number


def postgres_url(value: str) -> str:
    if not value.startswith("postgresql"):
        from hpo.urls import masked

        raise argparse.ArgumentTypeError(f"{masked(value)!r} is not a PostgreSQL URL; e.g. "
                                         f"postgresql+psycopg://hpo@db/hpo")
    return value


def _device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: the study's, "
                                                           "else auto: CUDA when present)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hpo", formatter_class=_formatter,
        description="Hyperparameter optimisation for PyTorch image classifiers: a pruned Optuna search, "
                    "every trial in MLflow, the best retrained, promoted to the Model Registry.",
        epilog="the life of a study:\n"
               "  hpo check studies/digits.yaml          validate the file, print the space\n"
               "  hpo run studies/digits.yaml            search, then retrain the best trial\n"
               "  hpo dashboard                          watch it in optuna-dashboard\n"
               "  hpo show digits                        best trial and counts by state\n"
               "  hpo show digits --top 5                and the 5 best trials, and the retrains\n"
               "  hpo report digits                      one HTML page: plots, leaderboard, retrains\n"
               "  hpo promote digits                     register in MLflow, export a checkpoint\n"
               "  hpo evaluate checkpoints/digits-v1.pt  test accuracy of that checkpoint\n"
               "  hpo predict checkpoints/digits-v1.pt a.png b.png\n\n"
               "STUDY is a study file or the name of a study in the storage.")
    parser.add_argument("--version", action="version", version=f"hpo {hpo.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    run = commands.add_parser(
        "run", help="search a study, then retrain its best trial", formatter_class=_formatter,
        description="Run the study's search (resuming it if the storage already has it) and retrain the best "
                    "trial on train+validation, scored once on the test split.",
        epilog="examples:\n"
               "  hpo run studies/digits.yaml\n"
               "  hpo run studies/digits.yaml --trials 40            # 40 finished trials in total\n"
               "  hpo run studies/digits.yaml --set budget.epochs=5 --set sampler.name=random\n"
               "  hpo run studies/digits.yaml --storage sqlite:///other.db --no-retrain\n"
               "  hpo run studies/digits.yaml > digits.log 2>&1     # epoch lines instead of bars; --quiet: neither\n"
               "  hpo run studies/cifar10_resnet18.yaml --gpus 0,1 --trials-per-gpu 2   # 4 trials at once")
    run.add_argument("study_file", metavar="STUDY_FILE")
    _overrides(run)
    run.add_argument("--trials", type=int, metavar="N",
                     help="finished trials in total, counting earlier runs (= --set budget.trials=N)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    run.add_argument("--no-retrain", action="store_true", help="search only")
    run.add_argument("--quiet", action="store_true",
                     help="no progress inside trials (neither the bars shown on a terminal nor the epoch lines "
                          "written elsewhere); the line per finished trial and errors still show")
    run.add_argument("--no-tracking", action="store_true",
                     help="log nothing to MLflow (for machines without it); trials still go to the storage, "
                          "but there is no retrain run to promote")
    run.add_argument("--gpus", type=gpu_list, metavar="LIST", help="run trials in parallel, one worker process per GPU slot: "
                                                     "e.g. 0,1 (or cpu, to run the workers on the CPU)")
    run.add_argument("--trials-per-gpu", type=at_least(1), default=1, metavar="K",
                     help="workers per GPU in --gpus, for models too small to fill one (default: 1)")
    run.add_argument("--worker-of", metavar="RUN_ID", help=argparse.SUPPRESS)  # set by the parent of workers
    run.add_argument("--worker-threads", type=at_least(1), help=argparse.SUPPRESS)
    _device(run)
    _stores(run)

    check = commands.add_parser(
        "check", help="validate a study file and print its space and budget", formatter_class=_formatter,
        epilog="example:\n  hpo check studies/digits.yaml --set budget.trials=5")
    check.add_argument("study_file", metavar="STUDY_FILE")
    _overrides(check)

    show = commands.add_parser(
        "show", help="best trial, its params and trial counts by state", formatter_class=_formatter,
        epilog="examples:\n  hpo show digits\n  hpo show studies/digits.yaml --json\n"
               "  hpo show digits --top 5      # and the 5 best trials, pruned ones after the finished, and the "
               "retrains\n  hpo show digits --top 10 --json")
    show.add_argument("study", metavar="STUDY")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.add_argument("--top", type=at_least(1), nargs="?", const=5, metavar="N",
                      help="also a leaderboard of the N best trials (default N: 5) and the study's retrain results "
                           "(read from MLflow for studies older than retrain_results)")
    _stores(show, tracking=False)
    show.add_argument("--tracking-uri", metavar="URI",
                      help="MLflow store to read retrain runs from with --top (default: $MLFLOW_TRACKING_URI, else "
                           "sqlite:///mlflow.db when that file is here; never created)")

    report = commands.add_parser(
        "report", help="one self-contained HTML page (and Markdown) about a study: plots, leaderboard, retrains",
        formatter_class=_formatter,
        description="Write one HTML file about the study, from its storage: the study and its budget, the "
                    "optimization history (by trial and by wall time), parameter importances, parallel-coordinate "
                    "and slice plots, learning curves of the best and the pruned trials, the epochs the pruner "
                    "saved, the leaderboard, baseline against best over seeds, the retrain results and the study "
                    "file. The pictures are inline PNGs and the page loads nothing: mail it, open it offline. The "
                    "same facts go to a Markdown file beside it (same name, .md).",
        epilog="examples:\n  hpo report digits                          # report-digits.html and report-digits.md\n"
               "  hpo report studies/digits.yaml --output reports/digits.html\n"
               "  hpo report digits --top 10 --storage postgresql+psycopg://hpo@db/hpo")
    report.add_argument("study", metavar="STUDY")
    report.add_argument("--output", metavar="PATH", help="the HTML file (default: report-STUDY.html); the Markdown "
                                                         "goes beside it with the suffix .md")
    report.add_argument("--top", type=at_least(1), default=5, metavar="K",
                        help="trials in the leaderboard and the learning curves (default: 5)")
    _stores(report, tracking=False)
    report.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow store to read retrain runs from when the study has no retrain_results "
                             "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db when that file is here; "
                             "never created)")

    retrain = commands.add_parser(
        "retrain", help="retrain the best trial and score it on the test split", formatter_class=_formatter,
        description="Retrain the study's best trial on train+validation and score it once on the test split. "
                    "With --seeds N: retrain the best trial and the baseline (trial 0, the study's first enqueued "
                    "recipe) with the same N fresh seeds, and judge whether the best really beats the baseline "
                    "(mean ± std of each, the difference with a 95% Welch t interval, one sentence).",
        epilog="examples:\n  hpo retrain digits\n  hpo retrain studies/digits.yaml --epochs 50\n"
               "  hpo retrain digits --seeds 3      # best vs baseline, 3 seeds each: is the win real?")
    retrain.add_argument("study", metavar="STUDY")
    retrain.add_argument("--epochs", type=int, metavar="N", help="epochs (default: the study's budget.retrain.epochs)")
    retrain.add_argument("--seeds", type=at_least(1), metavar="N",
                         help="retrain the best trial and the baseline with N seeds each and compare them "
                              "(= --set budget.retrain.seeds=N; default: the study's, else 1: no comparison)")
    _overrides(retrain)
    _device(retrain)
    _stores(retrain)

    promote = commands.add_parser(
        "promote", help="register a retrain run in the MLflow Model Registry, export a checkpoint",
        formatter_class=_formatter,
        description="Register a finished retrain run of the study as a new version of the registered model named "
                    "after the study (an MLflow pyfunc: image files in, class names and probabilities out), point "
                    "the alias at it, and write a self-contained checkpoint. The run is --run RUN_ID, or else the "
                    "study's latest finished retrain run (the newest by start time, whatever its epochs); when that "
                    "run is one of a seed comparison's (hpo retrain --seeds), the best trial's median-seed run of "
                    "that comparison.",
        epilog="examples:\n  hpo promote digits\n  hpo promote studies/digits.yaml --output best.pt\n"
               "  hpo promote digits --run RUN_ID       one of several retrains (an id that is not one of them\n"
               "                                        is refused with a line that lists them)\n\n"
               "then:\n  mlflow models serve -m models:/digits@champion --env-manager local -p 5001")
    promote.add_argument("study", metavar="STUDY")
    promote.add_argument("--run", metavar="RUN_ID", help="the retrain run to register (default: the latest "
                                                         "finished retrain run of the study)")
    promote.add_argument("--output", metavar="PATH", help="checkpoint path (default: checkpoints/STUDY-vN.pt)")
    promote.add_argument("--alias", default="champion", help="registry alias to point at the new version "
                                                             "(default: champion)")
    _stores(promote)

    evaluate = commands.add_parser(
        "evaluate", help="test accuracy of a checkpoint on the data set it was trained on",
        formatter_class=_formatter, epilog="example:\n  hpo evaluate checkpoints/digits-v1.pt --json")
    evaluate.add_argument("checkpoint", type=existing_file, metavar="CHECKPOINT")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--data-root", metavar="DIR", help="where the checkpoint's data set lies on this machine "
                                                             "(default: the path it was trained from)")
    _device(evaluate)

    predict = commands.add_parser(
        "predict", help="print a class for each image file", formatter_class=_formatter,
        epilog="example:\n  hpo predict checkpoints/digits-v1.pt images/*.png")
    predict.add_argument("checkpoint", type=existing_file, metavar="CHECKPOINT")
    predict.add_argument("files", type=existing_file, metavar="FILE", nargs="+")
    predict.add_argument("--json", action="store_true", help="print one JSON object per line")
    _device(predict)

    lr_find = commands.add_parser(
        "lr-find", help="LR range test on the study's model and data: suggested lr and a plot",
        formatter_class=_formatter,
        description="Train the study's model with the lr growing exponentially, one value per step, and "
                    "suggest the lr where the loss falls fastest. The other hyperparameters are the study's "
                    "first enqueued trial (its recipe) over the fixed values and defaults.",
        epilog="examples:\n  hpo lr-find studies/digits.yaml\n"
               "  hpo lr-find studies/cifar10_resnet18.yaml --steps 200 --output lr.png")
    lr_find.add_argument("study_file", metavar="STUDY_FILE")
    _overrides(lr_find)
    lr_find.add_argument("--start", type=float, default=1e-7, help="first lr (default: 1e-7)")
    lr_find.add_argument("--end", type=float, default=10.0, help="last lr (default: 10)")
    lr_find.add_argument("--steps", type=int, default=100, help="optimizer steps (default: 100)")
    lr_find.add_argument("--output", metavar="PATH", help="plot path (default: lr-find-STUDY.png)")
    lr_find.add_argument("--json", action="store_true", help="print one JSON object")
    _device(lr_find)

    bench = commands.add_parser(
        "bench", help="trainer speed vs a plain loop and the device's ceiling; packing; pruning",
        formatter_class=_formatter,
        description="Measure, in one run on this device: (1) the trainer against a plain PyTorch loop, "
                    "(2) against the device's matrix-multiply rate, (3) trials/hour with workers packed on the "
                    "device against one, (4) a short study's epochs with and without pruning.",
        epilog="examples:\n  hpo bench                                  # resnet18, CIFAR stem, 32x32, on the GPU\n"
               "  hpo bench --startup                        # how long hpo takes to answer\n"
               "  hpo bench --storage --postgres postgresql+psycopg://hpo@db/hpo   # storage cost per trial\n"
               "  hpo bench --model resnet50 --stem imagenet --image-size 224 --batch-size 128\n"
               "  hpo bench --device cpu                     # CPU-sized defaults: a few minutes on 2 cores")
    bench.add_argument("--device", type=device_name, help="cuda, cuda:N or cpu (default: cuda when present)")
    bench.add_argument("--model", help="a registered model (default: resnet18 on a GPU, simple_cnn on the CPU)")
    bench.add_argument("--stem", default="cifar", choices=("cifar", "imagenet"),
                       help="ResNet stem (default: cifar)")
    bench.add_argument("--image-size", type=at_least(1), default=32, help="pixels (default: 32)")
    bench.add_argument("--channels", type=at_least(1), default=3, help="image channels (default: 3)")
    bench.add_argument("--batch-size", type=at_least(1), help="(default: 256 on a GPU, 64 on the CPU)")
    bench.add_argument("--steps", type=at_least(1), help="timed steps per measurement (default: 30 on a GPU, 8 on the CPU)")
    bench.add_argument("--packed", type=at_least(1), help="workers packed on the device in part 3 (default: 4 on a GPU, "
                                                  "2 on the CPU)")
    bench.add_argument("--study-trials", type=at_least(1), help="trials of the short studies (default: 12 on a GPU, "
                                                        "6 on the CPU)")
    bench.add_argument("--study-epochs", type=at_least(1), help="epochs per trial in them (default: 6 on a GPU, 2 on the CPU)")
    bench.add_argument("--folder", help="an image folder (a few thousand JPEGs will do) to also time the trainer "
                       "streaming it from disk at --image-size, in part 1")
    bench.add_argument("--json", action="store_true", help="print one JSON object (the lines go to stderr)")
    bench.add_argument("--startup", action="store_true",
                       help="instead: time how long hpo takes to answer (--help, check, show) in fresh processes, "
                            "against python -c pass and import torch")
    bench.add_argument("--storage", action="store_true",
                       help="instead: the study storage's cost per trial with 1, 4 and 8 workers, at the 10th and the "
                            "1000th trial (SQLite in each journal mode; PostgreSQL with --postgres)")
    bench.add_argument("--postgres", metavar="URL", type=postgres_url,
                       help="with --storage: also measure this PostgreSQL database (postgresql+psycopg://...); the "
                            "benchmark's studies are deleted afterwards")

    dashboard = commands.add_parser(
        "dashboard", help="serve optuna-dashboard on the study storage (127.0.0.1)", formatter_class=_formatter,
        epilog="example:\n  hpo dashboard --port 8080   # then open http://127.0.0.1:8080")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=port, default=8080, help="port (default: 8080)")
    _stores(dashboard, tracking=False)
    return parser


# --- commands: each parses, calls one function, prints ------------------------------------------------


def _stores_of(args):
    from hpo.pipeline import Stores
    return Stores(storage=args.storage, tracking=getattr(args, "tracking_uri", None),
                  artifacts=getattr(args, "artifacts", None), tracking_off=getattr(args, "no_tracking", False))


def cmd_check(args) -> int:
    from hpo.spec import load_study

    spec = load_study(args.study_file, args.overrides)
    b = spec.budget
    print(f"{spec.source}: OK")
    print(f"study     {spec.name}  seed {spec.seed}  {spec.direction} {spec.metric}  device {spec.device}  "
          f"compile {spec.compile}")
    print(f"data      {spec.data.name} {dict(spec.data.args) or ''}  val {spec.data.val_fraction:g}  "
          f"test {spec.data.test_fraction:g}  split_seed {spec.data.split_seed}")
    print(f"model     {spec.model.name} {dict(spec.model.args) or ''}")
    print(f"budget    {b.trials} trials x {b.epochs} epochs, timeout {b.timeout_s or 'none'}, "
          f"retrain {', '.join(map(str, b.retrain.epochs))} epochs")
    print(f"sampler   {spec.sampler.name} {dict(spec.sampler.args) or ''}")
    print(f"pruner    {spec.pruner.name} {dict(spec.pruner.args) or ''}")
    print("search space:")
    for line in spec.search.describe():
        print("  " + line)
    for i, params in enumerate(spec.enqueue):
        print(f"enqueued trial {i}: {params}")
    return 0


def cmd_run(args) -> int:
    from hpo.pipeline import RunRequest, run

    overrides = list(args.overrides)
    if args.trials is not None:
        overrides.append(f"budget.trials={args.trials}")
    if args.timeout is not None:
        overrides.append(f"budget.timeout_s={args.timeout}")
    request = RunRequest(args.study_file, _stores_of(args), tuple(overrides), device=args.device, gpus=args.gpus,
                         trials_per_gpu=args.trials_per_gpu, retrain=not args.no_retrain,
                         invocation=" ".join(sys.argv[1:]) or "hpo run", worker_of=args.worker_of,
                         worker_threads=args.worker_threads, quiet=args.quiet)
    return run(request, print_line=_flush_print)


def _existing_storage_url(args) -> str:
    """--storage (or its default), refused in one line before Optuna loads unless it holds studies already."""
    from hpo.urls import check_storage_exists, check_storage_url, storage_url

    url = storage_url(args.storage)
    check_storage_exists(url)
    check_storage_url(url)
    return url


def cmd_show(args) -> int:
    from hpo.spec import study_name

    url = _existing_storage_url(args)
    tracking = _show_tracking_uri(args.tracking_uri) if args.top is not None else None
    from hpo.study import describe, load_existing_study, open_storage

    storage = open_storage(url, must_exist=True)
    study = load_existing_study(study_name(args.study), storage)
    report = describe(study)
    if args.top is not None:
        from hpo.leaderboard import leaderboard, retrains

        rows = leaderboard(study, args.top)
        results, source = retrains(study, tracking)
        report.update(leaderboard=[row.as_dict() for row in rows], retrains=results, retrains_from=source)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    counts = report["n_trials_by_state"]
    print(f"study {report['study']!r} in {report['storage']}: {report['n_trials']} trials "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    if report["best_trial"] is None:
        print("no COMPLETE trial yet")
        return 0
    print(f"best: trial {report['best_trial']}, {report['metric']} {report['best_value']:.4f} "
          f"({report['direction']}), MLflow run {report['best_mlflow_run_id']}")
    for key, value in report["best_params"].items():
        print(f"  {key:16s} {value}")
    if report["seed_verdict"]:
        print(f"seed comparison: {report['seed_verdict']['sentence']}")
    if args.top is not None:
        _print_leaderboard(rows, report["metric"], results, source)
    return 0


def _show_tracking_uri(given: str | None) -> str | None:
    from hpo.leaderboard import default_tracking_uri
    from hpo.urls import check_tracking_uri

    uri = default_tracking_uri(given)
    if uri is not None:
        check_tracking_uri(uri)
    return uri


def _print_leaderboard(rows, metric: str, results: list[dict], source: str) -> None:
    from hpo.leaderboard import format_value, retrain_table, table, text_table

    header, cells, constant = table(rows, metric)
    print(f"top {len(rows)} of the ranked trials (COMPLETE by {metric}, then PRUNED by the last value reported):"
          if rows else "no ranked trial yet (none COMPLETE or PRUNED)")
    for line in text_table(header, cells) if rows else []:
        print("  " + line)
    if constant:
        print("  same in all: " + ", ".join(f"{k}={format_value(v)}" for k, v in constant.items()))
    if not results:
        print("retrains: none recorded" + ("" if source == "none" else f" in the study; {source}"))
        return
    print(f"retrains ({'from MLflow' if source == 'mlflow' else 'recorded in the study'}):")
    for line in text_table(*retrain_table(results)):
        print("  " + line)


def cmd_report(args) -> int:
    from hpo.spec import study_name
    from hpo.store_failures import check_writable

    url = _existing_storage_url(args)
    tracking = _show_tracking_uri(args.tracking_uri)
    name = study_name(args.study)
    output = Path(args.output or f"report-{name}.html")
    if output.is_dir():
        raise UserError(f"--output: {output} is a folder; name the HTML file, e.g. {output / f'report-{name}.html'}")
    check_writable(output, "--output")
    check_writable(output.with_suffix(".md"), "--output")
    from hpo.study import load_existing_study, open_storage

    study = load_existing_study(name, open_storage(url, must_exist=True))
    from hpo.report import write_report

    print(f"report on study {name!r}:", file=sys.stderr, flush=True)
    page, markdown = write_report(study, output, tracking, args.top,
                                  print_line=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"report written to {page}")
    print(f"markdown written to {markdown}")
    return 0


def cmd_retrain(args) -> int:
    from hpo.pipeline import retrain_study, store_flags
    from hpo.spec import study_name

    overrides = list(args.overrides) + ([f"budget.retrain.epochs={args.epochs}"] if args.epochs else []) + \
        ([f"budget.retrain.seeds={args.seeds}"] if args.seeds else [])
    stores = _stores_of(args)
    retrain_study(args.study, stores, tuple(overrides), args.device, print_line=_flush_print)
    print(f"next: hpo promote {study_name(args.study)}" + store_flags(stores))
    return 0


def cmd_promote(args) -> int:
    from hpo.pipeline import check_stores
    from hpo.spec import study_name

    from hpo.store_failures import check_writable

    name = study_name(args.study)
    check_stores(_stores_of(args), trains=False)  # it reads the retrain's artifacts; the checkpoint goes to --output
    check_writable(Path(args.output or "checkpoints"), "--output")
    from hpo.promote import promote
    from hpo.tracking import Tracker
    tracker = Tracker(name, args.tracking_uri, args.artifacts, create=False)
    done = promote(tracker, args.output, args.alias, args.run)
    if done.chosen_because:
        print(done.chosen_because)
    print(f"registered {done.model_name!r} version {done.version} (alias {done.alias!r}) from MLflow run "
          f"{done.run_id}, test_accuracy {done.test_accuracy:.4f}")
    print(f"checkpoint written to {done.checkpoint}")
    print(f"load it: mlflow.pyfunc.load_model('models:/{done.model_name}@{done.alias}'); serve it: "
          f"mlflow models serve -m models:/{done.model_name}@{done.alias} --env-manager local")
    print(f"next: hpo evaluate {done.checkpoint}")
    return 0


def cmd_evaluate(args) -> int:
    from hpo.checkpoint import load_checkpoint
    from hpo.inference import evaluate_checkpoint
    from hpo.trainer import resolve_device

    checkpoint = load_checkpoint(args.checkpoint)
    result = evaluate_checkpoint(checkpoint, resolve_device(args.device or "auto"), args.data_root)
    logged = checkpoint["metrics"].get("test_accuracy")
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "data": checkpoint["data"]["name"],
                          "accuracy": result.accuracy, "top5": result.top5, "loss": result.loss,
                          "n_images": result.n_images, "logged_test_accuracy": logged}))
    else:
        print(f"{args.checkpoint}: accuracy {result.accuracy:.4f} (loss {result.loss:.4f}) on "
              f"{result.n_images} test images of {checkpoint['data']['name']}; logged at retrain: {logged:.4f}")
    return 0


def cmd_predict(args) -> int:
    from hpo.checkpoint import load_checkpoint
    from hpo.inference import predict_files
    from hpo.trainer import resolve_device

    checkpoint = load_checkpoint(args.checkpoint)
    for p in predict_files(checkpoint, args.files, resolve_device(args.device or "auto")):
        if args.json:
            print(json.dumps({"file": p.file, "class": p.label, "probability": p.probability}))
        else:
            print(f"{p.file}\t{p.label}\t{p.probability:.3f}")
    return 0


def cmd_lr_find(args) -> int:
    from hpo.spec import load_study

    if not 0 < args.start < args.end:
        raise UserError(f"--start and --end: need 0 < start < end, got {args.start:g} and {args.end:g}")
    if args.steps < 3:
        raise UserError(f"--steps: need at least 3, got {args.steps}")
    spec = load_study(args.study_file, args.overrides)
    from hpo.store_failures import check_writable

    output = args.output or f"lr-find-{spec.name}.png"
    check_writable(Path(output), "--output")
    from hpo.lr_find import save_plot
    from hpo.pipeline import lr_find_study

    result = lr_find_study(spec, args.device, args.start, args.end, args.steps,
                           print_line=lambda line: print(line, file=sys.stderr, flush=True))
    plot = save_plot(result, output, f"LR range test: {spec.name}")
    if args.json:
        print(json.dumps({"suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr,
                          "steps": len(result.lrs), "plot": str(plot)}))
    else:
        print(f"suggested lr {result.suggested_lr:.3g} (steepest fall; the loss is lowest at "
              f"{result.min_loss_lr:.3g}) after {len(result.lrs)} steps; plot: {plot}")
    return 0


# hpo bench's sizes where the command line gives none: a GPU run, and one that ends in minutes on 2 cores.
BENCH_DEFAULTS = {"cuda": {"model": "resnet18", "batch_size": 256, "steps": 30, "packed": 4, "study_trials": 12,
                           "study_epochs": 6},
                  "cpu": {"model": "simple_cnn", "batch_size": 64, "steps": 8, "packed": 2, "study_trials": 6,
                          "study_epochs": 2}}


def cmd_bench(args) -> int:
    if args.postgres and not args.storage:
        raise UserError("--postgres: only with --storage (it names a database to measure)")
    if args.storage:
        from hpo.storage_bench import Storage, local_storages, storage_overhead

        storages = local_storages() + ([Storage("postgresql", lambda folder: args.postgres)] if args.postgres else [])
        out = sys.stderr if args.json else sys.stdout
        numbers = storage_overhead(storages, print_line=lambda line: print(line, file=out, flush=True))
        if not args.postgres:
            print("  postgresql: not measured (pass --postgres URL)", file=out)
        if args.json:
            print(json.dumps(numbers))
        return 0
    if args.startup:
        from hpo.startup import startup_times

        times = startup_times(print_line=lambda line: print(line, file=sys.stderr if args.json else sys.stdout,
                                                            flush=True))
        if args.json:
            print(json.dumps(times))
        return 0
    from models import MODELS

    if args.model is not None and args.model not in MODELS:
        raise UserError(f"--model: unknown model {args.model!r}; allowed: {', '.join(MODELS.names())}")
    if args.folder and not Path(args.folder).is_dir():
        raise UserError(f"--folder: {args.folder} is not a folder; point it at an image folder")
    from hpo.trainer import resolve_device

    device = resolve_device(args.device or "auto")
    for flag, default in BENCH_DEFAULTS["cuda" if device.type == "cuda" else "cpu"].items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    from hpo.bench import BenchConfig, main_json, run_bench

    model_args = (("stem", args.stem),) if args.model.startswith("resnet") else ()
    config = BenchConfig(str(device), args.model, model_args, args.image_size, args.channels, 10, args.batch_size,
                         args.steps, args.packed, args.study_trials, args.study_epochs, args.folder)
    if args.json:
        main_json(config)
    else:
        run_bench(config, print_line=_flush_print)
    return 0


def cmd_dashboard(args) -> int:
    url = _existing_storage_url(args)
    from hpo.study import open_storage

    storage = open_storage(url, must_exist=True)
    import socket

    with socket.socket() as probe:  # optuna-dashboard's own error for a taken port is a 32-line traceback
        try:
            probe.bind((args.host, args.port))
        except OSError as err:
            raise UserError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({err.strerror}); "
                            f"pick another with --port") from None
    import optuna_dashboard

    from hpo.views import artifact_folder, artifact_store

    store = artifact_store(url, create=False)  # the trials' pictures, where hpo run put them
    print(f"optuna-dashboard on {masked(storage.url)}: http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    if store is None:
        print(f"no trial pictures: {artifact_folder(url)} does not exist (set "
              f"HPO_DASHBOARD_ARTIFACTS to where hpo run kept them)", flush=True)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0


def _say(command: str, kind: str, message: str) -> None:
    """The one line a failed command ends with, on stderr: whitespace folded, passwords masked."""
    print(f"hpo {command}: {kind}: {masked(' '.join(message.split()))}", file=sys.stderr)


def _flush_print(line: str) -> None:
    print(masked(line), flush=True)


COMMANDS = {"run": cmd_run, "check": cmd_check, "show": cmd_show, "report": cmd_report, "retrain": cmd_retrain, "promote": cmd_promote,
            "evaluate": cmd_evaluate, "predict": cmd_predict, "lr-find": cmd_lr_find, "bench": cmd_bench,
            "dashboard": cmd_dashboard}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        _say(args.command, "error", str(err))
        return EXIT_USAGE
    except WorkFailed as err:
        _say(args.command, "failed", str(err))
        return EXIT_FAILED
    except ValueError as err:  # a loader's DataError outside a study file (hpo evaluate --data-root)
        data_errors = sys.modules.get("data.errors")  # loaded with any loader; importing it here would load torch
        if data_errors is None or not isinstance(err, data_errors.DataError):
            raise
        _say(args.command, "error", f"{err.field}: {err.message}" if err.field else err.message)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `hpo check ... | head`
        return 0
    except RuntimeError as err:  # good data that could not be read (a DataLoader worker killed)
        data_errors = sys.modules.get("data.errors")
        if data_errors is None or not isinstance(err, data_errors.DataFailed):
            raise
        _say(args.command, "failed", str(err))
        return EXIT_FAILED
    except Exception as err:  # a store that filled up or turned read-only where no call site named it
        from hpo.store_failures import is_full, is_read_only, unwritable
        if not (is_full(err) or is_read_only(err)):
            raise
        _say(args.command, "failed", str(unwritable("a store", err)))
        return EXIT_FAILED
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM during hpo run (hpo.interrupts)
        print(f"hpo {args.command}: interrupted ({getattr(stop, 'name', 'SIGINT')}); nothing is left RUNNING"
              + ("; rerun the same command to resume" if args.command == "run" else ""), file=sys.stderr)
        return getattr(stop, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
