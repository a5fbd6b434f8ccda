"""Bad input and wrong stores: one line naming the file, field and what is allowed; exit code 2; no traceback;
every store file unchanged, byte for byte.

Each case runs in a folder holding a real study's stores (a copy of the tiny study's ``hpo.db``,
``mlflow.db`` and ``mlartifacts/``), hashed before and after: a refusal may not create, touch or
migrate anything. Most cases are refused before torch loads (tests/test_startup.py), so the table is cheap.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest

from helpers import TINY_STUDY, copy_study_folder, hpo, write_study


def study_with(change) -> dict:
    study = copy.deepcopy(TINY_STUDY)
    study["enqueue"] = []
    change(study)
    return study


def setitem(*path_and_value):
    *path, key, value = path_and_value

    def change(study):
        node = study
        for part in path:
            node = node[part]
        node[key] = value
    return change


def without(*path):
    def change(study):
        node = study
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return change


def folder_data(**options):
    return setitem("data", {"name": "folder", "root": ".", **options})


MALFORMED = {
    "unknown top-level field": (setitem("nmae", "x"), "nmae: unknown field; allowed: name, seed"),
    "name with a space": (setitem("name", "has space"), "name: must be 1-100 letters, digits, '_', '.' or '-'"),
    "empty name": (setitem("name", ""), "name: must be 1-100 letters, digits, '_', '.' or '-', got ''"),
    "a name ending in a newline": (setitem("name", "tiny\n"), "name: must be 1-100 letters, digits, '_', '.' or "
                                                              "'-', got 'tiny\\n'"),
    "a device ending in a newline": (setitem("device", "cpu\n"), "device: must be auto, cpu, cuda or cuda:N"),
    "negative seed": (setitem("seed", -1), "seed: must be an integer from 0 to 4,294,967,295, got -1"),
    "seed past 2**32": (setitem("seed", 2**70), "seed: must be an integer from 0 to 4,294,967,295"),
    "fractional seed": (setitem("seed", 1.5), "seed: must be an integer from 0 to 4,294,967,295, got 1.5"),
    "unknown direction": (setitem("direction", "up"), "direction: must be one of maximize, minimize, got 'up'"),
    "unknown metric": (setitem("metric", "val_f1"), "metric: must be one of val_accuracy, val_loss"),
    "unknown lr scaling": (setitem("lr_scaling", "cubic"), "lr_scaling: must be one of none, linear, sqrt"),
    # several objectives (hpo/study/objectives.py)
    "objectives not a list": (setitem("objectives", "params"), "objectives: must be a list of 1 to 4 names: the "
                                                               "metric first (val_accuracy, val_loss"),
    "objectives without the metric first": (setitem("objectives", ["params"]), "objectives[0]: must be the metric, "
                                                                               "one of val_accuracy, val_loss"),
    "an unknown cost": (setitem("objectives", ["val_accuracy", "size"]), "objectives[1]: must be one of params, "
                                                                         "flops, latency_ms; got 'size'"),
    "a cost named twice": (setitem("objectives", ["val_accuracy", "params", "params"]), "objectives[2]: names "
                                                                                         "params twice"),
    "a metric that is not the first objective": (lambda s: s.update(metric="val_loss",
                                                                    objectives=["val_accuracy", "params"]),
                                                 "metric: is val_loss, objectives[0] is val_accuracy"),
    "a pruner with several objectives": (setitem("objectives", ["val_accuracy", "params"]),
                                         "pruner: is median, but Optuna does not prune a study with several objectives"),
    "cma-es with several objectives": (lambda s: (s.update(objectives=["val_accuracy", "flops"],
                                                           sampler={"name": "cmaes"}), s.pop("pruner")),
                                       "sampler: cmaes optimizes one objective; with several (val_accuracy, flops) "
                                       "use one of"),
    "an nsga2 population of one": (setitem("sampler", {"name": "nsga2", "population_size": 1}),
                                   "sampler: population_size must be an integer >= 2, got 1"),
    "an nsga2 crossover probability above 1": (setitem("sampler", {"name": "nsga2", "crossover_prob": 1.5}),
                                               "sampler: crossover_prob must be a number from 0 to 1, got 1.5"),
    "objectives added to a study created with one": (lambda s: (s.update(objectives=["val_accuracy", "params"]),
                                                                s.pop("pruner")),
                                                     "was created with val_accuracy, the file says val_accuracy, "
                                                     "params (its values would mean other things)"),
    "device gpu": (setitem("device", "gpu"), "device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    "unknown compile mode": (setitem("compile", "fast"), "compile: must be one of off, default, reduce-overhead"),
    "compile a number": (setitem("compile", 3), "compile: must be one of off, default, reduce-overhead, max-autotune"),
    # data
    "no data": (without("data"), "data: is missing; give at least data.name, one of cifar10, cifar100, digits"),
    "data a list": (setitem("data", [1]), "data: must be a mapping, got [1]"),
    "data without a name": (without("data", "name"), "data.name: is missing; allowed: cifar10, cifar100, digits"),
    "unknown data set": (setitem("data", "name", "mnist999"), "data.name: unknown dataset 'mnist999'; allowed:"),
    "unknown data option": (setitem("data", "colour", 1), "data.colour: unknown argument; dataset 'digits' takes no "
                                                          "arguments"),
    "val fraction out of range": (setitem("data", "val_fraction", 1.5), "data.val_fraction: must be a number between"),
    "test fraction of 0": (setitem("data", "test_fraction", 0), "data.test_fraction: must be a number between 0 and 1"),
    "negative split seed": (setitem("data", "split_seed", -1), "data.split_seed: must be an integer >= 0, got -1"),
    "unknown normalization": (setitem("data", "normalize", "zscore"), "data.normalize: must be one of auto, measured, "
                                                                       "imagenet, half, got 'zscore'"),
    "cifar10 without a root": (setitem("data", {"name": "cifar10"}), "data.root: is required by dataset 'cifar10'"),
    "download not a boolean": (setitem("data", {"name": "cifar10", "root": ".", "download": "yes"}),
                               "data.download: must be true or false, got 'yes'"),
    "folder size below 1": (folder_data(size=-1), "data.size: must be a whole number of pixels >= 1"),
    "folder of 2 channels": (folder_data(channels=2), "data.channels: must be auto, 1 or 3, got 2"),
    "folder stream maybe": (folder_data(stream="maybe"), "data.stream: must be auto, true or false, got 'maybe'"),
    "folder with -1 workers": (folder_data(workers=-1), "data.workers: must be auto or a whole number >= 0"),
    "folder decoding on a gpu": (folder_data(decode="gpu"), "data.decode: must be one of auto, workers, device, "
                                                            "got 'gpu'"),
    # model
    "no model": (without("model"), "model.name: is missing; allowed: digits_cnn, mlp, resnet18"),
    "unknown model": (setitem("model", "name", "resnet999"), "model.name: unknown model 'resnet999'; allowed:"),
    "unknown model argument": (setitem("model", "depth", 3), "model.depth: unknown argument; model 'digits_cnn' "
                                                             "takes width, dropout"),
    "model argument of the wrong type": (setitem("model", "width", "wide"), "model.width: must be an integer"),
    "unknown resnet stem": (setitem("model", {"name": "resnet18", "stem": "tiny"}),
                            "model: stem must be one of imagenet, cifar, got 'tiny'"),
    # budget
    "trials not an integer": (setitem("budget", "trials", "ten"),
                              "budget.trials: must be an integer from 1 to 100,000"),
    "trials zero": (setitem("budget", "trials", 0), "budget.trials: must be an integer from 1 to 100,000, got 0"),
    "a billion trials": (setitem("budget", "trials", 10**9), "budget.trials: must be an integer from 1 to 100,000"),
    "epochs zero": (setitem("budget", "epochs", 0), "budget.epochs: must be an integer from 1 to 10,000, got 0"),
    "a billion epochs": (setitem("budget", "epochs", 10**9), "budget.epochs: must be an integer from 1 to 10,000"),
    "budget a list": (setitem("budget", [1]), "budget: must be a mapping, got [1]"),
    "unknown budget field": (setitem("budget", "patience", 3), "budget.patience: unknown field; allowed: trials, "
                                                               "epochs, timeout_s, retries, retrain"),
    "negative timeout": (setitem("budget", "timeout_s", -1), "budget.timeout_s: must be a number of seconds > 0"),
    "retrain of 0 epochs": (setitem("budget", "retrain", "epochs", [0]),
                            "budget.retrain.epochs: must be an integer from 1 to 10,000, got 0"),
    "unknown retrain field": (setitem("budget", "retrain", "patience", 3), "budget.retrain.patience: unknown field"),
    "retrain with 0 seeds": (setitem("budget", "retrain", "seeds", 0),
                             "budget.retrain.seeds: must be an integer from 1 to 100, got 0"),
    # search space
    "empty space": (setitem("search", {}), "search: the space is empty"),
    "space a list": (setitem("search", [1]), "search: must be a mapping of hyperparameter names, got [1]"),
    "unknown hyperparameter": (setitem("search", "dropout", 0.1), "search.dropout: unknown hyperparameter"),
    "epochs as a hyperparameter": (setitem("search", "epochs", 3), "search.epochs: unknown hyperparameter; allowed: "
                                                                   "lr, batch_size"),
    "low above high": (setitem("search", "lr", {"low": 0.1, "high": 0.01}), "search.lr: low (0.1) must be <="),
    "range without high": (setitem("search", "lr", {"low": 0.001}), "search.lr.high: is missing; a range needs low "
                                                                    "and high"),
    "unknown range key": (setitem("search", "lr", {"low": 0.001, "high": 0.1, "logg": True}),
                          "search.lr.logg: unknown key; a range takes low, high, log, step"),
    "step wider than the range": (setitem("search", "lr", {"low": 0.001, "high": 0.1, "step": 1.0}),
                                  "search.lr.step: must be at most high - low"),
    "lr a word": (setitem("search", "lr", "fast"), "search.lr: must be a number > 0, got 'fast'"),
    "negative mixup alpha": (setitem("search", "mixup_alpha", -0.2), "search.mixup_alpha: must be a number >= 0"),
    "cutmix alpha a word": (setitem("search", "cutmix_alpha", [1.0, "big"]),
                            "search.cutmix_alpha.choices: must be a number >= 0, got 'big'"),
    "erasing above 1": (setitem("search", "erasing", {"low": 0.0, "high": 1.5}),
                        "search.erasing.high: must be a number >= 0 and <= 1, got 1.5"),
    "erasing scale below 0.02": (setitem("search", "erasing_scale", 0.01),
                                 "search.erasing_scale: must be a number >= 0.02 and <= 1, got 0.01"),
    "cutmix switch with cutmix off": (setitem("search", "cutmix_prob", {"low": 0.2, "high": 0.8}),
                                      "search.cutmix_prob: is searched but never sampled: it applies only when "
                                      "cutmix_alpha > 0, and cutmix_alpha is fixed to 0.0"),
    "an unknown policy": (setitem("search", "augment", "autoaugment"),
                          "search.augment: must be one of none, trivialaugment, randaugment, got 'autoaugment'"),
    "randaugment magnitude 31": (setitem("search", "randaugment_magnitude", 31),
                                 "search.randaugment_magnitude: must be an integer >= 0 and <= 30, got 31"),
    "mix probability of 2": (setitem("search", "mix_prob", 2), "search.mix_prob: must be a number >= 0 and <= 1"),
    "log range touching 0": (setitem("search", "lr", {"low": 0.0, "high": 0.1, "log": True}),
                             "search.lr.low: must be a number > 0, got 0.0"),
    "log range of a param that allows 0": (setitem("search", "weight_decay", {"low": 0, "high": 0.1, "log": True}),
                                           "search.weight_decay.low: must be > 0 for a log-scale range"),
    "negative weight decay": (setitem("search", "weight_decay", -1.0),
                              "search.weight_decay: must be a number >= 0, got -1.0"),
    "momentum of 1.5": (setitem("search", "momentum", {"low": 0, "high": 1.5}),
                        "search.momentum.high: must be a number >= 0 and < 1, got 1.5"),
    "no optimizer choices": (setitem("search", "optimizer", []), "search.optimizer.choices: must be a non-empty list"),
    "unknown optimizer choice": (setitem("search", "optimizer", ["adam", "lbfgs"]),
                                 "search.optimizer.choices: must be one of adam, adamw, rmsprop, sgd"),
    "unknown scheduler choice": (setitem("search", "scheduler", ["warp"]),
                                 "search.scheduler.choices: must be one of cosine, none, onecycle, step, got 'warp'"),
    "batch size 0": (setitem("search", "batch_size", 0), "search.batch_size: must be an integer >= 1 and <= 65536"),
    "float batch size": (setitem("search", "batch_size", {"low": 8.5, "high": 64}),
                         "search.batch_size.low: must be an integer >= 1 and <= 65536, got 8.5"),
    "a billion images per batch": (setitem("search", "batch_size", [32, 10**9]),
                                   "search.batch_size.choices: must be an integer >= 1 and <= 65536"),
    "momentum never sampled": (lambda s: s["search"].update(optimizer="adam"),
                               "search.momentum: is searched but never sampled"),
    "label smoothing of 1": (setitem("search", "label_smoothing", 1.0),
                             "search.label_smoothing: must be a number >= 0 and < 1, got 1.0"),
    "negative label smoothing": (setitem("search", "label_smoothing", -0.1),
                                 "search.label_smoothing: must be a number >= 0 and < 1, got -0.1"),
    "jitter too strong": (setitem("search", "jitter", {"low": 0, "high": 3}), "search.jitter.high: must be a number"),
    "negative jitter": (setitem("search", "jitter", -1), "search.jitter: must be a number >= 0 and <= 2.5, got -1"),
    # sampler, pruner, enqueued trials
    "unknown sampler": (setitem("sampler", "annealing"), "sampler.name: unknown sampler 'annealing'; allowed:"),
    "unknown sampler argument": (setitem("sampler", "temperature", 1), "sampler.temperature: unknown argument; "
                                                                       "sampler 'tpe' takes n_startup_trials"),
    "grid over a float range": (setitem("sampler", "grid"), "sampler: the grid sampler needs lr as choices"),
    "unknown pruner": (setitem("pruner", "asha"), "pruner.name: unknown pruner 'asha'; allowed: hyperband, median"),
    "pruner a number": (setitem("pruner", 5), "pruner: must be a mapping, got 5"),
    "unknown pruner argument": (setitem("pruner", {"name": "median", "patience": 3}),
                                "pruner.patience: unknown argument; pruner 'median' takes n_startup_trials"),
    "pruner argument out of range": (setitem("pruner", {"name": "percentile", "percentile": 150}),
                                     "pruner: Percentile must be between 0 and 100"),
    "enqueue not a list": (setitem("enqueue", {"lr": 0.1}), "enqueue: must be a list of hyperparameter mappings"),
    "enqueued unknown hyperparameter": (setitem("enqueue", [{"learning_rate": 0.1}]),
                                        "enqueue[0].learning_rate: unknown hyperparameter; allowed: lr, batch_size"),
    "enqueued value of the wrong type": (setitem("enqueue", [{"lr": "high"}]),
                                         "enqueue[0].lr: must be a number > 0, got 'high'"),
    "enqueued trial outside the space": (setitem("enqueue", [{"lr": 10.0}]),
                                         "enqueue[0].lr: must be within [0.001, 3] (the search space), got 10.0"),
    # 10/13: what a list, a mapping, a date or a number that is not finite does where a name or a number belongs
    "metric a list": (setitem("metric", ["val_accuracy"]), "metric: must be one of val_accuracy, val_loss, val_top5, "
                                                           "val_f1_macro, val_balanced_accuracy, got ['val_accuracy']"),
    "sampler name a list": (setitem("sampler", {"name": ["tpe"]}), "sampler.name: unknown sampler ['tpe']; allowed:"),
    "pruner name a mapping": (setitem("pruner", {"name": {"a": 1}}), "pruner.name: unknown pruner {'a': 1}; allowed:"),
    "model name a nested list": (setitem("model", {"name": [["mlp"]]}),
                                 "model.name: must be a model name or a non-empty list of them, got [['mlp']]"),
    "a number as a key": (setitem("search", 3, [1, 2]), "search: keys must be names, got 3"),
    "a timeout of nan": (setitem("budget", "timeout_s", float("nan")), "budget.timeout_s: must be a finite number"),
    "a step of nan": (setitem("search", "momentum", {"low": 0.1, "high": 0.5, "step": float("nan")}),
                      "search.momentum.step: must be a finite number, got nan"),
    "an infinite lr": (setitem("search", "lr", float("inf")), "search.lr: must be a finite number, got inf"),
    "nested past 20 levels": (setitem("data", "split_seed", [[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]),
                              "is nested more than 20 levels deep"),
    "no candidates for TPE": (setitem("sampler", "n_ei_candidates", 0),
                              "sampler: n_ei_candidates must be an integer >= 1, got 0"),
    "hyperband with a reduction factor of 1": (setitem("pruner", {"name": "hyperband", "reduction_factor": 1}),
                                               "pruner: reduction_factor must be an integer >= 2, got 1"),
    "a pruning interval of 0": (setitem("pruner", "interval_steps", 0),
                                "pruner: interval_steps must be an integer >= 1, got 0"),
    "device mps": (setitem("device", "mps"), "device: must be auto, cpu, cuda or cuda:N, got 'mps'"),
    # 10/13: values that can never be used
    "momentum that no optimizer choice samples": (lambda s: s["search"].update(optimizer=["adam", "adamw"]),
                                                  "search.momentum: is searched but never sampled: it applies only "
                                                  "when optimizer in sgd, rmsprop, and optimizer is one of"),
    "an enqueued value off the step grid": (
        lambda s: s.update(search={**s["search"], "lr": {"low": 0.01, "high": 0.1, "step": 0.01}},
                           enqueue=[{"lr": 0.015}]),
        "enqueue[0].lr: must be within [0.01, 0.1] on its grid of step 0.01 from 0.01 (the search space), got 0.015"),
    "an enqueued momentum for adam": (setitem("enqueue", [{"optimizer": "adam", "momentum": 0.9}]),
                                      "enqueue[0].momentum: is never used: it applies only when optimizer in sgd, "
                                      "rmsprop, and this recipe's optimizer is 'adam'"),
    "an mlp of depth -1": (setitem("model", {"name": "mlp", "depth": -1}), "model: depth must be >= 0, got -1"),
    "a dropout of 1.5": (setitem("model", "dropout", 1.5), "model: dropout must be from 0 to 1, got 1.5"),
    "a data root that does not exist": (folder_data(root="nowhere"), "/nowhere does not exist (a relative data.root "
                                                                      "is read from the study file's folder"),
}


def store_state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its SHA-256: the stores, their artifacts and the study files."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result, *expected: str, code: int = 2) -> None:
    """One line on stderr holding every ``expected`` text, nothing on stdout, no traceback, exit ``code``."""
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]



@pytest.fixture
def stores(tiny_run, tmp_path) -> Path:
    """A folder holding a copy of the tiny study's stores (hpo.db, mlflow.db, mlartifacts/)."""
    return copy_study_folder(tiny_run["dir"], tmp_path)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_study_file(case, stores):
    change, message = MALFORMED[case]
    study_file = write_study(stores, study_with(change), "bad.yaml")
    before = store_state(stores)
    result = hpo("run", str(study_file), cwd=stores, check=False)
    assert_refused(result, str(study_file), message)
    assert store_state(stores) == before


