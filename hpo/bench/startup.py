"""``hpo bench --startup``: how long ``hpo`` takes to answer, timed in fresh processes.

Each command runs ``repeat`` times as a new ``python -m hpo`` process in a
scratch folder (a bad study file, the digits study, a storage holding a
study named ``digits``), and the median wall time is printed next to two
references measured in the same run: an empty interpreter (``python -c
pass``) and ``import torch``, the import a refusal no longer waits for
(tests/test_startup.py checks the imports themselves).
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


def startup_times(repeat: int = 5, print_line: Callable[[str], None] = print) -> dict[str, float]:
    """Median seconds to answer for each command and the two references; prints a line each."""
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
    return times
