"""`hpo dashboard` serves optuna-dashboard on the study storage, bound to 127.0.0.1."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
import time
import urllib.request

from helpers import free_port

pytestmark = pytest.mark.slow  # an optuna-dashboard server


def test_dashboard_lists_the_study(tiny_run):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--port", str(port)], cwd=tiny_run["dir"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.time() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["tiny"]
    finally:
        server.terminate()
        server.wait(timeout=30)
