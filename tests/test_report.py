"""`hpo report` and `hpo show --top`, through the real CLI, on a study with every trial state.

The study is the tiny one (COMPLETE and PRUNED trials, a retrain in MLflow), with a FAILED and a RUNNING
trial added through Optuna's own API afterwards, as a crashed or still-running worker would leave them.
What is checked is what a reader would check: every section there, nothing fetched from the network, the
leaderboard in Optuna's own order, the epochs the pruner saved counted by hand.
"""

from __future__ import annotations

import html
import re

import optuna
import pytest
import test_browser
import test_scaling
from optuna.trial import TrialState
from test_browser import WINDOW, _screenshot, _severe_console_errors, _wait

from helpers import TINY_STUDY, copy_study_folder, hpo, hpo_json, write_study

# Fixtures of other modules, each a skip saying what is missing where it cannot run.
postgres = test_scaling.postgres  # a real PostgreSQL server
browser = test_browser.browser  # headless Chromium

# The runs train on one thread: what is tested is the report, and on a busy 2-core machine torch's second
# thread, spinning against other processes, made the tiny study's run take 63 s instead of 13 s (measured).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
SECTION_IDS = ("study", "history", "importances", "parameters", "curves", "compute", "leaderboard", "seeds",
               "retrains", "spec")


@pytest.fixture(scope="module")
def reported(tiny_run, tmp_path_factory):
    """A copy of the tiny study's folder (its search and retrain, with MLflow), one FAILED and one RUNNING trial
    added, then reported; returns the folder, the study as Optuna reads it, and the report's files."""
    work = copy_study_folder(tiny_run["dir"], tmp_path_factory.mktemp("report"))
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{work}/hpo.db")
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    study.ask()  # left RUNNING
    result = hpo("report", "tiny", cwd=work)
    return {"dir": work, "study": optuna.load_study(study_name="tiny", storage=f"sqlite:///{work}/hpo.db"),
            "result": result, "html": (work / "report-tiny.html").read_text(),
            "markdown": (work / "report-tiny.md").read_text()}


def section(page: str, key: str) -> str:
    return re.search(f'<section id="{key}">(.*?)</section>', page, re.S).group(1)


def cells(fragment: str) -> list[list[str]]:
    """The rows of the first table in ``fragment``, as text."""
    table = re.search(r"<table>(.*?)</table>", fragment, re.S).group(1)
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]


def optuna_ranking(study) -> list[int]:
    """The trial numbers ranked as the brief says, computed from Optuna's own API."""
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (sign * t.value, t.number))
    pruned = [t for t in study.get_trials(states=(TrialState.PRUNED,)) if t.intermediate_values]
    pruned.sort(key=lambda t: (sign * t.intermediate_values[max(t.intermediate_values)], t.number))
    return [t.number for t in complete + pruned]


