"""The Python API a notebook uses: ``hpo.run``, ``hpo.promote``, ``hpo.load``, and ``hpo.SpecError`` carrying
the command line's line; a fresh interpreter, as a user's script would be."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import hpo, write_study
from test_own_models import OWN_STUDY, digit_pngs

SCRIPT = r'''
import json, sys
import hpo

result = hpo.run(sys.argv[1], overrides={"budget.trials": 2})
promotion = hpo.promote("api", output="api.pt")
classifier = hpo.load("api.pt")
predicted = classifier.predict(sys.argv[2:])
try:
    hpo.run(sys.argv[1], overrides={"budget.trials": 0})
    refused = None
except hpo.SpecError as err:
    refused = str(err)
print(json.dumps({"params": result.best_params, "value": result.best_value, "trial": result.best_trial.number,
                  "trials": len(result.study.trials), "test_accuracy": result.test_accuracy,
                  "version": promotion.version, "classes": classifier.class_names,
                  "predicted": [p.label for p in predicted], "refused": refused}))
'''


@pytest.mark.slow  # a study, a promote, a load
def test_a_script_runs_promotes_and_loads_through_the_python_api(tmp_path):
    study = write_study(tmp_path, dict(OWN_STUDY, name="api", model={"name": "digits_cnn", "width": 4},
                                       budget={"trials": 5, "epochs": 1, "retrain": {"epochs": 1}}))
    files = digit_pngs(tmp_path, 2)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(study), *files], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "nothing is printed unless progress=True"
    out = done.stdout.splitlines()
    assert len(out) == 1, out
    answer = json.loads(out[0])
    assert answer["trials"] == 2 and set(answer["params"]) == {"lr"} and 0 <= answer["value"] <= 1
    assert 0 < answer["test_accuracy"] <= 1 and answer["version"] == 1
    assert answer["classes"] == [str(i) for i in range(10)] and len(answer["predicted"]) == 2

    cli = hpo("run", str(study), "--set", "budget.trials=0", cwd=tmp_path, check=False)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"hpo run: error: {answer['refused']}"


def test_a_bad_string_override_raises_the_clis_line(tmp_path):
    import hpo as api

    study = write_study(tmp_path, dict(OWN_STUDY, name="api", model={"name": "digits_cnn", "width": 4}))
    with pytest.raises(api.SpecError) as raised:
        api.run(str(study), overrides={"search.optimizer": "adamm"})
    cli = hpo("check", str(study), "--set", "search.optimizer=adamm", cwd=tmp_path, check=False)
    assert cli.returncode == 2 and cli.stderr.strip() == f"hpo check: error: {raised.value}"


def test_a_users_own_data_and_models_do_not_shadow_hpos(tmp_path):
    """hpo's data sets and models install as hpo.data and hpo.models: a project's own data.py and models/
    package (the commonest names) are neither run by hpo nor hidden by it."""
    from helpers import REPO

    (tmp_path / "data.py").write_text("raise RuntimeError('the user data.py was imported')\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "digits.yaml").write_text((REPO / "studies" / "digits.yaml").read_text())
    checked = subprocess.run([sys.executable, "-m", "hpo", "check", "studies/digits.yaml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr
    both = subprocess.run([sys.executable, "-c", "import hpo, hpo.models, models; print(models.MINE)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert both.returncode == 0 and both.stdout.strip() == "True", both.stderr
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    for name in ("data", "models"):
        missing = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=elsewhere, capture_output=True,
                                 text=True, timeout=60)
        assert missing.returncode == 1 and f"No module named '{name}'" in missing.stderr
