"""What a study shows while it runs: progress inside each trial, and the study's status after each.

Inside a trial, on stderr (where the retrain's epoch lines go; stdout keeps the results):

- ``bars`` (stdout and stderr both a terminal): a tqdm bar over the trial's optimizer steps, with the epoch
  and its validation metric; erased when the trial ends, so its result line stands where the bar was.
- ``lines`` (a file, a pipe, a worker whose output its parent relays): at most one line per epoch, never a
  carriage return::

      trial 3 epoch 2/5  val_accuracy 0.9410  train_loss 0.2311  0.4s

  indented by two spaces, so that a line starting ``trial `` is always a finished trial's.
- ``quiet`` (``hpo run --quiet``): neither. The line per finished trial and every error still show.

After each trial, its line ends with the study's status (:func:`study_status`): trials done by state, the
time since the search started, and an ETA.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

MODES = ("bars", "lines", "quiet")


@dataclass(frozen=True)
class Progress:
    """How this process shows progress inside trials: ``bars``, ``lines`` or ``quiet`` (see the module)."""

    mode: str = "lines"

    @classmethod
    def for_output(cls, quiet: bool = False) -> Progress:
        """Bars only where the user watches one terminal: with either stream a file or a pipe, a bar's
        carriage returns would end up in it (or a tee's lines would land in the middle of a bar)."""
        if quiet:
            return cls("quiet")
        return cls("bars" if sys.stdout.isatty() and sys.stderr.isatty() else "lines")

    def trial(self, number: int, epochs: int, metric: str) -> TrialProgress:
        """Progress of one trial's training; use it as a context manager around the epoch loop."""
        return TrialProgress(self.mode, number, epochs, metric)

    def line(self, text: str) -> None:
        """An epoch line of a retrain (at most ten): shown unless quiet."""
        if self.mode != "quiet":
            print(text, file=sys.stderr, flush=True)


class TrialProgress:
    """One trial's bar or epoch lines. ``on_step`` is for ``fit(on_step=...)``: None unless there is a bar,
    so that without one the training loop calls nothing per step."""

    def __init__(self, mode: str, number: int, epochs: int, metric: str):
        self.mode, self.number, self.epochs, self.metric = mode, number, epochs, metric
        self.bar = None
        self.on_step: Callable[[int, int, int], None] | None = self._step if mode == "bars" else None

    def __enter__(self) -> TrialProgress:
        if self.mode == "bars":
            from tqdm import tqdm

            # leave=False: the bar is erased when the trial ends; its result line replaces it.
            self.bar = tqdm(desc=f"trial {self.number}", unit="step", file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def _step(self, epoch: int, step: int, steps: int) -> None:
        if self.bar.total is None:  # the steps per epoch are known from the first step (a resumed trial: later)
            self.bar.reset(total=self.epochs * steps)
        self.bar.update((epoch - 1) * steps + step - self.bar.n)  # redrawn at most every 0.1 s (tqdm's mininterval)

    def epoch(self, result, value: float) -> None:
        """After each epoch: ``result`` is the trainer's EpochResult, ``value`` the study's metric."""
        if self.mode == "lines":
            print(f"  trial {self.number} epoch {result.epoch}/{self.epochs}  {self.metric} {value:.4f}  "
                  f"train_loss {result.train_loss:.4f}  {result.epoch_time_s:.1f}s", file=sys.stderr, flush=True)
        elif self.mode == "bars":
            self.bar.set_postfix_str(f"epoch {result.epoch}/{self.epochs} {self.metric} {value:.4f}")


def study_status(trials, budget: int, elapsed_s: float) -> str:
    """``[3/6 done (2 complete, 1 pruned), 12s, ETA 20s]``: the study's ``trials`` (FrozenTrials, every state)
    against its budget of finished (COMPLETE or PRUNED) trials.

    The ETA is the trials still to finish times the mean time of a finished trial (failed ones too: they
    took that time), divided by the processes running trials now: this one and those whose trials are
    RUNNING in the storage (other workers, other machines), the only count every process can see."""
    by_state = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    durations = []
    for trial in trials:
        by_state[trial.state.name] = by_state.get(trial.state.name, 0) + 1
        if trial.state.is_finished() and trial.datetime_start and trial.datetime_complete:
            durations.append((trial.datetime_complete - trial.datetime_start).total_seconds())
    done = by_state["COMPLETE"] + by_state["PRUNED"]
    states = f"{by_state['COMPLETE']} complete, {by_state['PRUNED']} pruned"
    failed = f", {by_state['FAIL']} failed" if by_state["FAIL"] else ""
    left = max(0, budget - done)
    eta = ""
    if left and durations:
        processes = min(left, 1 + by_state["RUNNING"])
        eta = f", ETA {_duration(left * sum(durations) / len(durations) / processes)}"
    return f"[{done}/{budget} done ({states}){failed}, {_duration(elapsed_s)}{eta}]"


def _duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