def test_the_report_has_every_section_and_loads_nothing(reported):
    page, result = reported["html"], reported["result"]
    states = {t.state for t in reported["study"].trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING} <= states
    assert result.stdout.splitlines() == ["report written to report-tiny.html", "markdown written to report-tiny.md"]
    assert len(result.stderr.splitlines()) == 1 + len(SECTION_IDS)  # a progress line per section
    for key in SECTION_IDS:
        assert f'<section id="{key}"><h2>' in page
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:image/png;base64,)[^"]*"', page) == []
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # base64 may spell "http" by chance
    assert "http:" not in text and "https:" not in text and "url(" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text and "href" not in text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 7  # history x2, importances, parallel, slice, curves, compute; none for seeds
    import base64
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert "No seed comparison yet; run `hpo retrain tiny --seeds 3`." in section(page, "seeds")
    assert "name: tiny" in section(page, "spec")
    study_rows = dict(row for row in cells(section(page, "study")) if len(row) == 2)
    assert study_rows["trials"] == "8: COMPLETE 3, PRUNED 3, FAIL 1, RUNNING 1"


def test_the_leaderboard_is_optunas_ranking_with_only_the_varying_params(reported):
    study, page = reported["study"], reported["html"]
    ranking = optuna_ranking(study)[:5]
    header, *rows = cells(section(page, "leaderboard"))
    assert [int(row[1]) for row in rows] == ranking
    trials = {t.number: t for t in study.trials}
    names = sorted({n for number in ranking for n in trials[number].params})
    varying = [n for n in names if len({repr(trials[k].params.get(n)) for k in ranking}) > 1]
    assert header == ["rank", "trial", "state", "val_accuracy", "epochs", *varying]
    for row in rows:
        trial = trials[int(row[1])]
        assert row[2] == ("COMPLETE" if trial.state == TrialState.COMPLETE else "PRUNED (last value)")
        assert int(row[4]) == len(trial.intermediate_values)

    shown = hpo_json("show", "tiny", "--top", "5", cwd=reported["dir"])
    assert [row["trial"] for row in shown["leaderboard"]] == ranking
    assert {"best_trial", "n_trials_by_state", "best_params"} <= set(shown)  # the keys it had before
    retrains = shown["retrains"]  # hpo run's, and those other tests of the tiny study ran before the copy
    assert shown["retrains_from"] == "study" and {r["trial"] for r in retrains} == {study.best_trial.number}
    assert all(r["run_id"] in section(page, "retrains") for r in retrains)


def test_a_study_that_kept_no_retrain_results_reads_them_from_mlflow(tiny_run, tmp_path):
    """Studies run before hpo kept its retrains in the study: show (and the report) read the MLflow runs."""
    from mlflow.tracking import MlflowClient

    work = copy_study_folder(tiny_run["dir"], tmp_path / "older")
    optuna.load_study(study_name="tiny", storage=f"sqlite:///{work}/hpo.db").set_user_attr("retrain_results", [])
    shown = hpo_json("show", "tiny", "--top", "3", cwd=work)
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              "tags.`hpo.role` = 'retrain' and attributes.status = 'FINISHED'")
    assert shown["retrains_from"] == "mlflow"
    assert {r["run_id"] for r in shown["retrains"]} == {run.info.run_id for run in runs} != set()
    assert {r["test_accuracy"] for r in shown["retrains"]} == {run.data.metrics["test_accuracy"] for run in runs}


def test_the_compute_section_counts_the_epochs_the_pruner_saved(reported):
    study = reported["study"]
    counted = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    trained = sum(len(t.intermediate_values) for t in counted)
    full = len(counted) * TINY_STUDY["budget"]["epochs"]
    rows = cells(section(reported["html"], "compute"))
    assert rows[1:] == [[f"trained by the {len(counted)} COMPLETE and PRUNED trials", str(trained)],
                        ["the same trials each run to budget.epochs (3)", str(full)],
                        ["saved by the pruner", f"{full - trained} ({100 * (full - trained) / full:.1f}%)"]]
    assert f"| saved by the pruner | {full - trained} (" in reported["markdown"]


