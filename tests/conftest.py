"""Fixtures shared by the test modules (the helpers they share are in ``helpers.py``)."""

from __future__ import annotations

import os

import pytest

# Every test process trains on one thread, and so do the hpo processes the tests start (they inherit it):
# two test files run at once on a 2-core machine, and more threads only fight over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import TINY_STUDY, hpo, write_study


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One full life of the tiny study: run (search + retrain), then promote."""
    work = tmp_path_factory.mktemp("tiny")
    study_file = write_study(work, TINY_STUDY)
    run = hpo("run", str(study_file), cwd=work)
    promote = hpo("promote", "tiny", cwd=work)
    return {"dir": work, "study_file": study_file, "run": run, "promote": promote}
