"""The README and docs/ show what is real: every ``hpo`` command they show is one hpo takes, the README's study
file validates, the listing of studies/digits.yaml is the file itself, every link leads somewhere, and the
README's command list runs, in order, in an empty folder."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml

from helpers import REPO, hpo

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def code_lines(text: str) -> list[str]:
    """The lines of the page's code: fenced blocks and blocks indented by four spaces, continuations joined."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            lines.append(line.strip())
    joined = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line
        else:
            joined.append(line)
    return joined


def hpo_commands(path) -> list[list[str]]:
    """Every ``hpo ...`` command shown on a page, as argument lists (comments, and the figures of a table of
    commands, dropped: what follows two spaces)."""
    commands = []
    for line in code_lines(path.read_text()):
        line = re.split(r"\s{2,}", line.removeprefix("$ "))[0]
        for part in re.split(r"\s*&&\s*", line):
            if part.startswith("hpo "):
                commands.append(shlex.split(part, comments=True)[1:])
    return commands


def test_the_pages_are_found():
    assert len(DOCS) >= 8 and sum(len(hpo_commands(p)) for p in PAGES) > 30


def test_the_readme_is_short_and_leads_to_every_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in DOCS:
        assert f"](docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_somewhere(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links {target}, which is not there"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_hpo_command_shown_is_one_hpo_takes(page, tmp_path, monkeypatch):
    from hpo.arguments import build_parser

    parser = build_parser()
    monkeypatch.chdir(tmp_path)  # where the files the commands name exist (a checkpoint, images)
    for argv in hpo_commands(page):
        for word in argv:
            if word.endswith((".pt", ".png", ".jpg")):
                (tmp_path / word).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / word).touch()
        try:
            parser.parse_args(argv)
        except SystemExit as done:  # --help and --version exit 0
            if done.code != 0:
                    pytest.fail(f"{page.relative_to(REPO)}: `hpo {shlex.join(argv)}` is refused by hpo's own parser")
        for word in argv:
            if word.startswith("studies/"):
                assert (REPO / word).is_file(), f"{page.relative_to(REPO)}: `hpo {shlex.join(argv)}`: no {word}"


def test_the_digits_listing_is_the_file_itself():
    text = (REPO / "docs" / "study-files.md").read_text()
    marker = "This is `studies/digits.yaml`, with every field explained:\n\n```yaml\n"
    assert marker in text
    start = text.index(marker) + len(marker)
    assert text[start:text.index("```\n", start)] == (REPO / "studies" / "digits.yaml").read_text()


def test_the_readme_study_file_validates(tmp_path):
    listing = re.search(r"## A study file\n.*?```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "pets.yaml").write_text(listing)
    (tmp_path / "pets").mkdir()  # the user's image folder, which hpo check wants to exist
    result = hpo("check", "pets.yaml", "--set", "data.root=pets", cwd=tmp_path)
    assert "pets.yaml (with --set data.root=pets): OK" in result.stdout and "momentum         float  [0.8, 0.99]  (only when" in result.stdout


# Run elsewhere, for real: the servers (tests/test_browser.py, tests/test_pyfunc.py) and the benchmark
# (tests/test_bench.py).
NOT_RUN_HERE = ("hpo dashboard", "mlflow ", "hpo bench")


@pytest.mark.slow
def test_the_readme_command_list_runs_in_an_empty_folder(tmp_path):
    """The block of "A study's life", command by command, on studies/digits.yaml with 1-epoch trials and
    2-epoch retrains (the commands as written; only the study file's budget is smaller)."""
    block = README.read_text().split("## A study's life\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip().startswith(("hpo", "mlflow"))]
    assert len(commands) >= 15
    study = yaml.safe_load((REPO / "studies" / "digits.yaml").read_text())
    study["budget"].update(epochs=1, retrain={"epochs": 2})
    study["pruner"]["n_warmup_steps"] = 0
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "digits.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    for name in ("a.png", "b.png"):
        shutil.copy(REPO / "docs" / "screenshots" / "report.png", tmp_path / name)  # any PNG is an image
    ran = []
    for command in commands:
        if command.startswith(NOT_RUN_HERE):
            continue
        argv = shlex.split(command)[1:]
        if "RUN_ID" in argv:  # the retrain run of the latest `hpo retrain`
            import mlflow

            runs = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_runs(
                [mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_experiment_by_name("digits")
                 .experiment_id], "tags.`hpo.role` = 'retrain'", order_by=["attributes.start_time DESC"])
            argv[argv.index("RUN_ID")] = runs[0].info.run_id
        hpo(*argv, cwd=tmp_path, timeout=900)
        ran.append(argv[0])
    assert ran.count("run") == 1 and {"check", "show", "report", "retrain", "promote", "evaluate", "predict",
                                      "lr-find"} <= set(ran)
    assert (tmp_path / "report-digits.html").is_file() and (tmp_path / "checkpoints" / "digits-v2.pt").is_file()
