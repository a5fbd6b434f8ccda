"""``hpo bench --startup``: how long ``hpo`` takes to answer, timed in fresh processes.

Each command runs ``repeat`` times as a new ``python -m hpo`` process in a
scratch folder (a bad study file, the digits study, a storage holding a
study named ``digits``), and the median wall time is printed next to two
references measured in the same run: an empty interpreter (``python -c
pass``) and ``import torch``, the import a refusal no longer waits for
(tests/test_startup.py checks the imports themselves).

Then the time from ``hpo run`` to its first epoch line (a fresh folder, so the stores are created too; MLflow on)
and the peak memory (RSS) of ``hpo run`` on the digits study: one process, and the largest of the lead and its
two workers (``--gpus cpu --trials-per-gpu 2``), against ``python -c "import torch"``'s. Each runs under a small Python wrapper whose resource usage of its children
(``RUSAGE_CHILDREN``: the largest peak of any process it waited for, workers included) is the measurement.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

BAD_STUDY = "name: bad\nbogus: 1\n"
# Runs argv[1:], notes when the first epoch line appears, prints {first_epoch_s, peak_rss_mb, code} as JSON.
WRAPPER = """
import json, resource, subprocess, sys, time
started, first = time.perf_counter(), None
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
for line in child.stdout:
    if first is None and " epoch 1/" in line:
        first = time.perf_counter() - started
code = child.wait()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"first_epoch_s": first, "peak_rss_mb": peak, "code": code}))
"""


def _median_s(argv: list[str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _scratch(folder: Path) -> None:
    """A bad study file, the digits study and a storage with a finished study named digits."""
    import optuna

    from hpo.spec.study_file import load_study
    from hpo.study.record import StudyRecord

    (folder / "bad.yaml").write_text(BAD_STUDY)
    digits = Path(__file__).resolve().parents[2] / "studies" / "digits.yaml"
    (folder / "digits.yaml").write_text(digits.read_text() if digits.is_file() else "name: digits\ndata: digits\n"
                                        "model: digits_cnn\nsearch: {lr: {low: 1.0e-4, high: 0.1, log: true}}\n")
    spec = load_study(folder / "digits.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=f"sqlite:///{folder}/hpo.db", direction=spec.direction)
    StudyRecord(study).describe_run(dict(spec.raw), spec.metric, None)
    study.enqueue_trial({"x": 0.5})
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)


def startup_times(repeat: int = 5, print_line: Callable[[str], None] = print, runs: bool = True,
                  overrides: tuple[str, ...] = ()) -> dict[str, float]:
    """Median seconds to answer for each command and the two references; prints a line each. With ``runs``,
    also the runs' figures (the module's second paragraph), ``hpo run`` given ``overrides`` (``--set ...``)."""
    commands = {"hpo --help": ["--help"], "hpo check BAD.yaml": ["check", "bad.yaml"],
                "hpo check studies/digits.yaml": ["check", "digits.yaml"], "hpo show digits": ["show", "digits"]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _scratch(folder)
        python = _median_s([sys.executable, "-c", "pass"], folder, repeat)
        print_line(f"start-up, median of {repeat} fresh processes; python -c pass: {python:.3f} s")
        times = {"python -c pass": python}
        for name, argv in commands.items():
            times[name] = _median_s([sys.executable, "-m", "hpo", *argv], folder, repeat)
            print_line(f"  {name:32s} {times[name]:6.3f} s  ({times[name] / python:5.1f}x python -c pass)")
        times["import torch"] = _median_s([sys.executable, "-c", "import torch"], folder, repeat)
        print_line(f"  {'import torch (for comparison)':32s} {times['import torch']:6.3f} s  "
                   f"({times['import torch'] / python:5.1f}x python -c pass)")
        if runs:
            times.update(_run_figures(folder, min(repeat, 3), print_line, list(overrides)))
    return times


def _wrapped(argv: list[str], cwd: Path) -> dict:
    import json

    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "hpo", *argv], cwd=cwd,
                          capture_output=True, text=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise RuntimeError(f"hpo {' '.join(argv)} exited {measured['code']}")
    return measured


def _run_figures(folder: Path, repeat: int, print_line, overrides: list[str]) -> dict[str, float]:
    """Seconds from ``hpo run`` to its first epoch line (fresh stores each time) and peak RSS (see the module)."""
    import shutil

    firsts, peaks = [], []
    for index in range(repeat):
        fresh = folder / f"first-{index}"
        fresh.mkdir()
        shutil.copy(folder / "digits.yaml", fresh / "digits.yaml")
        measured = _wrapped(["run", "digits.yaml", "--no-retrain", *overrides, "--set", "budget.trials=1",
                             "--set", "budget.epochs=1"], fresh)
        firsts.append(measured["first_epoch_s"])
        peaks.append(measured["peak_rss_mb"])
    first = statistics.median(firsts)
    print_line(f"  {'hpo run to its first epoch line':32s} {first:6.3f} s  (fresh stores, MLflow on; median of "
               f"{repeat})")
    whole = folder / "whole"
    whole.mkdir()
    shutil.copy(folder / "digits.yaml", whole / "digits.yaml")
    one = _wrapped(["run", "digits.yaml", "--quiet", *overrides], whole)["peak_rss_mb"]
    workers = folder / "workers"
    workers.mkdir()
    shutil.copy(folder / "digits.yaml", workers / "digits.yaml")
    two = _wrapped(["run", "digits.yaml", "--quiet", "--no-retrain", "--gpus", "cpu", "--trials-per-gpu", "2",
                    *overrides], workers)["peak_rss_mb"]
    torch_only = _peak_rss_mb([sys.executable, "-c", "import torch"], folder)
    print_line(f"  peak RSS of hpo run digits.yaml: {one:.0f} MB (search and retrain, one process); the "
               f"largest of a lead and 2 CPU workers: {two:.0f} MB; of the first-epoch runs: {max(peaks):.0f} MB; "
               f"python -c 'import torch': {torch_only:.0f} MB")
    return {"hpo run to first epoch": first, "peak_rss_mb": one, "peak_rss_mb_with_2_workers": two,
            "peak_rss_mb_import_torch": torch_only}


def _peak_rss_mb(argv: list[str], cwd: Path) -> float:
    import json

    code = ("import json, resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
            "print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))
