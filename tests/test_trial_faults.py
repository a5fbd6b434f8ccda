"""Faults inside a trial: a batch that does not fit in memory, a DataLoader worker that is killed. Either fails
that trial with a one-line cause, and the study goes on.

A CUDA out-of-memory error (torch.OutOfMemoryError) takes the same path as the CPU allocator's refusal tested
here (hpo/train/device.py: out_of_memory), but needs a GPU to happen for real: no test here makes one.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
import weakref

import optuna
import pytest
import torch
import torch.nn as nn
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.data.splits import load_splits
from hpo.core.errors import OutOfMemory
from hpo.train.hyperparams import Hyperparams
from hpo.train.lr_find import lr_range_test
from hpo.train.trainer import Setup, fit

from datagen import write_image_folder
from helpers import write_study

CPU = torch.device("cpu")
IMPOSSIBLE_FLOATS = 2**55  # 128 PiB: more than any machine's address space, so the allocator always refuses
# Headroom over the hpo process's data segment once its data is loaded (RLIMIT_DATA, set from outside). Measured
# on a 2-core machine with the study below: with 300 MiB a trial at batch size 8 still completes, with 850 MiB one
# at batch size 128 still fails (its step holds about 1.1 GiB of activations).
HEADROOM_BYTES = 512 * 2**20


def start_hpo(*args: str, cwd, stderr_file) -> subprocess.Popen:
    """``hpo ARGS`` as helpers.hpo runs it, but running on: its stdout is read line by line as it comes."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    env.update(PYTHONUNBUFFERED="1", HPO_CACHE=str(cwd / "cache"),
               OMP_NUM_THREADS="2")  # as many threads (and their stacks and arenas) on any machine
    return subprocess.Popen([sys.executable, "-m", "hpo", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=stderr_file, text=True)


def finish(process: subprocess.Popen, lines: list[str], timeout_s: float = 300) -> int:
    """Read the rest of the process's stdout into ``lines``; its exit code."""
    deadline = time.time() + timeout_s
    try:
        for line in process.stdout:
            lines.append(line)
            assert time.time() < deadline, "hpo run took too long:\n" + "".join(lines)
        return process.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_doing(tmp_path, study: dict, act):
    """``hpo run`` of ``study`` (written into ``tmp_path``) with ``--no-retrain`` on the CPU, with ``act(process)`` done to it once it has printed its start
    line (its data is loaded); checks it exits 0 without a traceback. Returns its stdout lines and what ``act``
    returned."""
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        process = start_hpo("run", str(write_study(tmp_path, study)), "--no-retrain", "--device", "cpu",
                            cwd=tmp_path, stderr_file=stderr)
        lines = [process.stdout.readline()]
        try:
            assert lines[0].startswith(f"study '{study['name']}': 0 finished trials"), lines[0]
            acted = act(process)
        finally:
            code = finish(process, lines)
        stderr.seek(0)
        err = stderr.read()
    out = "".join(lines)
    assert code == 0, out + err
    assert "Traceback" not in out + err
    return lines, acted


def data_segment_bytes(pid: int) -> int:
    """What RLIMIT_DATA counts: the process's private writable memory, mapped (VmData), not only touched."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmData:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


@pytest.mark.slow  # an hpo run under a memory limit
def test_a_batch_that_does_not_fit_fails_its_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    """A real allocation failure: the hpo process may map only HEADROOM_BYTES more than it holds once its data
    is loaded (RLIMIT_DATA, set from outside when it prints its start line), so the CPU allocator refuses the
    activations of the trial at batch size 128 (over 1 GiB of them) and grants those at batch size 8.
    The trial after the failed one runs under the same limit: the memory was given back."""
    root = write_image_folder(tmp_path / "gray", ["dark", "light"], 80, sizes=((16, 16),), mode="L")
    study = {"name": "oom", "seed": 1,
             # 129 training images of 256 x 256 pixels (64 KiB each) for a width-1 CNN: ~8 MiB of activations each
             "data": {"name": "folder", "root": str(root), "size": 256, "stream": False, "val_fraction": 0.1,
                      "test_fraction": 0.1},
             "model": {"name": "digits_cnn", "width": 1},
             "budget": {"trials": 2, "epochs": 1},
             "search": {"lr": [0.01, 0.02], "batch_size": [8, 128]},
             "pruner": "none",
             "enqueue": [{"lr": 0.01, "batch_size": 8}, {"lr": 0.01, "batch_size": 128},
                         {"lr": 0.02, "batch_size": 8}]}
    def limit_memory(process):
        limit = data_segment_bytes(process.pid) + HEADROOM_BYTES
        resource.prlimit(process.pid, resource.RLIMIT_DATA, (limit, limit))

    lines, _ = run_doing(tmp_path, study, limit_memory)
    failed_line = next(line for line in lines if line.startswith("trial    1"))
    assert re.search(r"trial    1  FAIL      failed: out of memory at batch size 128 on cpu, "
                     r"allocating [\d.]+ [KMG]iB; try a smaller batch_size range", failed_line), failed_line

    stored = optuna.load_study(study_name="oom", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = stored.trials[1]
    assert failed.params["batch_size"] == 128
    # fail_reason is first_line(err) (hpo/stores/retry.py): our own errors' message, without a class name
    assert re.match(r"out of memory at batch size 128 on cpu", failed.user_attrs["fail_reason"])

    monkeypatch.chdir(tmp_path)  # MLflow finds the artifacts from the store's folder (README)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "out of memory at batch size 128" in run.data.tags["hpo.error"]
    error_txt = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    with open(error_txt) as f:
        assert "DefaultCPUAllocator: can't allocate memory" in f.read()  # the allocation that failed, kept as text


hungry_in: set[str] = set()  # "training", "evaluation": where Hungry's forward asks for IMPOSSIBLE_FLOATS


class Hungry(nn.Module):
    """A linear model on digits whose forward also allocates IMPOSSIBLE_FLOATS in the passes named in
    ``hungry_in`` (a module global, so that the EMA's copy of the model reads it too)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        if ("training" if self.training else "evaluation") in hungry_in:
            x.new_empty(IMPOSSIBLE_FLOATS)
        return self.net(x)


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", {}, val_fraction=0.2, test_fraction=0.2, split_seed=0)


@pytest.mark.parametrize("phase, message", [
    ("training", "out of memory at batch size 64 on cpu, allocating 128.00 PiB; try a smaller batch_size range"),
    ("evaluation", "out of memory at batch size 288 on cpu, allocating 128.00 PiB; evaluating 288 images, "
                   "1024 at a time (data/batches.py: EVAL_BATCH_SIZE)"),
], ids=["training", "evaluation"])
def test_out_of_memory_is_raised_with_the_training_state_released(digits, phase, message):
    """While the OutOfMemory is still being handled, nothing of the training it ended is alive: not the
    optimizer's moments, not the EMA's copy of the weights (the original error's traceback would hold them)."""
    model = Hungry()
    held = []

    def keep_state(state):  # after epoch 1: the next pass of ``phase`` asks for the impossible
        tensors = [t for moments in state["optimizer"]["state"].values() for t in moments.values()]
        held.extend(weakref.ref(t) for t in tensors + list(state["ema"].values()) if isinstance(t, torch.Tensor))
        hungry_in.add(phase)

    try:
        with pytest.raises(OutOfMemory) as raised:
            for _ in fit(model, digits.train, Hyperparams(lr=1e-3, batch_size=64, ema_decay=0.9), 3, Setup(CPU,
                         digits.mean, digits.std, 0), val=digits.val, keep_state=keep_state):
                pass
    finally:
        hungry_in.clear()
    assert str(raised.value) == message
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert "DefaultCPUAllocator: can't allocate memory" in raised.value.__notes__[0]
    assert len(held) > 4 and [ref for ref in held if ref() is not None] == []


def test_the_lr_range_test_runs_out_of_memory_in_one_line(digits):
    hungry_in.add("training")
    try:
        with pytest.raises(OutOfMemory, match=r"^out of memory at batch size 32 on cpu, allocating 128.00 PiB"):
            lr_range_test(Hungry(), digits.train, Hyperparams(batch_size=32), Setup(CPU, digits.mean, digits.std, 0),
                          steps=5)
    finally:
        hungry_in.clear()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def command_line(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


@pytest.mark.slow  # a DataLoader worker killed mid-epoch
def test_a_killed_dataloader_worker_fails_its_trial_and_the_study_goes_on(tmp_path):
    """SIGKILL, as the kernel's OOM killer sends it, to a DataLoader worker while it decodes a trial's images:
    that trial fails naming the worker and the signal, and the next trials get workers of their own."""
    root = tmp_path / "insects"
    write_image_folder(root / "train", ["ants", "bees", "wasps"], 24, sizes=((40, 30), (36, 36)), suffix=".jpg")
    write_image_folder(root / "test", ["ants", "bees", "wasps"], 6, sizes=((40, 30),), suffix=".jpg", seed=1)
    study = {"name": "insects", "seed": 3,
             "data": {"name": "folder", "root": str(root), "size": 24, "val_fraction": 0.25, "stream": True,
                      "workers": 2, "decode": "workers"},
             "model": {"name": "digits_cnn", "width": 8},
             "budget": {"trials": 2, "epochs": 2},
             "search": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "batch_size": [8, 16]},
             "pruner": "none"}
    def kill_a_decoding_worker(process) -> int:
        # The workers, started to measure the training images' mean and std, wait for the first trial;
        # forked, they show the hpo process's command line.
        workers = [pid for pid in children_of(process.pid) if command_line(pid) == command_line(process.pid)]
        assert len(workers) == 2, workers
        idle = {pid: cpu_ticks(pid) for pid in workers}
        deadline = time.time() + 60
        while all(cpu_ticks(pid) == idle[pid] for pid in workers):  # until one decodes for trial 0
            assert time.time() < deadline, "no worker started decoding"
            time.sleep(0.005)
        victim = next(pid for pid in workers if cpu_ticks(pid) != idle[pid])
        os.kill(victim, signal.SIGKILL)
        return victim

    lines, victim = run_doing(tmp_path, study, kill_a_decoding_worker)
    out = "".join(lines)
    cause = (f"a DataLoader worker (pid {victim}) was killed by signal SIGKILL; the kernel's OOM killer sends it "
             f"when memory runs out")
    assert re.search(rf"FAIL      failed: {re.escape(cause)}", out), out

    stored = optuna.load_study(study_name="insects", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    states = [t.state for t in stored.trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 2, out
    failed = stored.trials[states.index(TrialState.FAIL)]
    assert cause in failed.user_attrs["fail_reason"]
    assert TrialState.COMPLETE in states[failed.number + 1:]  # a trial after it streamed from new workers
