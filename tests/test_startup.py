"""Bad input is refused before torch, torchvision, MLflow or Optuna is imported (``python -X importtime``).

The registries the study validator reads bind those libraries lazily (hpo/core/lazy.py), argument types
refuse bad values inside argparse, and every command checks its input before it imports what does the
work. Each case here would still give the right message with a slow import in the way, so only the
import record can tell: it is the list of modules the interpreter loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import TINY_STUDY, write_study

HEAVY = ("torch", "torchvision", "mlflow", "optuna")


def imported(*argv: str, cwd) -> tuple[set[str], subprocess.CompletedProcess]:
    """The top-level packages ``hpo ARGV`` imported, from ``-X importtime``'s record on stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "hpo", *argv], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0]
               for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "hpo" in modules, result.stderr[-2000:]  # the record was read
    return modules, result


def test_the_record_shows_a_heavy_import_when_there_is_one(tmp_path):
    # The other tests pass when nothing heavy shows up; this one shows they would see it.
    modules, result = imported("evaluate", str(write_study(tmp_path, TINY_STUDY)), cwd=tmp_path)
    assert result.returncode == 2 and "torch" in modules


BAD_FILES = {
    "unknown field": {"nmae": "x"},
    "unknown model": {"model": {"name": "resnet999"}},
    "model argument of the wrong type": {"model": {"name": "digits_cnn", "width": "wide"}},
    "unknown data set": {"data": {"name": "mnist999"}},
    "data option out of range": {"data": {"name": "folder", "root": ".", "size": -1}},
    "unknown sampler argument": {"sampler": {"name": "tpe", "patience": 3}},
    "unknown pruner": {"pruner": "asha"},
    "range upside down": {"search": {"lr": {"low": 0.1, "high": 0.01}}},
    "unknown optimizer": {"search": {"optimizer": ["adam", "lbfgs"]}},
    "jitter too strong": {"search": {"jitter": {"low": 0, "high": 3}}},
    "a billion epochs": {"budget": {"epochs": 10**9}},
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["check", "run", "retrain", "lr-find"])
def test_a_bad_study_file_is_refused_before_any_heavy_import(command, case, tmp_path):
    study_file = write_study(tmp_path, {**TINY_STUDY, **BAD_FILES[case]})
    modules, result = imported(command, str(study_file), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


BAD_ARGUMENTS = {
    "--set of an unknown field": ["run", "study.yaml", "--set", "bogus=1"],
    "--set of a bad value": ["run", "study.yaml", "--set", "budget.trials=0"],
    "--trials 0": ["run", "study.yaml", "--trials", "0"],
    "--device tpu": ["run", "study.yaml", "--device", "tpu"],
    "--gpus x": ["run", "study.yaml", "--gpus", "x"],
    "--trials-per-gpu 0": ["run", "study.yaml", "--trials-per-gpu", "0"],
    "a missing checkpoint": ["evaluate", "missing.pt"],
    "a missing image": ["predict", "study.yaml", "missing.png"],
    "port out of range": ["dashboard", "--port", "70000"],
    "bench on no device": ["bench", "--device", "tpu"],
    "bench of an unknown model": ["bench", "--model", "resnet999"],
    "lr-find upside down": ["lr-find", "study.yaml", "--start", "1", "--end", "0.1"],
    "unknown command": ["frobnicate"],
    "show without a storage": ["show", "tiny", "--storage", "sqlite:///none.db"],
    "dashboard on a storage of no database": ["dashboard", "--storage", "foo://x"],
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_a_bad_argument_is_refused_before_any_heavy_import(case, tmp_path):
    write_study(tmp_path, TINY_STUDY)
    modules, result = imported(*BAD_ARGUMENTS[case], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_check_of_a_good_file_imports_optuna_only_to_check_the_sampler_and_pruner(tmp_path):
    modules, result = imported("check", str(write_study(tmp_path, TINY_STUDY)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "optuna" in modules  # the sampler and pruner are built once, to check their arguments' values
    assert not modules & {"torch", "torchvision", "mlflow"}


def test_show_reads_the_storage_without_torch_or_mlflow(tiny_run):
    modules, result = imported("show", "tiny", cwd=tiny_run["dir"])
    assert result.returncode == 0 and "best: trial" in result.stdout, result.stderr[-2000:]
    assert not modules & {"torch", "torchvision", "mlflow"}


def test_help_imports_nothing_heavy(tmp_path):
    modules, result = imported("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert not modules & {*HEAVY, "yaml", "sqlalchemy", "numpy"}


def test_the_startup_benchmark_times_every_command_against_its_references():
    from hpo.bench.startup import startup_times

    lines = []
    times = startup_times(repeat=1, print_line=lines.append, runs=False)
    assert set(times) == {"python -c pass", "hpo --help", "hpo check BAD.yaml", "hpo check studies/digits.yaml",
                          "hpo show digits", "import torch"}
    assert all(t > 0 for t in times.values())
    assert len(lines) == 6 and "x python -c pass" in lines[1]


@pytest.mark.slow  # three short studies, one with two workers
def test_the_startup_benchmark_times_the_first_epoch_and_peak_memory():
    from hpo.bench.startup import startup_times

    lines = []
    times = startup_times(repeat=1, print_line=lines.append,
                          overrides=("--set", "budget.trials=2", "--set", "budget.epochs=1",
                                     "--set", "budget.retrain.epochs=1"))
    assert times["python -c pass"] < times["hpo run to first epoch"] < 120
    # every run imports torch: its peak memory is at least import torch's
    assert times["peak_rss_mb"] >= 0.9 * times["peak_rss_mb_import_torch"] > 0
    assert times["peak_rss_mb_with_2_workers"] >= 0.9 * times["peak_rss_mb_import_torch"]
    assert "hpo run to its first epoch line" in lines[6] and "peak RSS of hpo run digits.yaml" in lines[7]
