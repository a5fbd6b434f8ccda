"""Bad input: one line naming the file, field and what is allowed; exit code 2; no traceback; no store written."""

from __future__ import annotations

import copy

import pytest

from conftest import TINY_STUDY, hpo, write_study


def study_with(change) -> dict:
    study = copy.deepcopy(TINY_STUDY)
    study["enqueue"] = []
    change(study)
    return study


def setitem(*path_and_value):
    *path, key, value = path_and_value

    def change(study):
        node = study
        for part in path:
            node = node[part]
        node[key] = value
    return change


MALFORMED = {
    "unknown top-level field": (setitem("nmae", "x"), "nmae: unknown field; allowed: name, seed"),
    "trials not an integer": (setitem("budget", "trials", "ten"),
                              "budget.trials: must be an integer from 1 to 100,000"),
    "trials zero": (setitem("budget", "trials", 0), "budget.trials: must be an integer from 1 to 100,000, got 0"),
    "unknown model": (setitem("model", "name", "resnet999"), "model.name: unknown model 'resnet999'; allowed:"),
    "unknown data set": (setitem("data", "name", "mnist999"), "data.name: unknown dataset 'mnist999'; allowed:"),
    "empty space": (setitem("search", {}), "search: the space is empty"),
    "low above high": (setitem("search", "lr", {"low": 0.1, "high": 0.01}), "search.lr: low (0.1) must be <="),
    "log range touching 0": (setitem("search", "lr", {"low": 0.0, "high": 0.1, "log": True}),
                             "search.lr.low: must be a number > 0, got 0.0"),
    "log range of a param that allows 0": (setitem("search", "weight_decay", {"low": 0, "high": 0.1, "log": True}),
                                           "search.weight_decay.low: must be > 0 for a log-scale range"),
    "unknown optimizer choice": (setitem("search", "optimizer", ["adam", "lbfgs"]),
                                 "search.optimizer.choices: must be one of adam, adamw, rmsprop, sgd"),
    "unknown hyperparameter": (setitem("search", "dropout", 0.1), "search.dropout: unknown hyperparameter"),
    "unknown sampler": (setitem("sampler", "annealing"), "sampler.name: unknown sampler 'annealing'; allowed:"),
    "unknown pruner argument": (setitem("pruner", {"name": "median", "patience": 3}),
                                "pruner.patience: unknown argument; pruner 'median' takes n_startup_trials"),
    "float batch size": (setitem("search", "batch_size", {"low": 8.5, "high": 64}),
                         "search.batch_size.low: must be an integer >= 1 and <= 65536, got 8.5"),
    "val fraction out of range": (setitem("data", "val_fraction", 1.5), "data.val_fraction: must be a number between"),
    "grid over a float range": (setitem("sampler", "grid"), "sampler: the grid sampler needs lr as choices"),
    "momentum never sampled": (lambda s: s["search"].update(optimizer="adam"),
                               "search.momentum: is searched but never sampled"),
    "unknown metric": (setitem("metric", "val_f1"), "metric: must be one of val_accuracy, val_loss"),
    "model argument of the wrong type": (setitem("model", "width", "wide"), "model.width: must be an integer"),
    "pruner argument out of range": (setitem("pruner", {"name": "percentile", "percentile": 150}),
                                     "pruner: Percentile must be between 0 and 100"),
    "enqueued trial outside the space": (setitem("enqueue", [{"lr": 10.0}]),
                                         "enqueue[0].lr: must be within [0.001, 3] (the search space), got 10.0"),
    "label smoothing of 1": (setitem("search", "label_smoothing", 1.0),
                             "search.label_smoothing: must be a number >= 0 and < 1, got 1.0"),
    "unknown compile mode": (setitem("compile", "fast"), "compile: must be one of off, default, reduce-overhead"),
    "jitter too strong": (setitem("search", "jitter", {"low": 0, "high": 3}), "search.jitter.high: must be a number"),
    "a billion trials": (setitem("budget", "trials", 10**9), "budget.trials: must be an integer from 1 to 100,000"),
    "a billion epochs": (setitem("budget", "epochs", 10**9), "budget.epochs: must be an integer from 1 to 10,000"),
    "a billion images per batch": (setitem("search", "batch_size", [32, 10**9]),
                                   "search.batch_size.choices: must be an integer >= 1 and <= 65536"),
}


