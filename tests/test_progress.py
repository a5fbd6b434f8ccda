"""What `hpo run` shows while it runs (hpo/search/progress.py): epoch lines and no carriage return when its output is a
file or a pipe, tqdm bars on a terminal, neither with --quiet; and the study's status with an ETA after each trial."""

from __future__ import annotations

import copy
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from helpers import TINY_STUDY, hpo, write_study

# Three trials of two epochs, none pruned (the pruner starts after three): seconds on 2 cores.
STUDY = copy.deepcopy(TINY_STUDY)
STUDY["budget"].update(trials=3, epochs=2)
ARGS = ("--no-retrain", "--no-tracking")
EPOCH_LINE = re.compile(r"^  trial (\d+) epoch (\d+)/2  val_accuracy \d\.\d{4}  train_loss \S+  \S+s$")


def test_piped_output_has_epoch_lines_and_an_eta_and_no_carriage_return(tmp_path):
    out = hpo("run", str(write_study(tmp_path, STUDY)), *ARGS, cwd=tmp_path)
    assert "\r" not in out.stdout + out.stderr
    epochs = [EPOCH_LINE.match(line).groups() for line in out.stderr.splitlines() if EPOCH_LINE.match(line)]
    assert sorted(epochs) == [(str(t), str(e)) for t in range(3) for e in (1, 2)], out.stderr  # one per epoch
    trial_lines = [line for line in out.stdout.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 3, out.stdout
    assert re.search(r"\[1/3 done \(1 complete, 0 pruned\), [\dhms]+, ETA [\dhms]+\]$", trial_lines[0]), trial_lines[0]
    assert trial_lines[-1].endswith("]") and "ETA" not in trial_lines[-1]  # nothing left to wait for


def test_quiet_shows_no_progress_inside_trials(tmp_path):
    out = hpo("run", str(write_study(tmp_path, STUDY)), *ARGS, "--quiet", cwd=tmp_path)
    assert not [line for line in out.stderr.splitlines() if EPOCH_LINE.match(line)], out.stderr
    assert "\r" not in out.stdout + out.stderr
    assert sum(line.startswith("trial ") for line in out.stdout.splitlines()) == 3  # the results still show


def test_a_terminal_gets_tqdm_bars(tmp_path):
    study_file = write_study(tmp_path, STUDY)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    process = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(study_file), *ARGS], cwd=tmp_path,
                               env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert re.search(r"\rtrial \d: +\d+%\|", screen), screen  # a bar redrawn in place
    assert "steps/s" in screen or "step/s" in screen or "s/step" in screen, screen
    assert not [line for line in screen.split("\r\n") if EPOCH_LINE.match(line)], screen  # bars, not epoch lines
    assert screen.count("trial    ") == 3, screen  # the result lines still there
