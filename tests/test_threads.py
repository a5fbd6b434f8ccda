"""CPU threads chosen, not left to torch (hpo/train/threads.py): the cores a process may use, its share among CPU
workers, one thread for a small network, fewer where other processes run; --threads / HPO_THREADS override."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import TINY_STUDY, hpo, write_study

from hpo.train.threads import SMALL_FLOPS, busy_elsewhere, choose_threads, usable_cores


def test_a_request_is_taken_as_it_is():
    chosen = choose_threads(5, flops_per_image=10.0, cpu_workers=4)
    assert (chosen.count, chosen.why) == (5, "--threads / HPO_THREADS")


def test_a_small_network_computes_with_one_thread():
    chosen = choose_threads(None, flops_per_image=SMALL_FLOPS / 2)
    assert chosen.count == 1 and "a small network" in chosen.why


def test_the_cores_are_shared_among_cpu_workers():
    cores = usable_cores()
    chosen = choose_threads(None, flops_per_image=None, cpu_workers=cores)
    assert chosen.count == 1  # each worker's share is one core, whatever runs elsewhere
    assert f"of {cores} usable core" in chosen.why


def test_the_cores_a_process_may_use_follow_its_affinity():
    code = "import os; os.sched_setaffinity(0, {0}); from hpo.train.threads import usable_cores; print(usable_cores())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "1\n"


def test_a_busy_process_is_seen_and_given_its_core():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert busy_elsewhere() >= 1
        chosen = choose_threads(None, flops_per_image=None)
        assert chosen.count <= max(1, usable_cores() - 1)
    finally:
        busy.kill()
        busy.wait()


def test_hpo_run_says_which_threads_and_takes_hpo_threads(tmp_path):
    study = {**TINY_STUDY, "budget": {"trials": 1, "epochs": 1, "retrain": {"epochs": 1}}, "enqueue": []}
    study_file = write_study(tmp_path, study)
    run = hpo("run", str(study_file), "--no-retrain", "--quiet", cwd=tmp_path)
    assert "threads 1 (of " in run.stdout and "a small network" in run.stdout  # digits_cnn at width 8
    again = hpo("run", str(study_file), "--trials", "2", "--no-retrain", "--quiet", cwd=tmp_path,
                env={"HPO_THREADS": "2"})
    assert "threads 2 (--threads / HPO_THREADS); the same seed gives the same numbers with the same thread count" \
        in again.stdout
