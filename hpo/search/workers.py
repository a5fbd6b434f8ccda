"""Several trials at once: one worker process per device slot, all on the same study storage.

``hpo run STUDY --gpus 0,1 --trials-per-gpu 2`` starts four workers (two per
GPU), each a ``hpo run`` of the same study pinned to its device and nested
under the invocation's MLflow parent run. They claim trials under one lock
(``hpo.study.claims.claim_trial``), so together they finish exactly the budget.
``--gpus cpu`` runs the workers on the CPU (sharing its cores), which is how
the tests exercise all of this without a GPU. Ctrl-C or SIGTERM to the parent is passed on to
every worker, which fails its running trial before exiting. A parent that dies without a word (SIGKILL,
the OOM killer, a preemption) is noticed by each worker within a second (:func:`watch_parent`): it stops as
if sent SIGTERM, so its running trial is failed as died and the rerun retries it with its recipe, and it
never fails a trial on the broken pipe its output has become.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from hpo.core.errors import UserError

STOP_GRACE_S = 60  # how long an interrupted worker may take to fail its trial and end its runs
PARENT_ENV = "HPO_WORKER_PARENT"  # the parent's pid, given to each worker
PARENT_POLL_S = 0.5


def parse_gpus(gpus: str) -> list[int] | None:
    """``--gpus``: GPU numbers (``0,1``), or None for ``cpu``; refused in its own words when malformed."""
    if gpus.strip() == "cpu":
        return None
    try:
        ids = [int(part) for part in gpus.split(",")]
    except ValueError:
        raise UserError(f"--gpus: expected GPU numbers like 0,1 or the word cpu, got {gpus!r}") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"--gpus: expected distinct GPU numbers >= 0, got {gpus!r}")
    return ids


def plan_workers(gpus: str, trials_per_gpu: int, cuda_devices: int) -> list[str]:
    """The device of each worker: ``--gpus 0,1 --trials-per-gpu 2`` -> cuda:0, cuda:0, cuda:1, cuda:1."""
    if trials_per_gpu < 1:
        raise UserError(f"--trials-per-gpu: must be an integer >= 1, got {trials_per_gpu}")
    ids = parse_gpus(gpus)
    if ids is None:
        return ["cpu"] * trials_per_gpu
    absent = [i for i in ids if i >= cuda_devices]
    if absent:
        raise UserError(f"--gpus: GPU {absent[0]} is not present; torch sees {cuda_devices} CUDA GPU(s)"
                        + ("; use --gpus cpu to run the workers on the CPU" if cuda_devices == 0 else ""))
    return [f"cuda:{i}" for i in ids for _ in range(trials_per_gpu)]


def run_workers(devices: list[str], worker_args: list[str], threads: int, env: dict[str, str] | None = None,
                print_line=print) -> list[int]:
    """Start one ``hpo run`` worker per device, each computing with ``threads`` CPU threads (hpo/train/threads.py;
    ``env`` added to its environment), relay their lines prefixed with the worker, wait for all."""
    processes = []
    for index, device in enumerate(devices):
        command = [sys.executable, "-m", "hpo", "run", *worker_args, "--device", device,
                   "--worker-threads", str(threads)]
        processes.append((f"[w{index} {device}]", subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())})))

    def relay(prefix, process):
        for line in process.stdout:
            print_line(f"{prefix} {line.rstrip()}")

    relays = [threading.Thread(target=relay, args=pair, daemon=True) for pair in processes]
    for thread in relays:
        thread.start()
    try:
        codes = [process.wait() for _, process in processes]
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM (hpo/core/interrupts.py): pass it on, let them clean up
        signum = getattr(stop, "signum", signal.SIGINT)
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signum)
        for _, process in processes:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
        raise
    finally:
        for thread in relays:
            thread.join(timeout=5)
    return codes


class _Unbroken:
    """A text stream whose reader may go away: once a write finds the pipe broken, writes go nowhere."""

    def __init__(self, stream):
        self._stream, self._broken = stream, False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):  # the parent is gone (ValueError: the stream was closed)
                self._broken = True
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._broken = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def watch_parent() -> None:
    """In a worker: stop as if sent SIGTERM when the parent ``hpo run`` is gone, and never fail on its pipe."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    sys.stdout, sys.stderr = _Unbroken(sys.stdout), _Unbroken(sys.stderr)

    def watch():
        while os.getppid() == int(parent):
            threading.Event().wait(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="hpo-watch-parent", daemon=True).start()