ARGUMENTS = {
    "missing study file": (["run", "nope.yaml"], "nope.yaml: no such study file"),
    "retrain of a trial that is not there": (["retrain", "tiny", "--trial", "99"], "--trial 99: study 'tiny' has no "
                                                                                   "COMPLETE trial 99; its COMPLETE "
                                                                                   "trials: "),
    "a negative trial": (["promote", "tiny", "--trial", "-1"], "--trial: must be >= 0, got -1"),
    "no threads": (["run", "study.yaml", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
    "promote of a trial without a retrain": (["promote", "tiny", "--trial", "1"], "study 'tiny' has no finished "
                                                                                  "retrain run of trial 1 in "),
    "a folder as the study file": (["check", "mlartifacts"], "mlartifacts: is a folder, not a study file"),
    "invalid YAML": (["check", "broken.yaml"], "broken.yaml: line 2: invalid YAML"),
    "a tab in the YAML": (["check", "tabs.yaml"], "tabs.yaml: line 2: invalid YAML: found character '\\t'"),
    "not a mapping": (["check", "list.yaml"], "list.yaml: must be a YAML mapping"),
    "an empty file": (["check", "empty.yaml"], "empty.yaml: must be a YAML mapping with the fields name, seed"),
    "a binary file": (["check", "binary.yaml"], "binary.yaml: not a text file"),
    "no study file": (["run"], "the following arguments are required: STUDY_FILE"),
    "--set without =": (["run", "study.yaml", "--set", "budget.trials"], "--set budget.trials: expected FIELD.PATH=VALUE"),
    "--set without a field": (["run", "study.yaml", "--set", "=3"], "--set =3: expected FIELD.PATH=VALUE"),
    "--set into a scalar": (["run", "study.yaml", "--set", "seed.x=1"], "--set seed.x=1: seed is not a mapping"),
    "--set of an unknown field": (["run", "study.yaml", "--set", "bogus=1"], "(with --set bogus=1): bogus: unknown "
                                                                            "field"),
    "--set of a bad value": (["run", "study.yaml", "--set", "budget.trials=0"],
                             "budget.trials: must be an integer from 1 to 100,000, got 0"),
    "--set of a mapping to a number": (["run", "study.yaml", "--set", "budget=3"], "budget: must be a mapping, got 3"),
    "--trials not a number": (["run", "study.yaml", "--trials", "abc"], "argument --trials: invalid int value"),
    "--trials 0": (["run", "study.yaml", "--trials", "0"], "budget.trials: must be an integer from 1 to 100,000, got 0"),
    "--timeout negative": (["run", "study.yaml", "--timeout", "-5"], "budget.timeout_s: must be a number of seconds"),
    "--trials-per-gpu 0": (["run", "study.yaml", "--trials-per-gpu", "0"], "argument --trials-per-gpu: must be >= 1"),
    "--gpus not numbers": (["run", "study.yaml", "--gpus", "x"], "argument --gpus: expected GPU numbers like 0,1"),
    "--gpus twice the same": (["run", "study.yaml", "--gpus", "0,0"], "argument --gpus: expected distinct GPU numbers"),
    "--gpus absent": (["run", "study.yaml", "--gpus", "99"], "--gpus: GPU 99 is not present"),
    "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "show without a storage": (["show", "tiny", "--storage", "sqlite:///none.db"], "no study storage at "
                                                                                  "sqlite:///none.db"),
    "show on no database": (["show", "tiny", "--storage", "foo://x"], "'foo://x' is not a database URL SQLAlchemy"),
    "retrain of an unknown study": (["retrain", "nosuch"], "no study named 'nosuch' in sqlite:///hpo.db; studies "
                                                           "there: tiny"),
    "retrain of a bad file": (["retrain", "list.yaml"], "list.yaml: must be a YAML mapping"),
    "retrain --seeds 0": (["retrain", "tiny", "--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    "promote without a study": (["promote"], "the following arguments are required: STUDY"),
    "evaluate a missing checkpoint": (["evaluate", "missing.pt"], "argument CHECKPOINT: missing.pt: no such file"),
    "evaluate a folder": (["evaluate", "mlartifacts"], "argument CHECKPOINT: mlartifacts: not a file"),
    "evaluate a file that is no checkpoint": (["evaluate", "study.yaml"], "study.yaml: not a loadable hpo checkpoint"),
    "predict a missing image": (["predict", "study.yaml", "missing.png"], "argument FILE: missing.png: no such file"),
    "unknown device": (["run", "study.yaml", "--set", "device=tpu"], "device: must be auto, cpu, cuda or cuda:N"),
    "--device not a device": (["run", "study.yaml", "--device", "tpu"], "--device: 'tpu' is not a device"),
    "--device cuda without a GPU": (["lr-find", "study.yaml", "--device", "cuda:7"], "device 'cuda:7' was asked for"),
    "lr-find upside down": (["lr-find", "study.yaml", "--start", "1", "--end", "0.1"],
                            "--start and --end: need 0 < start < end"),
    "lr-find of 2 steps": (["lr-find", "study.yaml", "--steps", "2"], "--steps: need at least 3, got 2"),
    "dashboard port 0": (["dashboard", "--port", "0"], "argument --port: must be >= 1, got 0"),
    "dashboard port out of range": (["dashboard", "--port", "70000"], "must be a port from 1 to 65535, got 70000"),
    "bench on no device": (["bench", "--device", "tpu"], "argument --device: 'tpu' is not a device"),
    "bench of an unknown model": (["bench", "--model", "resnet999"], "--model: unknown model 'resnet999'"),
    "bench of an unknown stem": (["bench", "--stem", "tiny"], "argument --stem: invalid choice: 'tiny'"),
    "bench of 0 steps": (["bench", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    "bench of a missing folder": (["bench", "--folder", "nowhere"], "--folder: nowhere is not a folder"),
    "tracking URI of no MLflow store": (["run", "study.yaml", "--tracking-uri", "foo://bar"],
                                        "'foo://bar' has the scheme 'foo', which MLflow stores nothing in"),
    "storage URL of no database": (["run", "study.yaml", "--storage", "foo://bar"],
                                   "'foo://bar' is not a database URL SQLAlchemy knows"),
    "promote to a tracking URI of no MLflow store": (["promote", "tiny", "--tracking-uri", "foo://bar"],
                                                     "which MLflow stores nothing in"),
    "promote of a study MLflow does not have": (["promote", "nosuch"], "no MLflow experiment named 'nosuch' in "
                                                                       "sqlite:///mlflow.db; experiments there: tiny"),
    "promote from no MLflow store": (["promote", "tiny", "--tracking-uri", "sqlite:///none.db"],
                                     "no MLflow store at sqlite:///none.db"),
    "MLflow's database as the storage": (["run", "study.yaml", "--storage", "sqlite:///mlflow.db", "--tracking-uri",
                                          "sqlite:///other.db"], "sqlite:///mlflow.db is MLflow's database, not a "
                                                                 "study storage"),
    "one database for both": (["run", "study.yaml", "--tracking-uri", "sqlite:///hpo.db"],
                              "the study storage and MLflow are both "),
    "the storage as MLflow's database": (["run", "study.yaml", "--storage", "sqlite:///other.db", "--tracking-uri",
                                          "sqlite:///hpo.db"], "sqlite:///hpo.db is a study storage, not MLflow's"),
    "a text file as the storage": (["show", "tiny", "--storage", "sqlite:///study.yaml"],
                                   "sqlite:///study.yaml: study.yaml is not an SQLite database"),
    "a validation split that leaves classes empty": (["run", "study.yaml", "--set", "data.val_fraction=0.999"],
                                                     "data.val_fraction: cannot hold out 0.999 of 1437 images of 10 "
                                                     "classes", "the smallest class, '8', has 139 image(s)"),
    "a test split smaller than the classes": (["run", "study.yaml", "--set", "data.test_fraction=0.001"],
                                              "data.test_fraction: cannot hold out 0.001 of 1797 images"),
    # 10/13: stores that would lose their runs, outputs that would overwrite a store, half-done promotes
    "MLflow in memory": (["run", "study.yaml", "--tracking-uri", "sqlite:///"], "sqlite:/// is a database in memory"),
    "the study storage in memory": (["run", "study.yaml", "--storage", "sqlite://"], "sqlite:// is a database in "
                                                                                     "memory, lost when hpo exits"),
    "a folder as MLflow's store": (["run", "study.yaml", "--tracking-uri", "./mlruns"],
                                   "'./mlruns' is a folder, MLflow's file store"),
    "a tracking server that does not answer": (["run", "study.yaml", "--tracking-uri", "http://127.0.0.1:1"],
                                               "no MLflow server answers at 127.0.0.1:1"),
    "promote to a reserved alias": (["promote", "tiny", "--alias", "latest"], "'latest' is reserved by MLflow"),
    "promote to an alias ending in a newline": (["promote", "tiny", "--alias", "champion\n"],
                                                "'champion\\n' is not an alias MLflow takes"),
    "promote to a version's alias": (["promote", "tiny", "--alias", "v3"], "'v3' is reserved by MLflow"),
    "promote to an alias with a space": (["promote", "tiny", "--alias", "my model"],
                                         "'my model' is not an alias MLflow takes"),
    "promote of an empty run id": (["promote", "tiny", "--run", ""], "argument --run: '' is not a run id"),
    "promote over the study storage": (["promote", "tiny", "--output", "hpo.db"],
                                       "--output: hpo.db is a database (a study storage or MLflow's)"),
    "promote into a folder": (["promote", "tiny", "--output", "mlartifacts"], "--output: mlartifacts is a folder"),
    "promote over a file hpo did not write": (["promote", "tiny", "--output", "study.yaml"],
                                              "--output: study.yaml exists and is not a checkpoint hpo wrote"),
    "a report over MLflow's database": (["report", "tiny", "--output", "mlflow.db"],
                                        "--output: mlflow.db is a database"),
    "a report over the study file": (["report", "tiny", "--output", "study.yaml"],
                                     "--output: study.yaml exists and is not an hpo report hpo wrote"),
    "an LR plot over the study storage": (["lr-find", "study.yaml", "--output", "hpo.db"],
                                          "--output: hpo.db is a database"),
    "a retrain of 0 epochs": (["retrain", "tiny", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    "--device mps": (["run", "study.yaml", "--device", "mps"], "--device: 'mps' is not a device"),
}

ENVIRONMENT = {
    "HPO_STORAGE of no database": ({"HPO_STORAGE": "foo://x"}, ["run", "study.yaml"],
                                   "--storage / HPO_STORAGE: 'foo://x' is not a database URL"),
    "MLFLOW_TRACKING_URI of no store": ({"MLFLOW_TRACKING_URI": "foo://x"}, ["run", "study.yaml"],
                                        "--tracking-uri / MLFLOW_TRACKING_URI: 'foo://x' has the scheme 'foo'"),
    "HPO_STORAGE of MLflow's database": ({"HPO_STORAGE": "sqlite:///mlflow.db"}, ["show", "tiny"],
                                         "sqlite:///mlflow.db is MLflow's database"),
    "HPO_STATE a file": ({"HPO_STATE": "study.yaml"}, ["run", "study.yaml"],
                         "HPO_STATE: study.yaml is a file; point HPO_STATE at a folder"),
    "HPO_THREADS not a number": ({"HPO_THREADS": "two"}, ["run", "study.yaml"],
                                 "HPO_THREADS: must be a whole number >= 1 (threads per process), got 'two'"),
    "HPO_THREADS of zero for a retrain": ({"HPO_THREADS": "0"}, ["retrain", "tiny"],
                                          "HPO_THREADS: must be a whole number >= 1 (threads per process), got '0'"),
    "HPO_ARTIFACTS under a file": ({"HPO_ARTIFACTS": "study.yaml/artifacts"}, ["run", "study.yaml"],
                                   "--artifacts / HPO_ARTIFACTS: cannot write ", "/study.yaml/artifacts: ",
                                   "/study.yaml is a file, not a folder"),
}


def _inputs(folder: Path) -> None:
    write_study(folder, study_with(lambda s: None))
    (folder / "broken.yaml").write_text("name: x\n  bad: [indent\n")
    (folder / "tabs.yaml").write_text("name: x\n\tseed: 1\n")
    (folder / "list.yaml").write_text("- a\n- b\n")
    (folder / "empty.yaml").write_text("")
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 2)


@pytest.mark.parametrize("case", sorted(ARGUMENTS))
def test_bad_arguments(case, stores):
    argv, *messages = ARGUMENTS[case]
    _inputs(stores)
    before = store_state(stores)
    assert_refused(hpo(*argv, cwd=stores, check=False), *messages)
    assert store_state(stores) == before


@pytest.mark.parametrize("case", sorted(ENVIRONMENT))
def test_bad_environment(case, stores):
    env, argv, *messages = ENVIRONMENT[case]
    _inputs(stores)
    before = store_state(stores)
    assert_refused(hpo(*argv, cwd=stores, check=False, env=env), *messages)
    assert store_state(stores) == before


def test_show_unknown_study_names_the_ones_there(stores):
    before = store_state(stores)
    assert_refused(hpo("show", "nosuch", cwd=stores, check=False),
                   "no study named 'nosuch' in sqlite:///hpo.db; studies there:", "tiny")
    assert store_state(stores) == before


def test_check_prints_the_resolved_space(tmp_path):
    study_file = write_study(tmp_path, TINY_STUDY)
    out = hpo("check", str(study_file), "--set", "budget.trials=9", cwd=tmp_path).stdout
    assert "9 trials x 3 epochs" in out
    assert "momentum         float  [0, 0.9]  (only when optimizer in sgd, rmsprop)" in out
    assert "label_smoothing  fixed  0.0" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


# A YAML alias bomb: a few hundred bytes that stand for billions of nested items. A message must describe it
# by type and size, never by its repr (which would not fit in memory).
def alias_bomb(levels: int = 10) -> str:
    """A flow list whose last item nests 9**levels strings, in about 40 bytes per level."""
    names = [chr(ord("a") + i) for i in range(levels)]
    items = ["&a [x, x, x, x, x, x, x, x, x]"]
    items += [f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip(names, names[1:])]
    return f"[{', '.join(items)}]"


@pytest.mark.parametrize("field, expected", [
    ("name", "name: must be 1-100 letters, digits, '_', '.' or '-', got a list of 10 items"),
    ("seed", "seed: must be an integer from 0 to 4,294,967,295, got a list of 10 items"),
    ("search.lr.choices", "search.lr.choices: must be a number > 0, got a list of 9 items"),
])
def test_a_yaml_alias_bomb_gets_a_short_message(field, expected, stores):
    fields = {"name": "bomb", "seed": "0", "search.lr.choices": "[0.1]"}
    fields[field] = alias_bomb()
    study_file = stores / "bomb.yaml"
    study_file.write_text(f"name: {fields['name']}\nseed: {fields['seed']}\ndata: digits\nmodel: mlp\n"
                          f"search:\n  lr: {{choices: {fields['search.lr.choices']}}}\n")
    assert len(study_file.read_text()) < 1000
    before = store_state(stores)
    result = hpo("run", str(study_file), cwd=stores, check=False)
    assert_refused(result, expected)
    assert len(result.stderr) < 400
    assert store_state(stores) == before


@pytest.mark.parametrize("counts, message", [
    ({"only": 12}, "data: the data set has 1 class ('only') with 12 images; a classifier needs at least two"),
    ({"a": 12, "b": 1}, "data.test_fraction: cannot hold out 0.2 of 13 images of 2 classes with every class on both "
                        "sides"),
    ({"a": 12, "b": 12, "empty": 0}, "data: class 'empty' has no images (1 of 3 classes are empty: an empty folder?)"),
])
def test_a_folder_that_cannot_be_split_is_refused_with_its_counts(counts, message, stores, tmp_path_factory):
    from datagen import write_image_folder

    images = tmp_path_factory.mktemp("images")
    for name, count in counts.items():
        write_image_folder(images, [name], count, sizes=((8, 8),), mode="L", suffix=".png")
    study_file = write_study(stores, study_with(setitem("data", {"name": "folder", "root": str(images)})), "f.yaml")
    before = store_state(stores)
    result = hpo("run", str(study_file), cwd=stores, check=False, env={"HPO_CACHE": str(images / ".cache")})
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(("reading the headers", "decoding")) for line in lines[:-1]), result.stderr  # progress
    assert lines[-1].startswith("hpo run: error: ") and message in lines[-1], result.stderr
    assert store_state(stores) == before


def _damaged(checkpoint: dict, case: str) -> dict:
    import torch

    if case == "only its format":
        return {"format": checkpoint["format"]}
    damaged = dict(checkpoint)
    if case == "weights of the wrong shape":
        key = next(k for k, v in checkpoint["state_dict"].items() if v.ndim == 4)
        damaged["state_dict"] = {**checkpoint["state_dict"], key: torch.zeros(3, 3, 3, 3)}
    elif case == "no class names":
        damaged["class_names"] = []
    elif case == "an unknown model":
        damaged["model"] = {"name": "resnet999", "args": {}}
    elif case == "weights of NaN":
        key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
        damaged["state_dict"] = {**checkpoint["state_dict"], key: torch.full_like(checkpoint["state_dict"][key],
                                                                                   float("nan"))}
    return damaged


@pytest.mark.parametrize("case, message", [
    ("only its format", "a damaged hpo checkpoint: state_dict, model, preprocessing, class_names, data, metrics "
                        "missing or malformed"),
    ("weights of the wrong shape", "its weights do not fit model 'digits_cnn'"),
    ("no class names", "a damaged hpo checkpoint: class_names missing or malformed"),
    ("an unknown model", "its weights do not fit model 'resnet999'"),
    ("weights of NaN", "a damaged hpo checkpoint: its weights hold NaN or infinity"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_crafted_checkpoint_is_one_line(command, case, message, tiny_run, stores):
    import torch

    checkpoint = torch.load(tiny_run["dir"] / "checkpoints" / "tiny-v1.pt", weights_only=True)
    path = stores / "crafted.pt"
    torch.save(_damaged(checkpoint, case), path)
    (stores / "image.png").write_bytes(b"")
    before = store_state(stores)
    argv = [command, str(path)] + (["image.png"] if command == "predict" else [])
    assert_refused(hpo(*argv, cwd=stores, check=False), f"{path}: ", message)
    assert store_state(stores) == before


def test_evaluate_with_a_data_root_for_a_set_that_reads_no_files(tiny_run, stores):
    before = store_state(stores)
    result = hpo("evaluate", str(tiny_run["dir"] / "checkpoints" / "tiny-v1.pt"), "--data-root", str(stores),
                 cwd=stores, check=False)
    assert_refused(result, "--data-root: the checkpoint's data set 'digits' reads no files")
    assert store_state(stores) == before


def test_a_pretrained_path_to_a_file_that_holds_no_weights(stores):
    (stores / "weights.pth").write_text("not weights\n")
    study_file = write_study(stores, study_with(setitem("model", "pretrained", str(stores / "weights.pth"))))
    before = store_state(stores)
    result = hpo("run", str(study_file), cwd=stores, check=False)
    assert_refused(result, "model: digits_cnn cannot be built", "weights.pth: not a weights file torch can load")
    assert store_state(stores) == before


def test_dashboard_on_a_port_in_use(stores):
    import socket

    before = store_state(stores)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hpo("dashboard", "--port", str(port), cwd=stores, check=False)
    assert_refused(result, f"--port {port}: cannot listen on 127.0.0.1:{port}", "pick another with --port")
    assert store_state(stores) == before


def test_an_image_too_large_to_decode_is_one_line(tiny_run, stores):
    """A PNG of 20,000 x 20,000 pixels (a few kB on disk, 1.2 GB decoded) is refused from its header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 20_000
    packer, row = zlib.compressobj(9), b"\x00" + bytes(side)  # black, grayscale, row by row
    rows = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    (stores / "huge.png").write_bytes(png)
    before = store_state(stores)
    result = hpo("predict", str(tiny_run["dir"] / "checkpoints" / "tiny-v1.pt"), "huge.png", cwd=stores, check=False)
    assert_refused(result, "huge.png: 20000x20000 pixels is more than the 50,000,000 an image may have here")
    assert store_state(stores) == before
