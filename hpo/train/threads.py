"""How many CPU threads torch computes with in a process (its intra-op threads), chosen, not left to torch.

Torch starts one thread per core it sees. On a shared machine that collapses: when another process keeps one
core busy, every operation waits for the thread that lost its core (a digits study took 155 s instead of 50 s
next to one busy process on 2 cores). hpo chooses instead, once per process, before the first trial:

    1. ``--threads N`` (``hpo run``, ``hpo retrain``), else ``HPO_THREADS``: that many, whatever else holds
    2. the cores this process may use: its CPU affinity, capped by its cgroup's CPU quota (a container's
       ``--cpus``), shared among the study's CPU workers (``hpo run --gpus cpu,cpu``)
    3. one thread for a small step: below ``SMALL_STEP_FLOPS`` in one forward pass of the largest batch a trial
       may use, an operation is too short to split between threads, and one thread is as fast and immune to
       load (measured on 2 cores: digits_cnn at width 4, batch 32, 2.6 MFLOPs: one thread 1.07x as fast as
       two; at width 8, batch 32, 9.6 MFLOPs: two threads 1.15x as fast as one; docs/benchmarks.md). The
       largest batch, because one thread costs a large batch more (up to 1.3x) than two cost a small one
    4. less the processes running elsewhere on those cores when the process starts (``/proc/loadavg``'s
       count of runnable tasks, sampled a few times), down to one

The same seed gives the same numbers with the same thread count: a float sum split another way rounds
another way. The study header (``hpo run``) says which count was chosen and why.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

SMALL_STEP_FLOPS = 5_000_000  # a forward pass of one batch: below it one thread is fastest (docs/benchmarks.md)
ENV = "HPO_THREADS"


@dataclass(frozen=True)
class Threads:
    count: int
    why: str

    def line(self) -> str:
        return f"threads {self.count} ({self.why})"


def requested_by(flag: int | None) -> str:
    """Who asked for a thread count: the command line's ``--threads``, else ``HPO_THREADS``."""
    return "--threads" if flag is not None else ENV


def requested_threads(flag: int | None) -> int | None:
    """``--threads``, else ``HPO_THREADS`` (checked: a whole number >= 1), else None."""
    from hpo.core.errors import UserError

    if flag is not None:
        return flag
    value = os.environ.get(ENV)
    if value is None or not value.strip():
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise UserError(f"{ENV}: must be a whole number >= 1 (threads per process), got {value!r}")
    return count


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by its cgroup's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def _cgroup_quota() -> float | None:
    """CPUs the cgroup may use (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def busy_elsewhere(samples: int = 5, gap_s: float = 0.02) -> int:
    """Processes running on the machine besides this one, now: the median of a few samples of the kernel's
    count of runnable tasks (0 where there is no ``/proc/loadavg``)."""
    counts = []
    for i in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)  # this process, reading it
        if i < samples - 1:
            time.sleep(gap_s)
    return max(0, int(statistics.median(counts)))


def choose_threads(requested: int | None, flops_per_step: float | None, cpu_workers: int = 1,
                   source: str = "--threads / HPO_THREADS", batch: int | None = None) -> Threads:
    """The thread count for this process (see the module's steps); ``source`` says who requested one."""
    cores = usable_cores()
    if requested is not None:
        return Threads(requested, source + (f"; more than the {cores} usable core{'s' if cores != 1 else ''}"
                                            if requested > cores else ""))
    share = max(1, cores // max(1, cpu_workers))
    of = f"of {cores} usable core{'s' if cores != 1 else ''}" + (f" shared by {cpu_workers} CPU workers"
                                                                   if cpu_workers > 1 else "")
    if flops_per_step is not None and flops_per_step < SMALL_STEP_FLOPS:
        batch_of = f" a batch of {batch}" if batch else " a step"
        return Threads(1, f"{of}; a small step ({flops_per_step:,.0f} FLOPs{batch_of}): one thread is as fast")
    busy = busy_elsewhere() if share > 1 else 0
    count = max(1, share - busy)
    return Threads(count, of + (f", {busy} busy elsewhere" if busy else ""))


def apply_threads(threads: Threads) -> None:
    import torch

    if torch.get_num_threads() != threads.count:
        torch.set_num_threads(threads.count)
