"""Fixtures shared by the test modules (the helpers they share are in ``helpers.py``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers import TINY_STUDY, hpo, write_study

# Every test process trains on one thread, and so do the hpo processes the tests start (they inherit it):
# two test files run at once on a 2-core machine, and more threads only fight over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# hpo chooses its own thread count (hpo/train/threads.py) from the load when it starts, and another count rounds
# another way: the runs a test compares (a resumed study against an uninterrupted one) must use the same count.
# test_threads.py unsets it to test the choice.
os.environ.setdefault("HPO_THREADS", "1")

# hpo writes the traceback of a failure it has no sentence for (a bug) to a crash file (hpo/api.py: crashed); the
# tests' hpo processes write theirs here, and a crash file fails the suite even where a test accepted exit 1.
CRASHES = Path(tempfile.mkdtemp(prefix="hpo-test-crashes-"))
os.environ["HPO_CRASH_DIR"] = str(CRASHES)


@pytest.fixture(scope="session", autouse=True)
def no_crash_files():
    yield
    crashes = sorted(CRASHES.iterdir())
    assert not crashes, "hpo crashed: " + "\n\n".join(f"{path.name}:\n{path.read_text()}" for path in crashes)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One full life of the tiny study: run (search + retrain), then promote."""
    work = tmp_path_factory.mktemp("tiny")
    study_file = write_study(work, TINY_STUDY)
    run = hpo("run", str(study_file), cwd=work)
    promote = hpo("promote", "tiny", cwd=work)
    return {"dir": work, "study_file": study_file, "run": run, "promote": promote}