def test_the_markdown_has_the_same_facts_and_links_its_pictures(reported):
    markdown = reported["markdown"]
    for title in ("## The study", "## Leaderboard", "## Compute", "## Retrain results", "## The study file"):
        assert title in markdown
    assert "data:image" not in markdown
    links = re.findall(r"!\[[^\]]+\]\((report-tiny-pictures/\d+\.png)\)", markdown)
    assert len(links) == 7  # the HTML's pictures, as files beside the Markdown
    for link in links:
        assert (reported["dir"] / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_of_a_dozen_parameters_show_the_most_important_on_a_wrapping_grid(tmp_path):
    """Twelve parameters: the parallel-coordinate and slice plots take the six Optuna ranks most important
    (named in the text), and the slices wrap onto rows instead of one strip twelve panels wide."""
    import base64
    import struct

    storage = f"sqlite:///{tmp_path}/many.db"
    study = optuna.create_study(study_name="many", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    names = [f"p{i:02d}" for i in range(12)]
    study.optimize(lambda t: sum((i + 1) * t.suggest_float(n, 0, 1) for i, n in enumerate(names)), n_trials=20)
    study.set_user_attr("metric", "val_accuracy")
    hpo("report", "many", "--storage", storage, "--output", "many.html", cwd=tmp_path)
    page = (tmp_path / "many.html").read_text()
    seeded = optuna.importance.FanovaImportanceEvaluator(seed=0)  # as the report ranks them: the same every time
    top = list(optuna.importance.get_param_importances(study, evaluator=seeded))[:6]
    assert f"The first 6 of the 12 parameters that vary between COMPLETE trials, the most important first (as " \
           f"ranked above; conditional ones after): {', '.join(top)};" in html.unescape(section(page, "parameters"))
    parallel, slices = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section(page, "parameters"))
    width, height = struct.unpack(">II", base64.b64decode(slices)[16:24])
    assert (width, height) == (640, 416)  # three panels a row, two rows


@pytest.mark.slow  # a PostgreSQL server
def test_a_no_tracking_study_on_postgresql_is_reported_from_the_storage_alone(request, tmp_path):
    """No MLflow at all, and the study on a PostgreSQL server (on SQLite where PostgreSQL is not installed:
    one study run is the test's cost, so one study covers both)."""
    try:
        storage = f"{request.getfixturevalue('postgres')}/studies"
    except pytest.skip.Exception:
        storage = f"sqlite:///{tmp_path}/hpo.db"
    small = {**TINY_STUDY, "budget": {"trials": 3, "epochs": 2, "retrain": {"epochs": 1}}, "enqueue": []}
    hpo("run", str(write_study(tmp_path, small)), "--no-tracking", "--no-retrain", "--storage", storage,
        cwd=tmp_path, env=ONE_THREAD)
    result = hpo("report", "tiny", "--storage", storage, cwd=tmp_path)
    page = (tmp_path / "report-tiny.html").read_text()
    assert all(f'<section id="{key}">' in page for key in SECTION_IDS)
    assert storage.split("://")[0] + "://" in section(page, "study")
    assert "No retrain recorded" in section(page, "retrains")
    assert not (tmp_path / "mlflow.db").exists() and "report-tiny.md" in result.stdout
    shown = hpo("show", "tiny", "--top", "2", "--storage", storage, cwd=tmp_path).stdout.splitlines()
    study = optuna.load_study(study_name="tiny", storage=storage)
    ranking = optuna_ranking(study)[:2]
    at = shown.index(next(line for line in shown if line.startswith("top ")))
    assert [int(line.split()[1]) for line in shown[at + 2:at + 2 + len(ranking)]] == ranking
    assert shown[-1] == "retrains: none recorded"


BAD_INPUT = {
    "an unknown study": (["report", "nosuch"], "no study named 'nosuch'"),
    "an output folder that is a file": (["report", "tiny", "--output", "hpo.db/r.html"], "is a file, not a folder"),
    "a leaderboard of none": (["show", "tiny", "--top", "0"], "--top: must be >= 1, got 0"),
    "report --top 0": (["report", "tiny", "--top", "0"], "--top: must be >= 1, got 0"),
}


@pytest.mark.parametrize("args, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_exit_2(reported, args, message):
    result = hpo(*args, cwd=reported["dir"], check=False)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.slow  # headless Chromium
def test_the_report_opens_offline_in_a_browser(reported, browser, tmp_path):
    """Opened from the disk in headless Chromium: every section and picture shows, and the console is clean."""
    browser.set_window_size(WINDOW[0], 2400)  # the study, the history and the importances in the screenshot
    try:
        browser.get((reported["dir"] / "report-tiny.html").as_uri())
        _wait(browser, lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"), "every picture decoded")
        shown = [e.get_attribute("id") for e in browser.find_elements("css selector", "section")]
        assert shown == list(SECTION_IDS)
        titles = [e.text for e in browser.find_elements("css selector", "section h2")]
        assert titles[0] == "The study" and all(titles)
        assert len(browser.find_elements("css selector", "img")) == 7
        _screenshot(browser, tmp_path, "report.png")
        assert _severe_console_errors(browser) == []
    finally:
        browser.set_window_size(*WINDOW)
