"""The ``hpo`` command line's arguments: every command's options, help and examples (argparse).

A value of the wrong type or range is refused here, by argparse, in one line with exit code 2, before
anything heavy is imported; the judging of values that need the study's rules is ``hpo.api``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import hpo
from hpo import api
from hpo.core.errors import UserError
from hpo.core.masking import masked

EXIT_USAGE = 2


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
    try:
        return api.check_device(value)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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


def checked_by(check, flag: str):
    """An argparse type from one of ``hpo.api``'s checks: its message, less the flag argparse names itself."""
    def value_type(value: str) -> str:
        try:
            return check(value)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag}: ")) from None

    value_type.__name__ = flag.lstrip("-")  # argparse names the type in some messages
    return value_type


gpu_list = checked_by(api.check_gpus, "--gpus")
alias_name = checked_by(api.check_alias, "--alias")
run_id = checked_by(api.check_run_id, "--run")


def port(value: str) -> int:
    number = at_least(1)(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {number}")
    return number


def postgres_url(value: str) -> str:
    if not value.startswith("postgresql"):
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
    run.add_argument("--threads", type=at_least(1), metavar="N",
                     help="CPU threads each training process computes with (default: $HPO_THREADS, else chosen from "
                          "the usable cores, the CPU workers, the network's size and what else is running; the "
                          "study header says which and why)")
    _device(run)
    _stores(run)

    check = commands.add_parser(
        "check", help="validate a study file and print its space and budget", formatter_class=_formatter,
        epilog="example:\n  hpo check studies/digits.yaml --set budget.trials=5")
    check.add_argument("study_file", metavar="STUDY_FILE")
    _overrides(check)
    check.add_argument("--storage", metavar="URL", help="where a warm_start: study without storage: is looked for "
                                                        "(default: $HPO_STORAGE, else sqlite:///hpo.db)")

    show = commands.add_parser(
        "show", help="best trial, its params and trial counts by state", formatter_class=_formatter,
        description="Print the study's trial counts by state and its best trial with its params; of a study with "
                    "several objectives, also its Pareto front (--json: pareto_front), whose points hpo retrain and "
                    "hpo promote take with --trial N.",
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
        description="Write one HTML file about the study, from its storage: the study and its budget, its "
                    "Pareto front (a table and a plot, for a study with several objectives), the "
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
               "  hpo retrain digits --seeds 3      # best vs baseline, 3 seeds each: is the win real?\n"
               "  hpo retrain digits --trial 7      # another trial, e.g. a point of a Pareto front (hpo show)")
    retrain.add_argument("study", metavar="STUDY")
    retrain.add_argument("--epochs", type=at_least(1), metavar="N", help="epochs (default: the study's budget.retrain.epochs)")
    retrain.add_argument("--seeds", type=at_least(1), metavar="N",
                         help="retrain the best trial and the baseline with N seeds each and compare them "
                              "(= --set budget.retrain.seeds=N; default: the study's, else 1: no comparison)")
    retrain.add_argument("--threads", type=at_least(1), metavar="N",
                         help="CPU threads to compute with (default: $HPO_THREADS, else chosen as for hpo run)")
    retrain.add_argument("--trial", type=at_least(0), metavar="N",
                         help="retrain COMPLETE trial N instead of the best one (of a multi-objective study: any "
                              "point of the Pareto front that hpo show lists; default: the best on the metric)")
    _overrides(retrain)
    _device(retrain)
    _stores(retrain)

    promote = commands.add_parser(
        "promote", help="register a retrain run in the MLflow Model Registry, export a checkpoint",
        formatter_class=_formatter,
        description="Register a finished retrain run of the study as a new version of the registered model named "
                    "after the study (an MLflow pyfunc: image files in, class names and probabilities out), point "
                    "the alias at it, and write a self-contained checkpoint. The run is --run RUN_ID, or else the "
                    "study's latest finished retrain run (the newest by start time, whatever its epochs; --trial N: "
                    "of trial N, e.g. a point of a Pareto front); when that run is one of a seed comparison's (hpo "
                    "retrain --seeds), that trial's median-seed run of that comparison.",
        epilog="examples:\n  hpo promote digits\n  hpo promote studies/digits.yaml --output best.pt\n"
               "  hpo promote digits --run RUN_ID       one of several retrains (an id that is not one of them\n"
               "                                        is refused with a line that lists them)\n"
               "  hpo promote digits --trial 7          the latest retrain of trial 7 (hpo retrain --trial 7)\n\n"
               "then:\n  mlflow models serve -m models:/digits@champion --env-manager local -p 5001")
    promote.add_argument("study", metavar="STUDY")
    which = promote.add_mutually_exclusive_group()
    which.add_argument("--run", type=run_id, metavar="RUN_ID", help="the retrain run to register (default: the latest "
                                                       "finished retrain run of the study)")
    which.add_argument("--trial", type=at_least(0), metavar="N",
                       help="register the latest finished retrain run of trial N (e.g. a point of a Pareto front)")
    promote.add_argument("--output", metavar="PATH", help="checkpoint path (default: checkpoints/STUDY-vN.pt)")
    promote.add_argument("--alias", type=alias_name, default="champion", help="registry alias to point at the new version "
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
               "  hpo bench --search studies/digits.yaml     # search strategies x 5 seeds: epochs to a good model\n"
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
    bench.add_argument("--repeats", type=at_least(1), default=5,
                       help="part 1: the trainer and the plain loop each measured this many times, alternating; the "
                            "median and the spread are printed (default: 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object (the lines go to stderr)")
    bench.add_argument("--search", metavar="STUDY_FILE",
                       help="instead: run the study under its own sampler and pruner, TPE + hyperband, TPE alone and "
                            "random search, --seeds times each, and compare the epochs and time each spends to reach "
                            "the best value found (a table, --json, and a picture)")
    bench.add_argument("--seeds", type=at_least(1), default=5, help="with --search: runs per strategy (default: 5)")
    bench.add_argument("--tolerance", type=float, default=0.005,
                       help="with --search: the target is the best value found less this, in the metric's units "
                            "(default: 0.005, half a point of accuracy)")
    bench.add_argument("--output", metavar="PATH",
                       help="with --search: the picture (default: bench-search-STUDY.png)")
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