def assert_one_line_error(result, *expected: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_study_file(case, tmp_path):
    change, message = MALFORMED[case]
    study_file = write_study(tmp_path, study_with(change))
    result = hpo("run", str(study_file), cwd=tmp_path, check=False)
    assert_one_line_error(result, str(study_file), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"], "nothing may be written to any store"


ARGUMENTS = {
    "missing study file": (["run", "nope.yaml"], "nope.yaml: no such study file"),
    "invalid YAML": (["check", "broken.yaml"], "broken.yaml: line 2: invalid YAML"),
    "not a mapping": (["check", "list.yaml"], "list.yaml: must be a YAML mapping"),
    "--set without =": (["run", "study.yaml", "--set", "budget.trials"], "--set budget.trials: expected FIELD.PATH=VALUE"),
    "--set into a scalar": (["run", "study.yaml", "--set", "seed.x=1"], "--set seed.x=1: seed is not a mapping"),
    "--trials not a number": (["run", "study.yaml", "--trials", "abc"], "argument --trials: invalid int value"),
    "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "show without a storage": (["show", "tiny"], "no study storage at sqlite:///hpo.db"),
    "evaluate a missing checkpoint": (["evaluate", "missing.pt"], "missing.pt: no such checkpoint file"),
    "evaluate a file that is no checkpoint": (["evaluate", "study.yaml"], "study.yaml: not a loadable hpo checkpoint"),
    "unknown device": (["run", "study.yaml", "--set", "device=tpu"], "device: must be auto, cpu, cuda or cuda:N"),
    "--device not a device": (["run", "study.yaml", "--device", "tpu"], "--device: 'tpu' is not a device"),
    "tracking URI of no MLflow store": (["run", "study.yaml", "--tracking-uri", "foo://bar"],
                                        "'foo://bar' has the scheme 'foo', which MLflow stores nothing in"),
    "storage URL of no database": (["run", "study.yaml", "--storage", "foo://bar"],
                                   "'foo://bar' is not a database URL SQLAlchemy knows"),
    "promote to a tracking URI of no MLflow store": (["promote", "tiny", "--tracking-uri", "foo://bar"],
                                                     "which MLflow stores nothing in"),
    "a validation split that leaves classes empty": (["run", "study.yaml", "--set", "data.val_fraction=0.999"],
                                                     "data.val_fraction: cannot hold out 0.999 of 1437 images of 10 "
                                                     "classes", "the smallest class, '8', has 139 image(s)"),
    "a test split smaller than the classes": (["run", "study.yaml", "--set", "data.test_fraction=0.001"],
                                              "data.test_fraction: cannot hold out 0.001 of 1797 images"),
}


@pytest.mark.parametrize("case", sorted(ARGUMENTS))
def test_bad_arguments(case, tmp_path):
    argv, *messages = ARGUMENTS[case]
    write_study(tmp_path, study_with(lambda s: None))
    (tmp_path / "broken.yaml").write_text("name: x\n  bad: [indent\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = hpo(*argv, cwd=tmp_path, check=False)
    assert_one_line_error(result, *messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_show_unknown_study_names_the_ones_there(tiny_run):
    result = hpo("show", "nosuch", cwd=tiny_run["dir"], check=False)
    assert_one_line_error(result, "no study named 'nosuch' in sqlite:///hpo.db; studies there:", "tiny")


def test_check_prints_the_resolved_space(tmp_path):
    study_file = write_study(tmp_path, TINY_STUDY)
    out = hpo("check", str(study_file), "--set", "budget.trials=9", cwd=tmp_path).stdout
    assert "9 trials x 3 epochs" in out
    assert "momentum         float  [0, 0.9]  (only when optimizer in sgd, rmsprop)" in out
    assert "label_smoothing  fixed  0.0" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


# A YAML alias bomb: a few hundred bytes that stand for billions of nested items. A message must describe it
# by type and size, never by its repr (which would not fit in memory).
def alias_bomb(levels: int = 10) -> str:
    """A flow list whose last item nests 9**levels strings, in about 40 bytes per level."""
    names = [chr(ord("a") + i) for i in range(levels)]
    items = ["&a [x, x, x, x, x, x, x, x, x]"]
    items += [f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip(names, names[1:])]
    return f"[{', '.join(items)}]"


@pytest.mark.parametrize("field, expected", [
    ("name", "name: must be 1-100 letters, digits, '_', '.' or '-', got a list of 10 items"),
    ("seed", "seed: must be an integer >= 0, got a list of 10 items"),
    ("search.lr.choices", "search.lr.choices: must be a number > 0, got a list of 9 items"),
])
def test_a_yaml_alias_bomb_gets_a_short_message(field, expected, tmp_path):
    fields = {"name": "bomb", "seed": "0", "search.lr.choices": "[0.1]"}
    fields[field] = alias_bomb()
    study_file = tmp_path / "bomb.yaml"
    study_file.write_text(f"name: {fields['name']}\nseed: {fields['seed']}\ndata: digits\nmodel: mlp\n"
                          f"search:\n  lr: {{choices: {fields['search.lr.choices']}}}\n")
    assert len(study_file.read_text()) < 1000
    result = hpo("check", str(study_file), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr) < 400 and expected in result.stderr, result.stderr


@pytest.mark.parametrize("counts, message", [
    ({"only": 12}, "data: the data set has 1 class ('only') with 12 images; a classifier needs at least two"),
    ({"a": 12, "b": 1}, "data.test_fraction: cannot hold out 0.2 of 13 images of 2 classes with every class on both "
                        "sides"),
    ({"a": 12, "b": 12, "empty": 0}, "data: class 'empty' has no images (1 of 3 classes are empty: an empty folder?)"),
])
def test_a_folder_that_cannot_be_split_is_refused_with_its_counts(counts, message, tmp_path):
    from datagen import write_image_folder

    for name, count in counts.items():
        write_image_folder(tmp_path / "images", [name], count, sizes=((8, 8),), mode="L", suffix=".png")
    study_file = write_study(tmp_path, study_with(setitem("data", {"name": "folder", "root": str(tmp_path / "images")})))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = hpo("run", str(study_file), cwd=tmp_path, check=False, env={"HPO_CACHE": str(tmp_path / "images")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]  # after the loader's progress lines
    assert error.startswith("hpo run: error: ") and message in error, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_stores_used_for_the_wrong_thing_are_refused_untouched(tiny_run, tmp_path):
    import hashlib

    work = tiny_run["dir"]
    study_file = str(tiny_run["study_file"])

    def state():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in work.iterdir() if p.is_file()}

    before = state()
    cases = [
        (("promote", "nosuch"), "no MLflow experiment named 'nosuch' in sqlite:///mlflow.db; experiments there: tiny"),
        (("run", study_file, "--storage", "sqlite:///mlflow.db", "--tracking-uri", "sqlite:///other.db"),
         "sqlite:///mlflow.db is MLflow's database, not a study storage"),
        (("run", study_file, "--tracking-uri", "sqlite:///hpo.db"), "the study storage and MLflow are both "),
        (("run", study_file, "--storage", "sqlite:///other.db", "--tracking-uri", "sqlite:///hpo.db"),
         "sqlite:///hpo.db is a study storage, not MLflow's database"),
    ]
    for args, message in cases:
        assert_one_line_error(hpo(*args, cwd=work, check=False), message)
    assert state() == before
    assert_one_line_error(hpo("promote", "tiny", cwd=tmp_path, check=False), "no MLflow store at sqlite:///mlflow.db")
    assert list(tmp_path.iterdir()) == []


def _damaged(checkpoint: dict, case: str) -> dict:
    import torch

    if case == "only its format":
        return {"format": checkpoint["format"]}
    damaged = dict(checkpoint)
    if case == "weights of the wrong shape":
        key = next(k for k, v in checkpoint["state_dict"].items() if v.ndim == 4)
        damaged["state_dict"] = {**checkpoint["state_dict"], key: torch.zeros(3, 3, 3, 3)}
    elif case == "no class names":
        damaged["class_names"] = []
    elif case == "an unknown model":
        damaged["model"] = {"name": "resnet999", "args": {}}
    return damaged


@pytest.mark.parametrize("case, message", [
    ("only its format", "a damaged hpo checkpoint: state_dict, model, preprocessing, class_names, data, metrics "
                        "missing or malformed"),
    ("weights of the wrong shape", "its weights do not fit model 'digits_cnn'"),
    ("no class names", "a damaged hpo checkpoint: class_names missing or malformed"),
    ("an unknown model", "its weights do not fit model 'resnet999'"),
])
def test_a_crafted_checkpoint_is_one_line(case, message, tiny_run, tmp_path):
    import torch

    checkpoint = torch.load(tiny_run["dir"] / "checkpoints" / "tiny-v1.pt", weights_only=True)
    path = tmp_path / "crafted.pt"
    torch.save(_damaged(checkpoint, case), path)
    for command in ("evaluate", "predict"):
        argv = [command, str(path)] + (["image.png"] if command == "predict" else [])
        assert_one_line_error(hpo(*argv, cwd=tmp_path, check=False), f"{path}: ", message)


def test_evaluate_with_a_data_root_for_a_set_that_reads_no_files(tiny_run, tmp_path):
    result = hpo("evaluate", str(tiny_run["dir"] / "checkpoints" / "tiny-v1.pt"), "--data-root", str(tmp_path),
                 cwd=tmp_path, check=False)
    assert_one_line_error(result, "--data-root: the checkpoint's data set 'digits' reads no files")


def test_a_pretrained_path_to_a_file_that_holds_no_weights(tmp_path):
    (tmp_path / "weights.pth").write_text("not weights\n")
    study_file = write_study(tmp_path, study_with(setitem("model", "pretrained", str(tmp_path / "weights.pth"))))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = hpo("run", str(study_file), cwd=tmp_path, check=False)
    assert_one_line_error(result, "model: digits_cnn cannot be built", "weights.pth: not a weights file torch can load")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_dashboard_on_a_port_in_use(tiny_run):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hpo("dashboard", "--port", str(port), cwd=tiny_run["dir"], check=False)
    assert_one_line_error(result, f"--port {port}: cannot listen on 127.0.0.1:{port}", "pick another with --port")
