"""CPU threads chosen, not left to torch (hpo/train/threads.py): the cores a process may use, its share among CPU
workers, one thread for a small step, fewer where other processes run; --threads / HPO_THREADS override."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers import TINY_STUDY, hpo, write_study

from hpo.train.threads import SMALL_STEP_FLOPS, busy_elsewhere, choose_threads, usable_cores


def test_a_request_is_taken_as_it_is():
    chosen = choose_threads(1, flops_per_step=1e12, cpu_workers=4, source="--threads")
    assert (chosen.count, chosen.why) == (1, "--threads")


def test_a_searched_width_counts_at_its_largest():
    """The small-step rule judges the largest network a trial may build, not the first value listed."""
    from hpo.data.splits import load_splits
    from hpo.spec.study_file import parse_study
    from hpo.study.objectives import network_flops

    splits = load_splits("digits", {}, 0.2, 0.2, 0)
    flops = {}
    for widths in ([4, 32], [32, 4]):
        spec = parse_study({**TINY_STUDY, "model": {"name": "digits_cnn", "width": widths}}, "widths")
        flops[tuple(widths)] = network_flops(spec, splits)
    fixed = parse_study({**TINY_STUDY, "model": {"name": "digits_cnn", "width": 32}}, "width 32")
    assert flops[(4, 32)] == flops[(32, 4)] == network_flops(fixed, splits) > 0


def test_a_small_step_computes_with_one_thread():
    chosen = choose_threads(None, flops_per_step=SMALL_STEP_FLOPS / 2, batch=32)
    assert chosen.count == 1 and f"a small step ({SMALL_STEP_FLOPS / 2:,.0f} FLOPs a batch of 32)" in chosen.why


def test_the_step_is_the_largest_batch_a_trial_may_take(monkeypatch):
    """digits_cnn at width 4 is a small step at batch 32 and not at 128: a study that may take either gets two
    threads (one thread costs batch 128 more than two cost batch 32)."""
    import torch

    from hpo.data.splits import load_splits
    from hpo.search.context import study_threads

    monkeypatch.delenv("HPO_THREADS", raising=False)  # conftest.py pins it for the other tests
    from hpo.spec.study_file import parse_study

    splits = load_splits("digits", {}, 0.2, 0.2, 0)
    chosen = {}
    for batches in ([32, 128], 32):
        spec = parse_study({**TINY_STUDY, "model": {"name": "digits_cnn", "width": 4},
                            "search": {**TINY_STUDY["search"], "batch_size": batches}, "enqueue": []}, "batches")
        chosen[str(batches)] = study_threads(spec, splits, torch.device("cpu"), None)
    assert chosen["32"].count == 1 and "a batch of 32" in chosen["32"].why
    assert "small step" not in chosen["[32, 128]"].why


def test_the_cores_are_shared_among_cpu_workers():
    cores = usable_cores()
    chosen = choose_threads(None, flops_per_step=None, cpu_workers=cores)
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
        chosen = choose_threads(None, flops_per_step=None)
        assert chosen.count <= max(1, usable_cores() - 1)
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.slow  # three runs
def test_hpo_run_says_which_threads_and_takes_hpo_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("HPO_THREADS", raising=False)  # conftest.py pins it for the other tests
    study = {**TINY_STUDY, "model": {"name": "mlp", "hidden": 8, "depth": 1},
             "budget": {"trials": 1, "epochs": 1, "retrain": {"epochs": 1}}, "enqueue": []}
    study_file = write_study(tmp_path, study)
    run = hpo("run", str(study_file), "--no-retrain", "--quiet", cwd=tmp_path)
    assert "threads 1 (of " in run.stdout and "a small step" in run.stdout  # an mlp of 8 hidden units
    again = hpo("run", str(study_file), "--trials", "2", "--no-retrain", "--quiet", cwd=tmp_path,
                env={"HPO_THREADS": "2"})
    assert "threads 2 (HPO_THREADS); the same seed gives the same numbers with the same thread count" in again.stdout
    more = hpo("run", str(study_file), "--trials", "3", "--threads", "64", "--no-retrain", "--quiet", cwd=tmp_path)
    assert f"threads 64 (--threads; more than the {usable_cores()} usable core" in more.stdout
