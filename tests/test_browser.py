"""Seen in a real browser: optuna-dashboard and the MLflow UI on the tiny study's stores, opened in headless Chromium.

What the docs (docs/views.md) promise a user sees, checked where the user sees it: the history plot's axis named after the
metric, a trial's curves picture and its link to MLflow, the trials nested under the study's parent run in MLflow's
training view, and the registered model with its alias. Screenshots land in tmp_path; with HPO_SAVE_SCREENSHOTS=1
they are also copied to docs/screenshots/ (the docs' pictures).

Needs the OS packages ``chromium`` and ``chromium-driver`` and Selenium (the ``test`` extra); skipped without them.
Selenium is told where both are, so it never tries to download a browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import REPO, free_port

pytestmark = pytest.mark.slow  # headless Chromium and two servers

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WINDOW = (1400, 900)  # wide enough that neither UI folds its side panels away
TALL_WINDOW_HEIGHT = 1350  # a trial's page down to its artifacts
WAIT_S = 60  # a page's first draw on a busy 2-core machine


def _start(args: list[str], cwd: Path, url: str) -> subprocess.Popen:
    """A server in its own process group (so the stop reaches its workers), returned once ``url`` answers."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    server = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**env, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return server
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                _stop(server)
                pytest.fail(f"{' '.join(args[:4])} did not answer at {url}")
            time.sleep(0.3)


def _stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium, or a skip that says what is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing: install the OS packages chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def servers(tiny_run):
    """`hpo dashboard` and `mlflow ui` as the README starts them, in the tiny study's folder."""
    folder = tiny_run["dir"]
    dashboard_port, mlflow_port = free_port(), free_port()
    dashboard = _start([sys.executable, "-m", "hpo", "dashboard", "--port", str(dashboard_port)], folder,
                       f"http://127.0.0.1:{dashboard_port}/api/studies")
    try:
        mlflow_ui = _start([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db",
                            "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"], folder,
                           f"http://127.0.0.1:{mlflow_port}/health")
    except BaseException:
        _stop(dashboard)
        raise
    try:
        yield {"dashboard": f"http://127.0.0.1:{dashboard_port}", "mlflow": f"http://127.0.0.1:{mlflow_port}"}
    finally:
        _stop(mlflow_ui)
        _stop(dashboard)


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("HPO_SAVE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # An element read while the page re-renders it goes stale: look again at the next poll.
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.25,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        condition, f"not seen within {WAIT_S} s: {what}")


def _texts(driver, css: str) -> list[str]:
    return [element.text.strip() for element in driver.find_elements("css selector", css)]


def _severe_console_errors(driver, ignore: tuple[str, ...] = ()) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(noise in entry["message"] for noise in ignore)]


# MLflow UI's own noise, not our data: it asks who the user is (`mlflow ui` without an auth app answers 404), and
# MLflow 3's assistant panel asks for its configuration (the server answered it with a 500 in one run of three).
MLFLOW_NOISE = ("/ajax-api/2.0/mlflow/users/current", "/ajax-api/3.0/mlflow/assistant/config")


def test_dashboard_shows_the_metric_the_curves_and_the_mlflow_link(tiny_run, browser, servers, tmp_path):
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_run['dir']}/hpo.db")
    study_id = study._study_id
    browser.get(f"{servers['dashboard']}/dashboard/studies/{study_id}")
    # The history plot's y axis (plotly's .ytitle) is named after the study's metric, not "Objective Value".
    _wait(browser, lambda d: "val_accuracy" in _texts(d, ".ytitle"), "val_accuracy as the history plot's y axis")
    _screenshot(browser, tmp_path, "dashboard-study.png")

    trial = study.best_trial
    browser.get(f"{servers['dashboard']}/dashboard/studies/{study_id}/trials?numbers={trial.number}")
    link = _wait(browser, lambda d: next(iter(d.find_elements("link text", f"MLflow run trial-{trial.number}")), False),
                 f"trial {trial.number}'s note linking its MLflow run")
    assert link.get_attribute("href") == trial.user_attrs["mlflow_run_url"]
    image = _wait(browser, lambda d: next(iter(d.find_elements("css selector", "img[src*='/artifacts/']")), False),
                  "the trial's curves.png")
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", image)
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image),
          "curves.png decoded")
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image) == [400, 256]
    browser.set_window_size(WINDOW[0], TALL_WINDOW_HEIGHT)  # the note's link and the curves in one picture
    try:
        browser.execute_script("window.scrollTo(0, 0)")
        _screenshot(browser, tmp_path, "dashboard-trial.png")
    finally:
        browser.set_window_size(*WINDOW)
    assert _severe_console_errors(browser) == []

    # The link's run, opened in this test's `mlflow ui` (the note points at the README's default port 5000).
    fragment = link.get_attribute("href").split("#", 1)[1]
    browser.execute_script("window.localStorage.clear()")  # a first visit: MLflow's own default is GenAI
    browser.get(f"{servers['mlflow']}/#{fragment}")
    _wait(browser, lambda d: d.find_elements("xpath", f"//h2[contains(., 'trial-{trial.number}')]"),
          f"the MLflow run page of trial-{trial.number}")
    # The model-training side: the run under "Runs", with the Model registry in the side bar; not "Evaluations"
    _wait(browser, lambda d: "Model registry" in d.find_element("tag name", "body").text.splitlines(),
          "MLflow's model-training side bar")
    lines = browser.find_element("tag name", "body").text.splitlines()
    assert "Evaluations" not in lines and "Evaluation runs" not in lines and "Runs" in lines


def test_mlflow_nests_the_trials_under_the_parent_and_shows_the_champion(tiny_run, browser, servers, tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_run['dir']}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("hpo.role") == "study"]
    trial_names = sorted(r.info.run_name for r in runs if r.data.tags.get("hpo.role") == "trial")

    browser.get(f"{servers['mlflow']}/#/experiments/{experiment.experiment_id}/runs")
    _wait(browser, lambda d: d.find_elements("xpath", "//*[normalize-space(text())='Training runs']"),
          "the classic training view's runs table")
    for close in browser.find_elements("css selector", "button[data-component-id='mlflow.assistant.chat_panel.close']"):
        close.click()  # the assistant panel hides half the table
    row = _wait(browser, lambda d: next(iter(d.find_elements(
        "xpath", f"//div[@role='row'][.//a[contains(@href, '/runs/{parent.info.run_id}')]]")), False),
        "the parent run's row")
    shown = lambda d: sorted(t for t in _texts(d, ".ag-row [col-id='attributes.`Run Name`'] a") if t.startswith("trial-"))
    assert shown(browser) == [], "the trials are nested under the parent, hidden until it is expanded"
    row.find_element("css selector", "button[data-component-id*='runnamecellrenderer']").click()
    _wait(browser, lambda d: shown(d) == trial_names, f"the trials {trial_names} under the parent")
    _screenshot(browser, tmp_path, "mlflow-runs.png")
    assert _severe_console_errors(browser, MLFLOW_NOISE) == []

    browser.get(f"{servers['mlflow']}/#/models/tiny")
    _wait(browser, lambda d: "@ champion" in d.find_element("tag name", "body").text.splitlines(),
          "the registered model tiny's version with its alias champion")
    _screenshot(browser, tmp_path, "mlflow-model.png")
    assert _severe_console_errors(browser, MLFLOW_NOISE) == []
